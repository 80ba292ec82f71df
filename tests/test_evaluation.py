"""Search glue: scores leave the supernet untouched, paired differences, the command-line search."""
from __future__ import annotations

import json

import pytest
import torch

from mpq.__main__ import main
from mpq.evaluation import make_scorer, paired_difference, search_space
from mpq.models import create_model
from mpq.oneshot import OneShotConfig, build_supernet, train_oneshot


@pytest.fixture(scope="module")
def trained(tiny_splits, tmp_path_factory):
    """A tiny supernet trained for a few steps, with its checkpoint."""
    torch.manual_seed(0)
    cfg = OneShotConfig(epochs=1, num_random_paths=1)
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28))
    path = tmp_path_factory.mktemp("ckpt") / "resnet20.pt"
    run = train_oneshot(sn, tiny_splits.train.subset(torch.arange(64)), cfg, batch_size=32, pad=2, flip=True, seed=0,
                        device=torch.device("cpu"), checkpoint=path, progress=False,
                        meta={"model": "resnet20", "width_mult": 0.25, "num_classes": 10})
    return run.ema, path


def test_scoring_changes_no_state(trained, tiny_splits):
    supernet, _ = trained
    before = {k: v.clone() for k, v in supernet.state_dict().items() if torch.is_tensor(v)}
    scorer = make_scorer(supernet, tiny_splits.score, metric="loss", batch_size=64)
    low, high = scorer(supernet.min_config()), scorer(supernet.max_config())
    assert low > 0 and high > 0
    assert scorer(supernet.max_config()) == pytest.approx(high)      # deterministic
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    error = make_scorer(supernet, tiny_splits.score, metric="error")(supernet.max_config())
    assert 0.0 <= error <= 1.0
    with pytest.raises(ValueError, match="metric"):
        make_scorer(supernet, tiny_splits.score, metric="top5")


def test_search_space_matches_supernet(trained):
    supernet, _ = trained
    space = search_space(supernet)
    assert space.names == supernet.searchable
    assert space.contains(supernet.uniform_config(3))


def test_paired_difference():
    labels = torch.tensor([0, 1, 2, 3])
    a = torch.tensor([0, 1, 2, 0])    # 3 right
    b = torch.tensor([0, 0, 0, 3])    # 2 right
    diff, se = paired_difference(a, b, labels)
    assert diff == pytest.approx(0.25)
    d = torch.tensor([0.0, 1.0, 1.0, -1.0])
    assert se == pytest.approx(float(d.std() / 2))


def test_command_line_search(trained, tmp_path, capsys):
    _, path = trained
    out = tmp_path / "cfg.json"
    assert main(["search", str(path), "--level", "3", "--score-size", "64", "--calib-size", "64", "--test-size", "64",
                 "--evaluate", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["gbitops"] <= result["target_gbitops"] + 1e-12
    assert 0.0 <= result["test_acc"] <= 1.0
    assert set(result["bit_cfg"]) == set(trained[0].searchable)
    with pytest.raises(SystemExit, match="outside this supernet's reachable range"):
        main(["search", str(path), "--level", "1.5", "--score-size", "64", "--calib-size", "64"])
