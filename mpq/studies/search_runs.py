"""The search stage: every model's supernet searched, the greedy configurations retrained, and the retraining check
(claims C5-C6; what notebook 04 shows).

For each model: the bidirectional greedy search, random and evolutionary search on the same supernet, scoring
subset and cost accounting; every chosen configuration measured on the test images with no retraining (BN
recalibrated only); the greedy configurations retrained from the FP checkpoint with the uniform baselines' recipe
(paired difference on the same test images); then ``mpq.studies.retrain_check``. This module only computes and
saves plain results: nothing here reads the statistics or draws, so editing a verdict, table or figure
(``mpq.studies.search_results``, notebook 04) never searches or trains again.

Command line (the ``search`` DVC stage)::

    python -m mpq.studies.search_runs --out checkpoints/search [--params params.yaml]

The folder appears whole or not at all (written beside its place and renamed): ``result.json`` (every measurement,
configuration and health record, plain JSON) and ``predictions.npz`` (the test labels and every test prediction,
int16). Wall times stay out of it (a re-run that reproduces the results then writes the same bytes, and nothing
downstream re-runs): they go to ``reports/stages/search.json`` (``write_stage_record``), and ``load_search`` puts
them back where ``search_and_retrain`` returns them.

``results`` (``search_models``, then ``retrain_greedy``) maps model -> {"levels": {level: {method: entry}},
"greedy_seconds", "start_bits", "greedy_evaluations", "total_macs"[, "retrain_seconds"]}, methods "greedy",
"random", "evolutionary" and, once retrained, "retrained" (its verdict is added by
``mpq.studies.search_results.judge_retrained``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from mpq.config import (BaselineConfig, DataConfig, EvalConfig, ModelSpec, SearchConfig, from_dict, load_params,
                        model_specs)
from mpq.data.datasets import ImageSet, Splits, make_splits
from mpq.method.cost import bitops, bitops_level, level_bitops, model_size_mib, phase1_budget
from mpq.method.supernet import Supernet
from mpq.search.evaluation import make_scorer, paired_difference, search_space, test_predictions
from mpq.search.greedy import greedy_front
from mpq.search.sampling import evolutionary_search, random_search
from mpq.search.space import cfg_to_json
from mpq.studies.model_bits import check_shared, model_bits
from mpq.studies.replicates import ReplicateConfig
from mpq.studies.retrain_check import RetrainCheckConfig, retrain_config, run_retrain_check
from mpq.studies.search_study import SearchStudyConfig
from mpq.training.checkpoint import (CheckpointError, atomic_folder, check_output, read_stage_record, run_command,
                                     write_json, write_stage_record)
from mpq.training.fp import pick_device
from mpq.training.hardware import place
from mpq.training.oneshot import checkpoint_candidates, load_supernet, training_subset
from mpq.training.recipe import OneShotConfig

log = logging.getLogger(__name__)

METHODS = ("greedy", "random", "evolutionary")
STAGE = "search"                       # its DVC stage, and the name of its stage record
FIX = "run `dvc pull` to fetch the search stage's results, or `dvc repro search` to make them"


# ---------------------------------------------------------------------------------------------------
# set-up

@dataclass(frozen=True)
class Sections:
    """The params sections notebook 04 uses, validated, and each model's own candidates and search levels."""

    data: DataConfig
    oneshot: OneShotConfig
    evaluation: EvalConfig
    search: SearchConfig
    replicates: ReplicateConfig
    specs: list[ModelSpec]
    model_oneshot: dict[str, OneShotConfig]     # each model's candidates (``model_bits``)
    model_search: dict[str, SearchConfig]       # ... and its search levels and start


