"""The ablation's pilot end to end on the tiny profile (mpq.studies.ablation_pilot): runs with the scheduler's
record and dense windows, the pilot's summary, plain's supernet searched in a scheduler run's space, and searched
again on other scoring slices (mpq.studies.search_noise)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mpq.config import load_params
from mpq.models import create_model
from mpq.studies.ablation import search_in_space
from mpq.studies.ablation_pilot import main
from mpq.studies.search_noise import research_run
from mpq.training.checkpoint import save_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_tiny_pilot_records_the_scheduler_and_plans_a_design(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, width_mult=0.25)          # an FP start: untrained will do
    save_checkpoint({"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "state_dict": model.state_dict()},
                    tmp_path / "checkpoints/fp/resnet20.pt")
    profile = root / "profiles/tiny.yaml"
    params = load_params(profile)
    assert main(["--params", str(profile), "--runs", "runs", "--out", "pilot.json"]) == 0
    out = json.loads((tmp_path / "pilot.json").read_text())
    # tiny: 4 epochs of 256 images at 32 per step, a call every 3 steps from step 1
    assert out["run_length"]["total_steps"] == 32 and out["eval_images"] == 256 + 128
    assert out["scheduler"]["plain-0"] is None
    sched = out["scheduler"]["sched-0"]
    assert sched["calls"] == 10 and set(sched["steps_between"]) == {3} and len(sched["overlap"]) == 9
    assert all(0 <= o <= c for o, c in zip(sched["overlap"], [9] * 9))
    assert [(c["cell"], c["metric"]) for c in out["contrasts"]] == [("sched", "greedy 2.9"), ("sched", "W3A3")]
    assert [o["images"] for o in out["plan"]["options"]] == [256, 384]
    run = json.loads((tmp_path / "runs/sched-0/result.json").read_text())
    windows = run["oscillation_windows"]["windows"]
    assert set(windows) == {"4", "5", "6"} and all(len(w) == 2 and w[0]["steps"] == 4 for w in windows.values())
    # ResNet-20's frozen layers lose W2 and A2 (one shared candidate list, as the official ResNet config)
    assert run["scheduler_log"]["summary"]["frozen_lowest_points"] == [[3, 3]] and run["sched_freeze_activations"]
    assert run["scheduler_log"]["summary"]["calls"] == 10 and run["eval_images"] == {
        "test": 256, "held_out_training": 128, "configs_on_held_out": ["W3A3", "greedy 2.9"]}
    with np.load(tmp_path / "runs/sched-0/predictions.npz") as preds:       # the others on the test set alone
        assert len(preds["labels"]) == len(preds["W3A3"]) == 384 and len(preds["W2A2"]) == 256
    # plain's supernet searched in its own space is plain's own run, prediction for prediction
    own = search_in_space(params, tmp_path / "runs/plain-0", tmp_path / "runs/plain-0", tmp_path / "own")
    with np.load(tmp_path / "runs/plain-0/predictions.npz") as a, np.load(tmp_path / "own/predictions.npz") as b:
        assert np.array_equal(a["greedy 2.9"], b["greedy 2.9"]) and np.array_equal(a["labels"], b["labels"])
    # ... and in sched's space it keeps 2-bit weights out of the layers sched's last decision froze
    other = search_in_space(params, tmp_path / "runs/plain-0", tmp_path / "runs/sched-0")
    frozen = json.loads((tmp_path / "runs/sched-0/result.json").read_text())["frozen_at_end"]
    assert other["frozen"] == frozen and other["space_of"] == {"cell": "sched", "seed": 0} and own["frozen"] == []
    assert all(min(other["searched"]["greedy 2.9"]["bit_cfg"][n]) > 2 for n in frozen)     # neither W2 nor A2
    # the search-noise study: slice 0 at the search's own size is the run's own search, configuration for
    # configuration; another slice is searched on other images
    record = research_run(params, tmp_path / "runs/plain-0", [(64, 0), (64, 1)], tmp_path / "noise.json")
    assert json.loads((tmp_path / "noise.json").read_text()) == json.loads(json.dumps(record))
    first, second = record["searches"]
    assert first["bit_cfg"]["greedy 2.9"] == own["searched"]["greedy 2.9"]["bit_cfg"]
    assert first["test_acc"]["greedy 2.9"] == run_acc(tmp_path / "runs/plain-0", "greedy 2.9")
    assert (second["size"], second["slice"]) == (64, 1) and record["eval_images"] == 384


def run_acc(run_dir, name):
    return json.loads((run_dir / "result.json").read_text())["test_acc"][name]
