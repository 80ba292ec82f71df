"""Supernets and uniform LSQ baselines (mpq.studies.supernets, notebooks 02 and 03) on tiny sizes, and the tables
and findings made from their results."""
from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from mpq.config import BaselineConfig, DataConfig, EvalConfig, ModelSpec
from mpq.data.datasets import batches
from mpq.method.cost import bitops
from mpq.method.supernet import Supernet
from mpq.models import create_model
from mpq.pages.plotting import baselines_vs_supernet
from mpq.search.evaluation import recalibrated_accuracy
from mpq.studies.replicate_tables import read_correct
from mpq.studies.supernet_tables import (baseline_comparison, baseline_findings, cost_summary, read_supernet_models,
                                         supernet_findings, supernet_table)
from mpq.studies.supernets import (load_baselines, load_supernets, model_settings, save_run, train_baselines,
                                   train_supernets, write_table)

from mpq.training.checkpoint import load_checkpoint, save_checkpoint, write_stage_record
from mpq.training.fp import evaluate, load_fp_model, to_device
from mpq.training.hardware import place
from mpq.training.oneshot import load_supernet
from mpq.training.recipe import OneShotConfig

CPU = torch.device("cpu")
SPECS = [ModelSpec("resnet20", 0.25)]
CFG = OneShotConfig(epochs=1, num_random_paths=1, scheduler=False, idm=False)
DATA = DataConfig(batch_size=16)


@pytest.fixture(scope="module")
def small(tiny_splits):
    """32 training (two steps of 16), 32 calibration and 32 test images of ``tiny_splits``."""
    first = torch.arange(32)
    return dataclasses.replace(tiny_splits, train=tiny_splits.train.subset(first),
                               calib=tiny_splits.calib.subset(first), test=tiny_splits.test.subset(first))


