"""The supernet stage's wall time for a profile, from one timed epoch of one-shot training per model.

    python benchmarks/bench_stage.py --params profiles/large.yaml --device cuda --out large_supernet_stage.json
    python benchmarks/bench_stage.py --params profiles/large.yaml --device cuda --jobs 3   # the models at once
    python benchmarks/bench_stage.py --params profiles/large.yaml --device cuda --eager   # without CUDA graphs

Each model of the profile's ``models`` section is built at its width from random weights (the time of a step
does not depend on the weights, so no FP checkpoint is needed), converted with the profile's ``oneshot``
candidates, calibrated, and trained one-shot for one epoch with the profile's recipe (scheduler, IDM and the
quantization-error penalty as configured; the penalty's ramp starts later in a real run, which changes a
step's cost little). The stage estimate is ``oneshot.epochs`` times that epoch, per model, and their sum
(sequential, as ``dvc repro`` runs the notebook) or their maximum (with ``--jobs``, models trained at once).
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Mapping

import torch

from mpq.training.checkpoint import write_json
from mpq.config import DataConfig, from_dict, load_params, model_specs
from mpq.data.datasets import make_splits
from mpq.models import create_model, model_entry
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import build_supernet, train_oneshot, training_subset
from mpq.training.fp import pick_device
from mpq.studies.tuning import run_jobs


def time_epoch(params: Mapping, model: str, width_mult: float, device: str | None, graphed: bool | None = None) -> dict:
    """One epoch of one-shot training of ``model`` with the profile's recipe; seconds and steps."""
    data_cfg = from_dict(DataConfig, params["data"], "data")
    cfg = from_dict(OneShotConfig, params["oneshot"], "oneshot").for_model(model)
    splits = make_splits(data_cfg.dataset, seed=params["seed"], train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    train = training_subset(splits.train, cfg.train_size)
    torch.manual_seed(params["seed"])
    float_model = create_model(model, num_classes=len(splits.train.classes), width_mult=width_mult)
    supernet = build_supernet(float_model, cfg.supernet_spec(), splits.calib, model_entry(model).input_size)
    run = train_oneshot(supernet, train, cfg, batch_size=data_cfg.batch_size, pad=data_cfg.pad, flip=data_cfg.flip,
                        seed=params["seed"], device=pick_device(device), progress=False, stop_after_epoch=1,
                        graphed=graphed)
    steps = len(train) // data_cfg.batch_size
    return {"model": model, "width_mult": width_mult, "steps_per_epoch": steps, "epoch_seconds": round(run.seconds, 1),
            "ms_per_step": round(1e3 * run.seconds / steps, 1), "epochs": cfg.epochs,
            "stage_seconds_estimate": round(cfg.epochs * run.seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="profiles/large.yaml")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--jobs", type=int, default=1, help="models trained at once, in separate processes")
    parser.add_argument("--eager", action="store_true", help="eager steps on a GPU too (default there: CUDA graphs)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    params = load_params(args.params)
    start = time.perf_counter()
    runs = run_jobs(time_epoch, [(params, s.name, s.width_mult, args.device, False if args.eager else None)
                                      for s in model_specs(params["models"])],
                    args.jobs)
    dev = pick_device(args.device)
    per_model = [r["stage_seconds_estimate"] for r in runs]
    result = {"profile": params.get("profile"), "device": str(dev),
              "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
              "jobs": args.jobs, "graphed": dev.type == "cuda" and not args.eager, "runs": runs,
              "wall_seconds": round(time.perf_counter() - start, 1),
              "stage_minutes_estimate": round((max(per_model) if args.jobs > 1 else sum(per_model)) / 60, 1)}
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()
