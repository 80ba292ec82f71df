"""Notebook 04's experiments: the search stage (mpq.studies.search_runs: the search on a tiny untrained supernet,
its folder saved and read back) and the page's tables, summary, verdicts and findings (mpq.studies.search_results)
on hand-written results."""
from __future__ import annotations

import json
import math
import random
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mpq.config import ModelSpec, SearchConfig, load_params
from mpq.method.cost import bitops, bitops_level, level_bitops
from mpq.models import create_model
from mpq.pages.plotting import budget_figure
from mpq.pages.held import held_lines
from mpq.search.evaluation import make_scorer, search_space
from mpq.search.sampling import random_search
from mpq.search.space import cfg_to_json
from mpq.studies.search_results import (budget_lines, budget_summary, budget_tables, c1_records, c1_summary,
                                        cost_rows, findings_lines, judge_retrained, load_seed_records,
                                        main_table_rows, main_tables, paired_rows, per_variant, sampling_verdicts, search_evaluations, search_lines,
                                        search_summary, seed_lines, seeds_summary, settings_lines, study_rows,
                                        study_summary, write_configs)
from mpq.studies.search_runs import (METHODS, SearchRun, load_search, retrain_greedy, save_search,
                                     search_supernet, validate_sections)
from mpq.studies.search_study import pred_key
from mpq.studies.stats import paired_verdict, verdict
from mpq.studies.supernets import save_predictions
from mpq.training.checkpoint import CheckpointError, read_stage_record, write_json, write_stage_record
from mpq.training.oneshot import build_supernet
from mpq.training.recipe import OneShotConfig

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent

IMAGES = 100
LABELS = torch.zeros(IMAGES, dtype=torch.long)


def preds_for(acc: float) -> torch.Tensor:
    """Predictions on ``IMAGES`` test images (labels all 0) right on the first ``acc * IMAGES`` of them."""
    return torch.where(torch.arange(IMAGES) < round(acc * IMAGES), 0, 1)


def entry(acc: float, gbitops: float = 0.5, evaluations: int = 7, **extra) -> dict:
    return {"bit_cfg": {"conv1": [3, 4]}, "gbitops": gbitops, "level": 2.9, "size_mib": 0.25, "score": 2.0,
            "evaluations": evaluations, "search_seconds": 1.5, "test_acc": acc, "preds": preds_for(acc), **extra}


def results_fixture() -> dict:
    """Two models: "a" with a retrained level 3 (gap -0.05 +- 0.01: reversed here) and a level 2.5 (not
    retrained), "b" with one retrained level 4 (gap +0.001 +- 0.01: inconclusive). Greedy spent 12 and 30
    evaluations up to levels 3 and 2.5 of a's walk (90 in all), 20 up to b's level 4 (40 in all); random 40,
    evolutionary 48 (its first population of 12 and three generations of 12)."""
    retrained_a = {"test_acc": 0.80, "train_seconds": 10.0, "epochs": 3, "no_retrain_minus_retrained": -0.05,
                   "paired_se": 0.01, "verdict": verdict([-5.0], [1.0], 1).as_dict()}
    retrained_b = {"test_acc": 0.70, "train_seconds": 4.0, "epochs": 3, "no_retrain_minus_retrained": 0.01,
                   "paired_se": 0.01, "verdict": verdict([1.0], [1.0], 1).as_dict()}

    def searches(greedy, rnd, evo, greedy_evaluations, gbitops=0.5):
        return {"greedy": entry(greedy, gbitops, greedy_evaluations), "random": entry(rnd, evaluations=40),
                "evolutionary": entry(evo, evaluations=48)}
    return {
        "a": {"levels": {3: {**searches(0.75, 0.74, 0.76, 12), "retrained": retrained_a},
                         2.5: searches(0.60, 0.50, 0.55, 30, 0.4)},
              "greedy_seconds": 12.3, "start_bits": 4, "greedy_evaluations": 90, "total_macs": 1_000_000,
              "retrain_seconds": 10.04},
        "b": {"levels": {4: {**searches(0.71, 0.69, 0.70, 20), "retrained": retrained_b}},
              "greedy_seconds": 5.0, "start_bits": 5, "greedy_evaluations": 40, "total_macs": 2_000_000,
              "retrain_seconds": 4.06},
    }


def test_main_table_rows_in_the_paper_order_with_hand_computed_values():
    results = results_fixture()
    fp = {"a": {"test_acc": 0.9}, "b": {"test_acc": 0.8}}
    base = {"a": {"4": {"test_acc": 0.7, "gbitops": 0.02, "size_mib": 0.1, "epochs": 3, "train_seconds": 9.0},
                  "2": {"test_acc": 0.5, "gbitops": 0.01, "size_mib": 0.05, "epochs": 3, "train_seconds": 8.0}},
            "b": {}}
    rows = main_table_rows(results, fp, base)
    assert [(r["model"], r["method"], r["uniform W/A bits"], r["BitOPs level"]) for r in rows[:9]] == [
        ("a", "full precision", "32/32", None),
        ("a", "uniform LSQ (trained alone)", "2/2", None), ("a", "uniform LSQ (trained alone)", "4/4", None),
        ("a", "greedy search, no retraining", None, 3), ("a", "random search, no retraining", None, 3),
        ("a", "evolutionary search, no retraining", None, 3), ("a", "greedy configuration, retrained", None, 3),
        ("a", "greedy search, no retraining", None, 2.5), ("a", "random search, no retraining", None, 2.5)]
    assert len(rows) == 1 + 2 + 4 + 3 + 1 + 4                      # model b: FP, no LSQ, three searches, retrained
    assert rows[0]["G-BitOPs"] == 32 * 32 * 1_000_000 / 1e9 == 1.024
    assert rows[0]["top-1 (%)"] == 100 * 0.9
    retrained = rows[6]
    assert retrained["top-1 (%)"] == 100 * 0.80 and retrained["G-BitOPs"] == 0.5
    assert retrained["training (s)"] == 10.0 and retrained["search (s)"] == 1.5 and retrained["training epochs"] == 3
    assert rows[3]["training epochs"] == 0 and rows[3]["training (s)"] == 0
    tables = main_tables(pd.DataFrame(rows))
    assert list(tables) == ["T2: a", "T3: b"]
    assert "model" not in tables["T2: a"].columns and len(tables["T2: a"]) == 10 and len(tables["T3: b"]) == 5


