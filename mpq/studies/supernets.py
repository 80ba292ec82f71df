"""The one-shot supernets and the uniform LSQ baselines (notebooks 02 and 03; claim C1, the uniform rows of the
paper's Tables 2-4).

``train_supernets`` trains one weight-coupled supernet per model from its FP checkpoint and evaluates its EMA copy
at every uniform level (BN recalibrated on the calibration images); ``train_baselines`` trains, with the same
recipe and budget, one plain LSQ model per uniform bit-width (a supernet with the single candidate (k, k) and
no random paths).

The DVC stages ``supernet`` and ``baselines`` run them as command lines, ``python -m mpq.studies.supernets
supernet --out checkpoints/supernet`` and ``... baselines --out checkpoints/baselines``, which write each run's
results (``run.json``, no wall times) beside its checkpoints and the wall times to ``reports/stages/<stage>.json``.
Notebooks 02 and 03 read them back with ``load_supernets`` and ``load_baselines``; their tables and findings are
in ``mpq.studies.supernet_tables``, so editing those trains nothing.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mpq.config import BaselineConfig, DataConfig, EvalConfig, ModelSpec, from_dict, load_params, model_specs
from mpq.data.datasets import ImageSet, Splits, make_splits
from mpq.method.cost import bitops, cost_rows, model_size_mib
from mpq.method.supernet import Supernet
from mpq.models import model_entry
from mpq.search.evaluation import recalibrated_accuracy, test_predictions
from mpq.studies.health import training_health
from mpq.studies.model_bits import model_bits
from mpq.training.checkpoint import (atomic_folder, check_output, merge_timings, read_stage_record, read_stage_result,
                                     run_command, split_timings, write_json, write_stage_record)
from mpq.training.fp import evaluate, load_fp_model, pick_device
from mpq.training.oneshot import build_supernet, run_meta, train_oneshot, training_subset
from mpq.training.recipe import OneShotConfig


def model_settings(bits_section: Mapping[str, Any] | None, specs: Sequence[ModelSpec], cfg: OneShotConfig,
                   eval_cfg: EvalConfig) -> tuple[dict[str, OneShotConfig], dict[str, EvalConfig]]:
    """Each model's one-shot recipe and uniform evaluation levels under its floor in ``bits_section`` (the
    ``model_bits`` section of params.yaml; notebook 02); each recipe has its family's scheduler rule
    (``OneShotConfig.for_model``).

    The shared levels are checked against the shared candidates, then each model's against its own.
    """
    eval_cfg.check_candidates(cfg.w_bit_choices, cfg.a_bit_choices)
    model_cfg = {s.name: model_bits(bits_section, s.name).oneshot(cfg).for_model(s.name) for s in specs}
    model_eval = {s.name: model_bits(bits_section, s.name).evaluation(eval_cfg) for s in specs}
    for name, c in model_cfg.items():
        model_eval[name].check_candidates(c.w_bit_choices, c.a_bit_choices)
    return model_cfg, model_eval


def scored_predictions(supernet: Supernet, bit_cfg: Mapping[str, Sequence[int]], calib: ImageSet, test: ImageSet, *,
                       batch_size: int) -> tuple[float, Tensor]:
    """Test top-1 of ``supernet`` at ``bit_cfg`` (BN recalibrated on ``calib``) and its predicted class per test
    image; the accuracy is the one ``recalibrated_accuracy`` gives (correct images over all, the same batches)."""
    preds = test_predictions(supernet, bit_cfg, calib, test, batch_size=batch_size)
    return int((preds == test.labels).sum()) / len(test), preds


def uniform_accuracies(supernet: Supernet, levels: Sequence[int], calib: ImageSet, test: ImageSet, *,
                       batch_size: int, preds: dict[str, Tensor] | None = None) -> dict[int, dict[str, float]]:
    """Test top-1 (BN recalibrated on ``calib``), G-BitOPs and size (MiB) of ``supernet`` at each uniform WkAk of
    ``levels``, in that order (the uniform rows of Tables 2-4); with ``preds``, each row's predicted classes are
    added to it as ``"supernet WkAk"`` (C1 pairs them with LSQ's per image)."""
    table = supernet.cost_table
    uniform = {}
    for bits in levels:
        bit_cfg = supernet.uniform_config(bits)
        acc, predicted = scored_predictions(supernet, bit_cfg, calib, test, batch_size=batch_size)
        if preds is not None:
            preds[f"supernet W{bits}A{bits}"] = predicted
        uniform[bits] = {"test_acc": acc, "gbitops": bitops(table, bit_cfg) / 1e9,
                         "size_mib": model_size_mib(table, bit_cfg)}
    return uniform


PREDICTIONS = "{model}_predictions.npz"     # per model, beside its checkpoints: the test labels and each row's classes


def save_predictions(folder: str | Path, model: str, labels: Tensor, preds: Mapping[str, Tensor]) -> Path:
    """``folder/<model>_predictions.npz``: the test labels and the predicted class per test image of each row of
    ``preds`` (int16, plain arrays: read back with ``replicate_tables.read_correct``)."""
    path = Path(folder) / PREDICTIONS.format(model=model)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, labels=labels.cpu().numpy().astype(np.int16),
             **{k: p.cpu().numpy().astype(np.int16) for k, p in preds.items()})
    return path


