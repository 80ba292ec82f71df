"""Notebook 04's experiments (mpq.studies.search_results): tables, summary and findings on hand-written results,
and the search on a tiny untrained supernet."""
from __future__ import annotations

import json
import math
import random
from functools import partial

import pandas as pd
import pytest
import torch

from mpq.config import ModelSpec, SearchConfig, load_params
from mpq.method.cost import bitops, bitops_level, level_bitops
from mpq.models import create_model
from mpq.pages.plotting import budget_figure
from mpq.search.evaluation import make_scorer, search_space
from mpq.search.sampling import random_search
from mpq.search.space import cfg_to_json
from mpq.studies.search_results import (budget_lines, budget_summary, budget_tables, cost_rows, findings_lines,
                                        main_table_rows, main_tables, paired_rows, per_variant, retrain_greedy,
                                        search_lines, search_summary, search_supernet, seed_lines, seeds_summary,
                                        settings_lines, study_summary, validate_sections, write_configs)
from mpq.training.checkpoint import write_json
from mpq.training.oneshot import build_supernet
from mpq.training.recipe import OneShotConfig

pytestmark = pytest.mark.timeout(60)


def entry(acc: float, gbitops: float = 0.5, **extra) -> dict:
    return {"bit_cfg": {"conv1": [3, 4]}, "gbitops": gbitops, "level": 2.9, "size_mib": 0.25, "score": 2.0,
            "evaluations": 7, "search_seconds": 1.5, "test_acc": acc, "preds": torch.tensor([1, 2]), **extra}


