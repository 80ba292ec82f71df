"""The one-shot supernets and the uniform LSQ baselines (notebooks 02 and 03; claim C1, the uniform rows of the
paper's Tables 2-4).

``train_supernets`` trains one weight-coupled supernet per model from its FP checkpoint and evaluates its EMA copy
at every uniform level (BN recalibrated on the calibration images); ``train_baselines`` trains, with the same
recipe and budget, one plain LSQ model per uniform bit-width (a supernet with the single candidate (k, k) and
no random paths). The other functions turn their results into the notebooks' tables and findings.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from mpq.config import BaselineConfig, DataConfig, EvalConfig, ModelSpec
from mpq.data.datasets import ImageSet, Splits
from mpq.method.cost import bitops, cost_rows, model_size_mib
from mpq.method.supernet import Supernet
from mpq.models import model_entry
from mpq.search.evaluation import recalibrated_accuracy
from mpq.studies.health import training_health
from mpq.studies.model_bits import model_bits
from mpq.training.fp import evaluate, load_fp_model
from mpq.training.oneshot import build_supernet, run_meta, train_oneshot
from mpq.training.recipe import OneShotConfig


def model_settings(bits_section: Mapping[str, Any] | None, specs: Sequence[ModelSpec], cfg: OneShotConfig,
                   eval_cfg: EvalConfig) -> tuple[dict[str, OneShotConfig], dict[str, EvalConfig]]:
    """Each model's one-shot recipe and uniform evaluation levels under its floor in ``bits_section`` (the
    ``model_bits`` section of params.yaml; notebook 02).

    The shared levels are checked against the shared candidates, then each model's against its own.
    """
    eval_cfg.check_candidates(cfg.w_bit_choices, cfg.a_bit_choices)
    model_cfg = {s.name: model_bits(bits_section, s.name).oneshot(cfg) for s in specs}
    model_eval = {s.name: model_bits(bits_section, s.name).evaluation(eval_cfg) for s in specs}
    for name, c in model_cfg.items():
        model_eval[name].check_candidates(c.w_bit_choices, c.a_bit_choices)
    return model_cfg, model_eval


def uniform_accuracies(supernet: Supernet, levels: Sequence[int], calib: ImageSet, test: ImageSet, *,
                       batch_size: int) -> dict[int, dict[str, float]]:
    """Test top-1 (BN recalibrated on ``calib``), G-BitOPs and size (MiB) of ``supernet`` at each uniform WkAk of
    ``levels``, in that order (the uniform rows of Tables 2-4)."""
    table = supernet.cost_table
    uniform = {}
    for bits in levels:
        bit_cfg = supernet.uniform_config(bits)
        uniform[bits] = {"test_acc": recalibrated_accuracy(supernet, bit_cfg, calib, test, batch_size=batch_size),
                         "gbitops": bitops(table, bit_cfg) / 1e9, "size_mib": model_size_mib(table, bit_cfg)}
    return uniform


def lowest_point(supernet: Supernet, candidates: Mapping[str, tuple[Sequence[int], Sequence[int]]], calib: ImageSet,
                 test: ImageSet, *, batch_size: int) -> dict[str, Any]:
    """The supernet's own lowest point: every layer at the lowest of its current candidates (``candidates``,
    the scheduler's last decision applied), as the official evaluation measures it. Test top-1 (BN
    recalibrated), G-BitOPs, size, and how many layers sit above the uniform lowest weight bit-width."""
    bit_cfg = supernet.min_config(candidates)
    floor = supernet.min_config()
    return {"test_acc": recalibrated_accuracy(supernet, bit_cfg, calib, test, batch_size=batch_size),
            "gbitops": bitops(supernet.cost_table, bit_cfg) / 1e9, "size_mib": model_size_mib(supernet.cost_table, bit_cfg),
            "layers_above_floor": sum(bit_cfg[n][0] > floor[n][0] for n in bit_cfg)}


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
        uniform = uniform_accuracies(run.ema, model_eval[spec.name].levels, splits.calib, splits.test,
                                     batch_size=eval_batch_size)
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


def cost_summary(cost: pd.DataFrame) -> pd.DataFrame:
    """Notebook 02's cost table in one row per model, from the per-layer table at uniform W4A4 (``cost_rows``,
    written to ``reports/tables/supernet_cost.csv``): the searchable and fixed layers, MACs, BitOPs, the fixed
    layers' share of them and the costliest searchable layer's."""
    rows = []
    for model, g in cost.groupby("model", sort=False):
        fixed = g.fixed.astype(bool)
        total = int(g.bitops.sum())
        top = g[~fixed].sort_values("bitops", ascending=False, kind="stable").iloc[0]
        rows.append({"model": model, "searchable layers": int((~fixed).sum()), "fixed layers (8x8)": int(fixed.sum()),
                     "MACs (M)": g.macs.sum() / 1e6, "G-BitOPs": total / 1e9,
                     "fixed layers' share (%)": 100 * g.bitops[fixed].sum() / total,
                     "costliest searchable layer": top["name"],
                     "its share (%)": 100 * top.bitops / total})
    return pd.DataFrame(rows)


def supernet_table(results: Mapping[str, Mapping]) -> pd.DataFrame:
    """Notebook 02's table: per model, FP and uniform WkAk top-1 (%) (the lowest uniform row ignores the
    scheduler's last decision), the supernet's own lowest point, training time, layers without 2-bit, health."""
    return pd.DataFrame([{"model": name, "FP (%)": 100 * r["fp_test_acc"],
                          **{f"W{b}A{b} (%)": 100 * u["test_acc"] for b, u in r["uniform"].items()},
                          "own lowest point (%)": 100 * r["lowest"]["test_acc"],
                          "training (s)": r["train_seconds"],
                          "layers without 2-bit at the end": len(r["frozen_at_end"]),
                          "run": "collapsed" if r["health"]["collapsed"] else "healthy"}
                         for name, r in results.items()])


def supernet_findings(results: Mapping[str, Mapping]) -> list[str]:
    """Notebook 02's findings (claim C1): per model its uniform accuracies from one training and the gaps to FP."""
    lines = []
    for name, r in results.items():
        u = {int(b): 100 * v["test_acc"] for b, v in r["uniform"].items()}
        lines.append(f"{name}: one supernet, trained once ({r['epochs']} epochs over {r['train_images']} images, "
                     f"{r['train_seconds']:.0f} s), gives "
                     + ", ".join(f"W{b}A{b} {a:.2f}%" for b, a in sorted(u.items()))
                     + f" with no retraining; FP {100 * r['fp_test_acc']:.2f}%, so "
                     + " and ".join(f"W{b}A{b} is {r[f'gap_w{b}a{b}_points']:.2f}" for b in (4, 2)
                                    if f"gap_w{b}a{b}_points" in r)
                     + " points under FP" + ("" if 2 in r["w_bit_choices"] else
                                              f" (candidates {min(r['w_bit_choices'])}..{max(r['w_bit_choices'])}: "
                                              "model_bits)"))
    for name, r in results.items():
        low, health = r["lowest"], r["health"]
        lines.append(f"{name}: its own lowest point (each layer at the lowest of its candidates after the scheduler's "
                     f"last decision, {low['layers_above_floor']} layers above the uniform floor) scores "
                     f"{100 * low['test_acc']:.2f}% at {low['gbitops']:.4f} G-BitOPs; the uniform lowest row above "
                     "ignores that decision and is shown beside it only.")
        lines.append(f"{name}: training " + ("collapsed: " + health["why"] if health["collapsed"] else
                     f"stayed healthy (finite losses; max path {100 * health['max_path_heldout_acc']:.2f}% on "
                     f"{health['heldout_images']} held-out images, FP {100 * health['fp_heldout_acc']:.2f}%)"))
    return lines


