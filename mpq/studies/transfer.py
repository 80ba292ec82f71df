"""Transfer: one supernet trained on the main data set, adapted once to a new one (T5; claim C6).

The path a user with a small data set of their own takes: load the supernet trained on Fashion-MNIST,
give it a new classifier for the target's classes, fine-tune it once with the same one-shot procedure
(max path + random paths, scheduler and IDM as the ``oneshot`` section sets them), and then pick a
configuration for any budget with the inference-only search on the target's own held-out scoring
images: no retraining per configuration.

Protocol (the notebook ``06_transfer`` states it beside its numbers; DESIGN.md section 5, "equal compute"):
- nothing is frozen: every weight, BN and step size is fine-tuned; the new classifier starts from
  PyTorch's default initialisation (seeded) and keeps the package's convention of 8-bit weights and
  inputs, its step sizes initialised on one calibration batch of the target;
- the arms are named for what they start from: ``FP`` (notebook 01's FP model), ``LSQ WkAk`` (notebook 03's
  uniform LSQ model), ``this method`` (notebook 02's one-shot supernet) and ``FROM_FP``, a supernet built from the
  FP model of notebook 01, pre-trained on Fashion-MNIST as a float model but without the one-shot training;
- **equal compute, counted in passes.** A pass is one forward and backward pass of one batch. A
  single-path arm (FP, fine-tuned uniform LSQ) makes one pass per optimizer step; a supernet arm makes
  ``1 + num_random_paths`` (its max path and its random paths). Every arm of a target gets the same passes
  over the same training images: ``transfer.budget_passes``, rounded to a whole number of supernet epochs
  (``Budget``), so a supernet arm runs P / (1 + R) optimizer steps and a single-path arm P steps, seeing each
  image 1 + R times as often as a supernet step does. ``reports/metrics/transfer.json`` records each run's
  passes, steps and epochs;
- **every arm's learning rate chosen on held-out target images, from a grid of its own** (``lr_grid``): FP
  starts from ``transfer.fp_lrs``, each uniform LSQ bit-width from ``lsq_lrs``, this method and the supernet from
  the FP model each from ``supernet_lrs``; a grid whose best rate lies at an edge gains one rate beyond it (times
  or divided by ``widen_factor``), up to ``max_widenings`` times, so that the choice lies inside the grid
  (``widen_grid``; a choice still at an edge is reported). Each rate runs once at ``grid_seed`` (not one of the
  compared seeds) on a share ``grid_images`` of the training images with the budget's epochs, scored on the
  target's held-out scoring images (never the test split: it is not an argument of the grid): FP by its top-1, LSQ
  by its own configuration's, a supernet by the mean top-1 of its uniform configurations at ``baseline_bits``. The
  step sizes' Adam rate is ``step_lr_ratio`` times the SGD rate; ties go to the smaller rate;
- **enough compute, for every arm**: each arm is also fine-tuned for ``curve_multiple`` budgets (its chosen rate,
  the first seed); the gain of the held-out score it was chosen by, from the same seed's run at the budget to the
  longer one, says whether the budget has flattened that arm's curve (FP also records its held-out top-1 after
  every epoch, ``fp_curves``);
- **every run counts**: each run records whether its losses stayed finite and the held-out top-1 of its max
  path (the FP model itself); a run with a non-finite loss, or ``collapse_points`` under the median of its
  arm's seeds, or (a supernet) with its max path ``collapse_points`` under FP fine-tuned with the same seed, is
  flagged collapsed (``flag_collapses``), shown and counted in T5, the comparisons and the findings, and stays
  in every mean and verdict;
- the quantized arms' EMA decay is ``transfer.ema_decay`` (a fine-tuning run has tens of steps, so the
  one-shot EMA's horizon of ~100 steps would keep much of the untrained classifier: measured, 66% against
  83% for the raw weights on Animal-MNIST at W4A4);
- the data split of each target is seeded by the study's ``seed``; the runs' own seeds vary the
  classifier's initialisation, path sampling, augmentation and batch order;
- verdicts (``mpq.studies.transfer_tables.paired_comparisons``): per seed, this method minus the other arm on
  the same test images, with both the seed spread and the test-image noise.

Pieces: ``load_target`` (a named data set or an image folder, with clear errors), ``head_name`` and
``replace_head`` (a float model's classifier), ``retarget_supernet`` (a trained supernet's weights, BNs
and step sizes in a supernet built for the target's classes), ``check_input_channels``.

The experiment of notebook 06: ``transfer_setup`` (the params sections, checked), ``run_transfer`` (per
target: every arm's learning-rate grid, then seeds x arms at the chosen rates, then every arm's longer run; one
record per run and level, with its test predictions), ``save_transfer`` and ``load_transfer`` (the result as plain
data: JSON and an array archive, no pickles, no wall times). This module only trains: what the notebook shows
(tables, figure, verdicts, metrics, findings) lives in ``mpq.studies.transfer_tables``, which this module does not
import, so the training stage does not depend on it.

Command line (the DVC stage ``transfer``; the notebook reads its folder)::

    python -m mpq.studies.transfer --out checkpoints/transfer [--params params.yaml] [--stages reports/stages]

It reads the ``seed``, ``data``, ``models``, ``model_bits``, ``fp``, ``oneshot``, ``evaluation``, ``baselines``,
``search`` and ``transfer`` sections and the checkpoints of notebooks 01-03 (``checkpoints/{fp,supernet,baselines}``),
trains in ``.transfer.partial`` beside the output (a finished fine-tuning resumes after a kill), and replaces the
output folder as a whole at the end: ``result.json``, ``predictions.npz`` and this method's fine-tuned supernets
(``<model>_<target>_transferred_seed<s>.pt``, for ``python -m mpq search``). The wall times go to
``reports/stages/transfer.json`` (``write_stage_record``), never into the folder, whose bytes depend on the results
alone (the later stages depend on it).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mpq.config import (BaselineConfig, DataConfig, EvalConfig, FPConfig, ModelSpec, SearchConfig, _positive, distinct,
                        from_dict, load_params, model_specs, require)
from mpq.data.datasets import NAMED_DATASETS, ImageSet, Splits, make_splits
from mpq.method.cost import bitops, bitops_level, level_bitops, phase1_budget
from mpq.method.layers import quant_layers
from mpq.method.supernet import Supernet
from mpq.models import create_model, model_entry
from mpq.search.evaluation import make_scorer, search_space, test_predictions
from mpq.search.greedy import greedy_front
from mpq.search.space import cfg_to_json
import mpq.studies.model_bits
from mpq.training.checkpoint import (CheckpointError, atomic_path, check_output, read_stage_record, run_command,
                                     write_json, write_stage_record)
from mpq.training.fp import load_fp_model, pick_device, predictions, to_device, train_fp
from mpq.training.oneshot import (OneShotRun, build_supernet, load_supernet, run_meta, train_oneshot,
                                  training_subset)
from mpq.training.recipe import OneShotConfig

log = logging.getLogger(__name__)

TARGETS = tuple(n for n in NAMED_DATASETS if n != "fashion_mnist") + ("folder",)
NO_FLIP = {"mnist5k", "folder"}          # digits change meaning when mirrored; a user's folder may too


@dataclass(frozen=True)
class TransferConfig:
    """The ``transfer`` section of params.yaml (notebook 06)."""

    model: str = "resnet20"            # registry name; width from the ``models`` section
    targets: tuple[str, ...] = ("animal_mnist", "mnist5k")   # named data sets, or "folder" (with ``root``)
    root: str | None = None            # the image folder (one sub-folder per class) when a target is "folder"
    seeds: tuple[int, ...] = (0, 1, 2)  # fine-tuning seeds of the compared runs
    budget_passes: int = 368           # forward/backward passes of one batch per arm and target (see ``Budget``)
    fp_lrs: tuple[float, ...] = (0.05, 0.1, 0.2)     # FP fine-tuning's starting grid of SGD rates (FP training: 0.1)
    lsq_lrs: tuple[float, ...] = (0.05, 0.1, 0.2)    # ... each uniform LSQ arm's, one grid per bit-width
    supernet_lrs: tuple[float, ...] = (0.05, 0.1, 0.2)  # ... each supernet arm's, one grid per arm
    widen_factor: float = 2.0          # a grid whose best rate is at an edge gains rate x or / this on that side ...
    max_widenings: int = 3             # ... at most this many times per arm (0: the starting grid only)
    step_lr_ratio: float = 0.075       # Adam rate of the step sizes per unit of SGD rate (one-shot: 0.003 / 0.04)
    grid_seed: int = 100               # the grid runs' seed (not one of ``seeds``)
    grid_images: float = 0.5           # share of the training images the grid runs train on, with the budget's epochs
    curve_multiple: int = 2            # FP is also fine-tuned for this many budgets: has the curve flattened?
    flat_points: float = 1.0           # ... flattened when that run gains less than this on held-out images
    collapse_points: float = 10.0      # a run this far (held-out points) under its arm's median over seeds collapsed
    ema_decay: float = 0.9             # per step: a horizon of ~10 of the fine-tuning steps (one-shot: 0.99)
    train_size: int | None = 3000      # cap on the target's training images (None: all that remain)
    score_size: int = 500              # held-out training images of the target: search scoring, rates, health
    calib_size: int = 500              # held-out training images of the target for BN recalibration
    test_fraction: float = 0.2         # targets without a test split lose this shuffled share to it
    levels: tuple[float, ...] = (4, 3)  # BitOPs levels searched on the transferred supernets
    baseline_bits: tuple[int, ...] = (3, 4)   # uniform LSQ models fine-tuned as baselines

    def __post_init__(self) -> None:
        for name in ("targets", "seeds", "fp_lrs", "lsq_lrs", "supernet_lrs", "levels", "baseline_bits"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        require(math.isfinite(self.widen_factor) and self.widen_factor > 1, "transfer.widen_factor",
                self.widen_factor, "a number above 1 (a widening multiplies the top rate by it or divides the bottom)")
        require(isinstance(self.max_widenings, int) and self.max_widenings >= 0, "transfer.max_widenings",
                self.max_widenings, "a whole number >= 0")
        _positive("transfer", budget_passes=self.budget_passes, step_lr_ratio=self.step_lr_ratio,
                  curve_multiple=self.curve_multiple, flat_points=self.flat_points,
                  collapse_points=self.collapse_points, train_size=self.train_size, score_size=self.score_size,
                  calib_size=self.calib_size)
        for name in ("fp_lrs", "lsq_lrs", "supernet_lrs"):
            rates = getattr(self, name)
            if not rates or any(r <= 0 for r in rates) or len(set(rates)) != len(rates):
                raise ValueError(f"transfer.{name} must list distinct positive learning rates, got {list(rates)}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"transfer.targets: unknown {unknown} in {list(self.targets)}; choose from {list(TARGETS)}")
        if "folder" in self.targets and not self.root:
            raise ValueError(f"transfer.targets {list(self.targets)} names 'folder' but transfer.root is empty "
                             f"({self.root!r}); set it to a folder holding one sub-folder of images per class")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"transfer.ema_decay must lie in (0, 1), got {self.ema_decay}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"transfer.test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not 0.0 < self.grid_images <= 1.0:
            raise ValueError(f"transfer.grid_images must lie in (0, 1], got {self.grid_images}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"transfer.seeds must be distinct seeds, got {list(self.seeds)}")
        if self.curve_multiple < 2:
            raise ValueError(f"transfer.curve_multiple must be 2 or more (the longer FP run's budgets), got "
                             f"{self.curve_multiple}")
        require(bool(self.levels) and min(self.levels) >= 1 and distinct(self.levels), "transfer.levels",
                list(self.levels), "a non-empty list of distinct BitOPs levels >= 1")
        require(all(b >= 2 for b in self.baseline_bits) and distinct(self.baseline_bits), "transfer.baseline_bits",
                list(self.baseline_bits), "a list of distinct bit-widths >= 2")
        if self.grid_seed in self.seeds:
            raise ValueError(f"transfer.grid_seed {self.grid_seed} is one of transfer.seeds {list(self.seeds)}: the "
                             f"rate chosen on a run would favour that seed's compared run; pick another seed")


def load_target(name: str, cfg: TransferConfig, seed: int) -> Splits:
    """The target's seeded splits: training, held-out scoring and calibration subsets, test.

    An image folder is read in grey at 28x28 (colour images are converted, any size is resized); a
    folder with fewer than two classes, an empty class folder, or a file that is not a readable image is
    refused with one ``DataError`` naming the problem and the fix (``mpq.data.datasets.image_files``).
    """
    if name not in TARGETS:
        raise ValueError(f"unknown transfer target {name!r}; choose from {list(TARGETS)}")
    root = Path(cfg.root) if name == "folder" else None
    return make_splits(name, seed=seed, train_size=cfg.train_size, score_size=cfg.score_size,
                       calib_size=cfg.calib_size, test_fraction=cfg.test_fraction, root=root)


def head_name(model: nn.Module) -> str:
    """The classifier: the last ``nn.Linear`` of the model (quantized or not)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("the model has no linear classifier to replace")
    return names[-1]


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """``model`` (a float model, changed in place and returned) with a new classifier for ``num_classes``.

    The new layer has the old one's input width and PyTorch's default initialisation (seed it first).
    """
    name = head_name(model)
    old = model.get_submodule(name)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