def lowest_point(supernet: Supernet, candidates: Mapping[str, tuple[Sequence[int], Sequence[int]]], calib: ImageSet,
                 test: ImageSet, *, batch_size: int) -> dict[str, Any]:
    """The supernet's own lowest point: every layer at the lowest of its current weight and activation candidates
    (``candidates``, the scheduler's last decision applied: a frozen ResNet layer at W3A3, a frozen MobileNetV2
    layer at W3 with its lowest activations). Test top-1 (BN recalibrated), G-BitOPs, size, and how many layers sit
    above the uniform lowest point: in weights or activations (``layers_above_floor``), and in each."""
    bit_cfg = supernet.min_config(candidates)
    floor = supernet.min_config()
    return {"test_acc": recalibrated_accuracy(supernet, bit_cfg, calib, test, batch_size=batch_size),
            "gbitops": bitops(supernet.cost_table, bit_cfg) / 1e9, "size_mib": model_size_mib(supernet.cost_table, bit_cfg),
            "layers_above_floor": sum(bit_cfg[n] != floor[n] for n in bit_cfg),
            "weights_above_floor": sum(bit_cfg[n][0] > floor[n][0] for n in bit_cfg),
            "activations_above_floor": sum(bit_cfg[n][1] > floor[n][1] for n in bit_cfg)}


