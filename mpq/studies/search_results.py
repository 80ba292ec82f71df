"""Notebook 04's tables, verdicts, summary and findings (claims C5-C6; paper Tables 2-4, Figures 5-6; F7 and S1
beyond the paper), from what the search stage saved (``mpq.studies.search_runs``: the searches, the retrained
greedy configurations, the retraining check).

Each is a function from plain data to plain data (records, data frames), so notebook 04 only narrates. Every
comparison is judged by ``mpq.studies.stats`` (both noise sources, the paper's direction, the table's count of
comparisons); the findings are written from ``reports/metrics/search.json``'s content (``summary``).

``results`` (``mpq.studies.search_runs``, then ``judge_retrained``) maps model -> {"levels": {level: {method:
entry}}, "greedy_seconds", "start_bits", "greedy_evaluations", "total_macs", "retrain_seconds"}, methods
"greedy", "random", "evolutionary" and, once retrained, "retrained" (with its verdict).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from mpq.studies.replicate_tables import (RETRAIN_EXPECTED, SAMPLING_EXPECTED, budget_points, budget_rows,
                                          comparison_verdict, load_budget_runs, load_replicates, main_run_record,
                                          pairing, pool_gaps, read_correct, record_comparisons, seed_comparisons,
                                          seed_rows)
from mpq.studies.search_runs import METHODS
from mpq.studies.search_study import EQUAL_COMPUTE, pred_key
from mpq.studies.stats import MIN_SEEDS, Verdict, family_counts, json_ready, paired_verdict, rows_note, verdict
from mpq.studies.supernets import PREDICTIONS
from mpq.training.checkpoint import write_json


# ---------------------------------------------------------------------------------------------------
# set-up

def stage_metrics(root: str | Path = "reports/metrics") -> tuple[dict, dict, dict]:
    """The ``models`` entries of the earlier stages' metrics: fp.json, supernet.json, baselines.json."""
    return tuple(json.loads((Path(root) / f"{name}.json").read_text())["models"]
                 for name in ("fp", "supernet", "baselines"))


def load_study(path: str | Path = "checkpoints/search_study/result.json") -> dict:
    """The search_study stage's result (``mpq.studies.search_study``)."""
    return json.loads(Path(path).read_text())


