"""How much of a greedy level's accuracy in the ablation is the search's own noise (docs/method.md, section 5,
"The greedy levels' search noise").

The ablation's greedy configurations are searched on ``ablation.score_size`` scoring images (128 when this study
was run). A different 128 images can lead the walk to another configuration, and that spread joins every seed's
difference between two cells. This study measures it: each plain supernet (trained here with the ablation's own
settings, ``mpq.studies.ablation.run_cell``, or taken from a finished ablation block) is searched again on
disjoint slices of the held-out scoring images at several sizes, and every configuration found is evaluated on
the ablation's evaluation images (``ablation.extra_eval_images`` held-out training images and the test set).

Per size it gives the spread of one supernet's result over scoring slices (the search's part), the spread of
the supernets' means (the training's part) and, from them, the minimal detectable effect of a contrast
between two cells at a given number of seeds (``projected_mde``).

Command line (``--designs`` as ``size:slice``; slice k of size s holds scoring images k*s to (k+1)*s; runs already
in ``--runs`` are reused, and each seed's record is rewritten after every search, so an interrupted study keeps
what it measured)::

    python -m mpq.studies.search_noise --seeds 0,1,2 --designs 128:0,128:1,128:2,512:0,512:1 \\
        --runs /tmp/search-noise --out reports/studies/search_noise.json --jobs 2
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from mpq.config import AblationConfig, DataConfig, EvalConfig, SearchConfig, from_dict, load_params
from mpq.data.datasets import ImageSet, make_splits
from mpq.search.evaluation import test_predictions
from mpq.studies.ablation import evaluation_images, greedy_configs, run_cell
from mpq.studies.stats import NoiseComponents, mde
from mpq.studies.tuning import run_jobs
from mpq.training.checkpoint import check_output, run_command, write_json
from mpq.training.fp import pick_device
from mpq.training.hardware import place
from mpq.training.oneshot import checkpoint_candidates, load_supernet

log = logging.getLogger(__name__)


def parse_designs(text: str) -> list[tuple[int, int]]:
    """``"128:0,512:1"`` -> ``[(128, 0), (512, 1)]`` (scoring images, slice index), refused when malformed."""
    designs = []
    for item in text.split(","):
        try:
            size, k = (int(x) for x in item.split(":"))
        except ValueError:
            raise ValueError(f"--designs item {item!r} is not size:slice (e.g. 128:0)") from None
        if size < 1 or k < 0:
            raise ValueError(f"--designs item {item!r}: the size must be positive and the slice 0 or more")
        designs.append((size, k))
    return designs


def scoring_slice(score: ImageSet, size: int, k: int) -> ImageSet:
    """Slice ``k`` of ``size`` scoring images (images ``k*size`` to ``(k+1)*size``), disjoint from every other
    slice of that size; refused when the scoring subset is too small for it."""
    if (k + 1) * size > len(score):
        raise ValueError(f"scoring slice {k} of {size} images needs {(k + 1) * size} scoring images, the data hold "
                         f"{len(score)} (data.score_size): use a lower slice or size")
    return score.subset(torch.arange(k * size, (k + 1) * size))


def research_run(params: Mapping, run_dir: str | Path, designs: Sequence[tuple[int, int]],
                 record_path: str | Path) -> dict:
    """Search the supernet of a finished run (``run_dir``: result.json and supernet.pt) once per design, inside its
    own final space, and evaluate each configuration on the ablation's evaluation images; the record is written to
    ``record_path`` after every search."""
    ab = from_dict(AblationConfig, params["ablation"], "ablation")
    data_cfg = from_dict(DataConfig, params["data"], "data")
    eval_cfg = from_dict(EvalConfig, params["evaluation"], "evaluation")
    search_cfg = from_dict(SearchConfig, params["search"], "search")
    run_dir = Path(run_dir)
    own = json.loads((run_dir / "result.json").read_text())
    splits = make_splits(data_cfg.dataset, seed=params["seed"], train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    for size, k in designs:                          # refused before any search
        scoring_slice(splits.score, size, k)
    ema = load_supernet(run_dir / "supernet.pt", data=splits.identity)
    place(ema, pick_device())
    candidates = checkpoint_candidates(run_dir / "supernet.pt", ema)      # its scheduler's last decision
    evaluated = evaluation_images(params, splits, ab.extra_eval_images)
    record = {"cell": own["cell"], "seed": own["seed"], "device": own["device"],
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "eval_images": len(evaluated),
              "own_search": {"score_size": ab.score_size, "test_acc": own["test_acc"],
                             "seconds": own["search_seconds"]},
              "searches": []}
    for size, k in designs:
        configs, searched, seconds = greedy_configs(ema, candidates, scoring_slice(splits.score, size, k), ab.levels,
                                                    search_cfg)
        acc = {}
        for name, cfg in configs.items():
            pred = test_predictions(ema, cfg, splits.calib, evaluated, batch_size=eval_cfg.batch_size)
            acc[name] = float((pred == evaluated.labels[:len(pred)]).float().mean())
        record["searches"].append({"size": size, "slice": k, "seconds": round(seconds, 2), "test_acc": acc,
                                   "level": {n: s["level"] for n, s in searched.items()},
                                   "bit_cfg": {n: s["bit_cfg"] for n, s in searched.items()}})
        write_json(record, record_path)
        log.info("%s-%d, %d scoring images (slice %d): %s in %.0f s", own["cell"], own["seed"], size, k,
                 {n: round(100 * a, 2) for n, a in acc.items()}, seconds)
    return record


def _seed_job(params: Mapping, seed: int, runs_dir: str, designs: list[tuple[int, int]]) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")     # a spawned worker starts unconfigured
    run_dir = Path(runs_dir) / f"plain-{seed}"
    if not (run_dir / "result.json").is_file():
        run_cell(params, "plain", seed, run_dir)
    return research_run(params, run_dir, designs, Path(runs_dir) / f"search-noise-{seed}.json")


def summarize(records: Sequence[Mapping], metric: str) -> dict[int, dict]:
    """Per scoring size, over the records (one per supernet) of ``metric`` (e.g. ``"greedy 3"``), in points:
    ``search_sd``, the spread of one supernet's result over its scoring slices (pooled; null with one slice
    each), ``run_sd``, the spread of the supernets' mean results, ``training_var``, the training's part of
    that spread (``run_sd^2`` less the search's share of a mean, at least 0), and the counts."""
    out = {}
    for size in sorted({s["size"] for r in records for s in r["searches"]}):
        per_run = [[100 * s["test_acc"][metric] for s in r["searches"] if s["size"] == size] for r in records]
        per_run = [v for v in per_run if v]
        within = [np.var(v, ddof=1) for v in per_run if len(v) > 1]
        search_var = float(np.mean(within)) if within else None
        means = [float(np.mean(v)) for v in per_run]
        run_var = float(np.var(means, ddof=1)) if len(means) > 1 else None
        slices = float(np.mean([len(v) for v in per_run]))
        training_var = (None if run_var is None or search_var is None
                        else max(0.0, run_var - search_var / slices))
        out[size] = {"runs": len(per_run), "slices_per_run": slices,
                     "search_sd": None if search_var is None else float(np.sqrt(search_var)),
                     "run_sd": None if run_var is None else float(np.sqrt(run_var)),
                     "training_var": training_var,
                     "values": [[round(x, 2) for x in v] for v in per_run]}
    return out


def projected_mde(training_var: float, search_var: float, seeds: int, image_var: float = 0.0,
                  within_var: float = 0.0, images: int = 1, power: float = 0.8, alpha: float = 0.05) -> float:
    """Minimal detectable effect (points) of a contrast between two cells, each searched once per seed: the
    seed part of the difference is ``2 (training_var + search_var)`` (two independent supernets and searches),
    and the images add ``image_var / images + 2 within_var / (seeds images)`` (``stats.predicted_se``). It is
    ``stats.mde`` of those components: the noncentral t at the design's Satterthwaite df, as a verdict states it."""
    if seeds < 2:
        raise ValueError("a design for a verdict needs 2 or more seeds")
    parts = NoiseComponents(seed_var=2 * (training_var + search_var), image_var=image_var, within_var=2 * within_var,
                            diff=0.0, seeds=seeds, images=images)
    return mde(parts, seeds, images, power=power, alpha=alpha)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.search_noise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--seeds", required=True, help="comma-separated training seeds of the plain supernets")
    parser.add_argument("--designs", default="128:0,128:1,128:2,512:0,512:1",
                        help="size:slice items, e.g. 128:0,128:1,512:0")
    parser.add_argument("--runs", required=True, help="folder of the plain runs (plain-<seed>) and per-seed records")
    parser.add_argument("--out", required=True, help="the summary JSON")
    parser.add_argument("--jobs", type=int, default=1, help="seeds at a time, each in its own process")
    args = parser.parse_args(argv)
    return run_command(lambda: _run(args), "mpq.studies.search_noise", argv)


def _run(args: argparse.Namespace) -> int:
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ValueError(f"--seeds {args.seeds!r} is not a comma-separated list of integers") from None
    designs = parse_designs(args.designs)
    check_output(args.out)
    params = load_params(args.params)
    records = list(run_jobs(_seed_job, [(params, s, args.runs, designs) for s in seeds], args.jobs))
    levels = [f"greedy {lv}" for lv in from_dict(AblationConfig, params["ablation"], "ablation").levels]
    write_json({"designs": [list(d) for d in designs], "records": records,
                "summary": {m: summarize(records, m) for m in levels}}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