def validate_sections(data: Mapping, models: Mapping, bits_section: Mapping | None, oneshot: Mapping,
                      evaluation: Mapping, baselines: Mapping, search: Mapping, replicates: Mapping,
                      search_study: Mapping) -> Sections:
    """Build and check every section notebook 04 reads (the baselines and search_study sections are checked
    only; ``bits_section``: ``model_bits``); refuse levels a model's candidates cannot reach and a replicate
    model with its own bits."""
    data_cfg = from_dict(DataConfig, data, "data")
    cfg = from_dict(OneShotConfig, oneshot, "oneshot")
    eval_cfg = from_dict(EvalConfig, evaluation, "evaluation")
    from_dict(BaselineConfig, baselines, "baselines")
    search_cfg = from_dict(SearchConfig, search, "search")
    rep_cfg = from_dict(ReplicateConfig, replicates, "replicates")
    from_dict(SearchStudyConfig, search_study, "search_study")
    search_cfg.check_candidates(cfg.w_bit_choices, cfg.a_bit_choices)
    specs = model_specs(models)
    model_cfg = {s.name: model_bits(bits_section, s.name).oneshot(cfg).for_model(s.name) for s in specs}
    model_search = {s.name: model_bits(bits_section, s.name).search(search_cfg) for s in specs}
    for name, c in model_cfg.items():
        model_search[name].check_candidates(c.w_bit_choices, c.a_bit_choices)
    check_shared(bits_section, [rep_cfg.model], "replicates.model (the replicate, budget and search_study stages)")
    unknown = sorted(set(rep_cfg.other_models) - {s.name for s in specs})
    if unknown:
        raise ValueError(f"replicates.other_models {unknown} are not in the models section {[s.name for s in specs]}")
    return Sections(data_cfg, cfg, eval_cfg, search_cfg, rep_cfg, specs, model_cfg, model_search)


def search_data(seed: int, data: DataConfig, score_size: int, train_size: int | None
                ) -> tuple[Splits, ImageSet, ImageSet]:
    """The study's splits, the scoring subset (the first ``score_size`` held-out training images) and the
    training subset of the retrainings (``oneshot.train_size``)."""
    splits = make_splits(data.dataset, seed=seed, train_size=data.train_size, score_size=data.score_size,
                         calib_size=data.calib_size, test_size=data.test_size)
    score_set = splits.score.subset(torch.arange(min(score_size, len(splits.score))))
    return splits, score_set, training_subset(splits.train, train_size)


# ---------------------------------------------------------------------------------------------------
# search and evaluation without retraining (T2-T4, F5, F6)

def search_supernet(supernet: Supernet, candidates: Mapping | None, score_set: ImageSet, calib: ImageSet,
                    test: ImageSet, search_cfg: SearchConfig, *, eval_batch_size: int, seed: int,
                    name: str = "") -> dict:
    """Greedy (one weight walk for every level), random and evolutionary search towards each of
    ``search_cfg.levels`` from uniform W``start_bits``A``start_bits``, each configuration recalibrated on
    ``calib`` and measured on ``test`` with no retraining (T2-T4's no-retraining rows).

    One ``random.Random(seed)`` serves random and evolutionary search over the levels, in order. Returns
    {"levels": {level: {method: entry}}, "greedy_seconds", "start_bits", "greedy_evaluations", "total_macs"};
    an entry holds the configuration (``bit_cfg``, JSON form), G-BitOPs, BitOPs level, size, score,
    evaluations, search seconds, test accuracy and the test predictions (``preds``).
    """
    table = supernet.cost_table
    cost = partial(bitops, table)
    space = search_space(supernet, candidates)
    scorer = make_scorer(supernet, score_set, metric=search_cfg.metric)
    levels, start_bits = search_cfg.levels, search_cfg.start_bits
    targets = [level_bitops(table, level) for level in levels]
    start = time.perf_counter()
    front = greedy_front(space, scorer, cost, targets,
                         [phase1_budget(table, t, a_bits=start_bits) for t in targets],
                         start_bits=start_bits, alpha=search_cfg.alpha)
    greedy_seconds = time.perf_counter() - start
    rng = random.Random(seed)
    per_level = {}
    for level, target, g in zip(levels, targets, front):
        t0 = time.perf_counter()
        rnd = random_search(space, scorer, cost, target, num_samples=search_cfg.random_samples, rng=rng)
        t1 = time.perf_counter()
        evo = evolutionary_search(space, scorer, cost, target, population=search_cfg.evo_population,
                                  generations=search_cfg.evo_generations, mutation_prob=search_cfg.evo_mutation_prob,
                                  rng=rng)
        t2 = time.perf_counter()
        entry = {}
        for method, res, secs in (("greedy", g, None), ("random", rnd, t1 - t0), ("evolutionary", evo, t2 - t1)):
            preds = test_predictions(supernet, res.bit_cfg, calib, test, batch_size=eval_batch_size)
            entry[method] = {"bit_cfg": cfg_to_json(res.bit_cfg), "gbitops": res.cost / 1e9,
                             "level": bitops_level(table, res.cost), "size_mib": model_size_mib(table, res.bit_cfg),
                             "score": res.error, "evaluations": res.evaluations,
                             "search_seconds": round(res.seconds if secs is None else secs, 1),
                             "test_acc": float((preds == test.labels).float().mean()), "preds": preds}
        per_level[level] = entry
        print(name, f"level {level}:", {m: round(100 * e["test_acc"], 2) for m, e in entry.items()})
    return {"levels": per_level, "greedy_seconds": round(greedy_seconds, 1), "start_bits": start_bits,
            "greedy_evaluations": max(r.evaluations for r in front), "total_macs": table.total_macs}