def train_supernets(specs: Sequence[ModelSpec], splits: Splits, train: ImageSet,
                    model_cfg: Mapping[str, OneShotConfig], model_eval: Mapping[str, EvalConfig],
                    data_cfg: DataConfig, *, eval_batch_size: int, seed: int, device: torch.device,
                    fp_folder: str | Path = "checkpoints/fp", folder: str | Path = "checkpoints/supernet"
                    ) -> dict[str, Any]:
    """Train one supernet per model from ``fp_folder/<model>.pt`` and evaluate it (notebook 02, claim C1).

    Per model: the FP accuracy on the test set, then (global torch seed ``seed``) the supernet is built and
    trained one-shot on ``train`` with ``model_cfg[model]`` (checkpoint ``folder/<model>.pt``, resumable), and its
    EMA copy is evaluated at ``model_eval[model].levels``. Returns ``{"models": model -> result (the metrics
    entry), "histories": model -> training history, "cost": the per-layer cost table at uniform W4A4 of every
    model, one DataFrame with a ``model`` column}``.
    """
    results, histories, cost_tables = {}, {}, []
    for spec in specs:
        float_model = load_fp_model(f"{fp_folder}/{spec.name}.pt", spec.name, spec.width_mult,
                                    len(splits.train.classes))
        fp_acc = evaluate(float_model.to(device), splits.test)
        fp_heldout = evaluate(float_model, splits.score)
        torch.manual_seed(seed)
        mcfg = model_cfg[spec.name]
        supernet = build_supernet(float_model.cpu(), mcfg.supernet_spec(), splits.calib,
                                  model_entry(spec.name).input_size)
        run = train_oneshot(supernet, train, mcfg, batch_size=data_cfg.batch_size, pad=data_cfg.pad,
                            flip=data_cfg.flip, seed=seed, device=device, checkpoint=Path(folder) / f"{spec.name}.pt",
                            meta=run_meta(spec.name, spec.width_mult, splits, train))
        eval_start = time.perf_counter()
        health = training_health(run.history.loss, run.ema, splits.calib, splits.score, fp_heldout)
        preds: dict[str, Tensor] = {}
        uniform = uniform_accuracies(run.ema, model_eval[spec.name].levels, splits.calib, splits.test,
                                     batch_size=eval_batch_size, preds=preds)
        save_predictions(folder, spec.name, splits.test.labels, preds)
        lowest = lowest_point(run.ema, run.candidates(), splits.calib, splits.test, batch_size=eval_batch_size)
        results[spec.name] = {
            "fp_test_acc": fp_acc, "uniform": uniform, "train_images": len(train), "epochs": mcfg.epochs,
            "train_seconds": round(run.seconds, 1), "eval_seconds": round(time.perf_counter() - eval_start, 1),
            "steps": mcfg.epochs * (len(train) // data_cfg.batch_size), "width_mult": spec.width_mult,
            "frozen_at_end": run.frozen, "lowest": lowest, "health": health,
            "w_bit_choices": list(mcfg.w_bit_choices), "a_bit_choices": list(mcfg.a_bit_choices),
            **{f"gap_w{b}a{b}_points": round(100 * (fp_acc - uniform[b]["test_acc"]), 2) for b in (4, 2)
               if b in uniform},
        }
        histories[spec.name] = run.history.as_dict()
        rows = pd.DataFrame(cost_rows(run.ema.cost_table, run.ema.uniform_config(4)))
        cost_tables.append(rows.assign(model=spec.name))
        print(spec.name, {b: round(100 * u["test_acc"], 2) for b, u in uniform.items()}, f"FP {100 * fp_acc:.2f}",
              f"train {run.seconds:.0f}s")
    return {"models": results, "histories": histories, "cost": pd.concat(cost_tables)}


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """``table`` as CSV at ``path`` (folder made if missing), without its index."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


def train_baselines(specs: Sequence[ModelSpec], splits: Splits, train: ImageSet, cfg: OneShotConfig,
                    base_cfg: BaselineConfig, bits_section: Mapping[str, Any] | None, data_cfg: DataConfig, *,
                    eval_batch_size: int, seed: int, device: torch.device, fp_folder: str | Path = "checkpoints/fp",
                    folder: str | Path = "checkpoints/baselines") -> dict[str, dict[int, dict[str, float]]]:
    """Train a uniform LSQ model per model and bit-width k of ``base_cfg.levels`` at or above the model's floor in
    ``bits_section`` (the ``model_bits`` section; notebook 03, the fixed-precision rows of Tables 2-4).

    Each starts from ``fp_folder/<model>.pt`` with the global torch seed ``seed`` and trains ``cfg.baseline(k)``
    (the supernet's recipe and budget, max path only) on ``train``; checkpoint ``folder/<model>_w<k>a<k>.pt``.
    Returns model -> k -> {test top-1 (BN recalibrated on the calibration images), training seconds, epochs,
    G-BitOPs, size in MiB, the run's health (``health.training_health``)}; each model's predicted classes per test
    image (rows ``"LSQ WkAk"``) go to ``folder/<model>_predictions.npz`` (``save_predictions``).
    """
    results = {}
    for spec in specs:
        results[spec.name] = {}
        preds: dict[str, Tensor] = {}
        for bits in model_bits(bits_section, spec.name).baseline_levels(base_cfg):
            base = cfg.baseline(bits)
            float_model = load_fp_model(f"{fp_folder}/{spec.name}.pt", spec.name, spec.width_mult,
                                        len(splits.train.classes))
            fp_heldout = evaluate(float_model, splits.score)
            torch.manual_seed(seed)
            model = build_supernet(float_model, base.supernet_spec(), splits.calib, model_entry(spec.name).input_size)
            run = train_oneshot(model, train, base, batch_size=data_cfg.batch_size, pad=data_cfg.pad,
                                flip=data_cfg.flip, seed=seed, device=device,
                                checkpoint=Path(folder) / f"{spec.name}_w{bits}a{bits}.pt",
                                meta=run_meta(spec.name, spec.width_mult, splits, train))
            health = training_health(run.history.loss, run.ema, splits.calib, splits.score, fp_heldout, margin=None)
            bit_cfg = run.ema.uniform_config(bits)
            acc, preds[f"LSQ W{bits}A{bits}"] = scored_predictions(run.ema, bit_cfg, splits.calib, splits.test,
                                                                  batch_size=eval_batch_size)
            results[spec.name][bits] = {"test_acc": acc, "train_seconds": round(run.seconds, 1),
                                        "epochs": base.epochs,
                                        "gbitops": bitops(run.ema.cost_table, bit_cfg) / 1e9,
                                        "size_mib": model_size_mib(run.ema.cost_table, bit_cfg), "health": health}
            print(spec.name, f"W{bits}A{bits}", f"{100 * acc:.2f}%", f"{run.seconds:.0f}s")
        if preds:
            save_predictions(folder, spec.name, splits.test.labels, preds)
    return results


# --- the stages' results on disk -------------------------------------------------------------------------------

RUN_FILE = "run.json"
TIMING_KEYS = ("train_seconds", "eval_seconds", "seconds")    # wall times: kept in the stage record


def _int_keys(d: Mapping) -> dict:
    return {int(k): v for k, v in d.items()}


def save_run(run: Mapping[str, Any], folder: str | Path) -> dict:
    """Write a stage's result (``train_supernets``' or ``train_baselines``') as ``folder/run.json`` without its wall
    times (the cost table as its columns and rows); return the wall times, for the stage record."""
    run = dict(run)
    if isinstance(run.get("cost"), pd.DataFrame):
        run["cost"] = run["cost"].to_dict(orient="split", index=False)   # columns in order, then the rows
    plain, timings = split_timings(run, TIMING_KEYS)
    write_json(plain, Path(folder) / RUN_FILE)
    return timings


def _read_run(folder: str | Path, stage: str, stages: str | Path) -> dict:
    run = read_stage_result(Path(folder) / RUN_FILE, stage)
    return merge_timings(run, read_stage_record(stage, stages).get("timings", {}))


def load_supernets(folder: str | Path = "checkpoints/supernet", stages: str | Path = "reports/stages") -> dict:
    """The supernet stage's results as ``train_supernets`` returned them (wall times from the stage record)."""
    run = _read_run(folder, "supernet", stages)
    for result in run["models"].values():
        result["uniform"] = _int_keys(result["uniform"])
    run["cost"] = pd.DataFrame(run["cost"]["data"], columns=run["cost"]["columns"])
    return run


def load_baselines(folder: str | Path = "checkpoints/baselines", stages: str | Path = "reports/stages") -> dict:
    """The baselines stage's results as ``train_baselines`` returned them: model -> bits -> record."""
    return {name: _int_keys(per_bits) for name, per_bits in _read_run(folder, "baselines", stages)["models"].items()}


# --- the command line (DVC stages supernet and baselines) ------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.supernets",
                                     description="Train the supernets or the uniform LSQ baselines (DVC stages).")
    parser.add_argument("stage", choices=("supernet", "baselines"), help="what to train")
    parser.add_argument("--out", required=True, help="output folder (replaced when the run completes)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--fp", default="checkpoints/fp", help="folder of the FP checkpoints (default: %(default)s)")
    parser.add_argument("--stages", default="reports/stages", help="folder of the stage records (wall times)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_command(lambda: _run(args), "mpq.studies.supernets", sys.argv[1:] if argv is None else argv,
                       resumes=False)


def _run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    params = load_params(args.params)
    data_cfg = from_dict(DataConfig, params["data"], "data")
    cfg = from_dict(OneShotConfig, params["oneshot"], "oneshot")
    eval_cfg = from_dict(EvalConfig, params["evaluation"], "evaluation")
    specs, seed = model_specs(params["models"]), params["seed"]
    base_cfg = from_dict(BaselineConfig, params["baselines"], "baselines") if args.stage == "baselines" else None
    model_cfg, model_eval = model_settings(params.get("model_bits"), specs, cfg, eval_cfg)
    check_output(args.out, folder=True, inputs=[args.params, args.fp], result=RUN_FILE)
    device = pick_device()            # each model seeds the global generator itself (train_supernets, train_baselines)
    splits = make_splits(data_cfg.dataset, seed=seed, train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    train = training_subset(splits.train, cfg.train_size)
    with atomic_folder(args.out) as work:
        if args.stage == "supernet":
            run = train_supernets(specs, splits, train, model_cfg, model_eval, data_cfg,
                                  eval_batch_size=eval_cfg.batch_size, seed=seed, device=device, fp_folder=args.fp,
                                  folder=work)
        else:
            run = {"models": train_baselines(specs, splits, train, cfg, base_cfg, params.get("model_bits"), data_cfg,
                                             eval_batch_size=eval_cfg.batch_size, seed=seed, device=device,
                                             fp_folder=args.fp, folder=work)}
        timings = save_run(run, work)
    write_stage_record(args.stage, time.perf_counter() - start, args.stages, timings=timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