def test_paired_and_cost_rows():
    results = results_fixture()
    paired = paired_rows(results)
    assert [(r["model"], r["BitOPs level"]) for r in paired] == [("a", "3"), ("b", "4")]   # level 2.5 not retrained
    assert paired[0]["retrained (%)"] == 100 * 0.80 and paired[0]["no retraining (%)"] == 100 * 0.75
    # one run each: the interval is shown, no word (fewer than 3 seeds); the first is clear of zero, the second not
    assert paired[0]["verdict"]["word"] == paired[1]["verdict"]["word"] == "one run, not judged"
    assert paired[0]["verdict"]["high"] < 0 < paired[1]["verdict"]["high"] and paired[1]["verdict"]["low"] < 0
    cost = cost_rows(results, {"a": {"train_seconds": 100.0}, "b": {"train_seconds": 50.0}})
    assert cost == [{"model": "a", "greedy walk: forward evaluations": 90, "greedy walk (s)": 12.3,
                     "one supernet training (s)": 100.0, "retraining every level (s)": 10.0},
                    {"model": "b", "greedy walk: forward evaluations": 40, "greedy walk (s)": 5.0,
                     "one supernet training (s)": 50.0, "retraining every level (s)": 4.1}]


def test_retrain_off_leaves_the_results_and_counts_no_seconds():
    results = results_fixture()
    for r in results.values():
        del r["retrain_seconds"]
    before = repr(results)
    out = retrain_greedy(results, [ModelSpec("a"), ModelSpec("b")], {}, None, None, None, eval_batch_size=8, seed=0,
                         device=torch.device("cpu"), retrain=False)
    assert repr(results) == before                                # the input is not edited
    assert [r["retrain_seconds"] for r in out.values()] == [0.0, 0.0]
    assert out["a"]["levels"][3] is results["a"]["levels"][3] and list(out["a"]) == [*results["a"], "retrain_seconds"]


def test_greedy_against_the_sampling_searches_pairs_the_test_images():
    rows = sampling_verdicts(results_fixture(), LABELS)
    assert [(r["model"], r["BitOPs level"], r["comparison"]) for r in rows] == [
        ("a", "3", "greedy minus random"), ("a", "3", "greedy minus evolutionary"),
        ("a", "2.5", "greedy minus random"), ("a", "2.5", "greedy minus evolutionary"),
        ("b", "4", "greedy minus random"), ("b", "4", "greedy minus evolutionary")]
    a25 = rows[2]["verdict"]        # 60 vs 50 images right, the 50 among the 60: ten +1 differences in 100
    assert a25["diff"] == pytest.approx(10.0) and a25["n"] == 1
    assert a25["se_images"] == pytest.approx(100 * math.sqrt(9 / 99) / 10) and a25["word"] == "one run, not judged"
    assert a25["low"] > 0 and a25["df"] == 99 and a25["basis"] == "one run"
    assert rows[1]["verdict"]["low"] < 0 < rows[1]["verdict"]["high"] and rows[1]["verdict"]["diff"] == pytest.approx(-1.0)
    assert rows[0]["evaluations (greedy / other)"] == "12 / 40"


def test_search_summary_is_strict_json_without_predictions_and_bits(tmp_path):
    results = results_fixture()
    summary = search_summary(results, {"a": {"train_seconds": 1.0}, "b": {"train_seconds": 2.0}}, profile="tiny",
                             seed=0, device=torch.device("cpu"), labels=LABELS, scoring_images=64,
                             stage_seconds=3.0)
    assert list(summary) == ["profile", "seed", "device", "test_images", "scoring_images", "stage_seconds",
                             "supernet_train_seconds", "models", "evaluations", "retrained", "f5"]
    assert summary["device"] == "cpu" and summary["test_images"] == IMAGES
    a = summary["models"]["a"]
    assert list(a) == ["greedy_seconds", "greedy_evaluations", "start_bits", "retrain_seconds", "levels"]
    assert a["retrain_seconds"] == 10.0 and list(a["levels"]) == ["3", "2.5"]
    assert list(a["levels"]["3"]) == ["greedy", "random", "evolutionary", "retrained"]
    assert "preds" not in a["levels"]["3"]["greedy"] and "bit_cfg" not in a["levels"]["3"]["greedy"]
    assert summary["retrained"]["note"] == "2 comparisons, 2 on fewer than 3 seeds and not judged"
    assert len(summary["f5"]["rows"]) == 6 and summary["f5"]["note"].startswith("6 comparisons")
    json.dumps(summary, allow_nan=False)                         # plain, strict data
    paths = write_configs(results, tmp_path)
    assert [p.name for p in paths] == ["a_level3.json", "a_level2.5.json", "b_level4.json"]
    config = json.loads(paths[0].read_text())
    assert config["model"] == "a" and config["target_level"] == 3 and config["bit_cfg"] == {"conv1": [3, 4]}
    assert "preds" not in config


def test_the_evaluation_counts_come_from_the_recorded_searches_for_notebook_and_entry_page():
    """Issue 25 item 7: the findings said 36 evolutionary evaluations (population x generations, without the first
    population) where the metrics said 48, and gave the greedy range of whole walks where the entry page gave
    per-level counts. Both now read ``search_evaluations`` (search.json's "evaluations")."""
    results = results_fixture()
    assert search_evaluations(results) == {"greedy": [12, 30], "random": [40, 40], "evolutionary": [48, 48],
                                           "greedy walk": [40, 90]}
    summary = search_summary(results, {"a": {"train_seconds": 1.0}, "b": {"train_seconds": 2.0}}, profile="tiny",
                             seed=0, device="cpu", labels=LABELS, scoring_images=64, stage_seconds=3.0)
    assert search_evaluations(summary["models"]) == summary["evaluations"]      # the same from search.json
    counts = ("12-30 forward evaluations up to a level's result (one walk of 40-90 serves every level), random 40, "
              "evolutionary 48")
    assert counts in search_lines(summary)[-1]
    assert any(counts in line for line in held_lines({"search": summary}))


def _record(seed: int, right: dict[str, int], budget: int | None = None, correct: bool = True) -> dict:
    """A record on ``IMAGES`` test images: each row right on the first ``right[row]`` images."""
    acc = {k: v / IMAGES for k, v in right.items()}
    r = {"seed": seed, "test_acc": acc, "test_images": IMAGES, "seconds": {"supernet": 1.0},
         "gaps": {"3": {"no_retrain_minus_retrained": acc["greedy 3"] - acc["retrained 3"], "paired_se": 0.02}}}
    if correct:
        r["correct"] = {k: np.arange(IMAGES) < v for k, v in right.items()}
    return r if budget is None else {**r, "budget": budget}