def search_models(specs: Sequence[ModelSpec], model_oneshot: Mapping[str, OneShotConfig],
                  model_search: Mapping[str, SearchConfig], splits: Splits, score_set: ImageSet, *,
                  eval_batch_size: int, seed: int, device: torch.device,
                  root: str | Path = "checkpoints/supernet") -> dict[str, dict]:
    """``search_supernet`` on each model's trained supernet (``root/<model>.pt``, checked against the model's
    candidates and the data split), placed on ``device``, within the scheduler's last decision; model -> result."""
    results = {}
    for spec in specs:
        path = f"{root}/{spec.name}.pt"
        supernet = load_supernet(path, model=spec.name, width_mult=spec.width_mult,
                                 spec=model_oneshot[spec.name].supernet_spec(), data=splits.identity)
        place(supernet, device)     # channels_last (and the AVX2 guard), as in training and mpq.studies.search_study
        results[spec.name] = search_supernet(supernet, checkpoint_candidates(path, supernet), score_set, splits.calib,
                                             splits.test, model_search[spec.name], eval_batch_size=eval_batch_size,
                                             seed=seed, name=spec.name)
    return results


# ---------------------------------------------------------------------------------------------------
# the same configurations, retrained (the two-stage pipeline the paper removes)

def retrain_greedy(results: Mapping[str, Mapping], specs: Sequence[ModelSpec],
                   model_oneshot: Mapping[str, OneShotConfig], splits: Splits, train: ImageSet, data: DataConfig, *,
                   eval_batch_size: int, seed: int, device: torch.device, retrain: bool = True,
                   fp_root: str | Path = "checkpoints/fp") -> dict[str, dict]:
    """Retrain each greedy configuration alone from the FP checkpoint with the uniform baselines' recipe
    (max path only, ``torch.manual_seed(seed)`` before each build) and pair it with the no-retraining one.

    Returns ``results`` with a "retrained" entry per level (test accuracy, seconds, epochs, no-retrain minus
    retrained and its paired SE, the test predictions and the run's health) and each model's "retrain_seconds"
    (0 with ``retrain`` off); ``results`` is left as it was. Feeds T2-T4's retrained rows and the paired
    comparison (judged by ``mpq.studies.search_results.judge_retrained``).
    """
    out = {}
    for spec in specs:
        r = results[spec.name]
        seconds, levels = 0.0, {}
        for level, entry in r["levels"].items():
            levels[level] = entry
            if not retrain:
                continue
            bit_cfg = {k: tuple(v) for k, v in entry["greedy"]["bit_cfg"].items()}
            fixed = model_oneshot[spec.name].fixed_config()
            retrained = retrain_config(bit_cfg, spec, fixed, splits, train, data, seed=seed, device=device,
                                       eval_batch_size=eval_batch_size, fp_root=fp_root)
            preds, health, train_seconds = retrained["preds"], retrained["health"], retrained["seconds"]
            labels = splits.test.labels
            diff, se = paired_difference(entry["greedy"]["preds"], preds, labels)
            levels[level] = {**entry, "retrained": {"test_acc": float((preds == labels).float().mean()),
                                                    "train_seconds": round(train_seconds, 1), "epochs": fixed.epochs,
                                                    "no_retrain_minus_retrained": diff, "paired_se": se,
                                                    "preds": preds, "health": health}}
            seconds += train_seconds
            print(spec.name, f"level {level}: retrained {100 * levels[level]['retrained']['test_acc']:.2f}%, "
                  f"no-retrain minus retrained {100 * diff:+.2f} points (paired SE {100 * se:.2f})")
        out[spec.name] = {**r, "levels": levels, "retrain_seconds": seconds}
    return out