def train_baselines(specs: Sequence[ModelSpec], splits: Splits, train: ImageSet, cfg: OneShotConfig,
                    base_cfg: BaselineConfig, bits_section: Mapping[str, Any] | None, data_cfg: DataConfig, *,
                    eval_batch_size: int, seed: int, device: torch.device, fp_folder: str | Path = "checkpoints/fp",
                    folder: str | Path = "checkpoints/baselines") -> dict[str, dict[int, dict[str, float]]]:
    """Train a uniform LSQ model per model and bit-width k of ``base_cfg.levels`` at or above the model's floor in
    ``bits_section`` (the ``model_bits`` section; notebook 03, the fixed-precision rows of Tables 2-4).

    Each starts from ``fp_folder/<model>.pt`` with the global torch seed ``seed`` and trains ``cfg.baseline(k)``
    (the supernet's recipe and budget, max path only) on ``train``; checkpoint ``folder/<model>_w<k>a<k>.pt``.
    Returns model -> k -> {test top-1 (BN recalibrated on the calibration images), training seconds, epochs,
    G-BitOPs, size in MiB, the run's health (``health.training_health``)}.
    """
    results = {}
    for spec in specs:
        results[spec.name] = {}
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
            acc = recalibrated_accuracy(run.ema, bit_cfg, splits.calib, splits.test, batch_size=eval_batch_size)
            results[spec.name][bits] = {"test_acc": acc, "train_seconds": round(run.seconds, 1),
                                        "epochs": base.epochs,
                                        "gbitops": bitops(run.ema.cost_table, bit_cfg) / 1e9,
                                        "size_mib": model_size_mib(run.ema.cost_table, bit_cfg), "health": health}
            print(spec.name, f"W{bits}A{bits}", f"{100 * acc:.2f}%", f"{run.seconds:.0f}s")
    return results


