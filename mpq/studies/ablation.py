"""One run of the interference experiments on a real model: a cell of the T6 ablation, or the run
without the 2-bit weight candidate (F2/T1). docs/method.md section 4; notebook 05 aggregates the runs.

A run trains a one-shot supernet from the study's FP checkpoint with the ``oneshot`` recipe, changed
only where its cell says (scheduler and IDM on or off, 2-bit weights or not) and in its images per
epoch (``ablation.train_size``), with its own training seed; the data split is the study's (``seed``),
so every run is scored and tested on the same images and runs compare pairwise. It records:

- the oscillation of the integer weight levels at 4-6 bits during training (``OscillationMonitor``);
- with a scheduler, every call's decision and scores (``SchedulerLog``) and whether consecutive frozen sets share
  more layers than two random decisions of the same sizes would (``frozen_overlap``: mean overlap against the
  hypergeometric mean ``k1 k2 / n``); the cell ``sched_full`` is this package's scheduler variant, not the paper's:
  scores over the full candidate list, so a decision can persist;
- test predictions at the run's own lowest point (each layer at its lowest current weight and activation
  candidates, the scheduler's last decision applied: W3A3 on a frozen ResNet layer), at uniform W2A2 (which
  ignores that decision; shown beside only) and W3A3, and for the greedy no-retraining configuration at each
  of ``ablation.levels`` (searched on the first ``ablation.score_size`` held-out scoring images, within the
  scheduler's last decision);
- the distortion of BN outputs at the own lowest point against the max path on calibration images, per
  layer (and at the uniform lowest point, beside it), and a sample of one layer's values for the density
  figure (F3/F4);
- the run's health (``health.training_health``): finite losses, its max path on held-out images.

Command line: one seed's block, every cell and plain searched in the scheduler cells' spaces (``run_block``; one
DVC matrix stage per seed, ``ablation.jobs`` runs at a time), or one run::

    python -m mpq.studies.ablation --seed 1 --out checkpoints/ablation/seed-1
    python -m mpq.studies.ablation --cell both --seed 1 --out both-1

The output folder appears whole or not at all: it is written beside its place and renamed at the end;
an interrupted run resumes from its last epoch, an interrupted block with the runs it finished.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
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
from mpq.data.datasets import ImageSet, Splits, batches, make_splits
from mpq.search.evaluation import make_scorer, recalibrate, search_space, test_predictions
from mpq.method.losses import capture_bn_outputs
from mpq.models import model_entry
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import (build_supernet, checkpoint_candidates, load_supernet, run_meta, train_oneshot,
                                  training_subset)
from mpq.method.oscillation import WindowMonitor, window_starts
from mpq.method.scheduler import Choices, OscillationMonitor, SchedulerLog, overlap_against_chance, schedule_design
from mpq.search.space import cfg_to_json
from mpq.search.greedy import greedy_front
from mpq.method.supernet import Supernet
from mpq.studies.health import training_health
from mpq.studies.tuning import run_jobs
from mpq.training.hardware import place
from mpq.training.fp import evaluate, load_fp_model, pick_device, to_device

log = logging.getLogger(__name__)


def cell_config(cfg: OneShotConfig, cell: str, train_size: int, *, epochs: int | None = None,
                sched_min_steps: int | None = None, lr: float | None = None,
                step_lr: float | None = None) -> OneShotConfig:
    """The one-shot recipe of an ablation cell: ``cfg`` with the cell's switches (scheduler, IDM, how the scheduler
    scores: ``sched_full`` over the full candidate list, the others over the current ones) and ``train_size``, and the
    ablation's run length (``epochs``), scheduler spacing (``sched_min_steps``) and learning rates (``lr``,
    ``step_lr``) where given (None: ``cfg``'s)."""
    switches = {"plain": (False, False), "sched": (True, False), "idm": (False, True), "both": (True, True),
                "no2bit": (False, False), "sched_full": (True, False)}
    if cell not in switches:
        raise ValueError(f"unknown ablation cell {cell!r}; choose one of {list(switches)}")
    scheduler, idm = switches[cell]
    changes = {"scheduler": scheduler, "idm": idm, "train_size": train_size}
    # sched_full is this package's variant (scores over the full candidate list, so a decision can persist); every
    # other cell scores as the paper does, whatever the oneshot section says
    changes["sched_score_candidates"] = "full" if cell == "sched_full" else "current"
    if epochs is not None:
        changes["epochs"] = epochs
    if sched_min_steps is not None:
        changes["sched_min_steps"] = sched_min_steps
    if lr is not None:
        changes["lr"] = lr
    if step_lr is not None:
        changes["step_lr"] = step_lr
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


def evaluation_images(params: Mapping, splits: Splits, extra: int) -> ImageSet:
    """The images an ablation run is evaluated on: the test set, then the first ``extra`` held-out training
    images, those beyond ``data.train_size`` (no stage trains, scores or calibrates on them; the learning-rate
    study of docs/method.md section 7 compared two rates on them). ``extra`` 0: the test set alone."""
    if extra == 0:
        return splits.test
    data_cfg = from_dict(DataConfig, params["data"], "data")
    whole = make_splits(data_cfg.dataset, seed=params["seed"], train_size=None, score_size=data_cfg.score_size,
                        calib_size=data_cfg.calib_size).train
    spare = len(whole) - len(splits.train)
    if extra > spare:
        raise ValueError(f"ablation.extra_eval_images {extra} exceeds the {spare} training images beyond "
                         f"data.train_size {data_cfg.train_size}; lower it (or data.train_size)")
    if not torch.equal(whole.labels[:len(splits.train)], splits.train.labels):   # the prefix property, checked
        raise RuntimeError("the capped training split is not a prefix of the whole one; see data.split_indices")
    held = whole.subset(torch.arange(len(splits.train), len(splits.train) + extra))
    return ImageSet(torch.cat([splits.test.images, held.images]), torch.cat([splits.test.labels, held.labels]),
                    splits.test.classes)


def greedy_configs(ema: Supernet, candidates: Mapping[str, Choices], score_set: ImageSet, levels: Sequence[float],
                   search_cfg: SearchConfig) -> tuple[dict[str, dict], dict[str, dict], float]:
    """The greedy no-retraining configuration of ``ema`` at each BitOPs level, searched inside ``candidates``
    (a scheduler's final space, its own or another run's) on ``score_set``: ``({"greedy <level>": bit_cfg},
    {"greedy <level>": what was found}, seconds)``."""
    table = ema.cost_table
    space = search_space(ema, candidates)
    targets = [level_bitops(table, level) for level in levels]
    start = time.perf_counter()
    front = greedy_front(space, make_scorer(ema, score_set, metric=search_cfg.metric), lambda c: bitops(table, c),
                         targets, [phase1_budget(table, t, a_bits=search_cfg.start_bits) for t in targets],
                         start_bits=search_cfg.start_bits, alpha=search_cfg.alpha)
    configs, searched = {}, {}
    for level, res in zip(levels, front):
        configs[f"greedy {level}"] = res.bit_cfg
        searched[f"greedy {level}"] = {"level": bitops_level(table, res.cost), "gbitops": res.cost / 1e9,
                                       "bit_cfg": cfg_to_json(res.bit_cfg), "evaluations": res.evaluations}
    return configs, searched, time.perf_counter() - start


def score_subset(splits: Splits, size: int) -> ImageSet:
    """The held-out scoring images the greedy search uses: the first ``size`` of the scoring subset
    (``ablation.score_size``), refused when the subset (``data.score_size``) holds fewer."""
    if size > len(splits.score):
        raise ValueError(f"ablation.score_size {size} exceeds the {len(splits.score)} held-out scoring images "
                         "(data.score_size); lower it or raise data.score_size")
    return splits.score.subset(torch.arange(size))


def check_schedule(design: Mapping, min_calls: int, cell: str) -> None:
    """Refuse a run length and spacing that give the scheduler fewer than ``min_calls`` calls (every cell:
    the cells share the run length, so a plain run is refused as its sched run would be); warn when the median
    decision does not outlast the EMA horizon."""
    if design["calls"] < min_calls:
        raise ValueError(f"the ablation's scheduler would be called {design['calls']} times in "
                         f"{design['total_steps']} steps (at steps {design['call_steps']}); ablation.min_sched_calls "
                         f"asks for {min_calls}: raise ablation.epochs or train_size, or lower "
                         "ablation.sched_min_steps")
    if not design["decisions_outlast_ema"]:
        log.warning("%s: the median scheduler decision lasts %s steps, under the EMA horizon of %s steps",
                    cell, design["median_persistence"], design["ema_horizon"])


def evaluated_configs(ab: AblationConfig, cfg: OneShotConfig, cell: str) -> list[str]:
    """The configurations a run of ``cell`` evaluates: uniform W2A2 and W3A3 where its candidates hold them, its
    lowest point, and (every cell but no2bit, which is F2/T1's reference and is not searched) the greedy
    configuration at each of ``ablation.levels``."""
    names = [f"W{b}A{b}" for b in (2, 3) if b in cfg.a_bit_choices and b >= min(cfg.w_bit_choices)] + ["lowest"]
    return names + ([f"greedy {level}" for level in ab.levels] if cell != "no2bit" else [])


def check_extra_configs(ab: AblationConfig, cfg: OneShotConfig, cell: str) -> None:
    """Refuse, before training, an ``ablation.extra_eval_configs`` name that a searched cell does not evaluate (a
    typo would otherwise cost a run); no2bit evaluates those of them it has (it is not searched)."""
    if cell == "no2bit":
        return
    unknown = sorted(set(ab.extra_eval_configs) - set(evaluated_configs(ab, cfg, cell)))
    if unknown:
        raise ValueError(f"ablation.extra_eval_configs {unknown} are not evaluated by a {cell} run; it evaluates "
                         f"{evaluated_configs(ab, cfg, cell)}")


def run_cell(params: Mapping, cell: str, seed: int, out: str | Path, *, progress: bool = False) -> dict:
    """Train, measure and search one (cell, seed); write ``out/`` (result.json, predictions.npz,
    features.npz, supernet.pt) and return the result."""
    ab = from_dict(AblationConfig, params["ablation"], "ablation")
    data_cfg = from_dict(DataConfig, params["data"], "data")
    eval_cfg = from_dict(EvalConfig, params["evaluation"], "evaluation")
    search_cfg = from_dict(SearchConfig, params["search"], "search")
    spec = next((s for s in model_specs(params["models"]) if s.name == ab.model), None)
    if spec is None:
        raise ValueError(f"ablation.model {ab.model!r} is not in the models section {list(params['models'])}")
    base = from_dict(OneShotConfig, params["oneshot"], "oneshot").for_model(spec.name)
    cfg = cell_config(base, cell, ab.train_size, epochs=ab.epochs, sched_min_steps=ab.sched_min_steps, lr=ab.lr,
                      step_lr=ab.step_lr)
    out = Path(out)
    work = out.with_name(f".{out.name}.partial")        # resumable; renamed to ``out`` when complete
    device = pick_device()
    splits = make_splits(data_cfg.dataset, seed=params["seed"], train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    train = training_subset(splits.train, cfg.train_size)
    batch_size = ab.batch_size or data_cfg.batch_size
    total_steps = cfg.epochs * (len(train) // batch_size)
    design = schedule_design(total_steps, cfg.scheduler_config(), cfg.ema_decay)
    check_schedule(design, ab.min_sched_calls, cell)
    if ab.windows:           # refused before training, not at the first window
        try:
            window_starts(total_steps, ab.windows, ab.window_steps)
        except ValueError as exc:
            raise ValueError(f"ablation.windows {ab.windows} x window_steps {ab.window_steps}: {exc}") from None
    evaluated = evaluation_images(params, splits, ab.extra_eval_images)
    score_set = score_subset(splits, ab.score_size)
    check_extra_configs(ab, cfg, cell)
    work.mkdir(parents=True, exist_ok=True)             # after the refusals: a refused design leaves nothing behind
    classes = len(splits.train.classes)
    float_model = load_fp_model(f"checkpoints/fp/{spec.name}.pt", spec.name, spec.width_mult, classes)
    fp_heldout = evaluate(float_model, splits.score)
    torch.manual_seed(seed)
    supernet = build_supernet(float_model, cfg.supernet_spec(), splits.calib, model_entry(spec.name).input_size)
    monitor = OscillationMonitor(ab.monitor_bits, ab.monitor_every)
    windows = WindowMonitor(ab.monitor_bits, ab.windows, ab.window_steps) if ab.windows else None
    sched_log = SchedulerLog()

    def on_step(step: int, steps: int, net: Supernet) -> None:
        monitor(step, steps, net)
        if windows is not None:
            windows(step, steps, net)

    run = train_oneshot(supernet, train, cfg, batch_size=batch_size, pad=data_cfg.pad, flip=data_cfg.flip,
                        seed=seed, device=device, checkpoint=work / "supernet.pt", progress=progress,
                        meta=run_meta(spec.name, spec.width_mult, splits, train, cell=cell), on_step=on_step,
                        sched_log=sched_log, keep_weights=False)    # its readers use the EMA copy only
    if monitor.steps and monitor.steps[-1] != total_steps:
        log.warning("%s-%d resumed mid-run: its oscillation record covers only the last part", cell, seed)
    ema = run.ema
    eval_start = time.perf_counter()
    health = training_health(run.history.loss, ema, splits.calib, splits.score, fp_heldout)
    # uniform W2A2 ignores the scheduler's last decision; "lowest" is each layer's lowest current weight and
    # activation candidates (a frozen ResNet layer: W3A3)
    configs = {f"W{b}A{b}": ema.uniform_config(b) for b in (2, 3)
               if b in cfg.a_bit_choices and b >= min(cfg.w_bit_choices)}
    configs["lowest"] = ema.min_config(run.candidates())
    search_seconds, searched = 0.0, {}
    if cell != "no2bit":
        greedy, searched, search_seconds = greedy_configs(ema, run.candidates(), score_set, ab.levels, search_cfg)
        configs |= greedy
    # the configurations of extra_eval_configs see the held-out training images too, the others the test set,
    # which comes first: every prediction array is a prefix of ``labels``
    preds = {name: test_predictions(ema, c, splits.calib, evaluated if name in ab.extra_eval_configs else splits.test,
                                    batch_size=eval_cfg.batch_size) for name, c in configs.items()}
    accuracy = {name: float((p == evaluated.labels[:len(p)]).float().mean()) for name, p in preds.items()}
    sample_layer = ema.searchable[len(ema.searchable) // 2]
    feature_images = min(ab.feature_images, len(splits.calib))
    distortion, low_sample, high_sample = bn_distortion(ema, configs["lowest"], ema.max_config(), splits.calib,
                                                        feature_images, sample_layer)
    distortion_uniform = bn_distortion(ema, ema.min_config(), ema.max_config(), splits.calib, feature_images,
                                       sample_layer)[0]
    result = {"cell": cell, "seed": seed, "model": spec.name, "width_mult": spec.width_mult,
              "train_images": len(train), "epochs": cfg.epochs, "batch_size": batch_size,
              "lr": cfg.lr, "step_lr": cfg.step_lr,
              "scheduler": cfg.scheduler, "idm": cfg.idm,
              "w_bit_choices": list(cfg.w_bit_choices), "train_seconds": round(run.seconds, 1),
              "search_seconds": round(search_seconds, 1), "score_size": ab.score_size,
              "eval_seconds": round(time.perf_counter() - eval_start, 1),
              "device": str(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "test_images": len(evaluated), "test_acc": accuracy, "searched": searched,
              "eval_images": {"test": len(splits.test), "held_out_training": len(evaluated) - len(splits.test),
                              "configs_on_held_out": [n for n in configs if n in ab.extra_eval_configs]},
              "frozen_at_end": run.frozen, "oscillation": monitor.as_dict(),
              "schedule_design": design, "scheduler_log": sched_log.as_dict(total_steps),
              "sched_score_candidates": cfg.sched_score_candidates if cfg.scheduler else None,
              "frozen_overlap": overlap_against_chance(sched_log.calls),
              "oscillation_windows": windows.as_dict() if windows is not None else None,
              "bn_distortion": distortion, "distortion_sample_layer": sample_layer,
              "low_config": "each layer's lowest current weight and activation candidates (the scheduler's last "
                            "decision applied)",
              "sched_freeze_activations": cfg.sched_freeze_activations,
              "bn_distortion_uniform_lowest": distortion_uniform, "health": health,
              "history": run.history.as_dict()}
    np.savez(work / "predictions.npz", labels=evaluated.labels.numpy().astype(np.int16),
             **{name: p.cpu().numpy().astype(np.int16) for name, p in preds.items()})
    np.savez(work / "features.npz", low=low_sample, high=high_sample)
    write_json(result, work / "result.json")
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return result


def search_in_space(params: Mapping, run_dir: str | Path, space_of: str | Path, out: str | Path | None = None, *,
                    score_size: int | None = None) -> dict:
    """The T6 confound separated: the trained supernet of ``run_dir`` (e.g. ``plain-0``) searched inside the final
    space of the run ``space_of`` (e.g. ``sched-0``: its scheduler's last decision applied), with the same
    scoring, calibration and evaluation images as the runs. A sched cell minus plain searched in sched's own
    space is then the training effect at a fixed space; plain in sched's space minus plain in its own is the
    space's share. ``score_size``: the scoring images (None: ``ablation.score_size``); the pilot searches a run in
    its own space (``space_of`` = ``run_dir``) at each of ``ablation.pilot.score_options`` this way.

    Returns (and, with ``out``, writes as ``out/result.json`` and ``out/predictions.npz``, which holds
    ``labels`` and one array per greedy level) the searched configurations, their accuracy on the evaluation
    images and whose space they were searched in.
    """
    ab = from_dict(AblationConfig, params["ablation"], "ablation")
    data_cfg = from_dict(DataConfig, params["data"], "data")
    eval_cfg = from_dict(EvalConfig, params["evaluation"], "evaluation")
    search_cfg = from_dict(SearchConfig, params["search"], "search")
    run_dir, space_of = Path(run_dir), Path(space_of)
    own = json.loads((run_dir / "result.json").read_text())
    other = json.loads((space_of / "result.json").read_text())
    splits = make_splits(data_cfg.dataset, seed=params["seed"], train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    ema = load_supernet(run_dir / "supernet.pt", data=splits.identity)   # the same data split, or refused
    place(ema, pick_device())        # channels_last, as trained and searched in run_cell: the same float sums
    candidates = checkpoint_candidates(space_of / "supernet.pt", ema)     # its last decision, as it froze
    size = ab.score_size if score_size is None else score_size
    configs, searched, seconds = greedy_configs(ema, candidates, score_subset(splits, size), ab.levels, search_cfg)
    evaluated = evaluation_images(params, splits, ab.extra_eval_images)
    preds = {name: test_predictions(ema, c, splits.calib, evaluated if name in ab.extra_eval_configs else splits.test,
                                    batch_size=eval_cfg.batch_size) for name, c in configs.items()}
    result = {"cell": own["cell"], "seed": own["seed"], "space_of": {"cell": other["cell"], "seed": other["seed"]},
              "frozen": list(other["frozen_at_end"]), "searched": searched, "search_seconds": round(seconds, 1),
              "score_size": size,
              "test_images": len(evaluated), "eval_images": {n: len(p) for n, p in preds.items()},
              "test_acc": {name: float((p == evaluated.labels[:len(p)]).float().mean()) for name, p in preds.items()}}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "predictions.npz", labels=evaluated.labels.numpy().astype(np.int16),
                 **{name: p.cpu().numpy().astype(np.int16) for name, p in preds.items()})
        write_json(result, out / "result.json")
    return result


def block_cells(ab: AblationConfig, seed: int) -> list[str]:
    """The cells one seed trains: every cell of ``ablation.cells``, except that ``no2bit`` (F2/T1's reference)
    runs only with the seeds of ``ablation.no2bit_seeds`` (null: every seed)."""
    return [c for c in ab.cells if c != "no2bit" or ab.no2bit_seeds is None or seed in ab.no2bit_seeds]


def run_block(params: Mapping, seed: int, out: str | Path, *, jobs: int | None = None) -> list[dict]:
    """One seed's block of the ablation (a DVC stage, ``ablation@<seed>``): every cell of ``block_cells`` trained
    with this seed (``run_cell``, ``jobs`` at a time, each in its own process with its share of the threads; None:
    ``ablation.jobs``), then plain's supernet searched in each cell of ``ablation.space_cells``' final space
    (``search_in_space``). Writes ``out/<cell>-<seed>/`` and ``out/plain-<seed>-in-<cell>-<seed>/``, each run's
    supernet dropped at the end unless ``ablation.keep_supernets``; ``out`` appears whole or not at all (written beside it as ``.<name>.partial`` and renamed at the end). An
    interrupted block resumes with the runs it finished, unless the parameters changed since (then it
    starts over). Returns the runs' results."""
    ab = from_dict(AblationConfig, params["ablation"], "ablation")
    if seed not in ab.seeds:
        raise ValueError(f"seed {seed} is not among ablation.seeds {list(ab.seeds)}")
    out = Path(out)
    work = out.with_name(f".{out.name}.partial")
    used = {k: params.get(k) for k in ("seed", "data", "models", "oneshot", "evaluation", "search")}
    used["ablation"] = {k: v for k, v in params["ablation"].items() if k not in ("seeds", "pilot")}
    fingerprint = json.dumps(used, sort_keys=True, default=str)
    stamp = work / "params.json"
    if work.exists() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        log.info("%s: an unfinished block from other parameters, started over", work)
        shutil.rmtree(work)
    resumed = work.exists()
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    start = time.perf_counter()
    todo = [(dict(params), cell, seed, str(work / f"{cell}-{seed}")) for cell in block_cells(ab, seed)
            if not (work / f"{cell}-{seed}" / "result.json").is_file()]
    results = run_jobs(_block_run, todo, ab.jobs if jobs is None else jobs)
    for r in results:
        log.info("%s-%d: %s (train %.0fs, search %.0fs, evaluation %.0fs)", r["cell"], r["seed"],
                 {k: round(100 * v, 2) for k, v in r["test_acc"].items()}, r["train_seconds"], r["search_seconds"],
                 r["eval_seconds"])
    spaces = [(dict(params), str(work / f"plain-{seed}"), str(work / f"{cell}-{seed}"),
               str(work / f"plain-{seed}-in-{cell}-{seed}")) for cell in ab.space_cells
              if not (work / f"plain-{seed}-in-{cell}-{seed}" / "result.json").is_file()]
    for r in run_jobs(_space_run, spaces, ab.jobs if jobs is None else jobs):
        log.info("plain-%d searched in the space of %s-%d: %s", r["seed"], r["space_of"]["cell"], seed,
                 {k: round(100 * v, 2) for k, v in r["test_acc"].items()})
    if not ab.keep_supernets:          # every search of the block is done: the store keeps the results only
        for weights in work.glob("*/supernet.pt"):
            weights.unlink()
    stamp.unlink()
    jobs_used = ab.jobs if jobs is None else jobs
    write_json({"seed": seed, "cells": block_cells(ab, seed), "space_cells": list(ab.space_cells), "jobs": jobs_used,
                "seconds": round(time.perf_counter() - start, 1), "resumed": resumed,
                "cpu_capability": torch.backends.cpu.get_cpu_capability()}, work / "block.json")
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return [json.loads((out / f"{cell}-{seed}" / "result.json").read_text()) for cell in block_cells(ab, seed)]


def _block_run(params: Mapping, cell: str, seed: int, out: str) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")     # a spawned worker starts unconfigured
    return run_cell(params, cell, seed, out)


def _space_run(params: Mapping, run_dir: str, space_of: str, out: str) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    partial = Path(out).with_name(f".{Path(out).name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    result = search_in_space(params, run_dir, space_of, partial)
    os.replace(partial, out)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="training seed: with --cell one run, without it the seed's block")
    parser.add_argument("--cell", help="plain, sched, idm, both, no2bit or sched_full: one run only")
    parser.add_argument("--out", required=True, help="output folder (replaced when the run or block completes)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--jobs", type=int, help="a block's runs at a time (default: ablation.jobs)")
    parser.add_argument("--run", help="with --space-of: a finished run's folder whose supernet is searched")
    parser.add_argument("--space-of", help="search the supernet of --run inside this run's final space (no training)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    given = sys.argv[1:] if argv is None else argv
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, got {args.jobs}")
    if args.space_of is not None:
        if args.run is None:
            parser.error("--space-of needs --run, the run whose supernet is searched")
        return run_command(lambda: _search_in_space(args), "mpq.studies.ablation", given)
    if args.seed is None:
        parser.error("--seed is required (with --cell: one run; without: the seed's block), or --run and --space-of")
    out = Path(args.out)
    return run_command(lambda: _run(args), "mpq.studies.ablation", given,
                       checkpoints=[out.with_name(f".{out.name}.partial")])


def _search_in_space(args: argparse.Namespace) -> int:
    check_output(args.out, folder=True, inputs=[args.params, args.run, args.space_of])
    result = search_in_space(load_params(args.params), args.run, args.space_of, args.out)
    log.info("%s-%d searched in the space of %s-%d: %s", result["cell"], result["seed"], result["space_of"]["cell"],
             result["space_of"]["seed"], {k: round(100 * v, 2) for k, v in result["test_acc"].items()})
    return 0


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    ab = from_dict(AblationConfig, params["ablation"], "ablation")
    if args.cell is None:
        if args.seed not in ab.seeds:
            print(f"error: seed {args.seed} is not in ablation.seeds {list(ab.seeds)} of {args.params}", file=sys.stderr)
            return 2
        check_output(args.out, folder=True, inputs=[args.params, "checkpoints/fp"])
        run_block(params, args.seed, args.out, jobs=args.jobs)
        return 0
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
