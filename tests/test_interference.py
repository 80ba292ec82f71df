"""The toy of bit-width interference (mpq.studies.interference): its mechanics and its one claim."""
from __future__ import annotations

import doctest

import pytest
import torch

import mpq.studies.interference
from mpq.studies.figure_text import DENSITY_CAVEAT
from mpq.studies.interference import (coupled_toy, rolling_variance, summarize, toy_example, toy_study, toy_table,
                                      toy_verdicts)

pytestmark = pytest.mark.timeout(60)


def test_doctests():
    assert doctest.testmod(mpq.studies.interference).failed == 0


def test_on_grid_optimum_does_not_move():
    # target on the 6-bit grid (step 1/32) and the start there: zero residual, zero gradient, no crossing
    target = (3 / 32, -5 / 32)
    trace = coupled_toy((6,), steps=50, target=target, start=target)
    assert torch.count_nonzero(trace.grads) == 0
    assert all(int(c[-1]) == 0 for c in trace.crossings.values())


def test_straight_through_gradient_by_hand():
    # one step at a single candidate: grad = 2/B * X^T (X q - X t) where q is the quantized start
    trace = coupled_toy((4,), steps=1, batch=4, start=(0.3, -0.2), seed=3)
    gen = torch.Generator().manual_seed(3)
    torch.randint(1, (1,), generator=gen)                       # the (trivial) draw of the bit-width
    x = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    q = torch.round(torch.tensor([0.3, -0.2], dtype=torch.float64) / 0.125) * 0.125
    expected = 0.5 * x.T @ (x @ q - x @ torch.tensor([0.37, -0.61], dtype=torch.float64))
    torch.testing.assert_close(trace.grads[0], expected)


def test_rolling_variance():
    values = torch.tensor([1.0, 1.0, 3.0, 3.0])
    torch.testing.assert_close(rolling_variance(values, 2), torch.tensor([0.0, 2.0, 0.0]))
    with pytest.raises(ValueError):
        rolling_variance(values, 5)


def test_two_bit_candidate_makes_four_bit_weights_oscillate():
    """The toy's claim, on its default settings and seed 0: with 2-bit among the candidates the 4-bit
    quantized weights keep crossing thresholds in the second half of training; without it they settle."""
    plain = summarize(coupled_toy((4, 6), seed=0), window=100)
    coupled = summarize(coupled_toy((2, 4, 6), seed=0), window=100)
    assert plain["crossings_w4_second_half"] <= 5 < 100 <= coupled["crossings_w4_second_half"]
    assert coupled["grad_var_second_half"] > 10 * plain["grad_var_second_half"]
    rows = toy_study([(4, 6), (2, 4, 6)], [0.05], 2, steps=200, window=20)
    assert [(r["candidates"], r["seed"]) for r in rows] == [("{4,6}", 0), ("{2,4,6}", 0), ("{4,6}", 1), ("{2,4,6}", 1)]



def test_toy_example_runs_each_set_with_the_same_seed():
    traces, variances = toy_example([(6, 4), (2, 4, 6)], steps=40, lr=0.05, window=10, seed=1)
    assert list(traces) == ["{4,6}", "{2,4,6}"] == list(variances)
    torch.testing.assert_close(traces["{2,4,6}"].weights, coupled_toy((2, 4, 6), steps=40, lr=0.05, seed=1).weights)
    assert variances["{4,6}"].shape == (31,)
    torch.testing.assert_close(variances["{4,6}"], rolling_variance(traces["{4,6}"].grads, 10))


def _toy_rows():
    """Two seeds per (lr, set); 2nd-half 4-bit crossings up with 2-bit, 6-bit down, gradient variance equal."""
    values = {"{4,6}": ([1, 3], [5, 5], [0.1, 0.3]), "{2,4,6}": ([10, 12], [1, 1], [0.2, 0.2])}
    return [{"candidates": cands, "lr": lr, "seed": seed, "crossings_w4": 100 + seed, "crossings_w6": 7,
             "crossings_w4_second_half": values[cands][0][seed], "crossings_w6_second_half": values[cands][1][seed],
             "grad_var_second_half": values[cands][2][seed]}
            for lr in (0.05, 0.01) for seed in (0, 1) for cands in ("{4,6}", "{2,4,6}")]