def check_input_channels(supernet_or_size: Supernet | Sequence[int], images: Tensor) -> None:
    """Refuse target images whose channel count differs from what the model takes."""
    size = supernet_or_size.input_size if isinstance(supernet_or_size, Supernet) else tuple(supernet_or_size)
    if images.shape[1] != size[0]:
        raise ValueError(f"the target images have {images.shape[1]} channel(s) but the model takes {size[0]}; "
                         f"load them with {'grey' if size[0] == 1 else 'colour'} images "
                         f"(or use a model trained on {images.shape[1]}-channel data)")


@torch.no_grad()
def retarget_supernet(source: Supernet, target_model: nn.Module, calib_images: Tensor) -> Supernet:
    """A supernet for ``target_model`` (the same architecture with a new classifier) carrying every
    weight, switchable BN and step size of ``source`` except the classifier's.

    The classifier keeps the fixed 8-bit convention; its weight and input step sizes are initialised as
    ``Supernet.calibrate`` does, on ``calib_images`` (normalised float). A source of another architecture
    is refused naming the layers that do not fit.
    """
    check_input_channels(source, calib_images)
    target = Supernet(target_model, source.input_size, source.spec)
    head = head_name(target.model)
    prefix = f"model.{head}."
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(prefix)}
    try:
        result = target.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"the trained supernet does not fit the target model "
                              f"({str(exc).splitlines()[0][:300]}); use a checkpoint of the same model and width"
                              ) from None
    foreign = [k for k in result.missing_keys if not k.startswith(prefix)] + list(result.unexpected_keys)
    if foreign:
        raise CheckpointError(f"the trained supernet does not fit the target model: layers {foreign[:5]} differ; "
                              f"use a checkpoint of the same model and width")
    layer = quant_layers(target.model)[head]
    seen: dict[str, Tensor] = {}
    hook = layer.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    target.set_float()
    target.eval()
    try:
        target(calib_images)
    finally:
        hook.remove()
    layer.weight_quantizer.init_from_weight(layer.weight)
    if layer.quantize_input:
        layer.input_quantizer.signed = bool(seen["x"].min() < 0)
        layer.input_quantizer.init_from_activation(seen["x"])
    return target.train()


