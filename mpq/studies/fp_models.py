"""The full-precision starting points (notebook 01; the FP rows of the paper's Tables 2-4).

Every quantized model of the study starts from an FP checkpoint, as in the paper (Tang et al., CVPR 2024,
section 4). ``train_fp_models`` trains one float model per model spec and writes ``<folder>/<model>.pt``.

The DVC stage ``fp_train`` runs it as a command line, ``python -m mpq.studies.fp_models --out checkpoints/fp``,
which also writes the run's results (``run.json``: metrics and histories, no wall times) beside the
checkpoints and its wall times to ``reports/stages/fp_train.json``. Notebook 01 reads them back with
``load_fp_run``; its table and findings are in ``mpq.studies.fp_tables``, so editing them trains nothing.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from mpq.config import DataConfig, FPConfig, ModelSpec, from_dict, load_params, model_specs
from mpq.data.datasets import Splits, make_splits
from mpq.models import create_model
from mpq.training.checkpoint import (atomic_folder, check_output, merge_timings, read_stage_record, read_stage_result,
                                     run_command, save_checkpoint, split_timings, write_json, write_stage_record)
from mpq.training.fp import pick_device, train_fp

log = logging.getLogger(__name__)


def train_fp_models(specs: Sequence[ModelSpec], splits: Splits, data_cfg: DataConfig, fp_cfg: FPConfig, *,
                    seed: int, device: torch.device, folder: str | Path = "checkpoints/fp",
                    progress: bool = True) -> dict[str, dict]:
    """Train each model of ``specs`` in full precision on ``splits.train`` and write ``folder/<model>.pt``.

    Per model the global torch seed is set to ``seed`` before the model is built, so its initialisation does
    not depend on the models before it. The checkpoint holds model name, width, classes, weights and the
    history without wall times (a re-run writes the same bytes). Returns ``{"histories": model -> history
    (with times), "models": model -> metrics}`` (test accuracy, parameters, width, epochs, images, times).
    """
    num_classes = len(splits.train.classes)
    histories, metrics = {}, {}
    for spec in specs:
        torch.manual_seed(seed)
        model = create_model(spec.name, num_classes=num_classes, width_mult=spec.width_mult)
        start = time.perf_counter()
        history = train_fp(model, splits.train, splits.test, epochs=fp_cfg.epochs, batch_size=data_cfg.batch_size,
                           lr=fp_cfg.lr, momentum=fp_cfg.momentum, weight_decay=fp_cfg.weight_decay,
                           warmup_epochs=fp_cfg.warmup_epochs, label_smoothing=fp_cfg.label_smoothing,
                           pad=data_cfg.pad, flip=data_cfg.flip, seed=seed, device=device, progress=progress)
        seconds = time.perf_counter() - start
        model.cpu()
        save_checkpoint({"model": spec.name, "width_mult": spec.width_mult, "num_classes": num_classes,
                         "state_dict": model.state_dict(),
                         "history": history.as_dict(times=False)},   # no wall times: a re-run writes the same bytes
                        Path(folder) / f"{spec.name}.pt")
        histories[spec.name] = history.as_dict()
        metrics[spec.name] = {
            "test_acc": history.test_acc[-1], "params": sum(p.numel() for p in model.parameters()),
            "width_mult": spec.width_mult, "epochs": fp_cfg.epochs, "train_images": len(splits.train),
            "train_seconds": round(seconds, 1),
            "train_img_per_s": round(fp_cfg.epochs * len(splits.train) / sum(history.seconds), 1),
        }
        print(spec.name, metrics[spec.name])
    return {"histories": histories, "models": metrics}


RUN_FILE = "run.json"
STAGE = "fp_train"
TIMING_KEYS = ("train_seconds", "train_img_per_s", "seconds")   # wall times: kept in the stage record


def save_fp_run(run: dict, folder: str | Path) -> dict:
    """Write ``run`` (``train_fp_models``' result) as ``folder/run.json`` without its wall times; return them."""
    plain, timings = split_timings(run, TIMING_KEYS)
    write_json(plain, Path(folder) / RUN_FILE)
    return timings


def load_fp_run(folder: str | Path = "checkpoints/fp", stages: str | Path = "reports/stages") -> dict:
    """The FP stage's results as ``train_fp_models`` returned them, wall times from the stage record."""
    run = read_stage_result(Path(folder) / RUN_FILE, STAGE)
    return merge_timings(run, read_stage_record(STAGE, stages).get("timings", {}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.fp_models",
                                     description="Train the FP models (DVC stage fp_train).")
    parser.add_argument("--out", required=True, help="output folder (replaced when the run completes)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--stages", default="reports/stages", help="folder of the stage records (wall times)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_command(lambda: _run(args), "mpq.studies.fp_models", sys.argv[1:] if argv is None else argv,
                       resumes=False)


def _run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    params = load_params(args.params)
    data_cfg, fp_cfg = from_dict(DataConfig, params["data"], "data"), from_dict(FPConfig, params["fp"], "fp")
    specs, seed = model_specs(params["models"]), params["seed"]
    check_output(args.out, folder=True, inputs=[args.params], result=RUN_FILE)
    device = pick_device()
    torch.manual_seed(seed)
    splits = make_splits(data_cfg.dataset, seed=seed, train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    with atomic_folder(args.out) as work:
        run = train_fp_models(specs, splits, data_cfg, fp_cfg, seed=seed, device=device, folder=work)
        timings = save_fp_run(run, work)
    write_stage_record(STAGE, time.perf_counter() - start, args.stages, timings=timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