def _summary_fixture(budgets=()) -> dict:
    results = results_fixture()
    summary = search_summary(results, {"a": {"train_seconds": 1.0}, "b": {"train_seconds": 2.0}}, profile="tiny",
                             seed=0, device="cpu", labels=LABELS, scoring_images=64, stage_seconds=3.0)
    rows = {"greedy 3": 80, "retrained 3": 82, "supernet W2A2": 70, "LSQ W2A2": 75}
    records = [_record(s, {**rows, "greedy 3": 80 - s}) for s in (0, 1, 2)]
    runs = [_record(0, rows, budget=b) for b in budgets]
    summary["seeds"] = seeds_summary("resnet20", records, pd.DataFrame([{"row": "x"}]), pool_gaps_of(records))
    summary["budget"] = budget_summary("resnet20", budgets, 3, 0, budget_rows_of([*records, *runs]),
                                       pd.DataFrame(), runs)
    summary["search_study"] = study_summary(study_fixture(), study_rows(study_fixture()), pd.DataFrame())
    return summary


def pool_gaps_of(records):
    from mpq.studies.replicate_tables import pool_gaps
    return pool_gaps(records)


def budget_rows_of(records):
    from mpq.studies.replicate_tables import budget_rows
    return budget_rows(records, epochs=3)


def study_fixture(alternatives: bool = True) -> dict:
    """Two seeds; the default and (``alternatives``) "256 scoring images" at level 3, and the equal-compute random
    search at seed 0: minus the default +1.0 / +1.2 points (paired SE 0.2) and -2.0 (paired SE 0.3)."""
    runs = [{"seed": s, "variant": "default", "level": "3", "test_acc": 0.8, "search_seconds": 2.0, "evaluations": 50,
             "found_level": 2.9} for s in (0, 1)]
    if alternatives:
        runs += [{"seed": s, "variant": "256 scoring images", "level": "3", "test_acc": 0.8 + d,
                  "search_seconds": 4.0 + s, "evaluations": 50, "found_level": 2.9, "minus_default": d,
                  "paired_se": 0.002} for s, d in ((0, 0.010), (1, 0.012))]
    runs.append({"seed": 0, "variant": "random search, equal evaluations", "level": "3", "test_acc": 0.78,
                 "search_seconds": 1.0, "evaluations": 50, "greedy_evaluations": 50, "found_level": 2.9,
                 "minus_default": -0.02, "paired_se": 0.003})
    variants = [["default", 128, 4]] + ([["256 scoring images", 256, 4]] if alternatives else [])
    return {"model": "resnet20", "levels": ["3"], "stage_seconds": 9.0, "runs": runs,
            "variants": variants + [["random search, equal evaluations", 128, 4]]}


def test_study_rows_judge_each_alternative_over_seeds():
    rows = study_rows(study_fixture())
    assert [r["setting"] for r in rows] == ["256 scoring images", "random search, equal evaluations"]
    alt, rnd = rows[0], rows[1]
    assert alt["verdict"]["per_seed"] == pytest.approx([1.0, 1.2]) and alt["verdict"]["expected"] == 0
    assert alt["verdict"]["se"] == pytest.approx(math.sqrt(0.02 / 2 + 0.2 ** 2))   # SD 0.141 over two seeds, SE 0.2
    # Satterthwaite: the seed term (1 df) is 0.01 of SE^2 = 0.05, the image term counts as known: 25 df
    assert alt["verdict"]["df"] == pytest.approx(0.05 ** 2 / 0.01 ** 2)
    assert alt["verdict"]["word"] == "2 runs, not judged" and alt["verdict"]["low"] > 0   # clear, but two runs
    assert alt["search time x default"] == pytest.approx((2.0 + 2.5) / 2) and alt["evaluations x default"] == 1.0
    assert rnd["verdict"]["expected"] == -1 and rnd["verdict"]["n"] == 1
    assert rnd["verdict"]["word"] == "one run, not judged" and rnd["verdict"]["high"] < 0
    assert rnd["verdict"]["text"].endswith("test-image noise only")
    assert math.isnan(rnd["search time x default"])


def test_seed_budget_and_study_sections_are_strict_json():
    summary = _summary_fixture(budgets=(2,))
    seeds = summary["seeds"]
    assert seeds["seeds"] == [0, 1, 2] and seeds["replicate_seconds"] == {"1": {"supernet": 1.0},
                                                                          "2": {"supernet": 1.0}}
    assert seeds["gaps"][0]["pairing"] == "per image" and seeds["note"].startswith("1 comparison")
    assert summary["budget"]["budgets"] == [1, 2] and summary["budget"]["note"].startswith("2 comparisons judged, 2 on fewer than 3 seeds")
    assert summary["search_study"]["seeds"] == [0, 1] and summary["search_study"]["note"].startswith("2 comparisons")
    assert summary["search_study"]["rows"][1]["search time x default"] is None        # nan as null
    json.dumps(summary, allow_nan=False)
    variants = per_variant(study_fixture()["runs"])
    assert list(variants.variant) == ["default", "256 scoring images", "random search, equal evaluations"]
    assert variants["top-1 mean (%)"][0] == pytest.approx(80.0) and variants.seeds[0] == 2


def test_seed_records_pair_the_main_run_and_the_replicates_image_by_image(tmp_path):
    """The main run's greedy and retrained predictions (in memory) and each replicate's predictions.npz give the
    per-image correctness, so T2's verdict pairs every image over the seeds."""
    results = {"m": {"levels": {3: {"greedy": entry(0.80), "retrained": {**entry(0.82), "epochs": 3,
                                                                          "no_retrain_minus_retrained": -0.02,
                                                                          "paired_se": 0.014}}}}}
    metrics = {"supernet": {"m": {"uniform": {"2": {"test_acc": 0.7}}}}, "baselines": {"m": {"2": {"test_acc": 0.75}}}}
    for seed, greedy in ((1, 79), (2, 78)):
        folder = tmp_path / f"seed-{seed}"
        write_json({"seed": seed, "test_acc": {"greedy 3": greedy / 100, "retrained 3": 0.82, "supernet W2A2": 0.7,
                                               "LSQ W2A2": 0.75},
                    "gaps": {"3": {"no_retrain_minus_retrained": greedy / 100 - 0.82, "paired_se": 0.015}},
                    "test_images": IMAGES, "seconds": {}}, folder / "result.json")
        np.savez(folder / "predictions.npz", labels=np.zeros(IMAGES, dtype=np.int16),
                 **{"greedy 3": preds_for(greedy / 100).numpy().astype(np.int16),
                    "retrained 3": preds_for(0.82).numpy().astype(np.int16)})
    records = load_seed_records("m", 0, [1, 2], metrics["supernet"], metrics["baselines"], results, LABELS, tmp_path)
    assert [r["seed"] for r in records] == [0, 1, 2] and records[0]["test_images"] == IMAGES
    assert set(records[0]["correct"]) == {"greedy 3", "retrained 3"}
    gap = pool_gaps_of(records)[0]
    assert gap["pairing"] == "per image"
    expected = paired_verdict(np.stack([np.arange(IMAGES) < k for k in (80, 79, 78)]),
                              np.stack([np.arange(IMAGES) < 82] * 3), 1)
    assert gap["verdict"] == expected.as_dict()
    rows = budget_rows_of(records)          # the uniform rows were never kept per image: the unpaired bound
    uniform = next(r for r in rows if r["comparison"] == "supernet W2A2 minus LSQ alone")
    assert uniform["pairing"] == "per-seed SEs (an upper bound)" and uniform["verdict"]["expected"] == 0
    with pytest.raises(FileNotFoundError, match="replicate@3"):
        load_seed_records("m", 0, [3], metrics["supernet"], metrics["baselines"], results, LABELS, tmp_path)