def test_toy_table_and_verdicts_on_constructed_rows():
    table = toy_table(_toy_rows())
    assert table[["lr", "candidates"]].values.tolist() == [[0.05, "{4,6}"], [0.05, "{2,4,6}"], [0.01, "{4,6}"],
                                                          [0.01, "{2,4,6}"]]
    first = table.iloc[0]
    assert first["4-bit crossings, 2nd half (mean ± SD)"] == "2.0 ± 1.4"
    assert first["4-bit crossings (mean ± SD)"] == "100.5 ± 0.7"
    assert first["gradient variance, 2nd half (mean ± SD)"] == "0.2000 ± 0.1414"
    lines = toy_verdicts(_toy_rows(), [0.05, 0.01])
    assert len(lines) == 6 and lines[3].startswith("4-bit threshold crossings (second half) at lr 0.01")
    # paired by seed, no image noise; two seeds are shown with their interval and not judged (fewer than 3)
    assert lines[0] == ("4-bit threshold crossings (second half) at lr 0.05: {4,6} 2 vs {2,4,6} 11, with 2-bit minus without "
                        "2 runs, not judged: +9.0 [+9.0, +9.0], 2 seeds")
    assert lines[1] == ("6-bit threshold crossings (second half) at lr 0.05: {4,6} 5 vs {2,4,6} 1, with 2-bit minus without "
                        "2 runs, not judged: -4.0 [-4.0, -4.0], 2 seeds")
    # +0.1 and -0.1: SE 0.1 over two seeds, t(1, .975) * 0.1 either side
    assert lines[2] == ("gradient variance (second half) at lr 0.05: {4,6} 0.2 vs {2,4,6} 0.2, with 2-bit minus without "
                        "2 runs, not judged: +0.0000 [-1.2706, +1.2706], 2 seeds")

# --- reading the ablation runs ---------------------------------------------------------------------------

import json

import numpy as np

import pandas as pd

from mpq.studies.interference import (ablation_findings, collapse_line, ablation_metrics, ablation_rows, ablation_setup,
                                      distortion_comparisons, distortion_rows, flip_comparisons, load_runs,
                                      oscillation_rows, present_cells, run_overview, run_records, t6_rows)


def _write_run(folder, cell, seed, correct, flips):
    path = folder / f"{cell}-{seed}"
    path.mkdir(parents=True)
    labels = np.zeros(len(correct), dtype=np.int16)
    np.savez(path / "predictions.npz", labels=labels, **{"W2A2": np.where(correct, 0, 1).astype(np.int16)})
    np.savez(path / "features.npz", low=np.zeros(3), high=np.ones(3))
    (path / "result.json").write_text(json.dumps({
        "oscillation": {"progress": [0.25, 0.5, 0.75, 1.0], "flip_rate": {"4": [None, *flips]},
                        "distance": {"4": [0.2, 0.2, 0.2, 0.1]}},
        "bn_distortion": {"a": 0.2 if cell == "idm" else 0.4, "b": 0.4},
        "model": "resnet20", "width_mult": 0.25, "epochs": 1, "train_images": 100, "test_images": len(correct),
        "cpu_capability": "AVX2", "test_acc": {"W2A2": float(np.mean(correct))}, "train_seconds": 1.5,
        "search_seconds": 0.5, "frozen_at_end": ["a"], "searched": {}}))