@pytest.fixture(scope="module")
def fp_folder(tmp_path_factory):
    """An FP checkpoint of an untrained ResNet-20 x0.25, in the format notebook 01 writes."""
    folder = tmp_path_factory.mktemp("fp")
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, width_mult=0.25)
    save_checkpoint({"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "state_dict": model.state_dict()},
                    folder / "resnet20.pt")
    return folder


def test_model_settings_apply_each_floor_and_check_levels():
    specs = [ModelSpec("resnet20", 0.5), ModelSpec("mobilenetv2_28", 0.5)]
    model_cfg, model_eval = model_settings({"mobilenetv2_28": {"min_bits": 3}}, specs, OneShotConfig(),
                                           EvalConfig(levels=(2, 4, 6)))
    assert list(model_cfg) == ["resnet20", "mobilenetv2_28"]
    assert model_cfg["resnet20"].w_bit_choices == (2, 3, 4, 5, 6) and model_eval["resnet20"].levels == (2, 4, 6)
    assert model_cfg["mobilenetv2_28"].a_bit_choices == (3, 4, 5, 6) and model_eval["mobilenetv2_28"].levels == (4, 6)
    with pytest.raises(ValueError, match=r"evaluation.levels \[7\]"):
        model_settings(None, specs, OneShotConfig(), EvalConfig(levels=(2, 7)))


@pytest.mark.timeout(60)
def test_train_supernets_results_match_their_checkpoint(small, fp_folder, tmp_path):
    model_cfg, model_eval = model_settings(None, SPECS, CFG, EvalConfig(levels=(2, 4)))
    out = train_supernets(SPECS, small, small.train, model_cfg, model_eval, DATA, eval_batch_size=256, seed=0,
                          device=CPU, fp_folder=fp_folder, folder=tmp_path)
    assert list(out) == ["models", "histories", "cost"]
    r = out["models"]["resnet20"]
    assert list(r["uniform"]) == [2, 4] and r["steps"] == 2 and r["epochs"] == 1
    assert r["w_bit_choices"] == [2, 3, 4, 5, 6] and r["frozen_at_end"] == []
    # no decision: the own lowest point is the uniform lowest one; the run stayed healthy
    assert r["lowest"]["layers_above_floor"] == 0 and r["lowest"]["gbitops"] == r["uniform"][2]["gbitops"]
    assert r["health"]["finite"] and not r["health"]["collapsed"] or r["health"]["why"]
    assert r["gap_w4a4_points"] == round(100 * (r["fp_test_acc"] - r["uniform"][4]["test_acc"]), 2)
    assert list(r)[-2:] == ["gap_w4a4_points", "gap_w2a2_points"]
    fp = load_fp_model(str(fp_folder / "resnet20.pt"))
    assert r["fp_test_acc"] == evaluate(fp, small.test)
    ema = load_supernet(tmp_path / "resnet20.pt")             # the EMA written at the end of the epoch
    place(ema, CPU)                                           # channels_last, as trained: the same float sums
    assert r["uniform"][4]["test_acc"] == recalibrated_accuracy(ema, ema.uniform_config(4), small.calib, small.test)
    # the per-image predictions C1 pairs on: each uniform row's, scoring exactly its accuracy
    correct = read_correct(tmp_path / "resnet20_predictions.npz", small.test.labels.numpy())
    assert sorted(correct) == ["supernet W2A2", "supernet W4A4"]
    assert all(correct[f"supernet W{b}A{b}"].mean() == r["uniform"][b]["test_acc"] for b in (2, 4))
    cost = out["cost"]
    assert list(cost.columns)[-1] == "model" and set(cost.model) == {"resnet20"}
    assert set(cost[cost.fixed].w_bits) == {8} and set(cost[~cost.fixed].w_bits) == {4}
    # BitOPs = w x a x MACs: uniform W4A4 minus W2A2 is (16 - 4) x the searchable layers' MACs
    diff = r["uniform"][4]["gbitops"] - r["uniform"][2]["gbitops"]
    assert diff == pytest.approx(12 * cost[~cost.fixed].macs.sum() / 1e9)
    # the stage's results: run.json without wall times; read back with the stage record, the same run
    timings = save_run(out, tmp_path)
    assert "seconds" not in (tmp_path / "run.json").read_text()
    assert "generator" not in load_checkpoint(tmp_path / "resnet20.pt")     # finished: no optimizer state kept
    write_stage_record("supernet", 1.0, tmp_path / "stages", timings=timings)
    back = load_supernets(tmp_path, tmp_path / "stages")
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)    # NaN test accuracies
    assert back["models"] == out["models"] and same(back["histories"], out["histories"])
    pd.testing.assert_frame_equal(back["cost"], out["cost"].reset_index(drop=True))