def test_c1_pairs_every_model_per_image_over_its_seeds(tmp_path):
    """The supernet and baselines stages' predictions give the main run's uniform rows per image, so C1 pairs the
    main run with the replicates image by image (a two-way analysis), in C1's direction (+1 at W3A3, none at
    W2A2); a model without replicates is one run, its paired interval not judged."""
    sn_dir, base_dir, rep = tmp_path / "supernet", tmp_path / "baselines", tmp_path / "replicates"
    for name, right in (("m", {"supernet W3A3": 80, "supernet W2A2": 60, "LSQ W3A3": 78, "LSQ W2A2": 65}),
                        ("n", {"supernet W3A3": 70, "LSQ W3A3": 71})):
        save_predictions(sn_dir, name, LABELS, {k: preds_for(v / IMAGES) for k, v in right.items()
                                                 if k.startswith("supernet")})
        save_predictions(base_dir, name, LABELS, {k: preds_for(v / IMAGES) for k, v in right.items()
                                                   if k.startswith("LSQ")})
    for seed, shift in ((1, 1), (2, -1)):
        right = {"supernet W3A3": 80 + shift, "supernet W2A2": 60, "LSQ W3A3": 78, "LSQ W2A2": 65 + shift}
        write_json({"seed": seed, "test_acc": {k: v / IMAGES for k, v in right.items()}, "gaps": {},
                    "test_images": IMAGES, "seconds": {}}, rep / f"seed-{seed}" / "result.json")
        np.savez(rep / f"seed-{seed}" / "predictions.npz", labels=np.zeros(IMAGES, dtype=np.int16),
                 **{k: preds_for(v / IMAGES).numpy().astype(np.int16) for k, v in right.items()})
    sn = {"m": {"uniform": {"3": {"test_acc": 0.80}, "2": {"test_acc": 0.60}}},
          "n": {"uniform": {"3": {"test_acc": 0.70}}}}
    base = {"m": {"3": {"test_acc": 0.78}, "2": {"test_acc": 0.65}}, "n": {"3": {"test_acc": 0.71}}}
    results = {"m": {"levels": {}}, "n": {"levels": {}}}
    folders = (sn_dir, base_dir)
    seeded = {"m": load_seed_records("m", 0, [1, 2], sn, base, results, LABELS, rep, folders)}
    c1 = c1_summary(c1_records(results, seeded, 0, sn, base, LABELS, folders))
    rows = {(r["model"], r["bits"]): r for r in c1["rows"]}
    assert list(rows) == [("m", "W3A3"), ("m", "W2A2"), ("n", "W3A3")]
    assert all(r["pairing"] == "per image" for r in rows.values())
    m3 = rows[("m", "W3A3")]
    assert m3["seeds"] == [0, 1, 2] and m3["verdict"]["expected"] == 1
    want = paired_verdict(np.stack([np.arange(IMAGES) < k for k in (80, 81, 79)]),
                          np.stack([np.arange(IMAGES) < 78] * 3), 1)
    assert m3["verdict"] == want.as_dict() and m3["verdict"]["basis"] != "one run"
    assert rows[("m", "W2A2")]["verdict"]["expected"] == 0
    n3 = rows[("n", "W3A3")]["verdict"]
    assert rows[("n", "W3A3")]["seeds"] == [0] and n3["word"] == "one run, not judged"
    assert n3 == paired_verdict(np.arange(IMAGES) < 70, np.arange(IMAGES) < 71, 1).as_dict()
    assert c1["note"].startswith("2 comparisons judged, 1 on fewer than 3 seeds and not judged")
    # the entry page reads these rows as they are
    from mpq.pages.claims import c1_table
    table = c1_table({"search": {"c1": c1}})
    assert [(r.group, r.label) for r in table.rows] == [("m", "W3A3"), ("m", "W2A2"), ("n", "W3A3")]
    assert "m over training seeds 0, 1, 2; n one run (seed 0)" in table.title and "per test image" in table.title
    assert table.rows[0].verdict == m3["verdict"]
    # predictions scored on other test images are refused, not paired
    with pytest.raises(ValueError, match="other test images"):
        load_seed_records("n", 0, [], sn, base, results, torch.ones(IMAGES, dtype=torch.long), rep, folders)


def test_study_rows_pair_each_setting_per_image_where_the_stage_kept_predictions():
    """With the search_study stage's predictions, S1's verdict is the two-way analysis of the seed-by-image matrix,
    not the per-seed SEs added to the seeds' spread."""
    study = study_fixture()
    right = {(0, "default"): 80, (1, "default"): 80, (0, "256 scoring images"): 81, (1, "256 scoring images"): 81,
             (0, "random search, equal evaluations"): 78}
    correct = {pred_key(s, v, "3"): np.arange(IMAGES) < k for (s, v), k in right.items()}
    rows = {r["setting"]: r for r in study_rows(study, correct)}
    alt = rows["256 scoring images"]
    assert alt["pairing"] == "per image"
    assert alt["verdict"] == paired_verdict(np.stack([np.arange(IMAGES) < 81] * 2),
                                            np.stack([np.arange(IMAGES) < 80] * 2), 0).as_dict()
    assert rows["random search, equal evaluations"]["verdict"]["expected"] == -1
    del correct[pred_key(1, "default", "3")]          # one search without predictions: the per-seed SEs, said so
    assert study_rows(study, correct)[0]["pairing"] == "per-seed SEs (an upper bound)"
    assert study_rows(study)[0]["verdict"] == study_rows(study, correct)[0]["verdict"]


