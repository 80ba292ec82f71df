"""The interference runs on a real model (mpq.studies.ablation): cells, parameters, the command's refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpq.studies.ablation import cell_config, main
from mpq.config import AblationConfig, from_dict
from mpq.training.recipe import OneShotConfig


def test_cells_switch_only_what_they_name():
    base = OneShotConfig(scheduler=True, idm=True)
    expected = {"plain": (False, False), "sched": (True, False), "idm": (False, True), "both": (True, True)}
    for cell, (scheduler, idm) in expected.items():
        cfg = cell_config(base, cell, 500)
        assert (cfg.scheduler, cfg.idm, cfg.train_size) == (scheduler, idm, 500)
        assert cfg.w_bit_choices == base.w_bit_choices and cfg.lr == base.lr
    no2bit = cell_config(base, "no2bit", 500)
    assert no2bit.w_bit_choices == (3, 4, 5, 6) and no2bit.a_bit_choices == base.a_bit_choices
    assert not no2bit.scheduler and not no2bit.idm
    with pytest.raises(ValueError, match="unknown ablation cell 'bothh'"):
        cell_config(base, "bothh", 500)
    # sched_full: the scheduler alone, scoring over the full candidate list; the paper's cells score as the paper
    full = cell_config(OneShotConfig(sched_score_candidates="full"), "sched_full", 500)
    assert (full.scheduler, full.idm, full.sched_score_candidates) == (True, False, "full")
    assert full.scheduler_config().score_candidates == "full"
    assert cell_config(OneShotConfig(sched_score_candidates="full"), "sched", 500).sched_score_candidates == "current"


@pytest.mark.timeout(10)
def test_score_size_and_scheduler_scoring_are_checked():
    assert AblationConfig(score_size=512).score_size == 512
    with pytest.raises(ValueError, match="ablation.score_size must be a positive integer, got 0"):
        AblationConfig(score_size=0)
    with pytest.raises(ValueError, match="ablation.score_size: expected int, got float"):
        from_dict(AblationConfig, {**AblationConfig().__dict__, "pilot": None, "score_size": 512.0}, "ablation")
    with pytest.raises(ValueError, match=r"oneshot.sched_score_candidates must be one of \['current', 'full'\]"):
        OneShotConfig(sched_score_candidates="all")
    with pytest.raises(ValueError, match="ablation.pilot.score_options"):
        from_dict(AblationConfig, {"pilot": {"score_options": [128, 128]}}, "ablation")
    assert AblationConfig(cells=("plain", "sched_full"), space_cells=("sched_full",)).space_cells == ("sched_full",)
    from mpq.data.datasets import make_splits
    from mpq.studies.ablation import score_subset

    splits = make_splits("fashion_mnist", seed=0, train_size=64, score_size=32, calib_size=16, test_size=16)
    assert len(score_subset(splits, 32)) == 32
    with pytest.raises(ValueError, match=r"ablation.score_size 64 exceeds the 32 held-out scoring images \(data."):
        score_subset(splits, 64)


def test_ablation_config_checks():
    with pytest.raises(ValueError, match="unknown cells \\['x'\\]"):
        AblationConfig(cells=("plain", "x"))
    with pytest.raises(ValueError, match="distinct seeds"):
        AblationConfig(seeds=(0, 0))
    with pytest.raises(ValueError, match="ablation.seeds: expected"):
        from_dict(AblationConfig, {"seeds": 3}, "ablation")


def test_command_refuses_a_cell_or_seed_not_in_params(root, capsys):
    assert main(["--cell", "both", "--seed", "99", "--out", "unused", "--params", str(root / "params.yaml")]) == 2
    assert "seed 99" in capsys.readouterr().err


# --- the powered design (issue 26): run length and spacing, the pilot, evaluation images ------------------------

import numpy as np

from mpq.config import PilotConfig
from mpq.method.scheduler import SchedulerConfig, schedule_design
from mpq.studies.ablation import check_schedule
from mpq.studies.ablation_pilot import pilot_summary
from mpq.studies.stats import noise_components, paired_verdict


@pytest.mark.timeout(10)
def test_cells_take_the_ablations_run_length_and_spacing():
    base = OneShotConfig(epochs=3, sched_min_steps=100)
    cfg = cell_config(base, "both", 500, epochs=6, sched_min_steps=150)
    assert (cfg.epochs, cfg.sched_min_steps, cfg.train_size) == (6, 150, 500) and cfg.scheduler and cfg.idm
    same = cell_config(base, "plain", 500)                            # None: the oneshot section's values
    assert (same.epochs, same.sched_min_steps) == (3, 100)


@pytest.mark.timeout(10)
def test_a_design_with_too_few_scheduler_calls_is_refused():
    few = schedule_design(470, SchedulerConfig(min_steps=100), 0.99)    # calls at 19, 119, 219, 319, 419
    with pytest.raises(ValueError, match=r"called 5 times in 470 steps .* ablation.min_sched_calls asks for 10"):
        check_schedule(few, 10, "plain")
    check_schedule(schedule_design(1200, SchedulerConfig(min_steps=100), 0.99), 10, "sched")     # 12 calls


@pytest.mark.timeout(10)
def test_ablation_and_pilot_settings_are_checked():
    ab = from_dict(AblationConfig, {"pilot": {"seeds": [5, 6], "cells": ["plain", "idm"]}, "epochs": 4,
                                    "batch_size": 32, "windows": 0}, "ablation")
    assert ab.pilot == PilotConfig(seeds=(5, 6), cells=("plain", "idm")) and ab.epochs == 4
    assert AblationConfig().pilot is None and AblationConfig().min_sched_calls == 10
    for values, message in (({"epochs": 0}, "ablation.epochs must be a positive integer, got 0"),
                            ({"sched_min_steps": -1}, "ablation.sched_min_steps must be a positive integer"),
                            ({"windows": -1}, "ablation.windows must be an integer >= 0"),
                            ({"extra_eval_images": -5}, "ablation.extra_eval_images must be an integer >= 0"),
                            ({"extra_eval_configs": ["W3A3"]}, "empty while extra_eval_images is 0"),
                            ({"extra_eval_images": 9, "extra_eval_configs": ["W3A3", "W3A3"]}, "distinct configuration"),
                            ({"pilot": "yes"}, "ablation.pilot must be a mapping"),
                            ({"pilot": {"seeds": [1]}}, r"ablation.pilot.seeds must be 2 or more distinct seeds"),
                            ({"pilot": {"cells": ["sched", "both"]}}, "plain and at least one other"),
                            ({"pilot": {"cells": ["plain", "no2bit"]}}, "distinct T6 cells"),
                            ({"pilot": {"target_mde": 0}}, "ablation.pilot.target_mde must be a finite number"),
                            ({"pilot": {"seedz": [1, 2]}}, r"unknown keys \['seedz'\].*ablation.pilot was")):
        with pytest.raises(ValueError, match=message):
            from_dict(AblationConfig, values, "ablation")


def _pilot_runs(seeds=(0, 1, 2), images=400):
    """Constructed pilot runs: plain and sched, the sched cell right on 5 more images in every 100 (greedy 3)
    and on the same ones as plain at W3A3; per-seed noise in which images each run gets right."""
    rng = np.random.default_rng(1)
    labels = np.zeros(images, dtype=np.int16)
    runs = {}
    for seed in seeds:
        base = rng.random(images) < 0.8
        for cell in ("plain", "sched"):
            greedy = base | ((np.arange(images) % 20 == seed) if cell == "sched" else False)
            greedy = greedy ^ (rng.random(images) < 0.02)
            preds = {"labels": labels, "greedy 3": np.where(greedy, 0, 1).astype(np.int16),
                     "W3A3": np.where(base, 0, 1).astype(np.int16)}
            log = {"summary": {"calls": 12, "total_steps": 1200, "steps_between": [100] * 11,
                               "median_persistence": 100, "min_persistence": 12, "overlap": [3] * 11,
                               "chance_overlap": [2.0] * 11, "mean_jaccard": 0.4, "mean_overlap": 3.0,
                               "mean_chance_overlap": 2.0, "mean_score_gap": 0.01, "mean_full_score_gap": 0.005,
                               "refrozen_by_full_scores": [0.5] * 11}} if cell == "sched" else {"summary": {"calls": 0}}
            runs[(cell, seed)] = {"preds": preds, "features": {}, "result": {
                "test_acc": {m: float((p == labels).mean()) for m, p in preds.items() if m != "labels"},
                "epochs": 3, "train_images": 12800, "test_images": images, "scheduler_log": log,
                "train_seconds": 100.0, "search_seconds": 20.0, "eval_seconds": 30.0, "score_size": 128,
                "schedule_design": {"total_steps": 1200},
                "health": {"collapsed": (cell, seed) == ("plain", 2), "why": "constructed"}}}
    return runs


@pytest.mark.timeout(60)
def test_pilot_summary_measures_noise_and_plans_the_design():
    runs = _pilot_runs()
    pilot = PilotConfig(seeds=(0, 1, 2), cells=("plain", "sched"), metrics=("greedy 3", "W3A3"),
                        image_options=(400, 4000, 40000), target_mde=1.0, max_seeds=40)
    out = pilot_summary(runs, pilot, available=10000)
    assert out["image_options_left_out"] == [40000] and out["available_images"] == 10000
    assert [(c["cell"], c["metric"]) for c in out["contrasts"]] == [("sched", "greedy 3"), ("sched", "W3A3")]
    greedy = out["contrasts"][0]
    correct = lambda cell: np.stack([runs[(cell, s)]["preds"]["greedy 3"] == 0 for s in (0, 1, 2)])
    assert greedy["components"] == noise_components(correct("sched"), correct("plain")).as_dict()
    assert greedy["pilot_verdict"]["diff"] == pytest.approx(paired_verdict(correct("sched"), correct("plain")).diff)
    # the W3A3 predictions are identical in both cells: no noise at all, and no seeds needed beyond 2
    assert out["contrasts"][1]["components"]["within_var"] == 0 and out["plan"]["options"][0]["per_comparison"][
        "sched / W3A3"] == 2
    plan = out["plan"]
    assert [o["images"] for o in plan["options"]] == [400, 4000] and plan["target"] == 1.0
    assert plan["seeds"] is None or max(plan["mde"].values()) <= 1.0
    assert out["scheduler"]["plain-0"] is None and out["scheduler"]["sched-1"]["calls"] == 12
    assert out["collapsed"] == ["plain-2"]
    with pytest.raises(ValueError, match=r"metrics \['greedy 2.5'\] were not evaluated"):
        pilot_summary(runs, PilotConfig(seeds=(0, 1, 2), cells=("plain", "sched"), metrics=("greedy 2.5",)), 400)


@pytest.mark.timeout(10)
def test_pilot_plans_the_scoring_images_at_the_lowest_cost():
    """Searched again on 512 scoring images, both cells find configurations right on the same images (constructed:
    no noise left in the greedy contrast) at 4 more seconds of search per run: that plan needs 2 seeds, the
    128-image plan more, and it is chosen for its lower cost."""
    runs = _pilot_runs()
    searches = {(cell, seed, 512): {"result": {"search_seconds": 24.0},
                                    "preds": {"labels": runs[("plain", seed)]["preds"]["labels"],
                                              "greedy 3": runs[("plain", seed)]["preds"]["W3A3"]}}
                for seed in (0, 1, 2) for cell in ("plain", "sched")}
    pilot = PilotConfig(seeds=(0, 1, 2), cells=("plain", "sched"), metrics=("greedy 3", "W3A3"),
                        image_options=(400,), target_mde=6.0, max_seeds=40)
    out = pilot_summary(runs, pilot, available=400, searches=searches)
    by_size = out["plans_by_score_size"]
    assert sorted(by_size) == ["128", "512"] and out["score_size"] == 128
    # per seed: plain and sched, each 100 s training + 30 s evaluation + its search
    assert by_size["128"]["seconds_per_seed"] == 2 * 150.0 and by_size["512"]["seconds_per_seed"] == 2 * 154.0
    greedy_512 = [c for c in out["contrasts"] if c["score_size"] == 512]
    assert [c["metric"] for c in greedy_512] == ["greedy 3"] and greedy_512[0]["components"]["within_var"] == 0
    assert by_size["512"]["seeds"] == 2 < by_size["128"]["seeds"]
    assert out["plan"]["score_size"] == 512 and out["plan"]["seconds"] == 2 * 308.0
    # sched_full is judged against plain and against sched, the paper's scheduler
    from mpq.studies.ablation_pilot import pilot_contrasts
    assert pilot_contrasts(["plain", "sched", "sched_full"]) == [("sched", "plain"), ("sched_full", "plain"),
                                                                  ("sched_full", "sched")]


# --- one seed's block: its cells, where its runs lie, resuming ---------------------------------------------------

from mpq.studies.ablation import block_cells, run_block
from mpq.studies.interference import cell_seeds, run_path


@pytest.mark.timeout(10)
def test_cells_take_the_ablations_learning_rates():
    base = OneShotConfig(lr=0.04, step_lr=0.003)
    cfg = cell_config(base, "sched", 500, lr=0.005, step_lr=0.0011)
    assert (cfg.lr, cfg.step_lr, cfg.scheduler) == (0.005, 0.0011, True)
    with pytest.raises(ValueError, match="ablation.lr must be a finite number > 0"):
        AblationConfig(lr=0.0)
    with pytest.raises(ValueError, match="ablation.step_lr must be a finite number > 0"):
        AblationConfig(step_lr=float("nan"))


@pytest.mark.timeout(10)
def test_a_block_trains_no2bit_only_with_its_seeds(tmp_path):
    ab = AblationConfig(seeds=(0, 1, 2), cells=("plain", "sched", "no2bit"), no2bit_seeds=(0, 2))
    assert block_cells(ab, 0) == ["plain", "sched", "no2bit"] and block_cells(ab, 1) == ["plain", "sched"]
    assert block_cells(AblationConfig(seeds=(0, 1), cells=("plain", "no2bit")), 1) == ["plain", "no2bit"]
    assert cell_seeds("no2bit", [0, 1, 2], [0, 2]) == [0, 2] and cell_seeds("plain", [0, 1, 2], [0, 2]) == [0, 1, 2]
    with pytest.raises(ValueError, match="ablation.no2bit_seeds must be distinct seeds of ablation.seeds"):
        AblationConfig(seeds=(0, 1), cells=("plain", "no2bit"), no2bit_seeds=(5,))
    with pytest.raises(ValueError, match="ablation.no2bit_seeds"):
        AblationConfig(seeds=(0, 1), cells=("plain", "sched"), no2bit_seeds=(0,))
    with pytest.raises(ValueError, match="ablation.space_cells"):
        AblationConfig(cells=("plain", "idm"), space_cells=("sched",))
    with pytest.raises(ValueError, match="ablation.jobs must be an integer >= 1"):
        AblationConfig(jobs=0)
    # a run lies in its seed's block, or (the pilot's, a single run's) directly in the folder
    (tmp_path / "seed-3" / "plain-3").mkdir(parents=True)
    assert run_path(tmp_path, "plain-3", 3) == tmp_path / "seed-3" / "plain-3"
    assert run_path(tmp_path, "plain-4", 4) == tmp_path / "plain-4"


@pytest.mark.timeout(10)
def test_a_block_refuses_a_seed_not_in_params_and_restarts_a_partial_from_other_parameters(root, tmp_path,
                                                                                         monkeypatch):
    from mpq.config import load_params
    import mpq.studies.ablation as ablation

    params = load_params(root / "profiles/tiny.yaml")
    with pytest.raises(ValueError, match="seed 9 is not among ablation.seeds"):
        run_block(params, 9, tmp_path / "seed-9")
    trained = []

    def fake_run(params, cell, seed, out):          # records what the block trains, writes a finished run
        trained.append(cell)
        Path(out).mkdir(parents=True)
        (Path(out) / "supernet.pt").write_bytes(b"weights")
        (Path(out) / "result.json").write_text(json.dumps({"cell": cell, "seed": seed, "test_acc": {},
                                                           "train_seconds": 0, "search_seconds": 0,
                                                           "eval_seconds": 0}))
        return json.loads((Path(out) / "result.json").read_text())

    monkeypatch.setattr(ablation, "_block_run", fake_run)
    monkeypatch.setattr(ablation, "_space_run", lambda params, run, space, out: (
        Path(out).mkdir(parents=True), {"seed": 0, "space_of": {"cell": Path(space).name}, "test_acc": {}})[1])
    partial = tmp_path / ".seed-0.partial"
    (partial / "plain-0").mkdir(parents=True)
    (partial / "plain-0" / "result.json").write_text("{}")          # finished, but under other parameters
    (partial / "params.json").write_text("{}")
    run_block(params, 0, tmp_path / "seed-0", jobs=1)
    assert trained == list(params["ablation"]["cells"]) and not partial.exists()
    assert sorted(p.name for p in (tmp_path / "seed-0").iterdir()) == sorted(
        [f"{c}-0" for c in params["ablation"]["cells"]] + ["plain-0-in-sched-0", "plain-0-in-both-0", "block.json"])
    block = json.loads((tmp_path / "seed-0" / "block.json").read_text())
    assert block["seed"] == 0 and block["jobs"] == 1 and block["resumed"] is False and block["seconds"] >= 0
    assert (tmp_path / "seed-0" / "plain-0" / "supernet.pt").is_file()         # the tiny profile keeps them
    # keep_supernets false (the default profile: the store's budget): the results stay, the weights go
    params["ablation"] = {**params["ablation"], "keep_supernets": False}
    trained.clear()
    run_block(params, 0, tmp_path / "seed-0", jobs=1)
    assert trained == list(params["ablation"]["cells"]) and not list((tmp_path / "seed-0").glob("*/supernet.pt"))
    assert (tmp_path / "seed-0" / "plain-0" / "result.json").is_file()


@pytest.mark.timeout(10)
def test_extra_evaluation_configs_are_checked_before_training_and_no2bit_keeps_what_it_has():
    from mpq.studies.ablation import check_extra_configs, evaluated_configs

    ab = AblationConfig(levels=(3, 2.5), extra_eval_images=10, extra_eval_configs=("greedy 3", "W3A3"))
    base = OneShotConfig()
    assert evaluated_configs(ab, cell_config(base, "sched", 500), "sched") == [
        "W2A2", "W3A3", "lowest", "greedy 3", "greedy 2.5"]
    assert evaluated_configs(ab, cell_config(base, "no2bit", 500), "no2bit") == ["W3A3", "lowest"]
    check_extra_configs(ab, cell_config(base, "no2bit", 500), "no2bit")      # no greedy: W3A3 alone sees them
    typo = AblationConfig(levels=(3,), extra_eval_images=10, extra_eval_configs=("greedy 2.9",))
    with pytest.raises(ValueError, match=r"\['greedy 2.9'\] are not evaluated by a plain run"):
        check_extra_configs(typo, cell_config(base, "plain", 500), "plain")
