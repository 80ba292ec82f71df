"""Search glue: scores leave the supernet untouched, paired differences, the command-line search."""
from __future__ import annotations

import json

import pytest
import torch

from mpq.__main__ import main
from mpq.search.evaluation import equal_batches, make_scorer, paired_difference, search_space
from mpq.models import create_model
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import build_supernet


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


@pytest.mark.timeout(60)
def test_scoring_batches_are_nearly_equal_and_a_split_that_was_equal_is_kept(trained, tiny_splits):
    assert [equal_batches(n, 500) for n in (1, 128, 500, 501, 512, 2000)] == [[1], [128], [500], [251, 250],
                                                                               [256, 256], [500] * 4]
    for n in range(1, 300):
        for cap in (1, 7, 64, 128, 500):
            sizes = equal_batches(n, cap)
            assert sum(sizes) == n and max(sizes) <= cap and max(sizes) - min(sizes) <= 1 and len(sizes) == -(-n // cap)
    supernet, _ = trained
    n = len(tiny_splits.score)
    scorer = make_scorer(supernet, tiny_splits.score, batch_size=n - 1)     # was n - 1 and 1: now two halves
    assert sorted(len(y) for _, y in scorer.batches) == sorted([n // 2, n - n // 2])
    with pytest.raises(ValueError, match="at least one image"):
        equal_batches(0, 500)


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
    assert main(["search", str(path), "--level", "4.8", "--score-size", "32", "--calib-size", "64", "--test-size", "64",
                 "--evaluate", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["gbitops"] <= result["target_gbitops"] + 1e-12
    assert 0.0 <= result["test_acc"] <= 1.0
    assert set(result["bit_cfg"]) == set(trained[0].searchable)
    assert result["scoring_images"] == 32 and result["data"] == {"name": "fashion_mnist", "seed": 0}


@pytest.mark.parametrize("args, message", [
    (["--level", "1.5"], "outside this supernet's reachable range"),
    (["--level", "3", "--seed", "1"], "--seed 1 conflicts with the checkpoint"),
    (["--level", "3", "--dataset", "mnist5k"], "--dataset mnist5k conflicts with the checkpoint"),
    (["--level", "3", "--score-size", "4000"], "use at most 128"),     # tiny_splits hold 128 scoring images
    (["--level", "3", "--calib-size", "0"], "--calib-size 0: must be a positive number of images"),
])
def test_command_line_mistakes_are_one_line_errors(trained, capsys, args, message):
    _, path = trained
    assert main(["search", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_command_line_bad_checkpoints(tmp_path, capsys):
    missing, corrupt, fp = tmp_path / "missing.pt", tmp_path / "corrupt.pt", tmp_path / "fp.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    torch.save({"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "state_dict": {}}, fp)
    for path, message in ((missing, "not found"), (corrupt, "corrupt or not a torch file"),
                          (fp, "is a full-precision checkpoint (FP stage); pass a one-shot supernet checkpoint")):
        assert main(["search", str(path), "--level", "3"]) == 2
        err = capsys.readouterr().err
        assert message in err and str(path) in err and "Traceback" not in err, err


@pytest.mark.timeout(60)
def test_command_line_checks_its_output_and_sizes_before_the_search(trained, tmp_path, capsys):
    _, path = trained
    before = path.read_bytes()
    for args, message in ((["--out", str(path)], f"--out {path} would overwrite the input {path}"),
                          (["--out", str(tmp_path)], "is a folder; pass a file path"),
                          (["--out", str(path / "cfg.json")], "is a file, not a folder"),
                          (["--test-size", "0", "--evaluate"], "--test-size 0: must be a positive number of images"),
                          (["--test-size", "-1", "--evaluate"], "--test-size -1: must be a positive number"),
                          (["--gbitops", "nan"], "--gbitops nan: must be a finite number > 0"),
                          (["--alpha", "-1"], "--alpha -1.0: must be a finite number >= 0")):
        budget = [] if "--gbitops" in args else ["--level", "3"]
        assert main(["search", str(path), *budget, *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert path.read_bytes() == before


@pytest.mark.timeout(90)
def test_command_line_refuses_an_unfinished_checkpoint_unless_asked_and_then_says_so(trained, tmp_path, capsys,
                                                                                      caplog):
    from mpq.training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(trained[1])
    state["config"]["epochs"], state["finished"] = 3, False           # as if stopped after epoch 1 of 3
    unfinished, old = tmp_path / "unfinished.pt", tmp_path / "old.pt"
    save_checkpoint(state, unfinished)
    save_checkpoint({k: v for k, v in state.items() if k != "finished"}, old)   # written before the flag
    for path in (unfinished, old):
        assert main(["search", str(path), "--level", "4.8"]) == 2
        err = capsys.readouterr().err
        assert f"checkpoint {path} is unfinished: it holds epoch 1 of 3" in err and "--allow-unfinished" in err, err
    out = tmp_path / "cfg.json"
    assert main(["search", str(unfinished), "--level", "4.8", "--score-size", "8", "--calib-size", "8",
                 "--allow-unfinished", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["warning"].startswith(f"checkpoint {unfinished} is unfinished: it holds epoch 1 of 3")
    assert f"warning: checkpoint {unfinished} is unfinished" in caplog.text     # on stderr too


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_28", "efficientnet_lite_28"])
def test_incremental_scores_equal_full_passes(name, tiny_splits):
    """Every one-layer move scored from a cached base equals a full forward pass, bit for bit."""
    from mpq.training.hardware import place

    torch.manual_seed(0)
    supernet = build_supernet(create_model(name, width_mult=0.25), OneShotConfig().supernet_spec(), tiny_splits.calib,
                              (1, 28, 28))
    place(supernet, "cpu")                      # channels_last, as training and search run
    data = tiny_splits.score.subset(torch.arange(48))
    full = make_scorer(supernet, data, batch_size=32, incremental=False)
    inc = make_scorer(supernet, data, batch_size=32)            # two batches: one base per batch
    space = search_space(supernet)
    base = space.cfg(space.start_key(4))
    moves = []
    for layer in space.names:
        for dim in (0, 1):
            for bits in (3, 5):
                cfg = dict(base)
                pair = list(cfg[layer])
                pair[dim] = bits
                cfg[layer] = tuple(pair)
                if space.contains(cfg):
                    moves.append(cfg)
    inc.around(base)
    assert [inc(c) for c in moves] == [full(c) for c in moves]
    assert inc.partial_passes == 2 * len(moves) and inc.full_passes == 2       # only the base ran whole
    assert inc(base) == full(base)
    inc.around(moves[-1])                       # a one-layer move from the base becomes the base
    assert inc.full_passes == 2
    assert inc(moves[0]) == full(moves[0])      # two layers away from the new base: a full pass
    assert inc.full_passes == 4


def test_incremental_cache_dropped_when_weights_change(trained, tiny_splits):
    supernet, _ = trained
    scorer = make_scorer(supernet, tiny_splits.score, batch_size=64)
    cfg = supernet.uniform_config(4)
    scorer.around(cfg)
    layer = supernet.searchable[0]
    moved = {**cfg, layer: (3, 4)}
    before = scorer(moved)
    weight = supernet.model.get_submodule(layer).weight
    with torch.no_grad():
        weight.mul_(1.5)
    try:
        passes = scorer.full_passes
        after = scorer(moved)
        assert scorer.full_passes > passes              # the stale base was not used
        assert after == make_scorer(supernet, tiny_splits.score, batch_size=64, incremental=False)(moved)
        assert after != before
    finally:
        with torch.no_grad():
            weight.div_(1.5)


def test_scorer_is_incremental_on_cpu_by_default(tiny_splits):
    """``incremental=None`` (the default) caches on CPU, where it pays; it can be switched off either way."""
    supernet = build_supernet(create_model("resnet20", width_mult=0.25), OneShotConfig().supernet_spec(),
                              tiny_splits.calib, (1, 28, 28))
    data = tiny_splits.score.subset(torch.arange(16))
    assert make_scorer(supernet, data).graph is not None
    assert make_scorer(supernet, data, incremental=False).graph is None