# ---------------------------------------------------------------------------------------------------
# the whole stage, its folder and its stage record

@dataclass(frozen=True)
class SearchRun:
    """What the search stage found, as notebook 04 reads it: ``results`` (``retrain_greedy``'s, unjudged), the
    retraining check (``run_retrain_check``'s, None without one), the test labels, the number of scoring images,
    the device that ran it, the study's seed and the stage's wall seconds (None where no record says)."""

    results: dict[str, dict]
    check: dict[str, Any] | None
    labels: torch.Tensor
    scoring_images: int
    device: str
    seed: int
    stage_seconds: float | None


def search_and_retrain(cfg: Sections, seed: int, retrain_check: Mapping, *, device: torch.device | None = None,
                       supernet_root: str | Path = "checkpoints/supernet",
                       fp_root: str | Path = "checkpoints/fp") -> SearchRun:
    """The search stage in one call, in the order (and so with the random state) notebook 04 always used:
    ``search_data``, ``search_models``, ``retrain_greedy`` (``search.retrain``), then ``run_retrain_check``
    (``retrain_check``: its params section)."""
    check_cfg = from_dict(RetrainCheckConfig, retrain_check, "retrain_check")
    start = time.perf_counter()
    device = pick_device() if device is None else device
    splits, score_set, train = search_data(seed, cfg.data, cfg.search.score_size, cfg.oneshot.train_size)
    log.info("device=%s scoring images=%d (training split, held out)", device, len(score_set))
    results = search_models(cfg.specs, cfg.model_oneshot, cfg.model_search, splits, score_set,
                            eval_batch_size=cfg.evaluation.batch_size, seed=seed, device=device, root=supernet_root)
    results = retrain_greedy(results, cfg.specs, cfg.model_oneshot, splits, train, cfg.data,
                             eval_batch_size=cfg.evaluation.batch_size, seed=seed, device=device,
                             retrain=cfg.search.retrain, fp_root=fp_root)
    check = run_retrain_check(results, cfg.specs, cfg.model_oneshot, splits, train, cfg.data, check_cfg,
                              eval_batch_size=cfg.evaluation.batch_size, device=device, fp_root=fp_root)
    return SearchRun(results, check, splits.test.labels, len(score_set), str(device), seed,
                     round(time.perf_counter() - start, 1))


# the wall times, kept out of the folder: per model, per level and method (a search's or a retraining's seconds)
_ENTRY_KEYS = ("bit_cfg", "gbitops", "level", "size_mib", "score", "evaluations", "search_seconds", "test_acc")
_RETRAINED_KEYS = ("test_acc", "train_seconds", "epochs", "no_retrain_minus_retrained", "paired_se", "health")
_MODEL_KEYS = ("levels", "greedy_seconds", "start_bits", "greedy_evaluations", "total_macs", "retrain_seconds")
_CHECK_KEYS = ("model", "level", "uniform_bits", "seeds", "gbitops", "test_acc", "health", "seconds")
_SECONDS = {"search_seconds", "train_seconds", "greedy_seconds", "retrain_seconds", "seconds"}


def _known(obj: Mapping, keys: Sequence[str], what: str) -> None:
    """Refuse a field ``save_search`` does not know, so none is dropped without a word."""
    extra = [k for k in obj if k not in keys and k != "preds"]
    if extra:
        raise ValueError(f"{what} holds {extra}, which the search stage's folder does not store (mpq.studies.search_runs)")


