"""Two choices of the recipe, measured on held-out training images: never on the test set.

* ``lr``: the one-shot learning rates (SGD for weights, BN and biases; Adam for the LSQ step sizes). Each
  trial trains ``replicates.model``'s supernet with the default recipe (params.yaml ``oneshot``) except the
  two rates, from the FP checkpoint, on the main run's split, with its training seed or each of ``--seeds``.
  It is scored on held-out training images (``validation_set``: the training images beyond
  ``data.train_size``, which no stage trains on, 21,000 in the default profile) at every uniform level of
  ``evaluation.levels``, each after recalibrating that level's BN statistics on the calibration images. The pair with the highest mean over the levels
  (averaged over the training seeds run) is chosen; no test image is read. ``--baseline-bits`` also trains
  the uniform LSQ baselines, which share the rates, with each pair.
* ``regime``: how far uniform WkAk LSQ trained alone falls below FP (the study wants 2-5 points at the lowest
  bit-width, so that low-bit rows measure a working model, not a collapsed one), per model and width. Each job trains the float model with
  the ``fp`` recipe, then LSQ WkAk alone at each bit-width with the baselines' recipe (``oneshot.baseline``,
  depthwise convs at their floor), and reports FP minus LSQ on the same held-out images (what the choice
  is made on) and on the test set (what the tables would show), with the model's MACs and BitOPs, since a
  wider net costs more of the 2-core budget.

Command line (``--jobs`` runs trials in parallel processes, e.g. several on one GPU)::

    python -m mpq.studies.tuning lr --out reports/studies/lr_grid.json --lrs 0.02 0.04 0.08 --step-lrs 0.001 0.003 0.01
    python -m mpq.studies.tuning lr --out reports/studies/lr_seeds.json --lrs 0.04 0.08 --step-lrs 0.003 --seeds 0 1 2 \
        --baseline-bits 2 4
    python -m mpq.studies.tuning regime --out reports/studies/mbconv_regime.json --widths 0.5 0.75 1.0 --bits 2 3

The result is written atomically; the device and torch version are recorded with it.
"""
from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from mpq.training.checkpoint import check_output, run_command, write_json
from mpq.config import DataConfig, EvalConfig, FPConfig, from_dict, load_params, model_specs
from mpq.method.cost import bitops
from mpq.data.datasets import ImageSet, make_splits
from mpq.search.evaluation import recalibrated_accuracy
from mpq.models import create_model, model_entry
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import build_supernet, train_oneshot, training_subset
from mpq.training.fp import evaluate, load_fp_model, pick_device, train_fp

log = logging.getLogger(__name__)


