"""The ablation's pilot: measure the noise, then choose the seeds and images of the full run (DESIGN.md section 5,
"Power before compute"; docs/method.md, "Designing the ablation").

A pilot trains ``ablation.pilot.seeds`` seeds of each of ``ablation.pilot.cells`` with exactly the full run's
settings (``mpq.studies.ablation.run_cell``: run length, scheduler spacing, evaluation images), searches each run's
supernet again in its own space at every scoring-image count of ``ablation.pilot.score_options`` (the candidates
for ``ablation.score_size``; ``ablation.search_in_space``), then, for each contrast (every pilot cell against
plain, and ``sched_full``, this package's scheduler variant, against ``sched``), each metric of
``ablation.pilot.metrics`` (e.g. the greedy configurations at levels 3 and 2.5 and uniform W3A3) and each
scoring-image count:

- splits the per-image paired differences into their noise components (``stats.noise_components``: the
  training seeds' spread, the images' own part that does not average out over seeds, and the seed x image part);
- gives the pilot's own verdict (``stats.paired_verdict``), for the record only: a pilot is not a result;
- plans the seeds per cell and the evaluation images that bring every contrast's minimal detectable effect to
  ``ablation.pilot.target_mde`` points or less (``stats.plan_design``), among the image counts of
  ``ablation.pilot.image_options`` that the data hold (test images plus the held-out training images beyond
  ``data.train_size``), and chooses the scoring-image count whose plan costs the fewest seconds of runs (the
  pilot's own seconds per run: training, search at that count, evaluation).

It also summarises what each run's scheduler did (calls, steps between them, overlap of consecutive frozen sets
against chance, score gaps; ``scheduler.schedule_summary``) and whether any run collapsed (kept, and counted).

Command line (runs already in ``--runs`` are reused, so an interrupted pilot resumes; ``--jobs 2`` trains two runs
at a time, one thread each, which on 2 cores nearly halves the pilot's wall time at this batch size)::

    python -m mpq.studies.ablation_pilot --runs checkpoints/ablation_pilot --out reports/studies/ablation_pilot.json --jobs 2
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mpq.config import AblationConfig, DataConfig, PilotConfig, from_dict, load_params
from mpq.data.datasets import make_splits
from mpq.studies.ablation import run_cell, search_in_space
from mpq.studies.interference import correct_of, load_runs
from mpq.studies.stats import json_ready, noise_components, paired_verdict, plan_design
from mpq.studies.tuning import run_jobs
from mpq.training.checkpoint import check_output, run_command, write_json

log = logging.getLogger(__name__)

EXPECTED = {"sched": 1, "idm": 1, "both": 1}   # the paper: each repair raises accuracy (T6); sched_full: no direction


def pilot_config(params: Mapping) -> tuple[AblationConfig, PilotConfig]:
    """The ablation section and its pilot (refused when the profile names none)."""
    ab = from_dict(AblationConfig, params["ablation"], "ablation")
    if ab.pilot is None:
        raise ValueError("ablation.pilot is null in this params file: name the pilot's seeds, cells, metrics, "
                         "target_mde, image_options and max_seeds")
    return ab, ab.pilot


def run_pilot(params: Mapping, runs_dir: str | Path, *, jobs: int = 1) -> None:
    """Train and evaluate every (pilot cell, pilot seed) into ``runs_dir/<cell>-<seed>``, then search each run's
    supernet again in its own space at every other scoring-image count of ``ablation.pilot.score_options`` into
    ``runs_dir/<cell>-<seed>-score-<size>`` (``ablation.search_in_space``), ``jobs`` at a time (each in its own
    process with its share of the threads); finished runs and searches are kept. Score options the data do not hold
    are refused before any training."""
    ab, pilot = pilot_config(params)
    data_cfg = from_dict(DataConfig, params["data"], "data")
    too_many = [s for s in pilot.score_options if s > data_cfg.score_size]
    if too_many:
        raise ValueError(f"ablation.pilot.score_options {too_many} exceed the {data_cfg.score_size} held-out scoring "
                         "images (data.score_size); lower them or raise data.score_size")
    todo = []
    for seed in pilot.seeds:            # seed by seed: an interrupted pilot leaves whole seeds behind
        for cell in pilot.cells:
            out = Path(runs_dir) / f"{cell}-{seed}"
            if (out / "result.json").is_file():
                log.info("pilot run %s-%d: kept from an earlier pilot", cell, seed)
            else:
                todo.append((dict(params), cell, seed, str(out)))
    for result in run_jobs(_pilot_run, todo, jobs):
        log.info("pilot run %s-%d: %s", result["cell"], result["seed"],
                 {k: round(100 * v, 2) for k, v in result["test_acc"].items()})
    searches = [(dict(params), str(Path(runs_dir) / f"{cell}-{seed}"), size,
                 str(Path(runs_dir) / score_folder(cell, seed, size)))
                for seed in pilot.seeds for cell in pilot.cells for size in pilot.score_options
                if size != ab.score_size and not (Path(runs_dir) / score_folder(cell, seed, size) / "result.json").is_file()]
    for result in run_jobs(_score_run, searches, jobs):
        log.info("pilot run %s-%d searched on %d scoring images: %s", result["cell"], result["seed"],
                 result["score_size"], {k: round(100 * v, 2) for k, v in result["test_acc"].items()})


def score_folder(cell: str, seed: int, size: int) -> str:
    """Where a pilot run's own-space search on ``size`` scoring images lies, beside the run."""
    return f"{cell}-{seed}-score-{size}"