def test_ablation_tables_on_constructed_runs(tmp_path):
    n = 100
    for seed in (0, 1, 2):
        # plain gets images 0..79 right; idm the same plus 2 + seed more: +2, +3, +4 points, paired
        _write_run(tmp_path, "plain", seed, np.arange(n) < 80, [0.1, 0.1, 0.1])
        _write_run(tmp_path, "idm", seed, np.arange(n) < 82 + seed, [0.1, 0.05, 0.05])
    runs = load_runs(tmp_path, ["plain", "idm"], [0, 1, 2])
    for run in runs.values():           # "lowest" evaluates the same configuration as W2A2 (a cell without scheduler)
        run["preds"]["lowest"] = run["preds"]["W2A2"].copy()
    listed = ablation_rows(runs, ["plain", "idm"], [0, 1, 2], ["W2A2", "lowest"])
    assert [(r["cell"], r["metric"], r["same as"]) for r in listed] == [("plain", "W2A2", "lowest"),
                                                                        ("idm", "W2A2", "lowest")]
    rows = {r["cell"]: r for r in listed}
    assert rows["plain"]["top-1 mean"] == pytest.approx(80.0) and "verdict" not in rows["plain"]
    v = rows["idm"]["verdict"]
    assert v["diff"] == pytest.approx(3.0) and v["per_seed"] == pytest.approx([2.0, 3.0, 4.0])
    assert v["sd_seeds"] == pytest.approx(1.0) and v["expected"] == 1
    # two-way analysis of the (3 seeds, 100 images) differences: images 80-83 differ (1, 1, 2/3, 1/3 averaged over
    # the seeds), the rest not; SE^2 = Var(seed means) / 3 + image part / 100, each part once
    d = 100 * np.array([(np.arange(n) >= 80) & (np.arange(n) < 82 + s) for s in (0, 1, 2)], dtype=float)
    residual = d - d.mean(1, keepdims=True) - d.mean(0, keepdims=True) + d.mean()
    within = (residual ** 2).sum() / (2 * 99)
    image_var = max(3 * d.mean(0).var(ddof=1) - within, 0) / 3
    assert v["within_var"] == pytest.approx(within) and v["image_var"] == pytest.approx(image_var)
    assert v["se_images"] == pytest.approx(np.sqrt(image_var / 100))
    assert v["se"] == pytest.approx(np.sqrt(1 / 3 + image_var / 100)) and v["basis"] == "images"
    # the seeds agree (+2, +3, +4) but 100 test images carry 1.6 points of noise: inconclusive, not "higher"
    assert v["word"] == "inconclusive" and v["low"] < 0 < v["high"]
    assert rows["idm"]["paired SE per seed"] == " / ".join(
        f"{100 * np.r_[np.ones(k), np.zeros(100 - k)].std(ddof=1) / 10:.2f}" for k in (2, 3, 4))
    t1 = {r["cell"]: r for r in oscillation_rows(runs, ["plain", "idm"], [0, 1, 2])}
    assert t1["plain"]["flip % (2nd half)"] == pytest.approx(10.0)       # measurements at 0.75 and 1.0
    assert t1["idm"]["flip % (2nd half)"] == pytest.approx(5.0)
    assert t1["idm"]["flip % (whole run)"] == pytest.approx(100 * 0.2 / 3)
    assert t1["idm"]["distance at end (steps)"] == pytest.approx(0.1)
    dist = {r["cell"]: r for r in distortion_rows(runs, ["plain", "idm"], [0, 1, 2])}
    assert dist["plain"]["distortion mean"] == pytest.approx(0.4) and dist["idm"]["distortion mean"] == pytest.approx(0.3)
    with pytest.raises(FileNotFoundError, match=r"\['both-0'\].*dvc repro ablation"):
        load_runs(tmp_path, ["both"], [0])


