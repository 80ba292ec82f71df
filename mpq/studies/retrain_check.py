"""A retrained mixed configuration against the uniform LSQ model below it, over training seeds (notebook 04).

A greedy configuration at a BitOPs level above k, with every layer at k bits or more, holds uniform WkAk
inside it layer by layer; retrained alone with the same recipe and budget, it should score at least as well
as uniform WkAk trained alone. When one seed's retraining lands under the uniform model (MobileNetV2 at
level 3.5 under W3A3 did), this check retrains both with several seeds and keeps every run's test predictions;
``mpq.studies.retrain_check_tables`` gives the paired verdict with both noise sources. This module only
trains (the search stage, ``mpq.studies.search_runs``): it does not read the statistics, so a change to how
verdicts are judged retrains nothing.
The ``retrain_check`` section of params.yaml names the model, level, uniform bit-width and seeds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from mpq.config import DataConfig, ModelSpec
from mpq.data.datasets import ImageSet, Splits
from mpq.method.cost import bitops
from mpq.models import model_entry
from mpq.search.evaluation import test_predictions
from mpq.studies.health import training_health
from mpq.training.fp import evaluate, load_fp_model
from mpq.training.oneshot import build_supernet, train_oneshot
from mpq.training.recipe import OneShotConfig


@dataclass(frozen=True)
class RetrainCheckConfig:
    """The ``retrain_check`` section: which greedy configuration to retrain against which uniform model."""

    model: str | None = "mobilenetv2_28"   # None: no check
    level: float = 3.5                      # the greedy configuration's BitOPs level (one of search.levels)
    uniform_bits: int = 3                   # the uniform WkAk LSQ model it is compared with (k below the level)
    seeds: tuple[int, ...] = (0, 1, 2)      # training seeds of both arms

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.model is not None:
            if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
                raise ValueError(f"retrain_check.seeds must be distinct and not empty, got {list(self.seeds)}")
            if not self.uniform_bits < self.level:
                raise ValueError(f"retrain_check.uniform_bits ({self.uniform_bits}) must lie below its level, "
                                 f"retrain_check.level ({self.level}): the check compares a configuration with the "
                                 "uniform model under it")


def retrain_config(bit_cfg: Mapping[str, Sequence[int]], spec: ModelSpec, fixed: OneShotConfig, splits: Splits,
                   train: ImageSet, data: DataConfig, *, seed: int, device: torch.device, eval_batch_size: int,
                   fp_root: str | Path = "checkpoints/fp") -> dict[str, Any]:
    """Train one fixed configuration alone from the FP checkpoint (``fixed``: the recipe, max path only; global
    torch seed and data order ``seed``) and return its test predictions, seconds and health."""
    float_model = load_fp_model(f"{fp_root}/{spec.name}.pt", spec.name, spec.width_mult, len(splits.train.classes))
    fp_heldout = evaluate(float_model, splits.score)
    torch.manual_seed(seed)
    model = build_supernet(float_model, fixed.supernet_spec(), splits.calib, model_entry(spec.name).input_size,
                           layer_choices={k: ((w,), (a,)) for k, (w, a) in bit_cfg.items()})
    run = train_oneshot(model, train, fixed, batch_size=data.batch_size, pad=data.pad, flip=data.flip, seed=seed,
                        device=device, checkpoint=None, progress=False)
    health = training_health(run.history.loss, run.ema, splits.calib, splits.score, fp_heldout, margin=None)
    preds = test_predictions(run.ema, dict(bit_cfg), splits.calib, splits.test, batch_size=eval_batch_size)
    return {"preds": preds, "seconds": run.seconds, "health": health,
            "gbitops": bitops(run.ema.cost_table, dict(bit_cfg)) / 1e9}


def run_retrain_check(results: Mapping[str, Mapping], specs: Sequence[ModelSpec],
                  model_oneshot: Mapping[str, OneShotConfig], splits: Splits, train: ImageSet, data: DataConfig,
                  check: RetrainCheckConfig, *, eval_batch_size: int, device: torch.device,
                  fp_root: str | Path = "checkpoints/fp") -> dict[str, Any] | None:
    """Retrain ``check.model``'s greedy configuration at ``check.level`` (from ``results``, as
    ``search_runs.search_models`` returns them) and uniform W{k}A{k} with every seed of ``check.seeds``.

    Returns both arms' G-BitOPs, per-seed accuracies, health and test predictions (``preds``: arm -> (seeds,
    images)) and the seconds it took, or None when ``check.model`` is None; judged by
    ``mpq.studies.retrain_check_tables.judge_retrain_check``.
    """
    if check.model is None:
        return None
    spec = next((s for s in specs if s.name == check.model), None)
    if spec is None or check.model not in results:
        raise ValueError(f"retrain_check.model {check.model!r} is not one of the searched models {list(results)}")
    levels = {float(k): v for k, v in results[check.model]["levels"].items()}
    if float(check.level) not in levels:
        raise ValueError(f"retrain_check.level {check.level} is not one of {check.model}'s search levels "
                         f"{sorted(levels)}")
    mixed = {k: tuple(v) for k, v in levels[float(check.level)]["greedy"]["bit_cfg"].items()}
    low = min(b for wa in mixed.values() for b in wa)
    if low < check.uniform_bits:
        raise ValueError(f"the level-{check.level} configuration has layers at {low} bits, under uniform "
                         f"W{check.uniform_bits}A{check.uniform_bits}: it does not hold the uniform model")
    uniform = {k: (check.uniform_bits, check.uniform_bits) for k in mixed}
    fixed = model_oneshot[check.model].fixed_config()
    start, runs = time.perf_counter(), {"configuration": [], "uniform": []}
    for seed in check.seeds:
        for arm, bit_cfg in (("configuration", mixed), ("uniform", uniform)):
            runs[arm].append(retrain_config(bit_cfg, spec, fixed, splits, train, data, seed=seed, device=device,
                                            eval_batch_size=eval_batch_size, fp_root=fp_root))
    labels = splits.test.labels.numpy()
    correct = {arm: np.stack([r["preds"].numpy() == labels for r in rs]) for arm, rs in runs.items()}
    return {"model": check.model, "level": check.level, "uniform_bits": check.uniform_bits, "seeds": list(check.seeds),
            "gbitops": {arm: rs[0]["gbitops"] for arm, rs in runs.items()},
            "test_acc": {arm: [float(c.mean()) for c in correct[arm]] for arm in runs},
            "health": {arm: [r["health"] for r in rs] for arm, rs in runs.items()},
            "preds": {arm: torch.stack([r["preds"] for r in rs]) for arm, rs in runs.items()},
            "seconds": round(time.perf_counter() - start, 1)}