def _int16(preds: torch.Tensor) -> np.ndarray:
    arr = preds.cpu().numpy()
    if arr.size and not (0 <= arr.min() and arr.max() <= np.iinfo(np.int16).max):
        raise ValueError(f"predictions outside int16's range ({arr.min()}..{arr.max()})")
    return arr.astype(np.int16)


def save_search(run: SearchRun, folder: str | Path) -> dict:
    """Write ``run`` to ``folder`` as a whole (``result.json``, ``predictions.npz``: labels and every test
    prediction, int16); return its wall times (the stage record's ``timings``), which the folder does not hold."""
    arrays = {"labels": _int16(run.labels)}
    models, timings = [], {"models": {}}
    for name, r in run.results.items():
        _known(r, _MODEL_KEYS, f"results[{name!r}]")
        levels, level_times = [], {}
        for level, e in r["levels"].items():
            saved, times = {"level": level}, {}
            for method, m in e.items():
                _known(m, _RETRAINED_KEYS if method == "retrained" else _ENTRY_KEYS, f"{name} level {level} {method}")
                saved[method] = {k: v for k, v in m.items() if k not in _SECONDS and k != "preds"}
                if "bit_cfg" in m:            # a list in model order: the JSON's keys are sorted
                    saved[method]["bit_cfg"] = [[layer, *bits] for layer, bits in m["bit_cfg"].items()]
                times[method] = m.get("search_seconds", m.get("train_seconds"))
                arrays[f"{name} {level} {method}"] = _int16(m["preds"])
            levels.append(saved)
            level_times[str(level)] = times
        models.append({"model": name, **{k: r[k] for k in ("start_bits", "greedy_evaluations", "total_macs")},
                       "levels": levels})
        timings["models"][name] = {"greedy_seconds": r["greedy_seconds"], "retrain_seconds": r.get("retrain_seconds"),
                                   "levels": level_times}
    check = None
    if run.check is not None:
        _known(run.check, _CHECK_KEYS, "the retraining check")
        check = {k: v for k, v in run.check.items() if k not in _SECONDS and k != "preds"}
        arrays |= {f"retrain_check {arm}": _int16(p) for arm, p in run.check["preds"].items()}
        timings["retrain_check_seconds"] = run.check["seconds"]
    result = {"seed": run.seed, "device": run.device, "scoring_images": run.scoring_images,
              "test_images": len(run.labels), "models": models, "retrain_check": check}
    with atomic_folder(folder) as tmp:
        np.savez(tmp / "predictions.npz", **arrays)
        write_json(result, tmp / "result.json")
    return timings


def _seconds(times: Mapping, *keys: Any) -> float:
    """A wall time from the stage record's ``timings`` (nan where it has none)."""
    for k in keys:
        if not isinstance(times, Mapping) or k not in times:
            return math.nan
        times = times[k]
    return math.nan if times is None else times