def test_ablation_verdicts_and_findings_on_constructed_runs(tmp_path):
    n = 100
    for seed in (0, 1, 2):
        _write_run(tmp_path, "plain", seed, np.arange(n) < 80, [0.1, 0.1, 0.1])
        _write_run(tmp_path, "idm", seed, np.arange(n) < 82 + seed, [0.1, 0.1, 0.1])
        # late flips (progress 0.75 and 1.0): plain 10%, no2bit 3 + 0.5 * seed %
        _write_run(tmp_path, "no2bit", seed, np.arange(n) < 80, [0.1, 0.04, 0.02 + 0.01 * seed])
    cells, seeds = ["plain", "idm", "no2bit"], [0, 1, 2]
    runs = load_runs(tmp_path, cells, seeds)
    assert present_cells(cells, ("plain", "sched", "idm", "both")) == ["plain", "idm"]
    assert ablation_setup(runs, cells, seeds, "tiny") == ("tiny profile, resnet20 x0.25, 1 one-shot epochs over 100 "
                                                          "images, seeds [0, 1, 2], 100 test images, CPU kind AVX2")
    held_out = {"test": 60, "held_out_training": 40, "configs_on_held_out": ["greedy 3", "W3A3"]}
    runs[("plain", 0)]["result"]["eval_images"] = held_out
    assert ablation_setup(runs, cells, seeds, "tiny").endswith(
        "seeds [0, 1, 2], 60 test images (greedy 3, W3A3: also 40 held-out training images), CPU kind AVX2")
    del runs[("plain", 0)]["result"]["eval_images"]
    overview = run_overview(runs)
    assert overview[["cell", "seed"]].values.tolist()[:4] == [["plain", 0], ["plain", 1], ["plain", 2], ["idm", 0]]
    assert overview.loc[3, "W2A2 top-1"] == pytest.approx(82.0) and overview.loc[0, "layers frozen at end"] == 1
    flips = flip_comparisons(runs, cells, seeds)
    assert [(r["comparison"], r["w bits"]) for r in flips] == [("plain minus no2bit", 4)]
    flip = flips[0]["verdict"]
    assert flip["per_seed"] == pytest.approx([7.0, 6.5, 6.0]) and flip["se_images"] == 0.0     # a census of weights
    assert flip["se"] == pytest.approx(0.5 / np.sqrt(3)) and flip["word"] == "holds"
    assert flip_comparisons(runs, ["plain", "idm"], seeds) == []              # no no2bit cell, no comparison
    dist = distortion_comparisons(runs, cells, seeds)
    assert [r["comparison"] for r in dist] == ["idm minus plain"]
    assert dist[0]["verdict"]["per_seed"] == pytest.approx([-10.0] * 3)       # % of the feature variance
    assert dist[0]["verdict"]["word"] == "holds" and dist[0]["verdict"]["unit"] == "points of relative MSE"
    t6 = t6_rows(runs, cells, seeds)
    assert [r["cell"] for r in t6] == ["plain", "idm"] and t6[1]["verdict"]["diff"] == pytest.approx(3.0)
    records = run_records(runs)
    assert list(records)[:2] == ["plain-0", "plain-1"] and len(records) == 9
    assert list(records["idm-2"]) == ["test_acc", "train_seconds", "search_seconds", "frozen_at_end", "searched",
                                      "cpu_capability", "health"]
    lines = ablation_findings(t6, flips, dist, ["a toy line"])
    runs[("idm", 2)]["result"]["health"] = {"collapsed": True, "why": "a loss or weight went non-finite"}
    assert collapse_line(runs).startswith("Runs: 9, 1 collapsed: idm-2 (a loss or weight went non-finite)")
    assert run_overview(runs)["run"].tolist().count("collapsed: a loss or weight went non-finite") == 1
    assert ablation_findings(t6, flips, dist, ["a toy line"], runs)[-2].startswith("Runs: 9, 1 collapsed")
    assert lines[0] == f"T6 idm minus plain (the paper: higher): W2A2 {t6[1]['verdict']['text']}"
    assert lines[0].startswith("T6 idm minus plain (the paper: higher): W2A2 inconclusive (smallest detectable effect ")
    assert lines[1] == ("T6: 1 comparison (about 0.1 clear of zero by chance at 5%): 0 clear of zero, 0 after Holm.")
    assert lines[2].startswith("F2/T1 late flip rate with 2-bit candidates minus without (no2bit), per cell and "
                               "weight bit-width (the paper: higher with 2-bit; the spread over seeds is the only "
                               "noise): 1 hold, 0 reversed here, 0 inconclusive of 1 (plain minus no2bit, 4-bit: "
                               "holds); 1 comparison")
    assert lines[3] == ("F3/F4 BN-output distortion (% of the feature variance), idm minus plain (the paper: lower "
                        "with IDM): holds: -10.00 [-10.00, -10.00], 3 seeds (per seed -10.00 / -10.00 / -10.00)")
    assert lines[4].startswith("F3/F4: 1 comparison") and lines[-2] == "F1 toy: a toy line"
    assert lines[5] == DENSITY_CAVEAT and "recalibration standardises" in lines[5]
    metrics = ablation_metrics("tiny", "setup", cells, seeds, runs, t6, pd.DataFrame(oscillation_rows(runs, cells, seeds)),
                               pd.DataFrame(distortion_rows(runs, cells, seeds)), flips, dist)
    text = json.dumps(metrics, allow_nan=False)                               # strict JSON: no NaN token
    assert json.loads(text)["t6"]["rows"][1]["verdict"]["word"] == "inconclusive"
    assert metrics["flip_verdicts"]["note"].startswith("1 comparison") and len(metrics["runs"]) == 9


