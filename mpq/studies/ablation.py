"""One run of the interference experiments on a real model: a cell of the T6 ablation, or the run
without the 2-bit weight candidate (F2/T1). docs/method.md section 4; notebook 05 aggregates the runs.

A run trains a one-shot supernet from the study's FP checkpoint with the ``oneshot`` recipe, changed
only where its cell says (scheduler and IDM on or off, 2-bit weights or not) and in its images per
epoch (``ablation.train_size``), with its own training seed; the data split is the study's (``seed``),
so every run is scored and tested on the same images and runs compare pairwise. It records:

- the oscillation of the integer weight levels at 4-6 bits during training (``OscillationMonitor``);
- test predictions at the run's own lowest point (each layer at its lowest current candidate, the
  scheduler's last decision applied), at uniform W2A2 (which ignores that decision; shown beside only)
  and W3A3, and for the greedy no-retraining configuration at each of ``ablation.levels`` (searched on the
  held-out scoring images, within the scheduler's last decision);
- the distortion of BN outputs at the own lowest point against the max path on calibration images, per
  layer (and at the uniform lowest point, beside it), and a sample of one layer's values for the density
  figure (F3/F4);
- the run's health (``health.training_health``): finite losses, its max path on held-out images.

Command line (one DVC matrix stage per cell and seed)::

    python -m mpq.studies.ablation --cell both --seed 1 --out checkpoints/ablation/both-1

The output folder appears whole or not at all: it is written beside its place and renamed at the end;
an interrupted run resumes from its last epoch.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from mpq.training.checkpoint import check_output, run_command, write_json
from mpq.config import AblationConfig, DataConfig, EvalConfig, SearchConfig, from_dict, load_params, model_specs
from mpq.method.cost import bitops, bitops_level, level_bitops, phase1_budget
from mpq.data.datasets import ImageSet, batches, make_splits
from mpq.search.evaluation import make_scorer, recalibrate, search_space, test_predictions
from mpq.method.losses import capture_bn_outputs
from mpq.models import model_entry
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import build_supernet, run_meta, train_oneshot, training_subset
from mpq.method.scheduler import OscillationMonitor
from mpq.search.space import cfg_to_json
from mpq.search.greedy import greedy_front
from mpq.method.supernet import Supernet
from mpq.studies.health import training_health
from mpq.training.fp import evaluate, load_fp_model, pick_device, to_device

log = logging.getLogger(__name__)


def cell_config(cfg: OneShotConfig, cell: str, train_size: int) -> OneShotConfig:
    """The one-shot recipe of an ablation cell: ``cfg`` with the cell's switches and ``train_size``."""
    switches = {"plain": (False, False), "sched": (True, False), "idm": (False, True), "both": (True, True),
                "no2bit": (False, False)}
    if cell not in switches:
        raise ValueError(f"unknown ablation cell {cell!r}; choose one of {list(switches)}")
    scheduler, idm = switches[cell]
    changes = {"scheduler": scheduler, "idm": idm, "train_size": train_size}
    if cell == "no2bit":          # interference is a matter of the shared weights: drop 2-bit weights only
        w = tuple(b for b in cfg.w_bit_choices if b != 2)
        if not w:
            raise ValueError("ablation cell 'no2bit' needs a weight candidate other than 2")
        changes["w_bit_choices"] = w
    return dataclasses.replace(cfg, **changes)


