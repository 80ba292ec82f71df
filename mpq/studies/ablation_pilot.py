"""The ablation's pilot: measure the noise, then choose the seeds and images of the full run (DESIGN.md section 5,
"Power before compute"; docs/method.md, "Designing the ablation").

A pilot trains ``ablation.pilot.seeds`` seeds of each of ``ablation.pilot.cells`` with exactly the full run's
settings (``mpq.studies.ablation.run_cell``: run length, scheduler spacing, evaluation images), then, for each
contrast (every pilot cell against plain) and each metric of ``ablation.pilot.metrics`` (e.g. the greedy
configuration at level 3 and uniform W3A3):

- splits the per-image paired differences into their noise components (``stats.noise_components``: the
  training seeds' spread, the images' own part that does not average out over seeds, and the seed x image part);
- gives the pilot's own verdict (``stats.paired_verdict``), for the record only: a pilot is not a result;
- plans the seeds per cell and the evaluation images that bring every contrast's minimal detectable effect to
  ``ablation.pilot.target_mde`` points or less (``stats.plan_design``), among the image counts of
  ``ablation.pilot.image_options`` that the data hold (test images plus the held-out training images beyond
  ``data.train_size``).

It also summarises what each run's scheduler did (calls, steps between them, overlap of consecutive frozen sets
against chance, score gaps; ``scheduler.schedule_summary``) and whether any run collapsed (kept, and counted).

Command line (runs already in ``--runs`` are reused, so an interrupted pilot resumes; ``--jobs 2`` trains two runs
at a time, one thread each, which on 2 cores nearly halves the pilot's wall time at this batch size)::

    python -m mpq.studies.ablation_pilot --runs checkpoints/ablation_pilot --out reports/studies/ablation_pilot.json --jobs 2
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mpq.config import AblationConfig, DataConfig, PilotConfig, from_dict, load_params
from mpq.data.datasets import make_splits
from mpq.studies.ablation import run_cell
from mpq.studies.interference import correct_of, load_runs
from mpq.studies.stats import json_ready, noise_components, paired_verdict, plan_design
from mpq.studies.tuning import run_jobs
from mpq.training.checkpoint import check_output, run_command, write_json

log = logging.getLogger(__name__)

EXPECTED = 1       # the paper: each repair raises accuracy (T6)


def pilot_config(params: Mapping) -> tuple[AblationConfig, PilotConfig]:
    """The ablation section and its pilot (refused when the profile names none)."""
    ab = from_dict(AblationConfig, params["ablation"], "ablation")
    if ab.pilot is None:
        raise ValueError("ablation.pilot is null in this params file: name the pilot's seeds, cells, metrics, "
                         "target_mde, image_options and max_seeds")
    return ab, ab.pilot


def run_pilot(params: Mapping, runs_dir: str | Path, *, jobs: int = 1) -> None:
    """Train and evaluate every (pilot cell, pilot seed) into ``runs_dir/<cell>-<seed>``, ``jobs`` runs at a time
    (each in its own process with its share of the threads); finished runs are kept."""
    _, pilot = pilot_config(params)
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


def _pilot_run(params: Mapping, cell: str, seed: int, out: str) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")     # a spawned worker starts unconfigured
    return run_cell(params, cell, seed, out)


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


def pilot_summary(runs: Mapping[tuple[str, int], dict], pilot: PilotConfig, available: int) -> dict:
    """The pilot's numbers and the design they imply (JSON-ready; see the module's docstring).

    ``runs``: ``interference.load_runs`` of the pilot's cells and seeds; ``available``: evaluation images the data
    hold (``available_images``); image options above it are left out of the plan and named.
    """
    first = runs[(pilot.cells[0], pilot.seeds[0])]["result"]
    unknown = [m for m in pilot.metrics if m not in first["test_acc"]]
    if unknown:
        raise ValueError(f"ablation.pilot.metrics {unknown} were not evaluated by the runs; they evaluated "
                         f"{sorted(first['test_acc'])}")
    contrasts, components = [], {}
    for cell in [c for c in pilot.cells if c != "plain"]:
        for metric in pilot.metrics:
            arm, ref = _correct(runs, cell, pilot.seeds, metric), _correct(runs, "plain", pilot.seeds, metric)
            c = noise_components(arm, ref)
            components[f"{cell} / {metric}"] = c
            contrasts.append({"contrast": f"{cell} minus plain", "cell": cell, "metric": metric,
                              "components": c.as_dict(), "pilot_verdict": paired_verdict(arm, ref, EXPECTED).as_dict()})
    options = [m for m in pilot.image_options if m <= available]
    plan = plan_design(components, pilot.target_mde, options or [available], pilot.max_seeds)
    schedulers = {f"{c}-{s}": _scheduler_line(r["result"]) for (c, s), r in runs.items()}
    collapsed = [f"{c}-{s}" for (c, s), r in runs.items() if (r["result"].get("health") or {}).get("collapsed")]
    return json_ready({
        "seeds": list(pilot.seeds), "cells": list(pilot.cells), "metrics": list(pilot.metrics),
        "eval_images": first["test_images"], "available_images": available,
        "image_options_left_out": [m for m in pilot.image_options if m > available],
        "run_length": {"epochs": first["epochs"], "train_images": first["train_images"],
                       "total_steps": first["schedule_design"]["total_steps"]},
        "contrasts": contrasts, "plan": plan, "scheduler": schedulers, "collapsed": collapsed,
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
    summary = pilot_summary(load_runs(args.runs, pilot.cells, pilot.seeds), pilot, available_images(params))
    write_json(summary, args.out)
    plan = summary["plan"]
    log.info("pilot: %s seeds per cell and %s evaluation images bring every MDE to %s points or less (limiting: %s)",
             plan["seeds"], plan["images"], plan["target"], plan["limiting"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