@pytest.mark.timeout(10)
def test_t6_judges_sched_full_against_plain_and_against_sched(tmp_path):
    n = 100
    for seed in (0, 1, 2):
        _write_run(tmp_path, "plain", seed, np.arange(n) < 80, [0.1, 0.1, 0.1])
        _write_run(tmp_path, "sched", seed, np.arange(n) < 81, [0.1, 0.1, 0.1])
        _write_run(tmp_path, "sched_full", seed, np.arange(n) < 83 + seed, [0.1, 0.1, 0.1])
    cells, seeds = ["plain", "sched", "sched_full"], [0, 1, 2]
    runs = load_runs(tmp_path, cells, seeds)
    runs[("sched_full", 0)]["result"]["frozen_overlap"] = {"mean_overlap": 2.0, "mean_chance_overlap": 1.25}
    t6 = t6_rows(runs, cells, seeds)
    judged = [(r["cell"], r.get("reference")) for r in t6 if "verdict" in r]
    assert judged == [("sched", "plain"), ("sched_full", "plain"), ("sched_full", "sched")]
    full_minus = {r["reference"]: r["verdict"] for r in t6 if r["cell"] == "sched_full"}
    assert full_minus["plain"]["per_seed"] == pytest.approx([3.0, 4.0, 5.0])
    assert full_minus["sched"]["per_seed"] == pytest.approx([2.0, 3.0, 4.0])
    # the paper has no such cell: no direction, so "higher" / "lower", never "holds"
    assert full_minus["sched"]["expected"] == 0 and full_minus["plain"]["expected"] == 0
    assert t6_rows(runs, ["plain", "sched_full"], seeds)[-1]["reference"] == "plain"     # no sched: one row
    lines = ablation_findings(t6, [], [], ["a toy line"])
    assert lines[2].startswith("T6 sched_full minus sched (this package's scheduler variant, scores over the full "
                               "candidate list; the paper has no such cell): W2A2 ")
    assert run_records(runs)["sched_full-0"]["frozen_overlap"] == {"mean_overlap": 2.0, "mean_chance_overlap": 1.25}


# --- the powered design's records (issue 26): scheduler summaries, dense windows, the search-space confound ------

from mpq.studies.interference import load_space_runs, scheduler_rows, space_comparisons, space_folder, window_rows


def _window(reversals, changes, step_driven, weights=100, steps=10):
    n = weights * steps
    return {"reversal_rate": reversals / n, "change_rate": changes / n, "step_driven_rate": step_driven / n,
            "oscillating_fraction": reversals / weights}


def test_scheduler_and_window_rows_on_constructed_records():
    summary = {"calls": 3, "steps_between": [100, 140], "median_persistence": 100, "mean_overlap": 0.5,
               "mean_chance_overlap": 2.0, "mean_jaccard": 0.1, "mean_score_gap": 0.02, "mean_full_score_gap": -0.01,
               "refrozen_by_full_scores": [0.25, 0.75]}
    windows = lambda r: {"window_steps": 10, "starts": [5, 50],
                         "windows": {"4": [_window(r, 2 * r, 1), _window(3 * r, 4 * r, 3)]}}
    runs = {("plain", 0): {"result": {"scheduler_log": {"summary": {"calls": 0}}, "oscillation_windows": windows(1)}},
            ("plain", 1): {"result": {"scheduler_log": {"summary": {"calls": 0}}, "oscillation_windows": windows(3)}},
            ("sched", 0): {"result": {"scheduler_log": {"summary": summary}, "oscillation_windows": windows(1)}},
            ("sched", 1): {"result": {"oscillation_windows": None}}}
    (row,) = scheduler_rows(runs)
    assert (row["cell"], row["seed"], row["calls"], row["median steps between calls"]) == ("sched", 0, 3, 120.0)
    assert row["mean overlap"] < row["chance overlap"] and row["agrees with full scores"] == 0.5
    (w,) = window_rows(runs, ["plain", "sched"], [0, 1])          # sched-1 recorded no windows: no sched row
    # plain: reversal rates (1 + 3) / 2 / 1000 and (3 + 9) / 2 / 1000 per weight-step, in %: 0.2 and 0.6
    assert (w["cell"], w["w bits"]) == ("plain", 4) and w["reversals % per weight-step"] == pytest.approx(0.4)
    assert w["SD"] == pytest.approx(np.std([0.2, 0.6], ddof=1))
    assert w["step-driven % per weight-step"] == pytest.approx(0.2)