def fresh_float_model(model: nn.Module, num_classes: int) -> nn.Module:
    """A copy of a trained float model with a new classifier (the FP fine-tuning arm's start)."""
    return replace_head(copy.deepcopy(model), num_classes)


# --- the experiment of notebook 06 (T5) ---------------------------------------------------------------------

QUANTIZED_KEYS = ("w_bit_choices", "a_bit_choices", "depthwise_min_bits", "num_random_paths", "cancel_2bit_decay",
                  "scheduler", "idm")        # what a uniform LSQ arm takes from ``OneShotConfig.baseline``
# the supernet arms, named for what they start from: this method (the one-shot supernet of notebook 02) and a supernet
# built from the Fashion-MNIST FP model of notebook 01, which had no one-shot pre-training (it had FP pre-training)
THIS_METHOD, FROM_FP = "this method", "supernet from the FP model (no one-shot pre-training)"
SUPERNET_ARMS = (THIS_METHOD, FROM_FP)
CHECKPOINT_TAGS = {THIS_METHOD: "transferred", FROM_FP: "from-fp"}     # in a supernet arm's checkpoint name


def lsq_arm(bits: int) -> str:
    """The name of the fine-tuned uniform LSQ arm at ``bits``."""
    return f"LSQ W{bits}A{bits}"


def lsq_bits(arm: str) -> int:
    """``lsq_arm``'s inverse: ``lsq_bits("LSQ W3A3") == 3``."""
    match = re.fullmatch(r"LSQ W(\d+)A\1", arm)
    if match is None:
        raise ValueError(f"{arm!r} is not a uniform LSQ arm")
    return int(match.group(1))


def arm_family(arm: str) -> str:
    """The kind of ``arm``: "FP", "LSQ" (every uniform LSQ arm) or "supernet" (it sets the passes per optimizer step
    and the paper's direction; every arm has a learning-rate grid of its own, ``grid_arms``)."""
    if arm == "FP":
        return "FP"
    if arm.startswith("LSQ "):
        return "LSQ"
    if arm in SUPERNET_ARMS:
        return "supernet"
    raise ValueError(f"unknown arm {arm!r}")


@dataclass(frozen=True)
class Budget:
    """One target's fine-tuning budget: the same forward/backward passes for every arm (T5; DESIGN.md section 5).

    A pass is one forward and backward pass of one batch. A single-path arm (FP, uniform LSQ) makes one per
    optimizer step, a supernet arm ``paths`` (its max path and ``paths - 1`` random paths). The budget is a whole
    number of supernet epochs over the target's training images, so every arm makes exactly ``passes`` passes,
    the same number over each training image: a single-path arm trains ``paths`` times the supernet's epochs.
    """

    steps_per_epoch: int      # batches per epoch over the training images
    paths: int                # passes per supernet step: 1 + num_random_paths
    supernet_epochs: int

    def __post_init__(self) -> None:
        if min(self.steps_per_epoch, self.paths, self.supernet_epochs) < 1:
            raise ValueError(f"a budget needs at least one batch, path and epoch, got {self}")

    @property
    def passes(self) -> int:
        """Forward/backward passes of one batch per arm."""
        return self.supernet_epochs * self.paths * self.steps_per_epoch

    def epochs(self, paths_per_step: int) -> int:
        """Epochs of an arm making ``paths_per_step`` passes per optimizer step (1 or ``paths``)."""
        if paths_per_step not in (1, self.paths):
            raise ValueError(f"an arm makes 1 or {self.paths} passes per step, not {paths_per_step}")
        return self.supernet_epochs * self.paths // paths_per_step

    def steps(self, paths_per_step: int) -> int:
        """Optimizer steps of such an arm: ``passes / paths_per_step``."""
        return self.epochs(paths_per_step) * self.steps_per_epoch


def target_budget(budget_passes: int, train_images: int, batch_size: int, paths: int) -> Budget:
    """The budget nearest ``budget_passes`` passes per arm (a whole number of supernet epochs, at least one).

    >>> b = target_budget(184, 3000, 128, 4)       # 23 batches per epoch: two supernet epochs
    >>> b.passes, b.epochs(1), b.steps(1), b.epochs(4), b.steps(4)
    (184, 8, 184, 2, 46)
    """
    steps = train_images // batch_size
    if steps < 1:
        raise ValueError(f"{train_images} training images give no full batch of {batch_size}")
    return Budget(steps, paths, max(1, round(budget_passes / (paths * steps))))


def paths_per_step(arm: str, tune: OneShotConfig) -> int:
    """Forward/backward passes per optimizer step of ``arm``: 1 for FP and LSQ, max path + random paths else."""
    return 1 + tune.num_random_paths if arm_family(arm) == "supernet" else 1


@dataclass(frozen=True)
class TransferSetup:
    """Notebook 06's params sections, parsed and checked (T5): the model and every recipe its arms use."""

    spec: ModelSpec                 # the transferred model and its width
    transfer: TransferConfig
    data: DataConfig                # batch size, padding, flips of the fine-tuning
    fp: FPConfig                    # the float arm's recipe (its rate from the grid)
    oneshot: OneShotConfig          # the one-shot recipe with the model's own candidates
    tune: OneShotConfig             # the quantized arms' fine-tuning recipe (epochs and rates set per run)
    search: SearchConfig            # the greedy search on the target's scoring images
    evaluation: EvalConfig
    input_size: Sequence[int]     # the model's (channels, height, width)
    device: torch.device


