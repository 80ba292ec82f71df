"""One model's main-table rows over extra training seeds, with the model's own bit-widths (a one-off study).

The ``replicate`` stages repeat ResNet-20's T2 rows with other seeds inside ``dvc repro``. This study does the
same for any model of the ``models`` section, outside the pipeline (it is too long for the 2-core budget of
every run), and honours ``model_bits``: MobileNetV2's replicates train candidates {3..6} and search its levels
4 and 3.5, as its main run does. Each seed runs ``mpq.studies.replicates.run_replicate`` on the study's params with the
model's settings written into the shared sections (``model_bits.model_params``), so the recipe, split and FP checkpoint
are the main run's and only the training seed differs. The main run's numbers are read from
``reports/metrics`` (run ``dvc repro search`` first) and pooled with the new seeds: per row the mean and SD
over seeds, per level no-retrain minus retrained judged with both noise sources
(``mpq.studies.replicate_tables.pool_gaps``; the per-seed paired SEs, as the seeds' predictions are not kept).

Command line::

    python -m mpq.studies.seed_study --model mobilenetv2_28 --seeds 1 2 --out reports/studies/mobilenetv2_seeds.json

The seeds run one after another; each seed's weights go to ``--work`` (git-ignored) and are deleted once measured.
The result is written atomically; the machine is recorded with it.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from mpq.training.checkpoint import check_output, run_command, write_json
from mpq.config import load_params
from mpq.studies.model_bits import model_params
from mpq.studies.replicate_tables import main_run_record, pool_gaps, seed_rows
from mpq.studies.replicates import run_replicate
from mpq.studies.stats import json_ready, rows_note

log = logging.getLogger(__name__)


def main_record(metrics: str | Path, model: str) -> dict:
    """The main run of ``model`` from ``reports/metrics`` in a replicate's shape, with its seed."""
    root = Path(metrics)
    loaded = {}
    for name in ("supernet", "baselines", "search"):
        path = root / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `dvc repro search` first (the main run is pooled)")
        loaded[name] = json.loads(path.read_text())
    if model not in loaded["search"]["models"]:
        raise ValueError(f"{root}/search.json has no model {model!r}; run `dvc repro search` with it in `models`")
    return main_run_record(model, loaded["search"]["seed"], loaded["supernet"]["models"],
                           loaded["baselines"]["models"], loaded["search"]["models"],
                           test_images=loaded["search"]["test_images"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="training seeds other than the main run's")
    parser.add_argument("--out", required=True, help="result JSON (written atomically)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics", default="reports/metrics", help="the main run's metrics")
    parser.add_argument("--work", default="checkpoints/studies", help="each seed's weights while it runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_command(lambda: _run(args), "mpq.studies.seed_study", sys.argv[1:] if argv is None else argv,
                       checkpoints=[args.work])


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    if params["seed"] in args.seeds or len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds {args.seeds}: must be distinct and exclude the main run's seed {params['seed']} (it "
                         "is pooled from reports/metrics)")
    check_output(args.out, inputs=[args.params, *(Path(args.metrics) / f"{n}.json" for n in
                                                  ("supernet", "baselines", "search"))])
    study = model_params(params, args.model)
    main_run = main_record(args.metrics, args.model)
    if not Path(f"checkpoints/fp/{args.model}.pt").is_file():
        raise SystemExit(f"checkpoints/fp/{args.model}.pt is missing: run `dvc repro fp_train` first")
    start = time.perf_counter()
    records = [main_run]
    for seed in args.seeds:
        folder = Path(args.work) / f"{args.model}-seed-{seed}"
        records.append(run_replicate(study, seed, folder))
        shutil.rmtree(folder)
        log.info("seed %d done: %s", seed, {k: round(100 * v["no_retrain_minus_retrained"], 2)
                                             for k, v in records[-1]["gaps"].items()})
    gaps = pool_gaps(records)
    result = {"study": "seeds", "model": args.model, "profile": params.get("profile"), "split_seed": params["seed"],
              "seeds": [r["seed"] for r in records], "model_bits": params.get("model_bits", {}).get(args.model),
              "rows": seed_rows(records), "gaps": gaps, "gaps_note": rows_note(gaps), "records": records,
              "wall_seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    write_json(json_ready(result), args.out)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