def _splits(params: Mapping):
    data_cfg = from_dict(DataConfig, params["data"], "data")
    splits = make_splits(data_cfg.dataset, seed=params["seed"], train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    return data_cfg, splits, validation_set(params, splits)


def validation_set(params: Mapping, splits) -> ImageSet:
    """Held-out training images to choose settings on: those beyond ``data.train_size`` in the training split.

    The capped training split is a prefix of the whole one (``data.split_indices``), so these images are
    disjoint from every stage's training images, the scoring and calibration subsets and the test set. With
    no cap (every image trains), the scoring subset is used instead.
    """
    data_cfg = from_dict(DataConfig, params["data"], "data")
    whole = make_splits(data_cfg.dataset, seed=params["seed"], train_size=None, score_size=data_cfg.score_size,
                        calib_size=data_cfg.calib_size).train
    if len(whole) <= len(splits.train):
        return splits.score
    if not torch.equal(whole.labels[:len(splits.train)], splits.train.labels):   # the prefix property, checked
        raise RuntimeError("the capped training split is not a prefix of the whole one; see data.split_indices")
    return whole.subset(torch.arange(len(splits.train), len(whole)))


def lr_trial(params: Mapping, lr: float, step_lr: float, device: str | None = None, seed: int | None = None,
             bits: int | None = None) -> dict:
    """Train one supernet of ``replicates.model`` with these two learning rates; held-out top-1 per uniform level.

    ``seed``: the training seed (default: the study's ``seed``; the data split always uses the study's).
    ``bits``: train uniform LSQ WkAk alone with the same recipe instead (the baselines share the rates), and
    score that level only.
    """
    data_cfg, splits, held_out = _splits(params)
    eval_cfg = from_dict(EvalConfig, params["evaluation"], "evaluation")
    model = params["replicates"]["model"]
    cfg = replace(from_dict(OneShotConfig, params["oneshot"], "oneshot").for_model(model), lr=lr, step_lr=step_lr)
    levels = eval_cfg.levels
    if bits is not None:
        cfg, levels = cfg.baseline(bits), (bits,)
    spec = next(s for s in model_specs(params["models"]) if s.name == model)
    seed = params["seed"] if seed is None else seed
    torch.manual_seed(seed)
    float_model = load_fp_model(f"checkpoints/fp/{model}.pt", model, spec.width_mult, len(splits.train.classes))
    supernet = build_supernet(float_model, cfg.supernet_spec(), splits.calib, model_entry(model).input_size)
    run = train_oneshot(supernet, training_subset(splits.train, cfg.train_size), cfg, batch_size=data_cfg.batch_size,
                        pad=data_cfg.pad, flip=data_cfg.flip, seed=seed, device=pick_device(device), progress=False,
                        stop_on_nonfinite=False)      # a grid: a rate that diverges is a result, not an error
    acc = {str(b): recalibrated_accuracy(run.ema, run.ema.uniform_config(b), splits.calib, held_out) for b in levels}
    return {"recipe": "supernet" if bits is None else f"LSQ W{bits}A{bits} alone", "seed": seed,
            "lr": lr, "step_lr": step_lr, "heldout_images": len(held_out), "heldout_acc": acc, "mean_heldout_acc": sum(acc.values()) / len(acc),
            "train_seconds": round(run.seconds, 1)}


def regime_job(params: Mapping, model: str, width_mult: float, bits: Sequence[int], device: str | None = None) -> dict:
    """FP, then uniform LSQ alone at each of ``bits``, for one model and width; gaps on held-out and test images."""
    data_cfg, splits, held_out = _splits(params)
    fp_cfg = from_dict(FPConfig, params["fp"], "fp")
    cfg = from_dict(OneShotConfig, params["oneshot"], "oneshot").for_model(model)
    seed, dev = params["seed"], pick_device(device)
    classes, input_size = len(splits.train.classes), model_entry(model).input_size
    torch.manual_seed(seed)
    float_model = create_model(model, num_classes=classes, width_mult=width_mult)
    start = time.perf_counter()
    train_fp(float_model, splits.train, splits.score, epochs=fp_cfg.epochs, batch_size=data_cfg.batch_size,
             lr=fp_cfg.lr, momentum=fp_cfg.momentum, weight_decay=fp_cfg.weight_decay,
             warmup_epochs=fp_cfg.warmup_epochs, label_smoothing=fp_cfg.label_smoothing, pad=data_cfg.pad,
             flip=data_cfg.flip, seed=seed, device=dev, progress=False)
    out = {"model": model, "width_mult": width_mult, "params": sum(p.numel() for p in float_model.parameters()),
           "heldout_images": len(held_out),
           "fp": {"heldout_acc": evaluate(float_model, held_out), "test_acc": evaluate(float_model, splits.test),
                  "train_seconds": round(time.perf_counter() - start, 1)}, "lsq": {}}
    weights = {k: v.detach().cpu() for k, v in float_model.state_dict().items()}
    train = training_subset(splits.train, cfg.train_size)
    for b in bits:
        recipe = cfg.baseline(b)
        fresh = create_model(model, num_classes=classes, width_mult=width_mult)   # not the placed (maybe rerouted) one
        fresh.load_state_dict(weights)
        torch.manual_seed(seed)
        supernet = build_supernet(fresh, recipe.supernet_spec(), splits.calib, input_size)
        run = train_oneshot(supernet, train, recipe, batch_size=data_cfg.batch_size, pad=data_cfg.pad,
                            flip=data_cfg.flip, seed=seed, device=dev, progress=False)
        bit_cfg = run.ema.uniform_config(b)
        heldout = recalibrated_accuracy(run.ema, bit_cfg, splits.calib, held_out)
        test = recalibrated_accuracy(run.ema, bit_cfg, splits.calib, splits.test)
        out["lsq"][str(b)] = {"heldout_acc": heldout, "test_acc": test,
                              "fp_minus_lsq_heldout": out["fp"]["heldout_acc"] - heldout,
                              "fp_minus_lsq_test": out["fp"]["test_acc"] - test,
                              "gbitops": bitops(run.ema.cost_table, bit_cfg) / 1e9,
                              "train_seconds": round(run.seconds, 1)}
    out["macs"] = run.ema.cost_table.total_macs if bits else None
    return out


def run_jobs(fn: Callable[..., dict], jobs: Sequence[tuple], workers: int) -> list[dict]:
    """``fn(*job)`` for every job, ``workers`` at a time in spawned processes (1: in this process)."""
    if workers <= 1:
        return [fn(*job) for job in jobs]
    threads = max(1, torch.get_num_threads() // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        return list(pool.map(_call, [(fn, job) for job in jobs]))


def _call(item: tuple[Callable[..., dict], tuple]) -> dict:
    fn, job = item
    return fn(*job)


def lr_summary(trials: Sequence[Mapping]) -> list[dict]:
    """Per recipe and pair of rates: the mean held-out top-1 over the seeds run, its SD and the seeds."""
    groups: dict[tuple, list[Mapping]] = {}
    for t in trials:
        groups.setdefault((t["recipe"], t["lr"], t["step_lr"]), []).append(t)
    rows = []
    for (recipe, lr, step_lr), ts in groups.items():
        values = [t["mean_heldout_acc"] for t in ts]
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else float("nan")
        rows.append({"recipe": recipe, "lr": lr, "step_lr": step_lr, "seeds": [t["seed"] for t in ts],
                     "mean_heldout_acc": mean, "sd_over_seeds": sd})
    return rows


def _machine(device: str | None) -> dict:
    dev = pick_device(device)
    return {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=("lr", "regime"))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="result JSON (written atomically)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--jobs", type=int, default=1, help="trials run at once, in separate processes")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.02, 0.04, 0.08])
    parser.add_argument("--step-lrs", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: `seed`)")
    parser.add_argument("--baseline-bits", type=int, nargs="*", default=[],
                        help="also train uniform LSQ WkAk alone with each pair of rates, at these k")
    parser.add_argument("--models", nargs="+", default=["mobilenetv2_28", "efficientnet_lite_28"])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 3])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # its trials keep no checkpoints: an interrupted study starts over
    return run_command(lambda: _run(args), "mpq.studies.tuning", sys.argv[1:] if argv is None else argv, resumes=False)


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    for flag, values in (("--lrs", args.lrs), ("--step-lrs", args.step_lrs), ("--widths", args.widths)):
        if not all(math.isfinite(v) and v > 0 for v in values) or len(set(values)) != len(values):
            raise ValueError(f"{flag} {values}: must be distinct finite numbers > 0")
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds {args.seeds}: must be distinct")
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: must be at least 1")
    check_output(args.out, inputs=[args.params])
    start = time.perf_counter()
    if args.study == "lr":
        model = params["replicates"]["model"]
        if not Path(f"checkpoints/fp/{model}.pt").is_file():
            raise SystemExit(f"checkpoints/fp/{model}.pt is missing: run `dvc repro fp_train` first")
        seeds = args.seeds or [params["seed"]]
        jobs = [(params, lr, s, args.device, seed, bits) for bits in [None, *args.baseline_bits]
                for lr in args.lrs for s in args.step_lrs for seed in seeds]
        trials = run_jobs(lr_trial, jobs, args.jobs)
        summary = lr_summary(trials)
        best = max((r for r in summary if r["recipe"] == "supernet"), key=lambda r: r["mean_heldout_acc"])
        result = {"study": "lr", "model": model, "criterion": "mean held-out top-1 over evaluation.levels (supernet), "
                  "averaged over the training seeds", "trials": trials, "summary": summary,
                  "chosen": {"lr": best["lr"], "step_lr": best["step_lr"]},
                  "current": {"lr": params["oneshot"]["lr"], "step_lr": params["oneshot"]["step_lr"]}}
    else:
        jobs = [(params, m, w, args.bits, args.device) for m in args.models for w in args.widths]
        result = {"study": "regime", "target_gap_points": [2, 5], "runs": run_jobs(regime_job, jobs, args.jobs)}
    result |= {"profile": params.get("profile"), "seed": params["seed"], "jobs": args.jobs,
               "wall_seconds": round(time.perf_counter() - start, 1), **_machine(args.device)}
    write_json(result, args.out)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