def load_search(folder: str | Path = "checkpoints/search", stages: str | Path = "reports/stages") -> SearchRun:
    """The ``SearchRun`` that ``save_search`` wrote to ``folder``, its wall times back in place from the stage
    record (``stages/search.json``; nan where it has none). A missing or damaged file raises one
    ``CheckpointError`` naming it and the fix."""
    folder = Path(folder)
    json_path, npz_path = folder / "result.json", folder / "predictions.npz"
    for path in (json_path, npz_path):
        if not path.is_file():
            raise CheckpointError(f"{path} not found; {FIX}")
    try:
        saved = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{json_path} is damaged ({type(exc).__name__}); {FIX}") from None
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: torch.from_numpy(z[k].astype(np.int64)) for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{npz_path} is damaged ({type(exc).__name__}); {FIX}") from None
    try:
        record = read_stage_record(STAGE, stages)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{Path(stages) / f'{STAGE}.json'} is damaged ({type(exc).__name__}); "
                              f"run `dvc repro {STAGE}` to write it again") from None
    if not record:
        log.warning("%s has no stage record (%s): its wall times show as nan", folder, Path(stages) / f"{STAGE}.json")
    timings = record.get("timings", {})

    def preds(key: str) -> torch.Tensor:
        if key not in arrays or arrays[key].shape[-1] != len(arrays.get("labels", ())):
            raise CheckpointError(f"{npz_path} lacks the predictions {key!r} (or they do not match its labels): "
                                  f"damaged or from another run; {FIX}")
        return arrays[key]

    try:
        results = {m["model"]: _model(m, timings.get("models", {}).get(m["model"], {}), preds)
                   for m in saved["models"]}
        check = None if saved["retrain_check"] is None else _check(saved["retrain_check"], timings, preds)
        run = SearchRun(results, check, preds("labels"), saved["scoring_images"], saved["device"], saved["seed"],
                        record.get("stage_seconds"))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{json_path} does not hold a search result ({type(exc).__name__}: {exc}): damaged or "
                              f"an older format; {FIX}") from None
    if saved["test_images"] != len(run.labels):
        raise CheckpointError(f"{json_path} counts {saved['test_images']} test images, {npz_path} holds "
                              f"{len(run.labels)} labels: they are from different runs; {FIX}")
    return run


def _model(saved: Mapping, times: Mapping, preds) -> dict:
    """One model's ``results`` entry rebuilt, keys in ``retrain_greedy``'s order, wall times from ``times``."""
    name, levels = saved["model"], {}
    for lv in saved["levels"]:
        level, entry = lv["level"], {}
        for method in (*METHODS, "retrained"):
            if method not in lv:
                continue
            m, secs = lv[method], _seconds(times, "levels", str(level), method)
            if method == "retrained":
                entry[method] = {"test_acc": m["test_acc"], "train_seconds": secs, "epochs": m["epochs"],
                                 "no_retrain_minus_retrained": m["no_retrain_minus_retrained"],
                                 "paired_se": m["paired_se"], "preds": preds(f"{name} {level} {method}"),
                                 "health": m["health"]}
            else:
                entry[method] = {"bit_cfg": {layer: [w, a] for layer, w, a in m["bit_cfg"]}, "gbitops": m["gbitops"],
                                 "level": m["level"], "size_mib": m["size_mib"], "score": m["score"],
                                 "evaluations": m["evaluations"], "search_seconds": secs, "test_acc": m["test_acc"],
                                 "preds": preds(f"{name} {level} {method}")}
        levels[level] = entry
    return {"levels": levels, "greedy_seconds": _seconds(times, "greedy_seconds"), "start_bits": saved["start_bits"],
            "greedy_evaluations": saved["greedy_evaluations"], "total_macs": saved["total_macs"],
            "retrain_seconds": _seconds(times, "retrain_seconds")}


def _check(saved: Mapping, timings: Mapping, preds) -> dict:
    """The retraining check rebuilt as ``run_retrain_check`` returns it, its seconds from ``timings``."""
    return {**{k: saved[k] for k in ("model", "level", "uniform_bits", "seeds", "gbitops", "test_acc", "health")},
            "preds": {arm: preds(f"retrain_check {arm}") for arm in saved["test_acc"]},
            "seconds": _seconds(timings, "retrain_check_seconds")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.search_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (replaced when the run completes)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_command(lambda: _run(args), "mpq.studies.search_runs", sys.argv[1:] if argv is None else argv,
                       resumes=False)


def _run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    params = load_params(args.params)
    cfg = validate_sections(*(params.get(k) for k in ("data", "models", "model_bits", "oneshot", "evaluation",
                                                      "baselines", "search", "replicates", "search_study")))
    from_dict(RetrainCheckConfig, params["retrain_check"], "retrain_check")
    check_output(args.out, folder=True, inputs=[args.params, "checkpoints/fp", "checkpoints/supernet"])
    run = search_and_retrain(cfg, params["seed"], params["retrain_check"])
    timings = save_search(run, args.out)
    path = write_stage_record(STAGE, time.perf_counter() - start, timings=timings)
    log.info("wrote %s (wall times: %s)", args.out, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
