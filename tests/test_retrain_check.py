"""The retraining check: a configuration that holds uniform WkAk, retrained with seeds beside WkAk (the search stage,
mpq.studies.retrain_check), then judged and shown (notebook 04, mpq.studies.retrain_check_tables)."""
from __future__ import annotations

import json

import pytest
import torch

from mpq.config import DataConfig, ModelSpec
from mpq.method.supernet import Supernet
from mpq.models import create_model
from mpq.studies.retrain_check import RetrainCheckConfig, run_retrain_check
from mpq.studies.retrain_check_tables import judge_retrain_check, retrain_check_finding, retrain_check_table
from mpq.studies.stats import paired_verdict
from mpq.training.recipe import OneShotConfig
from test_supernets import fp_folder, small          # noqa: F401 (fixtures)

SPEC = ModelSpec("resnet20", 0.25)
CFG = OneShotConfig(epochs=1, num_random_paths=0, scheduler=False, idm=False)


def test_config_refuses_a_uniform_model_not_under_its_level():
    with pytest.raises(ValueError, match="below its level"):
        RetrainCheckConfig(level=3, uniform_bits=3)
    with pytest.raises(ValueError, match="distinct"):
        RetrainCheckConfig(seeds=(1, 1))
    assert RetrainCheckConfig(model=None, seeds=()).model is None


@pytest.mark.timeout(120)
def test_check_retrains_both_arms_per_seed_and_gives_a_paired_verdict(small, fp_folder):   # noqa: F811
    names = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28)).searchable
    mixed = {n: (4 if i % 2 else 3, 3) for i, n in enumerate(names)}
    results = {"resnet20": {"levels": {3.5: {"greedy": {"bit_cfg": {k: list(v) for k, v in mixed.items()}}}}}}
    check = RetrainCheckConfig(model="resnet20", level=3.5, uniform_bits=3, seeds=(0, 1))
    out = run_retrain_check(results, [SPEC], {"resnet20": CFG}, small, small.train, DataConfig(batch_size=16), check,
                        eval_batch_size=256, device=torch.device("cpu"), fp_root=fp_folder)
    assert out["seeds"] == [0, 1] and len(out["test_acc"]["configuration"]) == 2
    assert out["gbitops"]["configuration"] > out["gbitops"]["uniform"]
    assert "verdict" not in out                          # the search stage keeps the predictions; the page judges
    labels = small.test.labels
    assert {arm: tuple(p.shape) for arm, p in out["preds"].items()} == {"configuration": (2, 32), "uniform": (2, 32)}
    assert out["test_acc"]["uniform"] == [float((p == labels).float().mean()) for p in out["preds"]["uniform"]]
    judged = judge_retrain_check(out, labels)
    assert list(judged) == ["model", "level", "uniform_bits", "seeds", "gbitops", "test_acc", "health", "verdict",
                            "seconds"]
    v = judged["verdict"]
    diffs = [100 * (a - b) for a, b in zip(out["test_acc"]["configuration"], out["test_acc"]["uniform"])]
    assert v["per_seed"] == pytest.approx(diffs) and v["n"] == 2
    assert v == paired_verdict((out["preds"]["configuration"] == labels).numpy(),
                               (out["preds"]["uniform"] == labels).numpy(), expected=1).as_dict()
    json.dumps(judged, allow_nan=False)                  # strict JSON for the metrics
    table = retrain_check_table(judged)
    assert table["difference (points)"].tolist() == pytest.approx(diffs)
    assert retrain_check_finding(judged).startswith("resnet20: the level-3.5 configuration retrained")
    assert judge_retrain_check(None, labels) is None
    # a configuration with a layer under the uniform bit-width does not hold it: refused
    bad = {"resnet20": {"levels": {3.5: {"greedy": {"bit_cfg": {**results["resnet20"]["levels"][3.5]["greedy"]["bit_cfg"],
                                                              names[0]: [2, 3]}}}}}}
    with pytest.raises(ValueError, match="under uniform"):
        run_retrain_check(bad, [SPEC], {"resnet20": CFG}, small, small.train, DataConfig(batch_size=16), check,
                      eval_batch_size=256, device=torch.device("cpu"), fp_root=fp_folder)