def test_budget_tables_pair_the_main_run_with_each_budget_run(tmp_path):
    main = _record(0, {"greedy 3": 80, "retrained 3": 81, "supernet W2A2": 50, "LSQ W2A2": 45}, correct=False)
    run = _record(0, {"greedy 3": 80, "retrained 3": 82, "supernet W2A2": 60, "LSQ W2A2": 50}, budget=2,
                  correct=False)
    write_json(run, tmp_path / "x2" / "result.json")
    runs, points, rows = budget_tables([main], (2,), 3, tmp_path)
    assert runs == [run]
    assert list(points.comparison) == ["greedy 3 minus retrained", "supernet W2A2 minus LSQ alone"] * 2
    assert list(points["budget (x)"]) == [1, 1, 2, 2] and points.points[0] == pytest.approx(-1.0)
    assert points.points[3] == pytest.approx(10.0) and points["SE over images"][0] == pytest.approx(2.0)
    assert list(zip([r["comparison"] for r in rows], [r["budget (x)"] for r in rows], [r["epochs"] for r in rows])) == [
        ("greedy 3 minus retrained", 1, 3), ("greedy 3 minus retrained", 2, 6),
        ("supernet W2A2 minus LSQ alone", 1, 3), ("supernet W2A2 minus LSQ alone", 2, 6)]
    assert rows[1]["per seed (seed: points)"] == "0: -2.00" and rows[1]["verdict"]["expected"] == 1
    with pytest.raises(FileNotFoundError, match="budget@4"):
        budget_tables([main], (4,), 3, tmp_path)


def test_search_lines_give_each_verdict_and_the_counts():
    lines = search_lines(_summary_fixture())
    assert lines[0] == ("a: level 3: 75.00% with no retraining, minus the same configuration retrained one run, not "
                        "judged: -5.00 [-6.96, -3.04], test-image noise only; level 2.5: 60.00% with no retraining")
    assert lines[1].startswith("b: level 4: 71.00% with no retraining, minus the same configuration retrained "
                               "one run, not judged: +1.00 [")
    assert lines[2].startswith("C6, no retraining minus retrained, one run per model-level (the paper: at least on "
                               "par; one run is not judged): 2 not judged (fewer than 3 seeds) of 2 (the same "
                               "unadjusted); 2 comparisons, 2 on fewer than 3 seeds")
    assert lines[3].startswith("F5, greedy search minus random and evolutionary search at equal BitOPs, one run each "
                               "(the paper: greedy ahead): greedy minus random: 3 not judged (fewer than 3 seeds) of 3 "
                               "(the same unadjusted); greedy minus evolutionary: ")


def test_seed_and_budget_lines():
    summary = _summary_fixture(budgets=(2,))
    lines = seed_lines(summary["seeds"])
    gap = summary["seeds"]["gaps"][0]["verdict"]
    assert lines[0] == (f"resnet20, training seeds [0, 1, 2], level 3: no-retrain minus retrained {gap['text']} "
                        "(per seed -2.00 / -3.00 / -4.00)")
    assert len(lines) == 2 and lines[1].startswith("T2 with seeds: 1 comparison") and "one run each" in lines[1]
    lines = budget_lines(summary["budget"])
    assert lines[0].startswith("F7, greedy 3 minus retrained: at 3 epochs ") and "(per seed 0: -2.00 / 1: -3.00 / " \
        "2: -4.00); at 6 epochs " in lines[0] and lines[0].endswith("(per seed 0: -2.00)")
    assert lines[-1].startswith("F7: 2 comparisons judged, 2 on fewer than 3 seeds")
    points = pd.DataFrame([{"budget (x)": 1, "seed": 0, "comparison": "greedy 3 minus retrained", "points": -1.5},
                           {"budget (x)": 1, "seed": 1, "comparison": "greedy 3 minus retrained", "points": -0.5},
                           {"budget (x)": 2, "seed": 0, "comparison": "greedy 3 minus retrained", "points": 0.25},
                           {"budget (x)": 1, "seed": 0, "comparison": "supernet W2A2 minus LSQ alone", "points": 2.0}])
    fig = budget_figure(points, budgets=(2,), epochs=3, seed=0, model="resnet20", profile="tiny", seeds=[0, 1])
    assert len(fig.axes) == 2 and "lines follow seed 0 (the only seed at 6 epochs)" in fig._suptitle.get_text()
    fig = budget_figure(points[points["budget (x)"] == 1], budgets=(), epochs=3, seed=0, model="resnet20",
                        profile="tiny", seeds=[0, 1])
    assert "no larger budget" in fig._suptitle.get_text()
    assert fig._suptitle.get_text().startswith("F7 (ResNet-20, tiny profile)") and "dots: seeds 0, 1;" in \
        fig._suptitle.get_text()


def _study_section(*words: str) -> dict:
    """An S1 section with the equal-compute random row and one alternative per word."""
    rows = [{"setting": "random search, equal evaluations", "BitOPs level": "3", "search time x default": None,
             "verdict": verdict([-0.5], [0.4], -1).as_dict()}]
    diff = {"higher": [3.0, 3.0, 3.0], "lower": [-3.0, -3.0, -3.0], "inconclusive": [1.0, -1.0, 0.0],
            "2 runs, not judged": [3.0, 3.0]}
    rows += [{"setting": f"score {i}", "BitOPs level": "3", "search time x default": 2.0,
              "verdict": verdict(diff[w], [0.1] * len(diff[w])).as_dict()} for i, w in enumerate(words)]
    return {"model": "resnet20", "seeds": [0, 1, 2], "rows": rows, "note": "NOTE"}


@pytest.mark.parametrize("words, start", [
    ((), "S1: the tiny profile lists no alternative search setting (no other number of scoring images"),
    (("inconclusive",), "No alternative search setting found better configurations clear of zero: the"),
    (("lower",), "No alternative search setting found better configurations clear of zero (worse: score 0 at "
                 "level 3)"),
    (("higher",), "Better configurations clear of zero with score 0 at level 3, worse nowhere"),
    (("higher", "lower"), "Mixed: better configurations clear of zero with score 0 at level 3, worse with score 1 at "
                          "level 3"),
    (("2 runs, not judged",), "The alternative search settings rest on fewer than 3 seeds each: not judged")])