def transfer_setup(*, data: Mapping, models: Mapping, model_bits: Mapping | None, fp: Mapping, oneshot: Mapping,
                   evaluation: Mapping, baselines: Mapping, search: Mapping, transfer: Mapping,
                   device: torch.device | None = None) -> TransferSetup:
    """The params sections of notebook 06 (T5) as configs, refusing a model or baseline bit-width that
    the earlier stages do not train; ``device`` defaults to ``pick_device()``."""
    data_cfg = from_dict(DataConfig, data, "data")
    fp_cfg = from_dict(FPConfig, fp, "fp")
    cfg = from_dict(OneShotConfig, oneshot, "oneshot")
    eval_cfg = from_dict(EvalConfig, evaluation, "evaluation")
    base_cfg = from_dict(BaselineConfig, baselines, "baselines")
    search_cfg = from_dict(SearchConfig, search, "search")
    tr = from_dict(TransferConfig, transfer, "transfer")
    spec = next((s for s in model_specs(models) if s.name == tr.model), None)
    if spec is None:
        raise ValueError(f"transfer.model {tr.model!r} is not in the models section {list(models)}")
    own = mpq.studies.model_bits.model_bits(model_bits, spec.name)   # the model's own candidates, if listed
    cfg = own.oneshot(cfg).for_model(spec.name)      # ... and its family's scheduler rule
    search_cfg = own.search(search_cfg)              # ... and its search start
    search_cfg.check_candidates(cfg.w_bit_choices, cfg.a_bit_choices)
    missing = sorted(set(tr.baseline_bits) - set(own.baseline_levels(base_cfg)))
    if missing:
        raise ValueError(f"transfer.baseline_bits {missing} have no LSQ model: notebook 03 trains {tr.model} at "
                         f"{list(own.baseline_levels(base_cfg))} (baselines.levels, model_bits); add them there or "
                         f"drop them here")
    device = device if device is not None else pick_device()
    # the quantized arms' fine-tuning recipe: the one-shot recipe with the transfer EMA; epochs and rates per run
    tune = dataclasses.replace(cfg, ema_decay=tr.ema_decay, train_size=None)
    return TransferSetup(spec=spec, transfer=tr, data=data_cfg, fp=fp_cfg, oneshot=cfg, tune=tune, search=search_cfg,
                         evaluation=eval_cfg, input_size=model_entry(spec.name).input_size, device=device)


def accuracy(preds: Tensor, labels: Tensor) -> float:
    """Top-1 as a fraction: the share of ``preds`` equal to ``labels``."""
    return float((preds == labels).float().mean())


# --- one fine-tuning run ------------------------------------------------------------------------------------

@dataclass
class Tuned:
    """One fine-tuning run: its arm, rate, seed and compute, its per-epoch losses, and the trained model.

    ``curve``: FP only, held-out top-1 (%) after each epoch (``train_fp`` measures it on the held-out images it
    is given); the quantized arms' ``losses`` are their max path's, per epoch.
    """

    arm: str
    lr: float
    seed: int
    epochs: int
    steps: int
    passes: int
    losses: list[float]
    seconds: float
    curve: list[float] = field(default_factory=list)
    model: nn.Module | None = None          # FP: the fine-tuned float model
    run: OneShotRun | None = None           # the quantized arms: EMA, raw supernet, scheduler decision

    @property
    def finite(self) -> bool:
        """Whether every epoch's mean training loss stayed finite (a NaN or inf in any step shows here)."""
        return all(math.isfinite(x) for x in self.losses)

    def compute(self) -> dict:
        """The run's compute for the metrics: epochs, optimizer steps and forward/backward passes."""
        return {"epochs": self.epochs, "steps": self.steps, "passes": self.passes}


@dataclass(frozen=True)
class Sources:
    """What the arms start from: notebook 01's FP model and the checkpoint folder of notebooks 02-03; ``out``: where
    the supernet arms' fine-tuning checkpoints go (None: ``<checkpoints>/transfer``)."""

    fp_model: nn.Module
    checkpoints: str = "checkpoints"
    out: str | None = None

    @property
    def transfer(self) -> str:
        """The folder of the supernet arms' fine-tuning checkpoints."""
        return self.out if self.out is not None else f"{self.checkpoints}/transfer"


def recipe(setup: TransferSetup, arm: str, lr: float, epochs: int) -> OneShotConfig:
    """The one-shot recipe of a quantized arm: ``setup.tune`` with ``epochs``, SGD rate ``lr`` and the step sizes'
    Adam rate ``lr * step_lr_ratio``; a uniform LSQ arm at its bit-width with the max path only."""
    cfg = dataclasses.replace(setup.tune, epochs=epochs, lr=lr, step_lr=lr * setup.transfer.step_lr_ratio)
    if arm_family(arm) == "LSQ":
        cfg = dataclasses.replace(cfg, **{k: v for k, v in dataclasses.asdict(cfg.baseline(lsq_bits(arm))).items()
                                          if k in QUANTIZED_KEYS})
    return cfg


def fine_tune(setup: TransferSetup, arm: str, train: ImageSet, heldout: ImageSet, calib: ImageSet, *, seed: int,
              lr: float, budget: Budget, sources: Sources, kw: Mapping[str, Any], checkpoint: str | None = None,
              meta: Mapping | None = None) -> Tuned:
    """Fine-tune one arm on ``train`` within ``budget`` at SGD rate ``lr`` (T5's arms, see the module docstring).

    The arm re-seeds torch's global generator with ``seed`` before it builds its model (the classifier's
    initialisation); ``kw`` carries the training keywords (batch size, padding, flips, device, progress);
    ``heldout`` (held-out training images) gives FP its per-epoch curve; ``calib`` initialises the new
    classifier's step sizes. ``checkpoint`` (supernet arms) makes the run resumable.
    """
    spec = setup.spec
    classes = len(train.classes)
    paths = paths_per_step(arm, setup.tune)
    epochs = budget.epochs(paths)
    torch.manual_seed(seed)
    if arm == "FP":
        model = fresh_float_model(sources.fp_model, classes)
        history = train_fp(model, train, heldout, epochs=epochs, lr=lr, momentum=setup.fp.momentum,
                           weight_decay=setup.fp.weight_decay, warmup_epochs=setup.fp.warmup_epochs,
                           label_smoothing=setup.fp.label_smoothing, seed=seed, stop_on_nonfinite=False, **kw)
        return Tuned(arm, lr, seed, epochs, budget.steps(1), budget.passes, list(history.loss), sum(history.seconds),
                     curve=[100 * a for a in history.test_acc], model=model)
    calib_x = to_device(calib.images[:256], calib.labels[:256], torch.device("cpu"))[0]
    target_model = create_model(spec.name, num_classes=classes, width_mult=spec.width_mult)
    if arm_family(arm) == "LSQ":
        source = load_supernet(f"{sources.checkpoints}/baselines/{spec.name}_w{lsq_bits(arm)}a{lsq_bits(arm)}.pt",
                               model=spec.name, width_mult=spec.width_mult)
        net = retarget_supernet(source, target_model, calib_x)
    elif arm == "this method":
        source = load_supernet(f"{sources.checkpoints}/supernet/{spec.name}.pt", model=spec.name,
                               width_mult=spec.width_mult, spec=setup.oneshot.supernet_spec())
        net = retarget_supernet(source, target_model, calib_x)
    else:       # ``target_model`` is still built (and draws from the generator) as the transferred arm's is
        net = build_supernet(fresh_float_model(sources.fp_model, classes), setup.tune.supernet_spec(), calib,
                             setup.input_size)
    # a run that goes non-finite is recorded and counted as collapsed (every run counts), not stopped
    run = train_oneshot(net, train, recipe(setup, arm, lr, epochs), seed=seed, checkpoint=checkpoint, meta=meta,
                        stop_on_nonfinite=False, keep_weights=False, **kw)     # its readers use the EMA copy
    return Tuned(arm, lr, seed, epochs, budget.steps(paths), budget.passes, list(run.history.loss), run.seconds,
                 run=run)


def heldout_predictions(tuned: Tuned, heldout: ImageSet, calib: ImageSet, bits: int | None = None) -> Tensor:
    """Predictions on held-out training images: FP's model; a quantized arm's EMA at uniform ``bits`` (None: its
    max path, every layer at its highest candidate), after recalibrating that configuration's BNs on ``calib``."""
    if tuned.model is not None:
        return predictions(tuned.model, heldout)
    ema = tuned.run.ema
    return test_predictions(ema, ema.max_config() if bits is None else ema.uniform_config(bits), calib, heldout)