def baseline_comparison(results: Mapping[str, Mapping[int, Mapping]], supernet: Mapping[str, Mapping]
                        ) -> pd.DataFrame:
    """Notebook 03's table: per model and bit-width, FP, LSQ alone, the supernet at the same uniform WkAk
    (``supernet``: the ``models`` of reports/metrics/supernet.json, levels as strings) and their difference."""
    rows = []
    for name, per_bits in results.items():
        s = supernet.get(name, {})
        for bits, r in per_bits.items():
            sn = s.get("uniform", {}).get(str(bits), {}).get("test_acc")
            rows.append({"model": name, "bits (W = A)": bits, "FP (%)": 100 * s["fp_test_acc"] if s else None,
                         "LSQ alone (%)": 100 * r["test_acc"], "supernet (%)": 100 * sn if sn is not None else None,
                         "supernet minus LSQ (points)": 100 * (sn - r["test_acc"]) if sn is not None else None,
                         "G-BitOPs": r["gbitops"], "size (MiB)": r["size_mib"], "LSQ training (s)": r["train_seconds"]})
    return pd.DataFrame(rows)


def baseline_findings(compare: pd.DataFrame, epochs: int, train_images: int) -> list[str]:
    """Notebook 03's findings: per model the LSQ accuracies and the supernet's difference to them, and the
    baselines' budget (``epochs`` over ``train_images``)."""
    lines = []
    for name, g in compare.groupby("model", sort=False):
        lines.append(f"{name}: LSQ trained alone " + ", ".join(f"W{b}A{b} {a:.2f}%" for b, a in
                                                                 zip(g["bits (W = A)"], g["LSQ alone (%)"]))
                     + "; the supernet minus LSQ alone: " + ", ".join(
                         f"{d:+.2f} at W{b}A{b}" for b, d in zip(g["bits (W = A)"], g["supernet minus LSQ (points)"])
                         if pd.notna(d)) + " points")
    lines.append(f"Each baseline trains {epochs} epochs over {train_images} images with the supernet's "
                 "recipe on the max path only; the supernet is one model for every row.")
    return lines


def read_supernet_models(path: str | Path = "reports/metrics/supernet.json") -> dict[str, dict]:
    """The per-model results that notebook 02 wrote (``models`` of its metrics; uniform levels as strings)."""
    return json.loads(Path(path).read_text())["models"]