def test_settings_lines_verdict_over_the_alternatives(words, start):
    study = _study_section(*words)
    assert [r["verdict"]["word"] for r in study["rows"][1:]] == list(words)
    lines = settings_lines(study, seed=0, profile="tiny")
    assert lines[0] == ("F5 at equal search compute (resnet20, seed 0): random search, equal evaluations minus greedy "
                        "(the paper: lower): level 3 one run, not judged: -0.50 [-1.28, +0.28], test-image noise only")
    assert len(lines) == 3 + len(words) and lines[-2].startswith(start) and lines[-1] == "S1: NOTE."
    if words:
        assert lines[1].startswith("Search setting 'score 0' (resnet20, seeds [0, 1, 2]) minus the default: level 3 ")
        assert lines[1].endswith("; search time x2.0")


def test_findings_lines_add_f7_only_with_larger_budgets():
    kw = dict(seed=0, profile="tiny", epochs=3)
    without = findings_lines(_summary_fixture(), budgets=(), **kw)
    with_budgets = findings_lines(_summary_fixture(budgets=(2,)), budgets=(2,), **kw)
    assert without[:4] == search_lines(_summary_fixture()) and without[-1].startswith("F7: the tiny profile runs no training budget")
    assert len(with_budgets) == len(without) + 3                 # two F7 comparisons, their note, the caveat
    assert with_budgets[6].startswith("F7, greedy 3 minus retrained: at 3 epochs")
    assert with_budgets[-1].startswith("F7 has one seed per larger budget")


def _sections(**over):
    params = load_params("params.yaml") | over
    return [params[k] for k in ("data", "models", "model_bits", "oneshot", "evaluation", "baselines", "search",
                                "replicates", "search_study")]


def test_validate_sections_gives_each_model_its_levels_and_refuses_a_listed_replicate(root, monkeypatch):
    monkeypatch.chdir(root)
    cfg = validate_sections(*_sections())
    params = load_params("params.yaml")
    assert [s.name for s in cfg.specs] == list(params["models"])
    assert cfg.model_search["mobilenetv2_28"].levels == (4, 3.5)
    assert cfg.model_search["resnet20"].levels == tuple(params["search"]["levels"])
    assert cfg.model_oneshot["mobilenetv2_28"].w_bit_choices == (3, 4, 5, 6)
    with pytest.raises(ValueError, match="replicates.model"):
        validate_sections(*_sections(replicates={**params["replicates"], "model": "mobilenetv2_28"}))


def test_search_supernet_on_a_tiny_untrained_supernet(tiny_splits):
    """Every method lands at or under the target; random search draws first from ``random.Random(seed)``.
    Two layers searchable (W and A in {2, 3}), the others fixed at W3A3, so the walks are short."""
    calib = tiny_splits.calib.subset(torch.arange(32))
    supernet = build_supernet(create_model("resnet20", width_mult=0.25), OneShotConfig().supernet_spec(), calib,
                              (1, 28, 28))
    free = supernet.searchable[1:3]
    candidates = {n: ((2, 3), (2, 3)) if n in free else ((3,), (3,)) for n in supernet.searchable}
    table = supernet.cost_table
    top = bitops(table, {n: (3, 3) for n in supernet.searchable})
    bottom = bitops(table, {n: (2, 2) if n in free else (3, 3) for n in supernet.searchable})
    level = bitops_level(table, (top + bottom) / 2)
    score, test = tiny_splits.score.subset(torch.arange(8)), tiny_splits.test.subset(torch.arange(32))
    search_cfg = SearchConfig(levels=(level,), start_bits=3, random_samples=1, evo_population=2, evo_generations=1)
    out = search_supernet(supernet, candidates, score, calib, test, search_cfg, eval_batch_size=32, seed=3)
    assert list(out) == ["levels", "greedy_seconds", "start_bits", "greedy_evaluations", "total_macs"]
    assert list(out["levels"]) == [level] and out["start_bits"] == 3
    found = out["levels"][level]
    assert list(found) == ["greedy", "random", "evolutionary"]
    target = level_bitops(table, level)
    for e in found.values():
        assert e["gbitops"] * 1e9 <= target and e["level"] <= level
        assert all(tuple(b) == (3, 3) for n, b in e["bit_cfg"].items() if n not in free)
        assert tuple(e["bit_cfg"]) == tuple(supernet.searchable)
        assert e["test_acc"] == float((e["preds"] == test.labels).float().mean())
    again = random_search(search_space(supernet, candidates), make_scorer(supernet, score, metric="loss"),
                          partial(bitops, table), target, num_samples=1, rng=random.Random(3))
    assert cfg_to_json(again.bit_cfg) == found["random"]["bit_cfg"]
    assert out["greedy_evaluations"] == found["greedy"]["evaluations"]
    assert out["total_macs"] == table.total_macs


# ---------------------------------------------------------------------------------------------------
# the search stage's folder: saved, read back, no wall time in it; the page judges what it holds

HEALTH = {"finite": True, "max_path_heldout_acc": 0.1 + 0.2, "fp_heldout_acc": 0.9, "heldout_images": 128,
          "collapsed": False, "why": ""}


def stage_run(check_seconds: float = 12.3) -> SearchRun:
    """``results_fixture`` as the search stage returns it (no verdicts; retrained predictions and health), with
    layers out of alphabetical order, int and float levels, floats that only repr keeps, and a retraining check."""
    results = results_fixture()
    for r in results.values():
        for e in r["levels"].values():
            for m in METHODS:
                e[m]["bit_cfg"] = {"stem": [8, 8], "block.b": [3, 4], "block.a": [2, 6], "fc": [8, 8]}
                e[m]["score"] = 1 / 3
            if "retrained" in e:
                re = {k: v for k, v in e["retrained"].items() if k != "verdict"}
                e["retrained"] = {**re, "preds": preds_for(re["test_acc"]), "health": dict(HEALTH)}
    check = {"model": "a", "level": 3, "uniform_bits": 2, "seeds": [0, 1], "gbitops": {"configuration": 0.5,
             "uniform": 0.1 + 0.2}, "test_acc": {"configuration": [0.75, 0.7], "uniform": [0.7, 0.72]},
             "health": {"configuration": [dict(HEALTH)] * 2, "uniform": [dict(HEALTH), {**HEALTH, "why": "x"}]},
             "preds": {"configuration": torch.stack([preds_for(0.75), preds_for(0.7)]),
                       "uniform": torch.stack([preds_for(0.7), preds_for(0.72)])},
             "seconds": check_seconds}
    return SearchRun(results, check, LABELS.clone(), 64, "cpu", 0, 99.5)