@pytest.mark.timeout(60)
def test_baselines_keep_the_model_floor(small, fp_folder, tmp_path):
    results = train_baselines(SPECS, small, small.train, CFG, BaselineConfig(levels=(2, 3)),
                              {"resnet20": {"min_bits": 3}}, DATA, eval_batch_size=256, seed=0, device=CPU,
                              fp_folder=fp_folder, folder=tmp_path)
    assert list(results) == ["resnet20"] and list(results["resnet20"]) == [3]
    r = results["resnet20"][3]
    assert list(r) == ["test_acc", "train_seconds", "epochs", "gbitops", "size_mib", "health"] and r["epochs"] == 1
    assert r["health"]["finite"] and r["health"]["heldout_images"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet20_predictions.npz", "resnet20_w3a3.pt"]
    correct = read_correct(tmp_path / "resnet20_predictions.npz", small.test.labels.numpy())
    assert list(correct) == ["LSQ W3A3"] and correct["LSQ W3A3"].mean() == r["test_acc"]
    with pytest.raises(ValueError, match="other test images"):
        read_correct(tmp_path / "resnet20_predictions.npz", small.test.labels.numpy()[::-1])
    lsq = load_supernet(tmp_path / "resnet20_w3a3.pt")
    place(lsq, CPU)
    assert lsq.choices[lsq.searchable[0]] == ((3,), (3,))
    assert r["test_acc"] == recalibrated_accuracy(lsq, lsq.uniform_config(3), small.calib, small.test)
    write_stage_record("baselines", 1.0, tmp_path / "stages", timings=save_run({"models": results}, tmp_path))
    assert load_baselines(tmp_path, tmp_path / "stages") == results


RESULTS = {"m": {"fp_test_acc": 0.9, "uniform": {2: {"test_acc": 0.75}, 4: {"test_acc": 0.875}}, "epochs": 3,
                 "train_images": 100, "train_seconds": 12.4, "frozen_at_end": ["a", "b"],
                 "w_bit_choices": [2, 3, 4], "gap_w4a4_points": 2.5, "gap_w2a2_points": 15.0,
                 "lowest": {"test_acc": 0.8, "gbitops": 0.0123, "size_mib": 0.01, "layers_above_floor": 2},
                 "health": {"finite": True, "max_path_heldout_acc": 0.88, "fp_heldout_acc": 0.9, "heldout_images": 50,
                            "collapsed": False, "why": ""}}}


def test_supernet_table_and_findings():
    table = supernet_table(RESULTS)
    assert list(table.columns) == ["model", "FP (%)", "W2A2 (%)", "W4A4 (%)", "own lowest point (%)", "training (s)",
                                   "layers frozen at the end", "run"]
    assert table.iloc[0].tolist() == ["m", 90.0, 75.0, 87.5, 80.0, 12.4, 2, "healthy"]
    lines = supernet_findings(RESULTS)
    assert lines[0] == ("m: one supernet, trained once (3 epochs over 100 images, 12 s), gives W2A2 75.00%, "
                        "W4A4 87.50% with no retraining; FP 90.00%, so W4A4 is 2.50 and W2A2 is 15.00 points under FP")
    floor = {"m": {**RESULTS["m"], "w_bit_choices": [3, 4, 5], "uniform": {4: {"test_acc": 0.875}}}}
    del floor["m"]["gap_w2a2_points"]
    assert supernet_findings(floor)[0].endswith("W4A4 is 2.50 points under FP (candidates 3..5: model_bits)")
    assert len(lines) == 3
    assert lines[1].startswith("m: its own lowest point (each layer at the lowest of its candidates after the "
                               "scheduler's last decision, 2 layers above the uniform floor) scores 80.00%")
    assert lines[2] == ("m: training stayed healthy (finite losses; max path 88.00% on 50 held-out images, "
                        "FP 90.00%)")


def test_baseline_comparison_pairs_each_level_with_the_supernet(tmp_path):
    path = tmp_path / "supernet.json"
    path.write_text(json.dumps({"models": {"m": RESULTS["m"]}}))
    supernet = read_supernet_models(path)
    assert list(supernet["m"]["uniform"]) == ["2", "4"]                     # levels as strings, as in the file
    lsq = {"test_acc": 0.8, "train_seconds": 5.0, "epochs": 3, "gbitops": 0.1, "size_mib": 0.2}
    results = {"m": {2: lsq, 3: {**lsq, "test_acc": 0.85}}, "other": {2: lsq}}
    compare = baseline_comparison(results, supernet)
    assert compare[["model", "bits (W = A)"]].values.tolist() == [["m", 2], ["m", 3], ["other", 2]]
    assert compare.loc[0, "supernet minus LSQ (points)"] == pytest.approx(-5.0)
    assert compare.loc[0, "FP (%)"] == 90.0 and math.isnan(compare.loc[1, "supernet (%)"])
    assert math.isnan(compare.loc[2, "FP (%)"])
    lines = baseline_findings(compare, epochs=3, train_images=100)
    assert lines[0] == ("m: LSQ trained alone W2A2 80.00%, W3A3 85.00%; the supernet minus LSQ alone: -5.00 at W2A2 "
                        "points")
    assert lines[-1].startswith("Each baseline trains 3 epochs over 100 images")
    fig = baselines_vs_supernet({**supernet, "x": supernet["m"]}, {"m": results["m"]}, "t")
    assert [ax.get_title() for ax in fig.axes] == ["m"]                   # only the models with baselines
    assert fig.axes[0].lines[-1].get_ydata().tolist() == [80.0, 85.0]      # the LSQ crosses, in %


def test_cost_summary_one_row_per_model_and_the_same_from_its_csv(tmp_path):
    cost = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 2, "name": ["stem", "c1", "fc", "c1", "c2"],
                         "fixed": [True, False, True, False, False], "macs": [10, 40, 5, 100, 300],
                         "bitops": [640, 640, 320, 1600, 4800]})
    summary = cost_summary(cost)
    assert summary["model"].tolist() == ["a", "b"]
    a, b = summary.iloc[0], summary.iloc[1]
    layers = ["searchable layers", "fixed layers (8x8)"]
    assert a[layers].tolist() + b[layers].tolist() == [1, 2, 2, 0]
    assert a["MACs (M)"] == pytest.approx(55e-6) and b["G-BitOPs"] == pytest.approx(6400e-9)
    assert a["fixed layers' share (%)"] == pytest.approx(60.0) and b["fixed layers' share (%)"] == 0.0
    assert (b["costliest searchable layer"], b["its share (%)"]) == ("c2", pytest.approx(75.0))
    write_table(cost, tmp_path / "cost.csv")                 # the notebook's per-layer file gives the same summary
    pd.testing.assert_frame_equal(cost_summary(pd.read_csv(tmp_path / "cost.csv")), summary)