def selection_correct(tuned: Tuned, heldout: ImageSet, calib: ImageSet, bits: Sequence[int]) -> Tensor:
    """Per held-out image, what a rate is chosen by and convergence judged by: whether FP's model, or a uniform LSQ
    arm's own configuration, classifies it right (bool); for a supernet, the share of its uniform configurations at
    ``bits`` (the bit-widths T5 compares at; none: its max path) that do (float)."""
    if arm_family(tuned.arm) != "supernet" or not bits:
        return heldout_predictions(tuned, heldout, calib) == heldout.labels
    return torch.stack([heldout_predictions(tuned, heldout, calib, b) == heldout.labels for b in bits]).float().mean(0)


def selection_top1(tuned: Tuned, heldout: ImageSet, calib: ImageSet, bits: Sequence[int]) -> float:
    """The held-out top-1 (%) a rate is chosen by (``selection_correct``): FP's model, a uniform LSQ arm's own
    configuration, a supernet's mean over the uniform configurations at ``bits``."""
    return 100 * float(selection_correct(tuned, heldout, calib, bits).float().mean())


def choose_lr(rows: Sequence[Mapping]) -> float:
    """The rate of the grid rows (``lr``, ``heldout top-1``) with the best held-out top-1; ties to the smaller rate.

    >>> choose_lr([{"lr": 0.1, "heldout top-1": 90.0}, {"lr": 0.02, "heldout top-1": 90.0},
    ...            {"lr": 0.05, "heldout top-1": 85.0}])
    0.02
    """
    return min(rows, key=lambda r: (-r["heldout top-1"], r["lr"]))["lr"]


@dataclass(frozen=True)
class GridChoice:
    """One arm's learning-rate grid after ``widen_grid``: every rate tried with its held-out score and the widening
    that added it (0: the starting grid), in the order tried; the final grid (ascending), the chosen rate and how many
    widenings it took."""

    tried: tuple[tuple[float, float, int], ...]      # (rate, held-out score, widening)
    grid: tuple[float, ...]
    chosen: float
    widenings: int

    @property
    def inside(self) -> bool:
        """Whether the chosen rate lies strictly inside the final grid (not at either edge)."""
        return self.grid[0] < self.chosen < self.grid[-1]


def _rate(x: float) -> float:
    """A widened rate at 4 significant digits (0.05 / 2 = 0.025, 0.2 * 2 = 0.4, with no float noise in the JSON)."""
    return float(f"{x:.4g}")


def widen_grid(rates: Sequence[float], score: Callable[[float], float], *, factor: float, max_widenings: int
               ) -> GridChoice:
    """Try every rate of ``rates`` with ``score`` (higher is better), choose the best (``choose_lr``: ties to the
    smaller rate), and while the choice lies at an edge of the grid add one rate beyond that edge (the top rate
    times ``factor``, or the bottom one divided by it; a grid of one rate gains both) and choose again, at most
    ``max_widenings`` times. Each rate is scored once. A choice still at an edge after that is returned as such
    (``GridChoice.inside`` False): the caller reports it.

    >>> g = widen_grid([0.05, 0.1], lambda lr: -abs(lr - 0.4), factor=2.0, max_widenings=3)
    >>> g.grid, g.chosen, g.widenings, g.inside
    ((0.05, 0.1, 0.2, 0.4, 0.8), 0.4, 3, True)
    """
    grid = sorted(set(rates))
    if not grid:
        raise ValueError("a learning-rate grid needs at least one rate")
    tried: dict[float, tuple[float, float, int]] = {}
    widenings = 0
    while True:
        for lr in grid:
            if lr not in tried:
                tried[lr] = (lr, float(score(lr)), widenings)
        chosen = choose_lr([{"lr": lr, "heldout top-1": tried[lr][1]} for lr in grid])
        low, high = chosen == grid[0], chosen == grid[-1]
        if not (low or high) or widenings == max_widenings:
            return GridChoice(tuple(tried.values()), tuple(grid), chosen, widenings)
        grid = ([_rate(grid[0] / factor)] if low else []) + grid + ([_rate(grid[-1] * factor)] if high else [])
        widenings += 1


def grid_arms(setup: TransferSetup) -> list[tuple[str, tuple[float, ...]]]:
    """``(arm, starting rates)`` of the grid, one per compared arm: FP (``fp_lrs``), every uniform LSQ bit-width
    (``lsq_lrs`` each), this method and the supernet from the FP model (``supernet_lrs`` each)."""
    tr = setup.transfer
    return ([("FP", tr.fp_lrs)] + [(lsq_arm(b), tr.lsq_lrs) for b in tr.baseline_bits]
            + [(arm, tr.supernet_lrs) for arm in SUPERNET_ARMS])