def results_fixture() -> dict:
    """Two models: "a" with a retrained level 3 (gap -0.05 +- 0.01: below) and a level 2.5 (not retrained),
    "b" with one retrained level 4 (gap +0.001 +- 0.01: within two SE)."""
    retrained_a = {"test_acc": 0.80, "train_seconds": 10.0, "epochs": 3, "no_retrain_minus_retrained": -0.05,
                   "paired_se": 0.01}
    retrained_b = {"test_acc": 0.70, "train_seconds": 4.0, "epochs": 3, "no_retrain_minus_retrained": 0.001,
                   "paired_se": 0.01}
    return {
        "a": {"levels": {3: {"greedy": entry(0.75), "random": entry(0.74), "evolutionary": entry(0.76),
                             "retrained": retrained_a},
                         2.5: {"greedy": entry(0.60, 0.4), "random": entry(0.50), "evolutionary": entry(0.55)}},
              "greedy_seconds": 12.3, "start_bits": 4, "greedy_evaluations": 90, "total_macs": 1_000_000,
              "retrain_seconds": 10.04},
        "b": {"levels": {4: {"greedy": entry(0.701), "random": entry(0.69), "evolutionary": entry(0.70),
                             "retrained": retrained_b}},
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
    assert [(r["model"], r["BitOPs level"]) for r in paired] == [("a", 3), ("b", 4)]   # level 2.5 not retrained
    assert paired[0]["no-retrain minus retrained (points)"] == 100 * -0.05
    assert paired[0]["paired SE (points)"] == 100 * 0.01 and paired[0]["retrained (%)"] == 100 * 0.80
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


def test_search_summary_drops_predictions_and_bits(tmp_path):
    results = results_fixture()
    summary = search_summary(results, {"a": {"train_seconds": 1.0}, "b": {"train_seconds": 2.0}}, profile="tiny",
                             seed=0, device=torch.device("cpu"), test_images=256, scoring_images=64,
                             stage_seconds=3.0)
    assert list(summary) == ["profile", "seed", "device", "test_images", "scoring_images", "stage_seconds",
                             "supernet_train_seconds", "models"]
    assert summary["device"] == "cpu" and summary["supernet_train_seconds"] == {"a": 1.0, "b": 2.0}
    a = summary["models"]["a"]
    assert list(a) == ["greedy_seconds", "greedy_evaluations", "start_bits", "retrain_seconds", "levels"]
    assert a["retrain_seconds"] == 10.0 and list(a["levels"]) == ["3", "2.5"]
    assert list(a["levels"]["3"]) == ["greedy", "random", "evolutionary", "retrained"]
    assert "preds" not in a["levels"]["3"]["greedy"] and "bit_cfg" not in a["levels"]["3"]["greedy"]
    json.dumps(summary)                                          # plain data
    paths = write_configs(results, tmp_path)
    assert [p.name for p in paths] == ["a_level3.json", "a_level2.5.json", "b_level4.json"]
    config = json.loads(paths[0].read_text())
    assert config["model"] == "a" and config["target_level"] == 3 and config["bit_cfg"] == {"conv1": [3, 4]}
    assert "preds" not in config


def test_seed_budget_and_study_sections():
    records = [{"seed": 0, "test_acc": {}, "gaps": {}}, {"seed": 1, "seconds": {"supernet": 5.0}},
               {"seed": 2, "seconds": {"supernet": 6.0}}]
    table, pooled = pd.DataFrame([{"row": "x", "seeds": 3}]), pd.DataFrame([{"BitOPs level": "3"}])
    section = seeds_summary("resnet20", records, table, pooled)
    assert section["seeds"] == [0, 1, 2] and section["rows"] == [{"row": "x", "seeds": 3}]
    assert section["replicate_seconds"] == {"1": {"supernet": 5.0}, "2": {"supernet": 6.0}}   # not the main run's
    runs = [{"budget": 2, "seconds": 1}, {"budget": 4, "seconds": 2}]
    budget = budget_summary("resnet20", (2, 4), 3, 0, table, pooled, runs)
    assert budget["budgets"] == [1, 2, 4] and budget["seconds"] == {"x2": 1, "x4": 2}
    runs = [{"variant": v, "level": 3, "seed": s, "test_acc": acc, "search_seconds": 2.0 * s, "evaluations": 10,
             "found_level": 2.9} for v, s, acc in (("default", 1, 0.5), ("default", 0, 0.7), ("wide", 0, 0.6))]
    variants = per_variant(runs)
    assert list(variants.variant) == ["default", "wide"]
    assert variants["top-1 mean (%)"][0] == pytest.approx(60.0) and variants.seeds[0] == 2
    assert variants["search (s, whole walk)"][0] == 1.0
    study = {"model": "resnet20", "variants": [["default", 4, 3]], "stage_seconds": 9.0, "runs": runs}
    assert study_summary(study, pd.DataFrame(), variants)["seeds"] == [0, 1]


def test_budget_tables_pair_the_main_run_with_each_budget_run(tmp_path):
    main = {"seed": 0, "test_acc": {"supernet W2A2": 0.5, "LSQ W2A2": 0.45},
            "gaps": {"3": {"no_retrain_minus_retrained": -0.01}}}
    run = {"seed": 0, "budget": 2, "seconds": {"supernet": 1.0}, "test_acc": {"supernet W2A2": 0.6, "LSQ W2A2": 0.5},
           "gaps": {"3": {"no_retrain_minus_retrained": -0.02}}}
    write_json(run, tmp_path / "x2" / "result.json")
    runs, points, table = budget_tables([main], (2,), 3, tmp_path)
    assert runs == [run]
    assert list(points.comparison) == ["greedy 3 minus retrained", "supernet W2A2 minus LSQ alone"] * 2
    assert list(points["budget (x)"]) == [1, 1, 2, 2] and points.points[0] == pytest.approx(-1.0)
    assert points.points[3] == pytest.approx(10.0)
    assert list(zip(table.comparison, table["budget (x)"], table.epochs)) == [
        ("greedy 3 minus retrained", 1, 3), ("greedy 3 minus retrained", 2, 6),
        ("supernet W2A2 minus LSQ alone", 1, 3), ("supernet W2A2 minus LSQ alone", 2, 6)]
    with pytest.raises(FileNotFoundError, match="budget@4"):
        budget_tables([main], (4,), 3, tmp_path)


def test_search_lines_verdicts_and_wins():
    lines = search_lines(results_fixture(), random_samples=40, evo_evaluations=36)
    assert lines[0] == ("a: level 3: 75.00% with no retraining, -5.00 ± 1.00 points against the same configuration "
                        "retrained (below it); level 2.5: 60.00% with no retraining")
    assert lines[1].endswith("+0.10 ± 1.00 points against the same configuration retrained "
                             "(within two paired SE of it)")
    # greedy >= both others at a/2.5 (0.60) and b/4 (0.701), not at a/3 (0.75 < 0.76)
    assert "at 2 of 3 model-levels" in lines[2] and "(the whole walk: 40-90)" in lines[2]
    assert "random (40) or evolutionary search (36)" in lines[2]


def test_seed_and_budget_lines():
    pooled = pd.DataFrame([{"BitOPs level": "3", "seeds": 3, "no-retrain minus retrained (points)": -1.234,
                            "95% interval low": -2.0, "95% interval high": -0.5, "per seed": "-1 / -1 / -2",
                            "verdict": "retrained is better"}])
    lines = seed_lines(pooled, "resnet20")
    assert lines[0] == ("resnet20, 3 training seeds, level 3: no-retrain minus retrained -1.23 points, 95% interval "
                        "over seeds [-2.00, -0.50] (per seed -1 / -1 / -2): retrained is better")
    assert len(lines) == 2 and "one seed each" in lines[1]
    table = pd.DataFrame([{"comparison": "greedy 3 minus retrained", "budget (x)": 1, "epochs": 3, "seeds": 2,
                           "mean (points)": -1.0, "SD over seeds": 0.5},
                          {"comparison": "greedy 3 minus retrained", "budget (x)": 2, "epochs": 6, "seeds": 1,
                           "mean (points)": 0.25, "SD over seeds": math.nan}])
    points = pd.DataFrame([{"budget (x)": 1, "seed": 0, "comparison": "greedy 3 minus retrained", "points": -1.5},
                           {"budget (x)": 1, "seed": 1, "comparison": "greedy 3 minus retrained", "points": -0.5},
                           {"budget (x)": 2, "seed": 0, "comparison": "greedy 3 minus retrained", "points": 0.25},
                           {"budget (x)": 1, "seed": 0, "comparison": "supernet W2A2 minus LSQ alone", "points": 2.0}])
    assert budget_lines(table, points, seed=0) == [
        "F7, greedy 3 minus retrained: -1.00 points at 3 epochs (mean of 2 seeds, SD 0.50; seed 0 -1.50); "
        "+0.25 at 6 epochs (seed 0 only)"]
    fig = budget_figure(points, budgets=(2,), epochs=3, seed=0, model="resnet20", profile="tiny", seeds=[0, 1])
    assert len(fig.axes) == 2 and "lines follow seed 0 (the only seed at 6 epochs)" in fig._suptitle.get_text()
    fig = budget_figure(points[points["budget (x)"] == 1], budgets=(), epochs=3, seed=0, model="resnet20",
                        profile="tiny", seeds=[0, 1])
    assert "no larger budget" in fig._suptitle.get_text()


def settings_table(*verdicts: str) -> pd.DataFrame:
    rows = [{"setting": "random, equal evaluations", "BitOPs level": 3, "minus default (points)": -0.5,
             "paired SE per seed": "0.40", "95% interval low": math.nan, "95% interval high": math.nan,
             "verdict": "one seed", "search time x default": math.nan}]
    rows += [{"setting": f"score {i}", "BitOPs level": 3, "minus default (points)": 1.0, "paired SE per seed": "0.4",
              "95% interval low": 0.5, "95% interval high": 1.5, "verdict": v, "search time x default": 2.0}
             for i, v in enumerate(verdicts)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("verdicts, start", [
    ((), "S1: no alternative search setting in the tiny profile"),
    (("no difference",), "No alternative search setting found better configurations beyond the seed spread: the"),
    (("lower (beyond)",), "No alternative search setting found better configurations beyond the seed spread "
                          "(worse: score 0 at level 3)"),
    (("higher (beyond)",), "Better configurations beyond the seed spread with score 0 at level 3, worse nowhere"),
    (("higher (beyond)", "lower (beyond)"), "Mixed: better configurations beyond the seed spread with score 0 at "
                                            "level 3, worse with score 1 at level 3")])
def test_settings_lines_verdict_over_the_alternatives(verdicts, start):
    lines = settings_lines(settings_table(*verdicts), "resnet20", [0, 1], seed=0, profile="tiny")
    assert lines[0] == ("F5 at equal search compute (resnet20, seed 0): random, equal evaluations minus greedy: "
                        "level 3 -0.50 ± 0.40 points (paired SE: test-set noise only, one seed)")
    assert len(lines) == 2 + len(verdicts) and lines[-1].startswith(start)
    if verdicts:
        assert lines[1] == (f"Search setting 'score 0' (resnet20, seeds [0, 1]) minus the default: level 3 +1.00 "
                            f"[+0.50, +1.50] ({verdicts[0]}); search time x2.0")


def test_findings_lines_add_f7_only_with_larger_budgets():
    results, pooled, settings = results_fixture(), pd.DataFrame(), settings_table()
    table = pd.DataFrame([{"comparison": "c", "budget (x)": 1, "epochs": 3, "seeds": 1, "mean (points)": 0.0,
                           "SD over seeds": 0.0}])
    points = pd.DataFrame([{"budget (x)": 1, "seed": 0, "comparison": "c", "points": 0.0}])
    kw = dict(model="resnet20", seed=0, profile="tiny", epochs=3, random_samples=4, evo_evaluations=4,
              study_model="resnet20", study_seeds=[0])
    without = findings_lines(results, pooled, table, points, settings, budgets=(), **kw)
    with_budgets = findings_lines(results, pooled, table, points, settings, budgets=(2,), **kw)
    assert without[:3] == search_lines(results, 4, 4) and without[-1].startswith("F7: no training budget")
    assert len(with_budgets) == len(without) + 1 and with_budgets[4].startswith("F7, c: +0.00 points at 3 epochs")
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