def _pilot_run(params: Mapping, cell: str, seed: int, out: str) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")     # a spawned worker starts unconfigured
    return run_cell(params, cell, seed, out)


def _score_run(params: Mapping, run_dir: str, size: int, out: str) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    partial = Path(out).with_name(f".{Path(out).name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    result = search_in_space(params, run_dir, run_dir, partial, score_size=size)
    os.replace(partial, out)
    return result


def load_searches(runs_dir: str | Path, pilot: PilotConfig, own_size: int) -> dict[tuple[str, int, int], dict]:
    """Every pilot run's own-space search at each score option but ``own_size`` (the runs' own search):
    ``(cell, seed, size) -> {"result", "preds"}``."""
    searches, missing = {}, []
    for seed in pilot.seeds:
        for cell in pilot.cells:
            for size in pilot.score_options:
                path = Path(runs_dir) / score_folder(cell, seed, size)
                if size == own_size:
                    continue
                if not (path / "result.json").is_file():
                    missing.append(path.name)
                    continue
                with np.load(path / "predictions.npz", allow_pickle=False) as preds:
                    searches[(cell, seed, size)] = {"result": json.loads((path / "result.json").read_text()),
                                                    "preds": {k: preds[k] for k in preds.files}}
    if missing:
        raise FileNotFoundError(f"pilot searches missing under {runs_dir}: {missing}; run the pilot again")
    return searches


def available_images(params: Mapping) -> int:
    """Evaluation images the data hold for the ablation: the test set and every training image beyond
    ``data.train_size`` (``ablation.evaluation_images``)."""
    data_cfg = from_dict(DataConfig, params["data"], "data")
    capped = make_splits(data_cfg.dataset, seed=params["seed"], train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    whole = make_splits(data_cfg.dataset, seed=params["seed"], train_size=None, score_size=data_cfg.score_size,
                        calib_size=data_cfg.calib_size)
    return len(capped.test) + len(whole.train) - len(capped.train)


def _correct(runs: Mapping[tuple[str, int], dict], cell: str, seeds: Sequence[int], metric: str) -> np.ndarray:
    return np.stack([correct_of(runs[(cell, s)]["preds"], metric) for s in seeds])


def pilot_contrasts(cells: Sequence[str]) -> list[tuple[str, str]]:
    """The T6 contrasts a pilot plans, as (cell, reference): every cell against plain, and sched_full (this package's
    scheduler variant) against sched, the paper's, where both ran.

    >>> pilot_contrasts(["plain", "sched", "idm", "sched_full"])
    [('sched', 'plain'), ('idm', 'plain'), ('sched_full', 'plain'), ('sched_full', 'sched')]
    """
    pairs = [(c, "plain") for c in cells if c != "plain"]
    return pairs + ([("sched_full", "sched")] if "sched_full" in cells and "sched" in cells else [])


def _name(cell: str, ref: str, metric: str) -> str:
    return f"{cell} / {metric}" if ref == "plain" else f"{cell} - {ref} / {metric}"


def pilot_summary(runs: Mapping[tuple[str, int], dict], pilot: PilotConfig, available: int,
                  searches: Mapping[tuple[str, int, int], dict] | None = None) -> dict:
    """The pilot's numbers and the design they imply (JSON-ready; see the module's docstring).

    ``runs``: ``interference.load_runs`` of the pilot's cells and seeds; ``available``: evaluation images the data
    hold (``available_images``); image options above it are left out of the plan and named. ``searches``
    (``load_searches``): each run searched again at the other score options; without them only the runs' own
    scoring-image count is planned. Per scoring-image count the plan gives the seeds and evaluation images that
    bring every contrast's MDE (each pilot metric; the greedy ones searched at that count) to the target; the plan
    chosen is the one with the fewest seconds of runs (seeds x the pilot runs' mean seconds per seed at that count:
    training, search, evaluation), the other counts' plans beside it.
    """
    first = runs[(pilot.cells[0], pilot.seeds[0])]["result"]
    unknown = [m for m in pilot.metrics if m not in first["test_acc"]]
    if unknown:
        raise ValueError(f"ablation.pilot.metrics {unknown} were not evaluated by the runs; they evaluated "
                         f"{sorted(first['test_acc'])}")
    own = first.get("score_size")
    searches = searches or {}
    sizes = [own] + sorted({size for (_, _, size) in searches} - {own})

    def correct(cell: str, metric: str, size) -> np.ndarray:
        if size == own or not metric.startswith("greedy "):
            return _correct(runs, cell, pilot.seeds, metric)
        return np.stack([correct_of(searches[(cell, s, size)]["preds"], metric) for s in pilot.seeds])

    def seconds(cell: str, size) -> float:
        per_seed = []
        for s in pilot.seeds:
            r = runs[(cell, s)]["result"]
            search = r["search_seconds"] if size == own else searches[(cell, s, size)]["result"]["search_seconds"]
            per_seed.append(r["train_seconds"] + search + r.get("eval_seconds", 0.0))
        return float(np.mean(per_seed))

    options = [m for m in pilot.image_options if m <= available]
    contrasts, plans = [], {}
    for size in sizes:
        components = {}
        for cell, ref in pilot_contrasts(pilot.cells):
            for metric in pilot.metrics:
                arm, base = correct(cell, metric, size), correct(ref, metric, size)
                c = noise_components(arm, base)
                components[_name(cell, ref, metric)] = c
                if size == own or metric.startswith("greedy "):
                    contrasts.append({"contrast": f"{cell} minus {ref}", "cell": cell, "reference": ref,
                                      "metric": metric, "score_size": size, "components": c.as_dict(),
                                      "pilot_verdict": paired_verdict(arm, base, EXPECTED.get(cell, 0)).as_dict()})
        plan = plan_design(components, pilot.target_mde, options or [available], pilot.max_seeds)
        per_seed = sum(seconds(cell, size) for cell in pilot.cells)
        plans[size] = plan | {"score_size": size, "seconds_per_seed": per_seed,
                              "seconds": None if plan["seeds"] is None else plan["seeds"] * per_seed}
    feasible = [p for p in plans.values() if p["seeds"] is not None]
    chosen = min(feasible, key=lambda p: (p["seconds"], p["score_size"] or 0)) if feasible else plans[own]
    schedulers = {f"{c}-{s}": _scheduler_line(r["result"]) for (c, s), r in runs.items()}
    collapsed = [f"{c}-{s}" for (c, s), r in runs.items() if (r["result"].get("health") or {}).get("collapsed")]
    return json_ready({
        "seeds": list(pilot.seeds), "cells": list(pilot.cells), "metrics": list(pilot.metrics),
        "eval_images": first["test_images"], "available_images": available,
        "image_options_left_out": [m for m in pilot.image_options if m > available],
        "run_length": {"epochs": first["epochs"], "train_images": first["train_images"],
                       "total_steps": first["schedule_design"]["total_steps"]},
        "score_size": own, "contrasts": contrasts, "plan": chosen,
        "plans_by_score_size": {str(size): p for size, p in plans.items()},
        "scheduler": schedulers, "collapsed": collapsed,
        "test_acc": {f"{c}-{s}": r["result"]["test_acc"] for (c, s), r in runs.items()}})


def _scheduler_line(result: Mapping) -> dict | None:
    """What a run's scheduler did, in the summary's few numbers (None for a run without one)."""
    summary = (result.get("scheduler_log") or {}).get("summary")
    if not summary or not summary["calls"]:
        return None
    keys = ("calls", "total_steps", "steps_between", "median_persistence", "min_persistence", "overlap",
            "chance_overlap", "mean_jaccard", "mean_overlap", "mean_chance_overlap", "mean_score_gap",
            "mean_full_score_gap", "refrozen_by_full_scores")
    return {k: summary[k] for k in keys}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.ablation_pilot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="checkpoints/ablation_pilot", help="folder of the pilot's runs (kept)")
    parser.add_argument("--out", required=True, help="the pilot's summary (JSON)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time, each in its own process with its share of the threads (default: 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, got {args.jobs}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_command(lambda: _run(args), "mpq.studies.ablation_pilot", sys.argv[1:] if argv is None else argv,
                       checkpoints=[args.runs])


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    _, pilot = pilot_config(params)
    check_output(args.out, inputs=[args.params, "checkpoints/fp"])
    run_pilot(params, args.runs, jobs=args.jobs)
    ab, _ = pilot_config(params)
    summary = pilot_summary(load_runs(args.runs, pilot.cells, pilot.seeds), pilot, available_images(params),
                            load_searches(args.runs, pilot, ab.score_size))
    write_json(summary, args.out)
    plan = summary["plan"]
    log.info("pilot: %s seeds per cell, %s scoring images and %s evaluation images bring every MDE to %s points or "
             "less (limiting: %s)", plan["seeds"], plan["score_size"], plan["images"], plan["target"], plan["limiting"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