def lr_grid(setup: TransferSetup, target: str, train: ImageSet, heldout: ImageSet, calib: ImageSet, budget: Budget,
            sources: Sources, kw: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """Every arm's learning rate, chosen on held-out training images of the target (T5; DESIGN.md section 5).

    Each arm of ``grid_arms`` has its own grid, widened until its choice lies inside (``widen_grid``, with
    ``transfer.widen_factor`` and ``transfer.max_widenings``). A rate is tried once, at ``transfer.grid_seed``, on
    the first ``grid_images`` share of ``train`` with ``budget``'s epochs (so that share of its passes), and scored
    by ``selection_top1`` on ``heldout``. The test split is not an argument: it cannot reach the choice.

    Returns one row per run, in the order tried (its arm, rate, widening ``round``, compute, held-out scores and
    health, and whether it was ``chosen``), and one row per arm: its starting and final ``grid``, the ``chosen``
    rate, whether it lies ``inside`` the final grid, and the ``widenings`` it took.
    """
    tr = setup.transfer
    batch = kw["batch_size"]
    sub = training_subset(train, max(batch, round(tr.grid_images * len(train))))
    grid_budget = dataclasses.replace(budget, steps_per_epoch=len(sub) // batch)
    rows, choices = [], []
    for arm, rates in grid_arms(setup):
        runs: dict[float, dict] = {}

        def score(lr: float, arm: str = arm, runs: dict = runs) -> float:
            tuned = fine_tune(setup, arm, sub, heldout, calib, seed=tr.grid_seed, lr=lr, budget=grid_budget,
                              sources=sources, kw=kw)
            top1 = selection_top1(tuned, heldout, calib, tr.baseline_bits)
            max_path = (top1 if arm_family(arm) != "supernet" or not tr.baseline_bits else
                        100 * accuracy(heldout_predictions(tuned, heldout, calib), heldout.labels))
            runs[lr] = {**tuned.compute(), "heldout top-1": top1, "max path heldout top-1": max_path,
                        "losses finite": tuned.finite}
            return top1

        choice = widen_grid(rates, score, factor=tr.widen_factor, max_widenings=tr.max_widenings)
        rows += [{"target": target, "family": arm_family(arm), "arm": arm, "lr": lr, "round": widening,
                  "seed": tr.grid_seed, "train images": len(sub), **runs[lr], "chosen": lr == choice.chosen}
                 for lr, _, widening in choice.tried]
        choices.append({"target": target, "arm": arm, "starting grid": sorted(set(rates)), "grid": list(choice.grid),
                        "chosen": choice.chosen, "inside": choice.inside, "widenings": choice.widenings,
                        "heldout top-1": runs[choice.chosen]["heldout top-1"]})
    return rows, choices


# --- the compared runs ---------------------------------------------------------------------------------------

def search_and_test(run: OneShotRun, splits: Splits, levels: Sequence[float], search_cfg: SearchConfig,
                    batch_size: int) -> tuple[dict[float, dict], float]:
    """Greedy no-retraining configurations of a fine-tuned supernet at each BitOPs level (T5), with their
    test predictions; returns ``{level: {preds, gbitops, level, bit_cfg}}`` and the search's wall time."""
    ema, table = run.ema, run.ema.cost_table
    score_set = splits.score.subset(torch.arange(min(search_cfg.score_size, len(splits.score))))
    targets = [level_bitops(table, level) for level in levels]
    start = time.perf_counter()
    front = greedy_front(search_space(ema, run.candidates()), make_scorer(ema, score_set, metric=search_cfg.metric),
                         lambda c: bitops(table, c), targets,
                         [phase1_budget(table, t, a_bits=search_cfg.start_bits) for t in targets],
                         start_bits=search_cfg.start_bits, alpha=search_cfg.alpha)
    seconds = time.perf_counter() - start
    out = {}
    for level, res in zip(levels, front):
        preds = test_predictions(ema, res.bit_cfg, splits.calib, splits.test, batch_size=batch_size)
        out[level] = {"preds": preds, "gbitops": res.cost / 1e9, "level": bitops_level(table, res.cost),
                      "bit_cfg": cfg_to_json(res.bit_cfg)}
    return out, seconds


def run_record(target: str, seed: int, arm: str, level: float, preds: Tensor, labels: Tensor, gbitops: float | None,
               seconds: float, **extra: Any) -> dict:
    """One run's record at one level (a row of ``run_transfer``'s result; ``extra`` keys come last)."""
    return {"target": target, "seed": seed, "arm": arm, "level": level, "preds": preds, "labels": labels,
            "gbitops": gbitops, "tune_seconds": seconds, **extra}


def health(tuned: Tuned, heldout: ImageSet, calib: ImageSet, bits: Sequence[int]) -> dict:
    """A run's health: finite losses, and its max path's (FP: the model's) held-out top-1 (%) with the per-image
    correctness behind it (``heldout_correct``, for paired comparisons on the held-out images); and the held-out
    score its rate was chosen by (``selection_correct`` at ``bits``; the same tensor for FP and LSQ), which the
    convergence check compares at one and at ``curve_multiple`` budgets."""
    correct = heldout_predictions(tuned, heldout, calib) == heldout.labels
    chosen_by = correct if arm_family(tuned.arm) != "supernet" or not bits else selection_correct(
        tuned, heldout, calib, bits)
    return {"losses finite": tuned.finite, "heldout top-1": 100 * float(correct.float().mean()),
            "heldout_correct": correct, "selection top-1": 100 * float(chosen_by.float().mean()),
            "selection_correct": chosen_by}


def seed_runs(setup: TransferSetup, target: str, splits: Splits, s: int, lrs: Mapping[str, float], budget: Budget,
              sources: Sources, kw: Mapping[str, Any]) -> list[dict]:
    """Every arm of one target and fine-tuning seed ``s``, in T5's order: FP, each uniform LSQ model, this
    method and the supernet from the FP model (both searched at each ``transfer.levels``), each at its own rate in
    ``lrs`` (arm -> rate) and with ``budget``'s passes; one record per arm and level, with its compute and health."""
    spec, tr = setup.spec, setup.transfer
    arms = ["FP", *(lsq_arm(b) for b in tr.baseline_bits), *SUPERNET_ARMS]
    records = []
    for arm in arms:
        ckpt, meta = None, None
        if arm in SUPERNET_ARMS:
            ckpt = f"{sources.transfer}/{spec.name}_{target}_{CHECKPOINT_TAGS[arm]}_seed{s}.pt"
            meta = run_meta(spec.name, spec.width_mult, splits, splits.train, arm=arm)
        tuned = fine_tune(setup, arm, splits.train, splits.score, splits.calib, seed=s, lr=lrs[arm], budget=budget,
                          sources=sources, kw=kw, checkpoint=ckpt, meta=meta)
        common = {"lr": tuned.lr, **tuned.compute(), **health(tuned, splits.score, splits.calib, tr.baseline_bits)}
        if arm == "FP":
            common["curve"] = tuned.curve
            records.append(run_record(target, s, arm, 32, predictions(tuned.model, splits.test), splits.test.labels,
                                      None, tuned.seconds, **common))
        elif arm_family(arm) == "LSQ":
            bits = lsq_bits(arm)
            ema = tuned.run.ema
            bit_cfg = ema.uniform_config(bits)
            records.append(run_record(target, s, arm, bits, test_predictions(ema, bit_cfg, splits.calib, splits.test),
                                      splits.test.labels, bitops(ema.cost_table, bit_cfg) / 1e9, tuned.seconds,
                                      **common))
        else:
            found, search_seconds = search_and_test(tuned.run, splits, tr.levels, setup.search,
                                                    setup.evaluation.batch_size)
            for level, f in found.items():
                records.append(run_record(target, s, arm, level, f["preds"], splits.test.labels, f["gbitops"],
                                          tuned.seconds, **common, search_seconds=round(search_seconds, 1),
                                          found_level=f["level"], bit_cfg=f["bit_cfg"]))
    return records


def longer_runs(setup: TransferSetup, target: str, splits: Splits, lrs: Mapping[str, float], budget: Budget,
                sources: Sources, kw: Mapping[str, Any]) -> list[dict]:
    """Every arm fine-tuned again for ``transfer.curve_multiple`` budgets at its chosen rate in ``lrs`` and the
    first seed: the convergence check of the budget. Each row holds the run's compute and health on the held-out
    images, among them the score its rate was chosen by (``selection_correct``), which the page compares with the
    same seed's run at the budget; FP's also its held-out curve, which continues the budget run's. A supernet arm's
    run is resumable (its checkpoint ``<model>_<target>_<tag>_x<multiple>_seed<s>.pt``, not kept by the stage)."""
    spec, tr = setup.spec, setup.transfer
    longer = dataclasses.replace(budget, supernet_epochs=budget.supernet_epochs * tr.curve_multiple)
    seed, rows = tr.seeds[0], []
    for arm, _ in grid_arms(setup):
        ckpt, meta = None, None
        if arm in SUPERNET_ARMS:
            ckpt = f"{sources.transfer}/{spec.name}_{target}_{CHECKPOINT_TAGS[arm]}_x{tr.curve_multiple}_seed{seed}.pt"
            meta = run_meta(spec.name, spec.width_mult, splits, splits.train, arm=arm, multiple=tr.curve_multiple)
        tuned = fine_tune(setup, arm, splits.train, splits.score, splits.calib, seed=seed, lr=lrs[arm], budget=longer,
                          sources=sources, kw=kw, checkpoint=ckpt, meta=meta)
        row = {"target": target, "arm": arm, "seed": seed, "multiple": tr.curve_multiple, "lr": lrs[arm],
               **tuned.compute(), **health(tuned, splits.score, splits.calib, tr.baseline_bits)}
        rows.append(row | ({"curve": tuned.curve} if arm == "FP" else {}))
    return rows


def flag_collapses(records: Sequence[Mapping], collapse_points: float) -> list[dict]:
    """``records`` with ``collapsed`` (bool) and ``collapse`` (why, or None) added to each.

    A run collapsed when a training loss was not finite; or when its held-out top-1 (max path; FP: the model)
    lies more than ``collapse_points`` under the median of its (target, arm) over seeds (one run failing where its
    siblings did not); or, for a supernet arm, when its max path (every layer at its highest candidate, close to
    float) lies more than ``collapse_points`` under the FP model fine-tuned with the same seed on the same held-out
    images (every seed failing alike; ``mpq.studies.health`` applies the same test against the FP model elsewhere).
    Runs are identified by (target, arm, seed): a supernet run's records at several levels share one verdict.
    """
    runs = {(r["target"], r["arm"], r["seed"]): r for r in records}
    by_arm: dict[tuple[str, str], list[float]] = {}
    for (target, arm, _), r in runs.items():
        by_arm.setdefault((target, arm), []).append(r["heldout top-1"])
    medians = {k: float(np.median(v)) for k, v in by_arm.items()}
    out = []
    for r in records:
        median, acc = medians[(r["target"], r["arm"])], r["heldout top-1"]
        fp = runs.get((r["target"], "FP", r["seed"]))
        why = None
        if not r["losses finite"]:
            why = "a training loss was not finite"
        elif acc < median - collapse_points:
            why = (f"held-out top-1 {acc:.2f}% is {median - acc:.2f} points under the median of its seeds "
                   f"({median:.2f}%)")
        elif arm_family(r["arm"]) == "supernet" and fp is not None and acc < fp["heldout top-1"] - collapse_points:
            why = (f"max path {acc:.2f}% on held-out images is {fp['heldout top-1'] - acc:.2f} points under FP "
                   f"fine-tuned with the same seed ({fp['heldout top-1']:.2f}%)")
        out.append({**r, "collapsed": why is not None, "collapse": why})
    return out


@dataclass
class TransferResult:
    """What ``run_transfer`` returns: the compared runs, the grid runs and each arm's choice, the longer runs of the
    convergence check, the budgets, and the wall time."""

    records: list[dict]                      # one per (target, seed, arm, level), with test predictions
    grid: list[dict]                         # one per grid run, in the order tried
    choices: list[dict]                      # per target and arm: starting and final grid, chosen rate, widenings
    longer: list[dict]                       # per target and arm, the run of ``curve_multiple`` budgets
    budgets: dict[str, Budget]               # per target
    seconds: float                           # wall time of every run

    @property
    def lrs(self) -> dict[str, dict[str, float]]:
        """target -> arm -> the rate chosen on held-out images (``choices``)."""
        out: dict[str, dict[str, float]] = {}
        for c in self.choices:
            out.setdefault(c["target"], {})[c["arm"]] = c["chosen"]
        return out


def run_transfer(setup: TransferSetup, seed: int, *, checkpoints: str = "checkpoints", work: str | Path | None = None,
                 progress: bool = False) -> TransferResult:
    """T5's runs, per target (split seeded by ``seed``): every arm's learning-rate grid (``lr_grid``), then every arm
    of ``seed_runs`` for each fine-tuning seed at its chosen rate, then every arm's longer run (``longer_runs``);
    collapsed runs flagged (``flag_collapses``).

    Reads the FP model, the uniform LSQ models and the one-shot supernet under ``checkpoints`` (notebooks
    01-03) and writes the supernet arms' fine-tuning checkpoints to ``work`` (default ``checkpoints/transfer``; a
    finished one is resumed, not retrained).
    """
    spec, tr = setup.spec, setup.transfer
    sources = Sources(load_fp_model(f"{checkpoints}/fp/{spec.name}.pt", spec.name, spec.width_mult), checkpoints,
                      None if work is None else str(work))
    start = time.perf_counter()
    result = TransferResult([], [], [], [], {}, 0.0)
    Path(sources.transfer).mkdir(parents=True, exist_ok=True)
    for target in tr.targets:
        splits = load_target(target, tr, seed)
        flip = setup.data.flip and target not in NO_FLIP
        budget = target_budget(tr.budget_passes, len(splits.train), setup.data.batch_size,
                               1 + setup.tune.num_random_paths)
        print(f"{target}: {len(splits.train.classes)} classes, train {len(splits.train)}, score {len(splits.score)}, "
              f"calib {len(splits.calib)}, test {len(splits.test)}, flip {flip}; {budget.passes} passes per arm")
        kw = dict(batch_size=setup.data.batch_size, pad=setup.data.pad, flip=flip, device=setup.device,
                  progress=progress)
        grid, choices = lr_grid(setup, target, splits.train, splits.score, splits.calib, budget, sources, kw)
        lrs = {c["arm"]: c["chosen"] for c in choices}
        print(f"{target}: rates chosen on held-out images " + ", ".join(
            f"{c['arm']} {c['chosen']:g} of {c['grid']}" + ("" if c["inside"] else " (at the edge)") for c in choices))
        result.grid += grid
        result.choices += choices
        result.budgets[target] = budget
        for s in tr.seeds:
            done = seed_runs(setup, target, splits, s, lrs, budget, sources, kw)
            result.records += done
            print(f"{target} seed {s}: " + ", ".join(
                f"{r['arm']}@{r['level']} {100 * accuracy(r['preds'], r['labels']):.2f}" for r in done))
        result.longer += longer_runs(setup, target, splits, lrs, budget, sources, kw)
    result.records = flag_collapses(result.records, tr.collapse_points)
    result.seconds = time.perf_counter() - start
    return result


# --- the stage's folder: plain results without wall times, and the command line -------------------------------

RESULT_JSON, ARRAYS_NPZ = "result.json", "predictions.npz"
SECTIONS = ("records", "grid", "choices", "longer")  # TransferResult's lists of rows
TIMING_KEYS = ("tune_seconds", "search_seconds")     # a record's wall times: the stage record holds them
RUN_KEYS = ("target", "seed", "arm", "level")        # what names a record
FIX = "run `dvc pull` (or `dvc repro transfer`: about 75 min on the default profile)"
SETUP_SECTIONS = ("data", "models", "model_bits", "fp", "oneshot", "evaluation", "baselines", "search", "transfer")
SOURCES = ("fp", "supernet", "baselines")            # the folders under ``checkpoints`` the arms start from


def transfer_timings(result: TransferResult) -> dict:
    """``result``'s wall times, for ``reports/stages/transfer.json``: ``run_seconds`` (``run_transfer``'s) and per
    record its ``tune_seconds`` and (a supernet arm) ``search_seconds``, named by target, seed, arm and level."""
    runs = [{**{k: r[k] for k in RUN_KEYS}, **{k: r[k] for k in TIMING_KEYS if k in r}} for r in result.records]
    return {"run_seconds": result.seconds, "runs": runs}


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` atomically with a fixed date in the archive (numpy stamps each entry with the time of writing):
    the same arrays give the same bytes."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w",
                              force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)


def _packed(t: Tensor) -> np.ndarray:
    """A tensor for the archive: class predictions and labels as int16 (as ``mpq.studies.replicates``)."""
    a = t.detach().cpu().numpy()
    small = np.iinfo(np.int16)
    if a.dtype.kind in "iu" and (a.size == 0 or (a.min() >= small.min and a.max() <= small.max)):
        return a.astype(np.int16)
    return a


def save_transfer(result: TransferResult, folder: str | Path) -> dict:
    """Write ``result`` into ``folder`` as data, without its wall times; return them (``transfer_timings``).

    ``result.json`` (plain JSON): the budgets (a list, in the result's order), the rows of ``records``, ``grid``,
    ``choices`` and ``longer`` without their tensors and wall times, each row's key order, and where each
    tensor lies in ``predictions.npz`` with its dtype (predictions and labels stored as int16, the per-image
    correctness as bool; a tensor shared by several rows, such as a target's labels, stored once). The same result
    gives the same bytes. ``load_transfer`` reads it back.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    names: dict[int, str] = {}
    doc: dict[str, Any] = {
        "budgets": [{"target": t, **dataclasses.asdict(b)} for t, b in result.budgets.items()],
        "arrays": {}, "key_orders": {}}
    for section in SECTIONS:
        rows, refs, orders, order_of = [], [], [], []
        for i, row in enumerate(getattr(result, section)):
            keys = list(row)
            if keys not in orders:
                orders.append(keys)
            order_of.append(orders.index(keys))
            ref = {}
            for key, value in row.items():
                if isinstance(value, Tensor):
                    if id(value) not in names:
                        name = f"{section}_{i}_{re.sub(r'[^A-Za-z0-9]', '_', key)}"
                        arrays[name], dtypes[name] = _packed(value), str(value.dtype).removeprefix("torch.")
                        names[id(value)] = name
                    ref[key] = names[id(value)]
            rows.append({k: v for k, v in row.items() if k not in ref and k not in TIMING_KEYS})
            refs.append(ref)
        doc[section], doc["arrays"][section] = rows, refs
        doc["key_orders"][section] = {"orders": orders, "rows": order_of}
    doc["dtypes"] = dtypes
    if arrays:
        _write_npz(folder / ARRAYS_NPZ, arrays)
    write_json(doc, folder / RESULT_JSON)
    return transfer_timings(result)


def _read_arrays(path: Path, dtypes: Mapping[str, str]) -> dict[str, Tensor]:
    """The tensors ``save_transfer`` archived, each in its original dtype (data only: no pickles)."""
    if not dtypes:
        return {}
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; {FIX}")
    out = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name, dtype in dtypes.items():
                kind = getattr(torch, str(dtype), None)
                if not isinstance(kind, torch.dtype):
                    raise ValueError(f"unknown dtype {dtype!r}")
                out[name] = torch.from_numpy(npz[name]).to(kind)
    except KeyError as exc:
        raise CheckpointError(f"{path} lacks the array {exc}: damaged or from another run; {FIX}") from None
    except Exception as exc:       # BadZipFile, ValueError (a pickled or unknown array), OSError, EOFError
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}); {FIX}") from None
    return out


def _rebuild(doc: Mapping, arrays: Mapping[str, Tensor], timings: Mapping) -> TransferResult:
    """``save_transfer``'s document back as a ``TransferResult``: each row's keys in their order, its tensors from
    ``arrays`` (a shared one shared again), its wall times from ``timings`` (NaN where the record has none)."""
    budgets = {b["target"]: Budget(b["steps_per_epoch"], b["paths"], b["supernet_epochs"]) for b in doc["budgets"]}
    times = {tuple(t[k] for k in RUN_KEYS): t for t in timings.get("runs", [])}
    sections: dict[str, list[dict]] = {}
    for section in SECTIONS:
        orders, rows = doc["key_orders"][section], []
        for row, ref, index in zip(doc[section], doc["arrays"][section], orders["rows"], strict=True):
            timed = times.get(tuple(row[k] for k in RUN_KEYS), {}) if section == "records" else {}
            full = {}
            for key in orders["orders"][index]:
                if key in row:
                    full[key] = row[key]
                elif key in ref:
                    full[key] = arrays[ref[key]]
                elif key in TIMING_KEYS:
                    full[key] = timed.get(key, math.nan)
                else:
                    raise KeyError(f"a row of {section} lacks {key!r}")
            if not set(row) | set(ref) <= set(full):
                raise ValueError(f"a row of {section} holds keys outside its key order")
            rows.append(full)
        sections[section] = rows
    return TransferResult(sections["records"], sections["grid"], sections["choices"], sections["longer"], budgets,
                          timings.get("run_seconds", math.nan))


def load_transfer(folder: str | Path = "checkpoints/transfer", *, stages: str | Path = "reports/stages"
                  ) -> TransferResult:
    """The ``TransferResult`` that ``run_transfer`` returned and ``save_transfer`` wrote into ``folder`` (the
    ``transfer`` stage's output), with its wall times merged back from the stage record ``stages/transfer.json``
    (``write_stage_record``); without that record every wall time is NaN (T5's time columns empty, the metrics'
    null). Floats come back exactly, predictions and labels as int64, the per-image correctness as bool.

    A missing or damaged file raises one ``CheckpointError`` naming it and the fix (``dvc pull``).
    """
    path = Path(folder) / RESULT_JSON
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the transfer stage's results are not here; {FIX}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}); {FIX}") from None
    try:
        dtypes = dict(doc["dtypes"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path} is not a transfer result (no dtypes); {FIX}") from None
    arrays = _read_arrays(Path(folder) / ARRAYS_NPZ, dtypes)
    record_path = Path(stages) / "transfer.json"
    try:
        timings = read_stage_record("transfer", stages).get("timings", {})
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{record_path} is damaged ({type(exc).__name__}); delete it, or run `dvc repro "
                              f"transfer` to write it again") from None
    if not timings:
        log.warning("%s holds no wall times of the transfer runs: T5's time columns stay empty", record_path)
    try:
        return _rebuild(doc, arrays, timings)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path} is damaged or not a transfer result ({type(exc).__name__}: {exc}); {FIX}"
                              ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.transfer",
                                     description="T5's fine-tuning runs (the transfer stage): every arm's learning-rate "
                                                 "grid, every seed and arm, every arm's longer run; results into --out, wall "
                                                 "times into reports/stages/transfer.json.")
    parser.add_argument("--out", required=True,
                        help="output folder, e.g. checkpoints/transfer (replaced as a whole when the run completes)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--stages", default="reports/stages", help="folder of the stage records (wall times)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_command(lambda: _run(args), "mpq.studies.transfer", sys.argv[1:] if argv is None else argv,
                       checkpoints=[_partial(Path(args.out))])


def _partial(out: Path) -> Path:
    """Where a run writes before its folder is complete (kept across a kill: finished fine-tunings resume)."""
    return out.with_name(f".{out.name}.partial")


def _run(args: argparse.Namespace, checkpoints: str = "checkpoints") -> int:
    start = time.perf_counter()
    params = load_params(args.params)
    out = check_output(args.out, folder=True, inputs=[args.params, *(f"{checkpoints}/{s}" for s in SOURCES)])
    setup = transfer_setup(**{k: params.get(k) if k == "model_bits" else params[k] for k in SETUP_SECTIONS})
    work = _partial(out)
    result = run_transfer(setup, params["seed"], checkpoints=checkpoints, work=work)
    timings = save_transfer(result, work)
    for extra in {*work.glob("*_from-fp_*.pt"), *work.glob("*_x[0-9]*_seed*.pt")}:   # no reader: only this
        extra.unlink()                                  # method's supernets at the budget are searched again
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(work, out)
    shutil.rmtree(old, ignore_errors=True)
    write_stage_record("transfer", time.perf_counter() - start, args.stages, timings=timings)
    log.info("transfer: %d records, %d grid runs into %s", len(result.records), len(result.grid), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