def test_space_comparisons_separate_training_from_the_space(tmp_path):
    labels = np.zeros(200, dtype=np.int16)
    rng = np.random.default_rng(0)
    preds = lambda p: {"labels": labels, "greedy 3": np.where(rng.random(200) < p, 0, 1).astype(np.int16)}
    runs = {(c, s): {"preds": preds(p)} for s in (0, 1, 2) for c, p in (("plain", 0.7), ("sched", 0.9))}
    for s in (0, 1, 2):                                   # plain searched in sched's space, as the command writes it
        path = tmp_path / space_folder("sched", s)
        path.mkdir()
        np.savez(path / "predictions.npz", **preds(0.7))
        (path / "result.json").write_text(json.dumps({"cell": "plain", "seed": s}))
    space = load_space_runs(tmp_path, ["sched"], [0, 1, 2])
    rows = space_comparisons(runs, space, ["sched"], [0, 1, 2], ["greedy 3"])
    assert [r["comparison"] for r in rows] == ["sched minus plain, both searched in sched's space",
                                               "plain in sched's space minus plain in its own"]
    assert rows[0]["verdict"]["word"] == "holds" and rows[0]["verdict"]["expected"] == 1
    assert rows[1]["verdict"]["expected"] == 0
    with pytest.raises(FileNotFoundError, match="plain-3-in-sched-3"):
        load_space_runs(tmp_path, ["sched"], [3])
    space[("sched", 0)]["preds"]["labels"] = labels[:100]
    with pytest.raises(ValueError, match="different images"):
        space_comparisons(runs, space, ["sched"], [0, 1, 2], ["greedy 3"])


def test_a_configuration_evaluated_on_the_test_set_alone_is_a_prefix_of_the_labels():
    from mpq.studies.interference import correct_of

    preds = {"labels": np.array([0, 1, 2, 3, 4]), "W3A3": np.array([0, 1, 9, 3, 9]), "W2A2": np.array([0, 9, 2])}
    assert correct_of(preds, "W3A3").tolist() == [True, True, False, True, False]
    assert correct_of(preds, "W2A2").tolist() == [True, False, True]          # the first three: the test set


def test_the_scheduler_line_says_rotation_or_persistence():
    from mpq.studies.interference import scheduler_line

    row = {"calls": 12, "median persistence": 100, "mean overlap": 0.1, "chance overlap": 2.7,
           "agrees with full scores": 0.33}
    line = scheduler_line([row, row])
    assert line.startswith("Scheduler, 2 runs: 12 calls per run, median decision lasting 100 optimizer steps")
    assert "0.10 layers on average against 2.70 by chance" in line and "it rotated" in line and "33%" in line
    assert "followed persistent turbulence" in scheduler_line([{**row, "mean overlap": 5.0}])
    assert scheduler_line([]) == "No run had a scheduler."
    assert "one call each" in scheduler_line([{**row, "mean overlap": None, "chance overlap": None}])
    # the paper's scheduler and this package's variant, each in its own sentence
    both = scheduler_line([{**row, "cell": "sched"}, {**row, "cell": "sched_full", "mean overlap": 5.0}])
    paper, full = both.split(" With scores over the full candidate list (sched_full, this package's variant): ")
    assert paper.startswith("Scheduler, 1 runs") and "it rotated" in paper and "followed persistent turbulence" in full


@pytest.mark.timeout(60)
def test_f2_draws_per_seed_dots_with_and_without_dense_windows(tmp_path):
    from mpq.studies.interference import oscillation_figure

    def run(rate, windows):
        rec = {"progress": [0.25, 0.5, 0.75, 1.0], "flip_rate": {"4": [None, rate, rate, rate], "6": [None, 2 * rate,
                                                                                                      rate, rate]}}
        dense = {"window_steps": 10, "starts": [5], "windows": {"4": [_window(rate, 1, 0)], "6": [_window(rate, 1, 0)]}}
        return {"result": {"oscillation": rec, "oscillation_windows": dense if windows else None}}

    runs = {(c, s): run(0.1 * (s + 1), True) for c in ("plain", "no2bit") for s in (0, 1)}
    fig = oscillation_figure(runs, ["plain", "no2bit"], [0, 1], "title")
    assert len(fig.axes) == 2 and fig.axes[0].get_xticklabels()[0].get_text() == "4-bit weights"
    # no2bit with one seed only (ablation.no2bit_seeds): its dots come from the runs it has
    del runs[("no2bit", 1)]
    fig = oscillation_figure({k: run(0.1, False) for k in runs}, ["plain", "no2bit"], [0, 1], "title")
    assert len(fig.axes) == 1