def load_study_correct(folder: str | Path, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """The search_study stage's per-image correctness (``folder/predictions.npz``; keys ``search_study.pred_key``),
    checked against the test ``labels``; empty where the stage kept no predictions."""
    path = Path(folder) / "predictions.npz"
    return read_correct(path, labels.numpy()) if path.is_file() else {}


def judge_retrained(results: Mapping[str, Mapping], labels: torch.Tensor) -> dict[str, dict]:
    """``results`` with each retrained level's one-run verdict on no-retrain minus retrained, paired over the test
    images (``labels``; ``RETRAIN_EXPECTED``: the paper claims at least on par), in the place notebook 04 always
    had it (after the paired SE); ``results`` is left as it was."""
    out = {}
    for name, r in results.items():
        levels = {}
        for level, e in r["levels"].items():
            if "retrained" not in e:
                levels[level] = e
                continue
            re = e["retrained"]
            v = paired_verdict((e["greedy"]["preds"] == labels).numpy(), (re["preds"] == labels).numpy(),
                               RETRAIN_EXPECTED)
            levels[level] = {**e, "retrained": {**{k: x for k, x in re.items() if k not in ("preds", "health")},
                                                "verdict": v.as_dict(), "preds": re["preds"], "health": re["health"]}}
        out[name] = {**r, "levels": levels}
    return out


# ---------------------------------------------------------------------------------------------------
# tables, configurations and the summary

def main_table_rows(results: Mapping[str, Mapping], fp_metrics: Mapping, base_metrics: Mapping) -> list[dict]:
    """T2-T4's rows per model: full precision, uniform LSQ trained alone (by bits), then per level the three
    searches with no retraining and the retrained greedy configuration."""
    rows = []
    for name, r in results.items():
        rows.append({"model": name, "method": "full precision", "uniform W/A bits": "32/32", "BitOPs level": None,
                     "top-1 (%)": 100 * fp_metrics[name]["test_acc"], "G-BitOPs": 32 * 32 * r["total_macs"] / 1e9,
                     "size (MiB)": None, "training epochs": None, "search (s)": None, "training (s)": None})
        for bits, b in sorted(base_metrics[name].items()):
            rows.append({"model": name, "method": "uniform LSQ (trained alone)", "uniform W/A bits": f"{bits}/{bits}",
                         "BitOPs level": None, "top-1 (%)": 100 * b["test_acc"], "G-BitOPs": b["gbitops"],
                         "size (MiB)": b["size_mib"], "training epochs": b["epochs"], "search (s)": None,
                         "training (s)": b["train_seconds"]})
        for level, e in r["levels"].items():
            for method in METHODS:
                m = e[method]
                rows.append({"model": name, "method": f"{method} search, no retraining", "uniform W/A bits": None,
                             "BitOPs level": level, "top-1 (%)": 100 * m["test_acc"], "G-BitOPs": m["gbitops"],
                             "size (MiB)": m["size_mib"], "training epochs": 0, "search (s)": m["search_seconds"],
                             "training (s)": 0})
            if "retrained" in e:
                rows.append({"model": name, "method": "greedy configuration, retrained", "uniform W/A bits": None,
                             "BitOPs level": level, "top-1 (%)": 100 * e["retrained"]["test_acc"],
                             "G-BitOPs": e["greedy"]["gbitops"], "size (MiB)": e["greedy"]["size_mib"],
                             "training epochs": e["retrained"]["epochs"], "search (s)": e["greedy"]["search_seconds"],
                             "training (s)": e["retrained"]["train_seconds"]})
    return rows


def main_tables(main_table: pd.DataFrame, ids: Sequence[str] = ("T2", "T3", "T4")) -> dict[str, pd.DataFrame]:
    """T2-T4 for display: caption "<id>: <model>" -> that model's rows without the model column (models in
    order, as many as ``ids``)."""
    return {f"{paper_id}: {name}": rows.drop(columns="model")
            for paper_id, (name, rows) in zip(ids, main_table.groupby("model", sort=False))}


def paired_rows(results: Mapping[str, Mapping]) -> list[dict]:
    """The paired comparison per retrained model-level: no retraining and retrained top-1 (%), and the verdict on
    their difference on the same test images (one run: test-image noise only)."""
    return [{"model": n, "BitOPs level": str(l), "no retraining (%)": 100 * e["greedy"]["test_acc"],
             "retrained (%)": 100 * e["retrained"]["test_acc"], "verdict": e["retrained"]["verdict"]}
            for n, r in results.items() for l, e in r["levels"].items() if "retrained" in e]


def sampling_verdicts(results: Mapping[str, Mapping], labels: torch.Tensor) -> list[dict]:
    """F5 judged: per model-level, greedy minus random and minus evolutionary search at equal BitOPs, one run each,
    paired over the test images (``labels``). ``SAMPLING_EXPECTED`` +1: the paper's Figure 5 puts its greedy
    search above both. Their search compute differs (``search_evaluations``)."""
    rows = []
    for name, r in results.items():
        for level, e in r["levels"].items():
            greedy = (e["greedy"]["preds"] == labels).numpy()
            for other in METHODS[1:]:
                v = paired_verdict(greedy, (e[other]["preds"] == labels).numpy(), SAMPLING_EXPECTED)
                rows.append({"model": name, "BitOPs level": str(level), "comparison": f"greedy minus {other}",
                             "evaluations (greedy / other)": f"{e['greedy']['evaluations']} / {e[other]['evaluations']}",
                             "verdict": v.as_dict()})
    return rows


def search_evaluations(models: Mapping[str, Mapping]) -> dict[str, list[int]]:
    """The forward evaluations each search spent, as its results recorded them (``models``: ``results`` or
    search.json's "models"): per method the fewest and most over model-levels behind one level's result (greedy:
    counted along its walk up to that level; evolutionary: its first population too), and the fewest and most of a
    whole greedy walk, which serves every level. The one source of these counts for notebook 04's findings and
    the entry page (search.json's "evaluations")."""
    per = {m: [e[m]["evaluations"] for r in models.values() for e in r["levels"].values()] for m in METHODS}
    walks = [r["greedy_evaluations"] for r in models.values()]
    return {**{m: [min(v), max(v)] for m, v in per.items()}, "greedy walk": [min(walks), max(walks)]}


def cost_rows(results: Mapping[str, Mapping], sn_metrics: Mapping) -> list[dict]:
    """Search cost next to training cost per model: the greedy walk's evaluations and seconds, one supernet
    training, and retraining every level."""
    return [{"model": n, "greedy walk: forward evaluations": r["greedy_evaluations"],
             "greedy walk (s)": r["greedy_seconds"], "one supernet training (s)": sn_metrics[n]["train_seconds"],
             "retraining every level (s)": round(r["retrain_seconds"], 1)} for n, r in results.items()]


def write_configs(results: Mapping[str, Mapping], root: str | Path = "reports/configs") -> list[Path]:
    """Each greedy configuration as ``root/<model>_level<L>.json`` (bits, BitOPs, size, accuracy); the paths."""
    paths = []
    for name, r in results.items():
        for level, e in r["levels"].items():
            g = e["greedy"]
            path = Path(root) / f"{name}_level{level}.json"
            write_json({"model": name, "target_level": level, **{k: v for k, v in g.items() if k != "preds"}}, path)
            paths.append(path)
    return paths


def search_summary(results: Mapping[str, Mapping], sn_metrics: Mapping, *, profile: str, seed: int, device: Any,
                   labels: torch.Tensor, scoring_images: int, stage_seconds: float) -> dict:
    """``reports/metrics/search.json`` before its seed, budget and search-setting sections: the run's scale, per
    model the greedy walk and every method's measurements per level (no predictions or bits), the searches'
    evaluations (``search_evaluations``) and two tables of verdicts, each with its note: no retraining minus
    retrained (``paired_rows``) and greedy minus the sampling searches (``sampling_verdicts``; ``labels``: the
    test labels). Strict JSON (no NaN)."""
    paired, sampling = paired_rows(results), sampling_verdicts(results, labels)
    return json_ready({
        "profile": profile, "seed": seed, "device": str(device), "test_images": len(labels),
        "scoring_images": scoring_images, "stage_seconds": stage_seconds,
        "supernet_train_seconds": {n: sn_metrics[n]["train_seconds"] for n in results},
        "models": {n: {"greedy_seconds": r["greedy_seconds"], "greedy_evaluations": r["greedy_evaluations"],
                       "start_bits": r["start_bits"],
                       "retrain_seconds": round(r["retrain_seconds"], 1),
                       "levels": {str(l): {m: {k: v for k, v in e.items() if k not in ("preds", "bit_cfg")}
                                           for m, e in lv.items()} for l, lv in r["levels"].items()}}
                   for n, r in results.items()},
        "evaluations": search_evaluations(results),
        "retrained": {"rows": paired, "note": rows_note(paired)},
        "f5": {"rows": sampling, "note": rows_note(sampling)}})


# ---------------------------------------------------------------------------------------------------
# T2 with seeds, F7 (training budget) and S1 (search settings)

MAIN_PREDICTIONS = ("checkpoints/supernet", "checkpoints/baselines")   # the supernet and baselines stages' folders


def main_correct(model: str, labels: torch.Tensor, folders: Sequence[str | Path] = MAIN_PREDICTIONS
                 ) -> dict[str, np.ndarray]:
    """The main run's per-image correctness of ``model``'s uniform supernet rows and LSQ models, from the
    predictions the supernet and baselines stages keep in ``folders`` (``supernets.save_predictions``); a folder
    without the file adds nothing (that row's comparisons then say how they were paired)."""
    correct = {}
    for folder in folders:
        path = Path(folder) / PREDICTIONS.format(model=model)
        if path.is_file():
            correct |= read_correct(path, labels.numpy())
    return correct


def load_seed_records(model: str, seed: int, seeds: Sequence[int], sn_metrics: Mapping, base_metrics: Mapping,
                      results: Mapping[str, Mapping], labels: torch.Tensor,
                      root: str | Path = "checkpoints/replicates",
                      predictions: Sequence[str | Path] = MAIN_PREDICTIONS) -> list[dict]:
    """T2 of ``model`` over training seeds: the main run (``results``, with its greedy and retrained predictions on
    the test images, ``labels``, and its uniform supernet and LSQ predictions from ``predictions``, ``main_correct``)
    in a replicate's shape, then each replicate of ``seeds`` (``root/seed-<s>``, with its predictions), so the
    comparisons pair over images exactly."""
    levels = {str(lv): e for lv, e in results[model]["levels"].items()}
    correct = {f"{arm} {lv}": (e[arm]["preds"] == labels).numpy() for lv, e in levels.items()
               for arm in ("greedy", "retrained", *METHODS[1:]) if "preds" in e.get(arm, {})}
    correct |= main_correct(model, labels, predictions)
    main = main_run_record(model, seed, sn_metrics, base_metrics, {model: {"levels": levels}},
                           test_images=len(labels), correct=correct)
    return [main, *load_replicates(root, seeds)]


def load_model_seed_records(models: Sequence[str], seed: int, seeds: Sequence[int], sn_metrics: Mapping,
                            base_metrics: Mapping, results: Mapping[str, Mapping], labels: torch.Tensor,
                            root: str | Path = "checkpoints/model_replicates",
                            predictions: Sequence[str | Path] = MAIN_PREDICTIONS) -> dict[str, list[dict]]:
    """``load_seed_records`` of each model of ``replicates.other_models``: its main run and its replicates
    (``root/<model>/seed-<s>``, the ``model_replicate`` stages); model -> records."""
    return {m: load_seed_records(m, seed, seeds, sn_metrics, base_metrics, results, labels, Path(root) / m,
                                 predictions) for m in models}


def c1_records(results: Mapping[str, Mapping], seeded: Mapping[str, Sequence[Mapping]], seed: int,
               sn_metrics: Mapping, base_metrics: Mapping, labels: torch.Tensor,
               predictions: Sequence[str | Path] = MAIN_PREDICTIONS) -> dict[str, list[dict]]:
    """C1's records per model of ``results``, in its order: the model's records over training seeds where
    ``seeded`` holds them (``load_seed_records``, ``load_model_seed_records``), else its main run alone."""
    return {m: list(seeded[m]) if m in seeded else
            load_seed_records(m, seed, [], sn_metrics, base_metrics, results, labels, predictions=predictions)
            for m in results if m in sn_metrics and m in base_metrics}


def c1_summary(records: Mapping[str, Sequence[Mapping]]) -> dict:
    """search.json's "c1" section (claim C1): per model (``records``: ``c1_records``) and uniform bit-width, the
    supernet minus LSQ trained alone, judged over the model's seeds (``comparison_verdict``: per image where every
    record keeps both rows' predictions, a two-way analysis of the seed-by-image matrix; one run: its paired
    interval, not judged) in C1's direction (``replicate_tables.uniform_expected``), with the table's note."""
    rows = []
    for model, recs in records.items():
        for what, arm, ref, expected in record_comparisons(recs[0]):
            if not arm.startswith("supernet W") or not all(arm in r["test_acc"] and ref in r["test_acc"]
                                                           for r in recs):
                continue
            v = comparison_verdict(recs, arm, ref, expected)
            rows.append({"model": model, "bits": arm[len("supernet "):], "seeds": [r["seed"] for r in recs],
                         "pairing": pairing(recs, arm, ref), "verdict": v.as_dict()})
    return json_ready({"rows": rows, "note": rows_note(rows) if rows else "no model with both a supernet and an "
                       "LSQ baseline at one uniform bit-width"})


def model_seeds_summary(records: Mapping[str, Sequence[Mapping]]) -> dict:
    """search.json's "model_seeds" section: per model of ``replicates.other_models`` (``records``:
    ``load_model_seed_records``) the seeds, every row's spread over them and the C1, C6 and F5 comparisons judged
    over them (``seed_comparisons``); then every model's comparisons in one table (``rows``, with the model), its
    note, and each replicate's seconds ("<model>-<seed>", for the entry page's timing table)."""
    models, flat = {}, []
    for model, recs in records.items():
        rows = seed_comparisons(recs)
        models[model] = {"seeds": [r["seed"] for r in recs], "rows": seed_rows(recs), "comparisons": rows}
        flat += [{"model": model, **r} for r in rows]
    seconds = {f"{model}-{r['seed']}": r["seconds"] for model, recs in records.items() for r in recs[1:]}
    return json_ready({"models": models, "rows": flat, "note": rows_note(flat) if flat else
                       "this profile repeats no other model over seeds", "replicate_seconds": seconds})


def seed_tables(records: Sequence[Mapping]) -> tuple[pd.DataFrame, list[dict]]:
    """T2 over training seeds (per row: mean, SD, per-seed values) and the no-retrain minus retrained verdict per
    level (``mpq.studies.replicate_tables.pool_gaps``)."""
    return pd.DataFrame(seed_rows(records)), pool_gaps(records)


def seeds_summary(model: str, records: Sequence[Mapping], table: pd.DataFrame, pooled: Sequence[Mapping]) -> dict:
    """search.json's "seeds" section: the seeds, T2 over seeds, the pooled gaps with their note and the
    replicates' seconds."""
    comparisons = seed_comparisons(records)
    return json_ready({"model": model, "seeds": [r["seed"] for r in records],
                       "rows": table.to_dict(orient="records"), "gaps": list(pooled), "note": rows_note(pooled),
                       "comparisons": comparisons, "comparisons_note": rows_note(comparisons) if comparisons else "",
                       "replicate_seconds": {str(r["seed"]): r["seconds"] for r in records[1:]}})


def budget_tables(records: Sequence[Mapping], budgets: Sequence[int], epochs: int,
                  root: str | Path = "checkpoints/budget") -> tuple[list[dict], pd.DataFrame, list[dict]]:
    """F7's data: the budget runs (``root/x<b>``), the points of ``records`` (main run and seed replicates) and of
    those runs, and the verdicts per comparison and budget (``epochs``: the default budget's)."""
    runs = load_budget_runs(root, budgets)
    return runs, pd.DataFrame(budget_points([*records, *runs])), budget_rows([*records, *runs], epochs)


def budget_summary(model: str, budgets: Sequence[int], epochs: int, seed: int, rows: Sequence[Mapping],
                   points: pd.DataFrame, runs: Sequence[Mapping]) -> dict:
    """search.json's "budget" section (F7), with the note of its verdicts."""
    return json_ready({"model": model, "budgets": [1, *budgets], "epochs": epochs, "seed": seed,
                       "rows": list(rows), "note": rows_note(rows), "points": points.to_dict(orient="records"),
                       "seconds": {f"x{r['budget']}": r["seconds"] for r in runs}})


def study_rows(result: Mapping, correct: Mapping[str, np.ndarray] | None = None) -> list[dict]:
    """S1 judged: per (alternative, level) of the search_study result, the test accuracy minus the default's
    (points) over the seeds searched, and the search time and evaluations relative to the default's (mean over
    seeds of the per-seed ratios). With the stage's per-image correctness (``correct``: ``load_study_correct``) the
    verdict is the two-way analysis of the seed-by-image matrix (``paired_verdict``: each noise part once);
    without it, from the per-seed paired SEs (``verdict``, an upper bound), as the "pairing" column says.

    Directions: random and evolutionary search given the greedy walk's evaluations, minus greedy: -1 (the
    paper's greedy search is the better one, F5); another scoring-set size or start: 0 (the paper fixes its
    settings without claiming what others would do: "higher"/"lower").
    """
    runs = result["runs"]
    default = {(r["seed"], r["level"]): r for r in runs if r["variant"] == "default"}
    rows = []
    for name in [v[0] for v in result["variants"] if v[0] != "default"]:
        for level in result["levels"]:
            group = [r for r in runs if r["variant"] == name and r["level"] == level]
            if not group:
                continue
            expected = -SAMPLING_EXPECTED if name in EQUAL_COMPUTE else 0
            arms = [pred_key(r["seed"], name, level) for r in group]
            refs = [pred_key(r["seed"], "default", level) for r in group]
            exact = correct is not None and all(k in correct for k in arms + refs)
            if exact:
                v = paired_verdict(np.stack([correct[k] for k in arms]), np.stack([correct[k] for k in refs]),
                                   expected)
            else:
                v = verdict([100 * r["minus_default"] for r in group], [100 * r["paired_se"] for r in group],
                            expected=expected)
            base = [default[(r["seed"], level)] for r in group]
            rows.append({"setting": name, "BitOPs level": level, "seeds": len(group),
                         "paired SE per seed": " / ".join(f"{100 * r['paired_se']:.2f}" for r in group),
                         "pairing": "per image" if exact else "per-seed SEs (an upper bound)",
                         # the greedy rows time the whole walk (every level); the equal-compute ones one level
                         "search time x default": math.nan if name in EQUAL_COMPUTE else float(np.mean(
                             [r["search_seconds"] / b["search_seconds"] for r, b in zip(group, base)])),
                         "evaluations x default": float(np.mean([r["evaluations"] / r.get("greedy_evaluations",
                                                                                           b["evaluations"])
                                                                 for r, b in zip(group, base)])),
                         "verdict": v.as_dict()})
    return rows


def study_tables(study: Mapping, correct: Mapping[str, np.ndarray] | None = None) -> tuple[list[dict], pd.DataFrame]:
    """S1's tables from the search_study result: each alternative minus the default per level, judged over seeds
    (``study_rows``, per image with ``correct``), and each setting's means (``per_variant``)."""
    return study_rows(study, correct), per_variant(study["runs"])


def per_variant(runs: Sequence[Mapping]) -> pd.DataFrame:
    """S1: each search setting per level, mean over seeds: top-1 (%), whole-walk seconds, evaluations and the
    BitOPs level found (``runs``: the search_study result's "runs")."""
    return (pd.DataFrame(runs).groupby(["variant", "level"], sort=False)
            .agg(seeds=("seed", "nunique"), top1=("test_acc", lambda v: 100 * v.mean()),
                 search_s=("search_seconds", "mean"), evaluations=("evaluations", "mean"),
                 found_level=("found_level", "mean")).reset_index()
            .rename(columns={"top1": "top-1 mean (%)", "search_s": "search (s, whole walk)",
                             "found_level": "found BitOPs level"}))


def study_summary(study: Mapping, settings: Sequence[Mapping], variants: pd.DataFrame) -> dict:
    """search.json's "search_study" section (S1): the study's model, variants, seeds, the verdicts with their note
    and each setting's means."""
    return json_ready({"model": study["model"], "variants": study["variants"], "stage_seconds": study["stage_seconds"],
                       "seeds": sorted(pd.DataFrame(study["runs"]).seed.unique().tolist()),
                       "rows": list(settings), "note": rows_note(settings),
                       "per_variant": variants.to_dict(orient="records")})


# ---------------------------------------------------------------------------------------------------
# findings: written from search.json's content (``summary``), as the entry page is

def _span(lo_hi: Sequence[int]) -> str:
    lo, hi = lo_hi
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _counts(rows: Sequence[Mapping]) -> str:
    """The rows' words after Holm over the rows, the unadjusted count beside them (``stats.family_counts``)."""
    return family_counts([Verdict.from_dict(r["verdict"]) for r in rows])


def search_lines(summary: Mapping) -> list[str]:
    """Per model its levels' no-retraining accuracy and its verdict against the same configuration retrained
    (one run), the count of those verdicts, then F5: greedy minus random and evolutionary search (one run each)
    with the searches' evaluations (``search_evaluations``)."""
    lines = []
    for name, r in summary["models"].items():
        parts = []
        for level, e in r["levels"].items():
            text = f"level {level}: {100 * e['greedy']['test_acc']:.2f}% with no retraining"
            if "retrained" in e:
                text += f", minus the same configuration retrained {e['retrained']['verdict']['text']}"
            parts.append(text)
        lines.append(f"{name}: " + "; ".join(parts))
    if summary["retrained"]["rows"]:
        lines.append("C6, no retraining minus retrained, one run per model-level (the paper: at least on par; "
                     f"one run is not judged): {_counts(summary['retrained']['rows'])}; "
                     f"{summary['retrained']['note']}.")
    f5, ev = summary["f5"], summary["evaluations"]
    parts = [f"{what}: {_counts([r for r in f5['rows'] if r['comparison'] == what])}"
             for what in dict.fromkeys(r["comparison"] for r in f5["rows"])]
    lines.append(f"F5, greedy search minus random and evolutionary search at equal BitOPs, one run each (the paper: "
                 f"greedy ahead): {'; '.join(parts)}; {f5['note']}. Search compute is not equal: greedy spent "
                 f"{_span(ev['greedy'])} forward evaluations up to a level's result (one walk of "
                 f"{_span(ev['greedy walk'])} serves every level), random {_span(ev['random'])}, evolutionary "
                 f"{_span(ev['evolutionary'])}.")
    return lines


def seed_lines(seeds: Mapping) -> list[str]:
    """C6 over training seeds (search.json's "seeds"): per level the verdict on no-retrain minus retrained, with
    every seed's value, and the table's note."""
    lines = [f"{seeds['model']}, training seeds {seeds['seeds']}, level {g['BitOPs level']}: no-retrain minus "
             f"retrained {g['verdict']['text']} (per seed {' / '.join(f'{d:+.2f}' for d in g['verdict']['per_seed'])})"
             for g in seeds["gaps"]]
    return lines + [f"T2 with seeds: {seeds['note']}. The other models' gaps are one run each: test-image noise "
                    "only, no training noise."]


def budget_lines(budget: Mapping) -> list[str]:
    """F7 per comparison (search.json's "budget"): the default budget's verdict over seeds, then each larger
    budget's (the main seed only: its paired interval)."""
    lines = []
    rows = budget["rows"]
    for what in dict.fromkeys(r["comparison"] for r in rows):
        got = [r for r in rows if r["comparison"] == what]
        lines.append(f"F7, {what}: " + "; ".join(
            f"at {r['epochs']} epochs {r['verdict']['text']} (per seed {r['per seed (seed: points)']})" for r in got))
    return (lines + [f"F7: {budget['note']}."]) if lines else lines


def _where(rows: Sequence[Mapping]) -> str:
    return ", ".join(f"{r['setting']} at level {r['BitOPs level']}" for r in rows)


def settings_lines(study: Mapping, seed: int, profile: str) -> list[str]:
    """S1 (search.json's "search_study"): each alternative search setting minus the default per level (the
    equal-compute random and evolutionary rows: F5 at equal search compute), the conclusion over the
    alternatives, and the table's note."""
    lines, rows = [], study["rows"]
    for name in dict.fromkeys(r["setting"] for r in rows):
        got = [r for r in rows if r["setting"] == name]
        levels = "; ".join(f"level {r['BitOPs level']} {r['verdict']['text']}" for r in got)
        if name in EQUAL_COMPUTE:
            lines.append(f"F5 at equal search compute ({study['model']}, seed {seed}): {name} minus greedy (the "
                         f"paper: lower): {levels}")
        else:
            lines.append(f"Search setting '{name}' ({study['model']}, seeds {study['seeds']}) minus the default: "
                         f"{levels}; search time x{np.mean([r['search time x default'] for r in got]):.1f}")
    alternatives = [r for r in rows if r["setting"] not in EQUAL_COMPUTE]
    judged = [r for r in alternatives if Verdict.from_dict(r["verdict"]).judged]
    better = [r for r in judged if r["verdict"]["word"] == "higher"]
    worse = [r for r in judged if r["verdict"]["word"] == "lower"]
    if not alternatives:
        lines.append(f"S1: the {profile} profile lists no alternative search setting (no other number of scoring "
                     "images, no other start); profiles/large.yaml compares its settings with the default profile's.")
    elif not judged:
        lines.append(f"The alternative search settings rest on fewer than {MIN_SEEDS} seeds each: not judged.")
    elif not better:
        lines.append("No alternative search setting found better configurations clear of zero"
                     + (f" (worse: {_where(worse)})" if worse else "") + ": the cheaper defaults stand.")
    elif not worse:
        lines.append(f"Better configurations clear of zero with {_where(better)}, worse nowhere: worth the search "
                     "time where the budget allows.")
    else:
        lines.append(f"Mixed: better configurations clear of zero with {_where(better)}, worse with {_where(worse)}; "
                     "no alternative is better at every level, so the cheaper defaults stand.")
    return lines + ([f"S1: {study['note']}."] if rows else [])


def findings_lines(summary: Mapping, *, seed: int, profile: str, budgets: Sequence[int], epochs: int) -> list[str]:
    """Notebook 04's findings (C5-C6, T2-T4, F5-F7, S1), written from search.json's content (``summary``):
    ``search_lines``, ``seed_lines``, ``budget_lines`` (only with larger ``budgets``), ``settings_lines`` and F7's
    caveat."""
    lines = search_lines(summary) + seed_lines(summary["seeds"])
    if budgets:          # without larger budgets, F7's default-budget points are the C6 lines above
        lines += budget_lines(summary["budget"])
    lines += settings_lines(summary["search_study"], seed, profile)
    if budgets:
        lines.append("F7 has one seed per larger budget: its interval there holds the test images' noise only, not "
                     f"the training noise that the seeds at {epochs} epochs show.")
    else:
        lines.append(f"F7: the {profile} profile runs no training budget beyond the default; profiles/large.yaml "
                     "runs it.")
    return lines