def test_write_table_makes_its_folder(tmp_path):
    write_table(pd.DataFrame({"a": [1, 2]}), tmp_path / "new" / "t.csv")
    assert (tmp_path / "new" / "t.csv").read_text() == "a\n1\n2\n"


@pytest.mark.timeout(60)
def test_lowest_point_keeps_the_decision_and_health_flags_a_collapse(small):
    from mpq.method.scheduler import apply_decision
    from mpq.studies.health import training_health
    from mpq.studies.supernets import lowest_point

    torch.manual_seed(0)
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    sn.calibrate(to_device(*next(iter(batches(small.calib, 64, shuffle=False))), CPU)[0])
    frozen = sn.searchable[:3]
    low = lowest_point(sn, apply_decision(sn.choices, frozen, activations=True), small.calib, small.test,
                       batch_size=256)
    # ResNet's rule: the frozen layers sit at W3A3, above the floor in weights and activations alike
    assert low["layers_above_floor"] == low["weights_above_floor"] == low["activations_above_floor"] == 3
    split = lowest_point(sn, apply_decision(sn.choices, frozen, activations=False), small.calib, small.test,
                         batch_size=256)
    assert (split["layers_above_floor"], split["weights_above_floor"], split["activations_above_floor"]) == (3, 3, 0)
    assert low["gbitops"] > bitops(sn.cost_table, sn.min_config()) / 1e9
    healthy = training_health([1.0, 0.5], sn, small.calib, small.test, fp_heldout_acc=0.0)
    assert not healthy["collapsed"] and healthy["why"] == ""
    collapsed = training_health([1.0, 0.5], sn, small.calib, small.test, fp_heldout_acc=1.0)   # max path far under FP
    assert collapsed["collapsed"] and "under FP" in collapsed["why"]
    # a fixed-precision model is judged only by finite losses and being above twice chance (10 classes: 20%)
    acc = healthy["max_path_heldout_acc"]
    fixed = training_health([1.0], sn, small.calib, small.test, fp_heldout_acc=1.0, margin=None)
    assert fixed["collapsed"] == (acc <= 0.2) and ("twice chance" in fixed["why"]) == (acc <= 0.2)
    nan = training_health([1.0, float("nan")], sn, small.calib, small.test, fp_heldout_acc=0.5)
    assert nan["collapsed"] and not nan["finite"] and nan["max_path_heldout_acc"] is None