@torch.no_grad()
def bn_distortion(supernet: Supernet, low: Mapping[str, Sequence[int]], high: Mapping[str, Sequence[int]],
                  calib: ImageSet, images: int, sample_layer: str, sample_size: int = 20000
                  ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """BN outputs at ``low`` against ``high`` on the first ``images`` calibration images.

    Each configuration's BN statistics are recalibrated on ``calib`` first. Per searchable layer:
    ``mean((f_low - f_high)^2) / var(f_high)``, the distortion relative to the feature's spread. Also a
    fixed sample of ``sample_layer``'s values under each configuration (same positions in both).
    """
    device = next(supernet.parameters()).device
    x = to_device(*next(batches(calib, images, shuffle=False)), device)[0]
    bns = {name: supernet.model.get_submodule(bn) for name, bn in supernet.bn_of.items()}
    feats = []
    for bit_cfg in (low, high):
        recalibrate(supernet, bit_cfg, calib)
        supernet.eval()
        with capture_bn_outputs(bns) as out:
            supernet(x)
        feats.append({n: f.float() for n, f in out.items()})
    low_f, high_f = feats
    distortion = {n: float((low_f[n] - high_f[n]).pow(2).mean() / high_f[n].var().clamp_min(1e-12)) for n in bns}
    flat_low, flat_high = low_f[sample_layer].flatten(), high_f[sample_layer].flatten()
    idx = torch.randperm(flat_low.numel(), generator=torch.Generator().manual_seed(0))[:sample_size]
    return distortion, flat_low[idx].cpu().numpy(), flat_high[idx].cpu().numpy()


def run_cell(params: Mapping, cell: str, seed: int, out: str | Path, *, progress: bool = False) -> dict:
    """Train, measure and search one (cell, seed); write ``out/`` (result.json, predictions.npz,
    features.npz, supernet.pt) and return the result."""
    ab = from_dict(AblationConfig, params["ablation"], "ablation")
    data_cfg = from_dict(DataConfig, params["data"], "data")
    eval_cfg = from_dict(EvalConfig, params["evaluation"], "evaluation")
    search_cfg = from_dict(SearchConfig, params["search"], "search")
    base = from_dict(OneShotConfig, params["oneshot"], "oneshot")
    spec = next((s for s in model_specs(params["models"]) if s.name == ab.model), None)
    if spec is None:
        raise ValueError(f"ablation.model {ab.model!r} is not in the models section {list(params['models'])}")
    cfg = cell_config(base, cell, ab.train_size)
    out = Path(out)
    work = out.with_name(f".{out.name}.partial")        # resumable; renamed to ``out`` when complete
    work.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    splits = make_splits(data_cfg.dataset, seed=params["seed"], train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    train = training_subset(splits.train, cfg.train_size)
    classes = len(splits.train.classes)
    float_model = load_fp_model(f"checkpoints/fp/{spec.name}.pt", spec.name, spec.width_mult, classes)
    fp_heldout = evaluate(float_model, splits.score)
    torch.manual_seed(seed)
    supernet = build_supernet(float_model, cfg.supernet_spec(), splits.calib, model_entry(spec.name).input_size)
    monitor = OscillationMonitor(ab.monitor_bits, ab.monitor_every)
    run = train_oneshot(supernet, train, cfg, batch_size=data_cfg.batch_size, pad=data_cfg.pad, flip=data_cfg.flip,
                        seed=seed, device=device, checkpoint=work / "supernet.pt", progress=progress,
                        meta=run_meta(spec.name, spec.width_mult, splits, train, cell=cell), on_step=monitor)
    if monitor.steps and monitor.steps[-1] != cfg.epochs * (len(train) // data_cfg.batch_size):
        log.warning("%s-%d resumed mid-run: its oscillation record covers only the last part", cell, seed)
    ema, table = run.ema, run.ema.cost_table
    eval_start = time.perf_counter()
    health = training_health(run.history.loss, ema, splits.calib, splits.score, fp_heldout)
    # uniform W2A2 ignores the scheduler's last decision; "lowest" is each layer's lowest current candidate
    configs = {f"W{b}A{b}": ema.uniform_config(b) for b in (2, 3)
               if b in cfg.a_bit_choices and b >= min(cfg.w_bit_choices)}
    configs["lowest"] = ema.min_config(run.candidates())
    search_seconds, searched = 0.0, {}
    if cell != "no2bit":
        score_set = splits.score.subset(torch.arange(min(search_cfg.score_size, len(splits.score))))
        space = search_space(ema, run.candidates())
        targets = [level_bitops(table, level) for level in ab.levels]
        start = time.perf_counter()
        front = greedy_front(space, make_scorer(ema, score_set, metric=search_cfg.metric), lambda c: bitops(table, c),
                             targets, [phase1_budget(table, t, a_bits=search_cfg.start_bits) for t in targets],
                             start_bits=search_cfg.start_bits, alpha=search_cfg.alpha)
        search_seconds = time.perf_counter() - start
        for level, res in zip(ab.levels, front):
            configs[f"greedy {level}"] = res.bit_cfg
            searched[f"greedy {level}"] = {"level": bitops_level(table, res.cost), "gbitops": res.cost / 1e9,
                                           "bit_cfg": cfg_to_json(res.bit_cfg), "evaluations": res.evaluations}
    preds = {name: test_predictions(ema, c, splits.calib, splits.test, batch_size=eval_cfg.batch_size)
             for name, c in configs.items()}
    accuracy = {name: float((p == splits.test.labels).float().mean()) for name, p in preds.items()}
    sample_layer = ema.searchable[len(ema.searchable) // 2]
    feature_images = min(ab.feature_images, len(splits.calib))
    distortion, low_sample, high_sample = bn_distortion(ema, configs["lowest"], ema.max_config(), splits.calib,
                                                        feature_images, sample_layer)
    distortion_uniform = bn_distortion(ema, ema.min_config(), ema.max_config(), splits.calib, feature_images,
                                       sample_layer)[0]
    result = {"cell": cell, "seed": seed, "model": spec.name, "width_mult": spec.width_mult,
              "train_images": len(train), "epochs": cfg.epochs, "scheduler": cfg.scheduler, "idm": cfg.idm,
              "w_bit_choices": list(cfg.w_bit_choices), "train_seconds": round(run.seconds, 1),
              "search_seconds": round(search_seconds, 1), "eval_seconds": round(time.perf_counter() - eval_start, 1),
              "device": str(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "test_images": len(splits.test), "test_acc": accuracy, "searched": searched,
              "frozen_at_end": run.frozen, "oscillation": monitor.as_dict(),
              "bn_distortion": distortion, "distortion_sample_layer": sample_layer,
              "low_config": "each layer's lowest current candidate (the scheduler's last decision applied)",
              "bn_distortion_uniform_lowest": distortion_uniform, "health": health,
              "history": run.history.as_dict()}
    np.savez(work / "predictions.npz", labels=splits.test.labels.numpy().astype(np.int16),
             **{name: p.cpu().numpy().astype(np.int16) for name, p in preds.items()})
    np.savez(work / "features.npz", low=low_sample, high=high_sample)
    write_json(result, work / "result.json")
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", required=True, help="plain, sched, idm, both or no2bit")
    parser.add_argument("--seed", type=int, required=True, help="training seed of this run")
    parser.add_argument("--out", required=True, help="output folder (replaced when the run completes)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    return run_command(lambda: _run(args), "mpq.studies.ablation", sys.argv[1:] if argv is None else argv,
                       checkpoints=[out.with_name(f".{out.name}.partial")])


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    ab = from_dict(AblationConfig, params["ablation"], "ablation")
    if args.cell not in ab.cells or args.seed not in ab.seeds:
        print(f"error: cell {args.cell!r} / seed {args.seed} are not in ablation.cells {list(ab.cells)} / "
              f"seeds {list(ab.seeds)} of {args.params}", file=sys.stderr)
        return 2
    check_output(args.out, folder=True, inputs=[args.params, "checkpoints/fp"])
    result = run_cell(params, args.cell, args.seed, args.out)
    log.info("%s seed %d: %s (train %.0fs, search %.0fs)", args.cell, args.seed,
             {k: round(100 * v, 2) for k, v in result["test_acc"].items()}, result["train_seconds"],
             result["search_seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