def same(a, b, where="") -> list[str]:
    """Where ``a`` and ``b`` differ: values and their types (3 is not 3.0), key order (models, levels, layers),
    tensors by dtype and content. Health records are compared by key (JSON sorts them; they are read by key)."""
    if isinstance(a, torch.Tensor):
        return [] if isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b) else [where]
    if isinstance(a, dict):
        if not isinstance(b, dict):
            return [where]
        order = sorted if "'health'" in where else list
        if [(type(k), k) for k in order(a)] != [(type(k), k) for k in order(b)]:
            return [f"{where} keys {list(a)} != {list(b)}"]
        return [d for k in a for d in same(a[k], b[k], f"{where}[{k!r}]")]
    if isinstance(a, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return [where]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in same(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and math.isnan(a):
        return [] if isinstance(b, float) and math.isnan(b) else [where]
    return [] if type(a) is type(b) and a == b else [f"{where}: {a!r} != {b!r}"]


def test_search_folder_round_trips_exactly(tmp_path):
    run = stage_run()
    timings = save_search(run, tmp_path / "search")
    write_stage_record("search", 99.5, root=tmp_path / "stages", timings=timings)
    back = load_search(tmp_path / "search", stages=tmp_path / "stages")
    for field in ("results", "check", "labels", "scoring_images", "device", "seed", "stage_seconds"):
        assert same(getattr(run, field), getattr(back, field), field) == [], field
    assert list(back.results["a"]["levels"]) == [3, 2.5] and type(list(back.results["b"]["levels"])[0]) is int
    # without the stage record, the same results with every wall time nan
    bare = load_search(tmp_path / "search", stages=tmp_path / "none")
    assert same(run.labels, bare.labels) == [] and bare.stage_seconds is None
    assert math.isnan(bare.results["a"]["greedy_seconds"]) and math.isnan(bare.check["seconds"])
    assert math.isnan(bare.results["a"]["levels"][3]["retrained"]["train_seconds"])
    assert bare.results["a"]["levels"][3]["greedy"]["bit_cfg"] == run.results["a"]["levels"][3]["greedy"]["bit_cfg"]


def test_search_folder_holds_no_wall_time_and_the_same_results_give_the_same_bytes(tmp_path, monkeypatch):
    """Wall times go to the stage record only: a re-run that reproduces the results (other seconds, another
    clock) writes the same bytes, so DVC re-runs nothing downstream."""
    import time
    timings = save_search(stage_run(check_seconds=12.3), tmp_path / "one")
    clock = time.time()
    monkeypatch.setattr(time, "time", lambda: clock + 86_400 * 400)     # a zip member stamped "now" would differ
    later = save_search(stage_run(check_seconds=99.9), tmp_path / "two")
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["predictions.npz", "result.json"]
    for name in ("result.json", "predictions.npz"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert timings["retrain_check_seconds"] == 12.3 and later["retrain_check_seconds"] == 99.9
    assert timings["models"]["a"] == {"greedy_seconds": 12.3, "retrain_seconds": 10.04, "levels": {
        "3": {"greedy": 1.5, "random": 1.5, "evolutionary": 1.5, "retrained": 10.0},
        "2.5": {"greedy": 1.5, "random": 1.5, "evolutionary": 1.5}}}

    def keys(obj):
        if isinstance(obj, dict):
            return set(obj) | {k for v in obj.values() for k in keys(v)}
        return {k for v in obj for k in keys(v)} if isinstance(obj, list) else set()
    saved = keys(json.loads((tmp_path / "one" / "result.json").read_text()))
    assert not [k for k in saved if "second" in k or "time" in k]
    with np.load(tmp_path / "one" / "predictions.npz", allow_pickle=False) as z:
        assert z["labels"].dtype == np.int16 and z["retrain_check uniform"].shape == (2, IMAGES)
        assert not [k for k in z.files if "second" in k or "time" in k]


def test_a_missing_or_damaged_search_folder_is_one_line_naming_the_file_and_the_fix(tmp_path):
    folder = tmp_path / "search"
    with pytest.raises(CheckpointError, match="result.json not found; run `dvc pull`.*`dvc repro search`") as err:
        load_search(folder, stages=tmp_path)
    assert "\n" not in str(err.value)
    save_search(stage_run(), folder)
    npz = (folder / "predictions.npz").read_bytes()
    (folder / "predictions.npz").write_bytes(npz[: len(npz) // 2])
    with pytest.raises(CheckpointError, match=r"predictions.npz is damaged .*dvc pull") as err:
        load_search(folder, stages=tmp_path)
    assert "\n" not in str(err.value)
    (folder / "predictions.npz").write_bytes(npz)
    text = (folder / "result.json").read_text()
    (folder / "result.json").write_text(text[:100])
    with pytest.raises(CheckpointError, match=r"result.json is damaged .*dvc pull"):
        load_search(folder, stages=tmp_path)
    (folder / "result.json").write_text(text.replace('"models"', '"modelz"'))
    with pytest.raises(CheckpointError, match=r"result.json does not hold a search result .*dvc pull"):
        load_search(folder, stages=tmp_path)


def test_the_page_judges_the_retrained_levels_as_the_search_used_to():
    """The verdict moved out of the search stage; it lands in the same place, from the same predictions."""
    run = stage_run()
    judged = judge_retrained(run.results, LABELS)
    e = judged["a"]["levels"][3]
    assert list(e["retrained"]) == ["test_acc", "train_seconds", "epochs", "no_retrain_minus_retrained", "paired_se",
                                    "verdict", "preds", "health"]
    want = paired_verdict((e["greedy"]["preds"] == LABELS).numpy(), (e["retrained"]["preds"] == LABELS).numpy(), 1)
    assert e["retrained"]["verdict"] == want.as_dict()
    assert "verdict" not in run.results["a"]["levels"][3]["retrained"]               # the input is left as it was
    assert judged["a"]["levels"][2.5] is run.results["a"]["levels"][2.5]
    assert paired_rows(judged)[0]["verdict"]["high"] < 0       # 75 against 80 of 100 images right, one run: no word


@pytest.mark.timeout(240)
def test_search_command_writes_the_folder_and_the_stage_record(tmp_path, monkeypatch):
    """``python -m mpq.studies.search_runs`` on a tiny supernet: the folder whole, the wall times in the stage
    record only, read back by ``load_search`` with its times in place; an output on a file refused first."""
    import yaml
    from mpq.data.datasets import make_splits
    from mpq.studies.search_runs import main
    from mpq.training.checkpoint import save_checkpoint
    from mpq.training.oneshot import run_meta, train_oneshot

    params = load_params(ROOT / "profiles/tiny.yaml")
    params["data"] |= {"train_size": 64, "score_size": 32, "calib_size": 32, "test_size": 64, "batch_size": 16}
    params["models"] = {"resnet20": {"width_mult": 0.25}}
    params["replicates"]["other_models"] = []                      # a model that is not searched has no replicates
    params["oneshot"] |= {"train_size": 32, "num_random_paths": 0, "scheduler": False, "w_bit_choices": [2, 3],
                          "a_bit_choices": [2, 3]}                  # a short walk from W3A3
    params["search"] |= {"score_size": 8, "random_samples": 2, "evo_population": 2}
    params["retrain_check"] = {"model": "resnet20", "level": 2.9, "uniform_bits": 2, "seeds": [0]}
    splits = make_splits("fashion_mnist", seed=0, train_size=64, score_size=32, calib_size=32, test_size=64)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cfg = OneShotConfig(**{**params["oneshot"], "w_bit_choices": (2, 3), "a_bit_choices": (2, 3)})
    cfg = cfg.for_model("resnet20")
    torch.manual_seed(0)
    float_model = create_model("resnet20", num_classes=10, width_mult=0.25)
    (tmp_path / "checkpoints/fp").mkdir(parents=True)
    save_checkpoint({"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "state_dict": float_model.state_dict()},
                    tmp_path / "checkpoints/fp/resnet20.pt")
    supernet = build_supernet(float_model, cfg.supernet_spec(), splits.calib, (1, 28, 28))
    train = splits.train.subset(torch.arange(32))
    train_oneshot(supernet, train, cfg, batch_size=16, pad=2, flip=True, seed=0, device=torch.device("cpu"),
                  checkpoint=tmp_path / "checkpoints/supernet/resnet20.pt", progress=False,
                  meta=run_meta("resnet20", 0.25, splits, train))
    (tmp_path / "a_file").write_text("")
    assert main(["--out", "a_file"]) == 2 and not (tmp_path / "reports").exists()       # refused before any work

    assert main(["--out", "checkpoints/search"]) == 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["fp", "search", "supernet"]  # no leftovers
    assert sorted(p.name for p in (tmp_path / "checkpoints/search").iterdir()) == ["predictions.npz", "result.json"]
    assert "second" not in (tmp_path / "checkpoints/search/result.json").read_text()
    record = read_stage_record("search")
    assert record["stage_seconds"] > 0 and record["cpu_capability"]
    times = record["timings"]["models"]["resnet20"]
    assert sorted(times["levels"]["2.9"]) == ["evolutionary", "greedy", "random", "retrained"]
    assert record["timings"]["retrain_check_seconds"] > 0
    run = load_search("checkpoints/search")
    r = run.results["resnet20"]
    assert list(r["levels"]) == [2.9] and r["greedy_seconds"] == times["greedy_seconds"]
    assert r["levels"][2.9]["retrained"]["train_seconds"] == times["levels"]["2.9"]["retrained"]
    assert run.check["seconds"] == record["timings"]["retrain_check_seconds"] and run.check["seeds"] == [0]
    assert torch.equal(run.labels, splits.test.labels) and run.scoring_images == 8 and run.seed == 0 and run.device == "cpu"
    judged = judge_retrained(run.results, run.labels)
    assert judged["resnet20"]["levels"][2.9]["retrained"]["verdict"]["n"] == 1


@pytest.mark.timeout(20)
def test_an_other_models_seeds_judge_c1_c6_and_f5_over_seeds(tmp_path):
    """replicates.other_models: the main run (random and evolutionary search included) and each replicate of
    ``checkpoints/model_replicates/<model>`` pool into C1, C6 and F5 verdicts over the seeds, paired per image where
    the predictions were kept."""
    from mpq.studies.search_results import load_model_seed_records, model_seeds_summary

    results = {"mbv2": {"levels": {3.5: {"greedy": entry(0.80), "random": entry(0.76), "evolutionary": entry(0.78),
                                         "retrained": {**entry(0.81), "epochs": 3, "no_retrain_minus_retrained": -0.01,
                                                       "paired_se": 0.01}}}}}
    metrics = {"supernet": {"mbv2": {"uniform": {"3": {"test_acc": 0.7}}}},
               "baselines": {"mbv2": {"3": {"test_acc": 0.72}}}}
    accs = {"greedy 3.5": 0.79, "random 3.5": 0.75, "evolutionary 3.5": 0.77, "retrained 3.5": 0.81,
            "supernet W3A3": 0.7, "LSQ W3A3": 0.72}
    for seed in (1, 2):
        folder = tmp_path / "mbv2" / f"seed-{seed}"
        write_json({"seed": seed, "model": "mbv2", "test_acc": accs, "test_images": IMAGES, "seconds": {},
                    "gaps": {"3.5": {"no_retrain_minus_retrained": -0.02, "paired_se": 0.01}}}, folder / "result.json")
        np.savez(folder / "predictions.npz", labels=np.zeros(IMAGES, dtype=np.int16),
                 **{k: preds_for(v).numpy().astype(np.int16) for k, v in accs.items()})
    records = load_model_seed_records(["mbv2"], 0, [1, 2], metrics["supernet"], metrics["baselines"], results, LABELS,
                                      tmp_path)
    assert [r["seed"] for r in records["mbv2"]] == [0, 1, 2]
    assert {"random 3.5", "evolutionary 3.5"} <= set(records["mbv2"][0]["correct"])
    out = model_seeds_summary(records)
    assert out["models"]["mbv2"]["seeds"] == [0, 1, 2]
    rows = {r["comparison"]: r for r in out["rows"]}
    assert list(rows) == ["greedy 3.5 minus retrained", "supernet W3A3 minus LSQ alone", "greedy 3.5 minus random",
                          "greedy 3.5 minus evolutionary"]
    f5 = rows["greedy 3.5 minus random"]
    assert f5["model"] == "mbv2" and f5["seeds"] == 3 and f5["pairing"] == "per image"
    assert f5["verdict"]["per_seed"] == pytest.approx([4.0, 4.0, 4.0]) and f5["verdict"]["expected"] == 1
    assert rows["greedy 3.5 minus retrained"]["verdict"]["per_seed"] == pytest.approx([-1.0, -2.0, -2.0])
    assert rows["supernet W3A3 minus LSQ alone"]["verdict"]["expected"] == 1     # C1: on par or above at W3A3
    assert out["note"].startswith("4 comparisons") and out["replicate_seconds"] == {"mbv2-1": {}, "mbv2-2": {}}
    assert model_seeds_summary({})["rows"] == []
    with pytest.raises(FileNotFoundError, match="seed-3"):
        load_model_seed_records(["mbv2"], 0, [3], metrics["supernet"], metrics["baselines"], results, LABELS, tmp_path)
