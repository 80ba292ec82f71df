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
- **equal compute, counted in passes.** A pass is one forward and backward pass of one batch. A
  single-path arm (FP, fine-tuned uniform LSQ) makes one pass per optimizer step; a supernet arm makes
  ``1 + num_random_paths`` (its max path and its random paths). Every arm of a target gets the same passes
  over the same training images: ``transfer.budget_passes``, rounded to a whole number of supernet epochs
  (``Budget``), so a supernet arm runs P / (1 + R) optimizer steps and a single-path arm P steps, seeing each
  image 1 + R times as often as a supernet step does. ``reports/metrics/transfer.json`` records each run's
  passes, steps and epochs;
- **learning rates chosen per arm family on held-out target images** (``lr_grid``): the FP family
  (``transfer.fp_lrs``), the uniform LSQ family (``lsq_lrs``, tried on its lowest bit-width) and the
  supernet family (``supernet_lrs``, tried on the transferred supernet; the supernet without pre-training
  takes the family's rate), each rate once at ``grid_seed`` (not one of the compared seeds) on a share
  ``grid_images`` of the training images with the budget's epochs, scored on the target's held-out scoring
  images (never the test split: it is not an argument of the grid). The LSQ step sizes' Adam rate is
  ``step_lr_ratio`` times the SGD rate; ties go to the smaller rate;
- **enough compute**: FP fine-tuning is also run for ``curve_multiple`` budgets (the chosen rate, the first
  seed); its held-out top-1 against passes (``fp_curves``) says whether the budget has flattened;
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
- verdicts (``paired_comparisons``) through ``mpq.studies.stats.paired_verdict``: per seed, this method
  minus the other arm on the same test images, with both the seed spread and the test-image noise.

Pieces: ``load_target`` (a named data set or an image folder, with clear errors), ``head_name`` and
``replace_head`` (a float model's classifier), ``retarget_supernet`` (a trained supernet's weights, BNs
and step sizes in a supernet built for the target's classes), ``check_input_channels``.

The experiment of notebook 06: ``transfer_setup`` (the params sections, checked), ``run_transfer`` (per
target: the learning-rate grid, then seeds x arms at the chosen rates, then the longer FP run; one record
per run and level, with its test predictions), and what the notebook shows of it: ``budget_table``,
``grid_table``, ``convergence_table``, ``t5_table`` (T5), ``paired_comparisons`` and ``comparison_table``,
``transfer_metrics`` (the JSON), ``transfer_figure`` and ``transfer_findings``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from mpq.config import (BaselineConfig, DataConfig, EvalConfig, FPConfig, ModelSpec, SearchConfig, _positive, distinct,
                        from_dict, model_specs, require)
from mpq.data.datasets import NAMED_DATASETS, ImageSet, Splits, make_splits
from mpq.method.cost import bitops, bitops_level, level_bitops, phase1_budget
from mpq.method.layers import quant_layers
from mpq.method.supernet import Supernet
from mpq.models import create_model, model_entry
from mpq.search.evaluation import make_scorer, search_space, test_predictions
from mpq.search.greedy import greedy_front
from mpq.search.space import cfg_to_json
import mpq.studies.model_bits
from mpq.studies.stats import json_ready, paired_verdict, table_note
from mpq.training.checkpoint import CheckpointError
from mpq.training.fp import load_fp_model, pick_device, predictions, to_device, train_fp
from mpq.training.oneshot import (OneShotRun, build_supernet, load_supernet, run_meta, train_oneshot,
                                  training_subset)
from mpq.training.recipe import OneShotConfig

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
    fp_lrs: tuple[float, ...] = (0.05, 0.1, 0.2)     # SGD rates tried for FP fine-tuning (FP training used 0.1)
    lsq_lrs: tuple[float, ...] = (0.02, 0.05, 0.1)   # ... for the uniform LSQ arms (one-shot training used 0.04)
    supernet_lrs: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)  # ... for the supernet arms
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
SUPERNET_ARMS = ("this method", "supernet without pre-training")
T5_DISPLAY = {"top-1 mean": "top-1 mean (%)", "top-1 SD": "top-1 SD (points)",
              "fine-tune s (per run)": "fine-tuning (s, per run)", "search s": "search (s)"}


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
    """The family whose learning rate ``arm`` takes: "FP", "LSQ" (every uniform LSQ arm) or "supernet"."""
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
    cfg = own.oneshot(cfg)
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
    """What the arms start from: notebook 01's FP model and the checkpoint folder of notebooks 02-03."""

    fp_model: nn.Module
    checkpoints: str = "checkpoints"


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
                        stop_on_nonfinite=False, **kw)
    return Tuned(arm, lr, seed, epochs, budget.steps(paths), budget.passes, list(run.history.loss), run.seconds,
                 run=run)


def heldout_predictions(tuned: Tuned, heldout: ImageSet, calib: ImageSet, bits: int | None = None) -> Tensor:
    """Predictions on held-out training images: FP's model; a quantized arm's EMA at uniform ``bits`` (None: its
    max path, every layer at its highest candidate), after recalibrating that configuration's BNs on ``calib``."""
    if tuned.model is not None:
        return predictions(tuned.model, heldout)
    ema = tuned.run.ema
    return test_predictions(ema, ema.max_config() if bits is None else ema.uniform_config(bits), calib, heldout)


def selection_top1(tuned: Tuned, heldout: ImageSet, calib: ImageSet, bits: Sequence[int]) -> float:
    """The held-out top-1 (%) a rate is chosen by: FP's model, a uniform LSQ arm's own configuration, a supernet's
    mean over the uniform configurations at ``bits`` (the bit-widths T5 compares at; none: its max path)."""
    if arm_family(tuned.arm) != "supernet" or not bits:
        return 100 * accuracy(heldout_predictions(tuned, heldout, calib), heldout.labels)
    return float(np.mean([100 * accuracy(heldout_predictions(tuned, heldout, calib, b), heldout.labels) for b in bits]))


def choose_lr(rows: Sequence[Mapping]) -> float:
    """The rate of the grid rows (``lr``, ``heldout top-1``) with the best held-out top-1; ties to the smaller rate.

    >>> choose_lr([{"lr": 0.1, "heldout top-1": 90.0}, {"lr": 0.02, "heldout top-1": 90.0},
    ...            {"lr": 0.05, "heldout top-1": 85.0}])
    0.02
    """
    return min(rows, key=lambda r: (-r["heldout top-1"], r["lr"]))["lr"]


def grid_arms(setup: TransferSetup) -> list[tuple[str, str, tuple[float, ...]]]:
    """``(family, arm tried, rates)`` of the grid: FP, the lowest uniform LSQ bit-width, the transferred supernet."""
    tr = setup.transfer
    arms = [("FP", "FP", tr.fp_lrs)]
    if tr.baseline_bits:
        arms.append(("LSQ", lsq_arm(min(tr.baseline_bits)), tr.lsq_lrs))
    return arms + [("supernet", "this method", tr.supernet_lrs)]


def lr_grid(setup: TransferSetup, target: str, train: ImageSet, heldout: ImageSet, calib: ImageSet, budget: Budget,
            sources: Sources, kw: Mapping[str, Any]) -> tuple[list[dict], dict[str, float]]:
    """Each arm family's learning rate, chosen on held-out training images of the target (T5; DESIGN.md section 5).

    Every rate of ``grid_arms`` is tried once, at ``transfer.grid_seed``, on the first ``grid_images`` share of
    ``train`` with ``budget``'s epochs (so that share of its passes), and scored by ``selection_top1`` on
    ``heldout``. The test split is not an argument: it cannot reach the choice. Returns one row per run
    (with its compute and health) and ``{family: chosen rate}``.
    """
    tr = setup.transfer
    batch = kw["batch_size"]
    sub = training_subset(train, max(batch, round(tr.grid_images * len(train))))
    grid_budget = dataclasses.replace(budget, steps_per_epoch=len(sub) // batch)
    rows, chosen = [], {}
    for family, arm, rates in grid_arms(setup):
        family_rows = []
        for lr in rates:
            tuned = fine_tune(setup, arm, sub, heldout, calib, seed=tr.grid_seed, lr=lr, budget=grid_budget,
                              sources=sources, kw=kw)
            top1 = selection_top1(tuned, heldout, calib, tr.baseline_bits)
            max_path = (top1 if arm_family(arm) != "supernet" or not tr.baseline_bits else
                        100 * accuracy(heldout_predictions(tuned, heldout, calib), heldout.labels))
            family_rows.append({"target": target, "family": family, "arm": arm, "lr": lr, "seed": tr.grid_seed,
                                "train images": len(sub), **tuned.compute(), "heldout top-1": top1,
                                "max path heldout top-1": max_path, "losses finite": tuned.finite})
        chosen[family] = choose_lr(family_rows)
        rows += [{**r, "chosen": r["lr"] == chosen[family]} for r in family_rows]
    return rows, chosen


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


def health(tuned: Tuned, heldout: ImageSet, calib: ImageSet) -> dict:
    """A run's health: finite losses, and its max path's (FP: the model's) held-out top-1 (%) with the per-image
    correctness behind it (``heldout_correct``, for paired comparisons on the held-out images)."""
    correct = heldout_predictions(tuned, heldout, calib) == heldout.labels
    return {"losses finite": tuned.finite, "heldout top-1": 100 * float(correct.float().mean()),
            "heldout_correct": correct}


def seed_runs(setup: TransferSetup, target: str, splits: Splits, s: int, lrs: Mapping[str, float], budget: Budget,
              sources: Sources, kw: Mapping[str, Any]) -> list[dict]:
    """Every arm of one target and fine-tuning seed ``s``, in T5's order: FP, each uniform LSQ model, this
    method and the supernet without pre-training (searched at each ``transfer.levels``), each at its family's
    rate in ``lrs`` and with ``budget``'s passes; one record per arm and level, with its compute and health."""
    spec, tr = setup.spec, setup.transfer
    arms = ["FP", *(lsq_arm(b) for b in tr.baseline_bits), *SUPERNET_ARMS]
    records = []
    for arm in arms:
        ckpt, meta = None, None
        if arm in SUPERNET_ARMS:
            tag = "transferred" if arm == "this method" else "from-fp"
            ckpt = f"{sources.checkpoints}/transfer/{spec.name}_{target}_{tag}_seed{s}.pt"
            meta = run_meta(spec.name, spec.width_mult, splits, splits.train, arm=arm)
        tuned = fine_tune(setup, arm, splits.train, splits.score, splits.calib, seed=s, lr=lrs[arm_family(arm)],
                          budget=budget, sources=sources, kw=kw, checkpoint=ckpt, meta=meta)
        common = {"lr": tuned.lr, **tuned.compute(), **health(tuned, splits.score, splits.calib)}
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


def longer_fp_run(setup: TransferSetup, target: str, splits: Splits, lr: float, budget: Budget, sources: Sources,
                  kw: Mapping[str, Any]) -> dict:
    """FP fine-tuned for ``transfer.curve_multiple`` budgets at rate ``lr`` and the first seed: the convergence
    check of the budget (its held-out curve continues the budget run's of the same seed)."""
    tr = setup.transfer
    longer = dataclasses.replace(budget, supernet_epochs=budget.supernet_epochs * tr.curve_multiple)
    tuned = fine_tune(setup, "FP", splits.train, splits.score, splits.calib, seed=tr.seeds[0], lr=lr, budget=longer,
                      sources=sources, kw=kw)
    return {"target": target, "seed": tr.seeds[0], "multiple": tr.curve_multiple, "lr": lr, **tuned.compute(),
            **health(tuned, splits.score, splits.calib), "curve": tuned.curve}


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
    """What ``run_transfer`` returns: the compared runs, the grid, the FP curves, the budgets and chosen rates."""

    records: list[dict]                      # one per (target, seed, arm, level), with test predictions
    grid: list[dict]                         # one per grid run
    longer: list[dict]                       # per target, the FP run of ``curve_multiple`` budgets
    budgets: dict[str, Budget]               # per target
    lrs: dict[str, dict[str, float]]         # target -> family -> chosen rate
    seconds: float                           # wall time of every run


def run_transfer(setup: TransferSetup, seed: int, *, checkpoints: str = "checkpoints",
                 progress: bool = False) -> TransferResult:
    """T5's runs, per target (split seeded by ``seed``): the learning-rate grid (``lr_grid``), then every arm of
    ``seed_runs`` for each fine-tuning seed at the chosen rates, then the longer FP run (``longer_fp_run``);
    collapsed runs flagged (``flag_collapses``).

    Reads the FP model, the uniform LSQ models and the one-shot supernet under ``checkpoints`` (notebooks
    01-03) and writes the supernet arms' fine-tuning checkpoints to ``checkpoints/transfer`` (a finished one
    is resumed, not retrained).
    """
    spec, tr = setup.spec, setup.transfer
    sources = Sources(load_fp_model(f"{checkpoints}/fp/{spec.name}.pt", spec.name, spec.width_mult), checkpoints)
    start = time.perf_counter()
    result = TransferResult([], [], [], {}, {}, 0.0)
    Path(f"{checkpoints}/transfer").mkdir(parents=True, exist_ok=True)
    for target in tr.targets:
        splits = load_target(target, tr, seed)
        flip = setup.data.flip and target not in NO_FLIP
        budget = target_budget(tr.budget_passes, len(splits.train), setup.data.batch_size,
                               1 + setup.tune.num_random_paths)
        print(f"{target}: {len(splits.train.classes)} classes, train {len(splits.train)}, score {len(splits.score)}, "
              f"calib {len(splits.calib)}, test {len(splits.test)}, flip {flip}; {budget.passes} passes per arm")
        kw = dict(batch_size=setup.data.batch_size, pad=setup.data.pad, flip=flip, device=setup.device,
                  progress=progress)
        grid, lrs = lr_grid(setup, target, splits.train, splits.score, splits.calib, budget, sources, kw)
        print(f"{target}: rates chosen on held-out images {lrs}")
        result.grid += grid
        result.lrs[target], result.budgets[target] = lrs, budget
        for s in tr.seeds:
            done = seed_runs(setup, target, splits, s, lrs, budget, sources, kw)
            result.records += done
            print(f"{target} seed {s}: " + ", ".join(
                f"{r['arm']}@{r['level']} {100 * accuracy(r['preds'], r['labels']):.2f}" for r in done))
        result.longer.append(longer_fp_run(setup, target, splits, lrs["FP"], budget, sources, kw))
    result.records = flag_collapses(result.records, tr.collapse_points)
    result.seconds = time.perf_counter() - start
    return result


def stage_passes(result: TransferResult) -> dict[str, int]:
    """The stage's forward/backward passes of one batch, counted from its runs: the grid, the compared runs (each
    supernet run once, not once per level), the longer FP runs, and the total."""
    compared = {(r["target"], r["arm"], r["seed"]): r["passes"] for r in result.records}
    out = {"grid": sum(r["passes"] for r in result.grid), "compared runs": sum(compared.values()),
           "longer FP runs": sum(r["passes"] for r in result.longer)}
    return {**out, "total": sum(out.values())}


def passes_note(result: TransferResult) -> str:
    """``stage_passes`` in words: "N passes: grid g, compared runs c, longer FP runs l"."""
    p = stage_passes(result)
    return (f"{p['total']} passes: grid {p['grid']}, compared runs {p['compared runs']}, "
            f"longer FP runs {p['longer FP runs']}")


# --- what notebook 06 shows ---------------------------------------------------------------------------------

def budget_table(result: TransferResult) -> pd.DataFrame:
    """Per target and arm of the compared runs: rate, epochs, optimizer steps and passes (equal within a target)."""
    rows = []
    for (target, arm), g in pd.DataFrame(result.records).groupby(["target", "arm"], sort=False):
        rows.append({"target": target, "arm": arm, "family": arm_family(arm), "lr": g.lr.iloc[0],
                     "epochs": int(g.epochs.iloc[0]), "optimizer steps": int(g.steps.iloc[0]),
                     "passes": int(g.passes.iloc[0]), "runs": g.seed.nunique()})
    return pd.DataFrame(rows)


def grid_table(grid: Sequence[Mapping]) -> pd.DataFrame:
    """The learning-rate grid: per target, family and rate, the held-out top-1 it was chosen by (%)."""
    cols = ["target", "family", "arm", "lr", "seed", "train images", "epochs", "steps", "passes", "heldout top-1",
            "max path heldout top-1", "losses finite", "chosen"]
    return pd.DataFrame(list(grid), columns=cols)


def fp_curves(result: TransferResult) -> list[dict]:
    """The FP fine-tuning curves on held-out images: per FP run (every seed at the budget, and the longer run), its
    held-out top-1 (%) after each epoch against the passes made by then."""
    out = []
    runs = [dict(r, multiple=1) for r in result.records if r["arm"] == "FP"] + list(result.longer)
    for r in runs:
        per_epoch = result.budgets[r["target"]].steps_per_epoch
        out.append({"target": r["target"], "seed": r["seed"], "multiple": r["multiple"], "lr": r["lr"],
                    "passes": [per_epoch * (i + 1) for i in range(len(r["curve"]))], "heldout top-1": r["curve"]})
    return out


def convergence_table(result: TransferResult, flat_points: float) -> pd.DataFrame:
    """Per target: FP's held-out top-1 (%) at the budget and at ``curve_multiple`` budgets (same seed and rate), the
    gain with its paired SE over the held-out images, and whether the curve flattened (gain under ``flat_points``)."""
    rows = []
    for longer in result.longer:
        base = next(r for r in result.records if (r["target"], r["arm"], r["seed"]) ==
                    (longer["target"], "FP", longer["seed"]))
        gain = paired_verdict(longer["heldout_correct"].numpy(), base["heldout_correct"].numpy())
        rows.append({"target": longer["target"], "seed": longer["seed"], "lr": longer["lr"],
                     "passes at budget": base["passes"], "heldout top-1 at budget": base["heldout top-1"],
                     "passes longer": longer["passes"], "heldout top-1 longer": longer["heldout top-1"],
                     "gain (points)": gain.diff, "gain SE": gain.se_images, "flattened": bool(gain.diff < flat_points)})
    return pd.DataFrame(rows)


def t5_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """T5: one row per (target, arm, level) in the records' order: test top-1 (%) mean, SD and per-seed values
    (collapsed runs marked, counted, and kept in the mean), G-BitOPs, the rate and passes of each run,
    fine-tuning and search wall time."""
    rows = []
    for (target, arm, level), group in pd.DataFrame(records).groupby(["target", "arm", "level"], sort=False):
        accs = [100 * accuracy(p, l) for p, l in zip(group.preds, group.labels)]
        collapsed = list(group.collapsed) if "collapsed" in group else [False] * len(accs)
        rows.append({"target": target, "method": arm + ("" if arm_family(arm) != "supernet" else ", no retraining"),
                     "W/A level": "32/32" if arm == "FP" else str(level), "seeds": len(accs),
                     "top-1 mean": np.mean(accs), "top-1 SD": np.std(accs, ddof=1) if len(accs) > 1 else np.nan,
                     "per seed": " / ".join(f"{a:.2f}" + (" (collapsed)" if c else "")
                                            for a, c in zip(accs, collapsed)),
                     "collapsed": int(sum(collapsed)),
                     "G-BitOPs": group.gbitops.iloc[0] if group.gbitops.iloc[0] is not None else np.nan,
                     "lr": group.lr.iloc[0] if "lr" in group else np.nan,
                     "passes": group.passes.iloc[0] if "passes" in group else np.nan,
                     "fine-tune s (per run)": group.tune_seconds.mean(),
                     "search s": group["search_seconds"].mean() if "search_seconds" in group else np.nan})
    return pd.DataFrame(rows)


def _find(records: Sequence[Mapping], target: str, seed: int, arm: str, level: float) -> Mapping:
    return next(r for r in records if (r["target"], r["seed"], r["arm"], r["level"]) == (target, seed, arm, level))


def paired_differences(records: Sequence[Mapping], target: str, seeds: Sequence[int], arm_a: str, level_a: float,
                       arm_b: str, level_b: float) -> list[float]:
    """Per seed, top-1 of ``arm_a`` at ``level_a`` minus ``arm_b`` at ``level_b`` on the same test images
    (points); T5's paired comparisons."""
    return [100 * (accuracy(a["preds"], a["labels"]) - accuracy(b["preds"], b["labels"]))
            for a, b in ((_find(records, target, s, arm_a, level_a), _find(records, target, s, arm_b, level_b))
                         for s in seeds)]


# the paper's direction of "this method minus <arm>" at equal BitOPs: above fine-tuned LSQ (+1); it states none
# for a supernet trained on the target without the one-shot pre-training (0: the words "higher" / "lower")
EXPECTED = {"LSQ": 1, "supernet": 0}


def paired_comparisons(records: Sequence[Mapping], targets: Sequence[str], levels: Sequence[float],
                       seeds: Sequence[int], baseline_bits: Sequence[int]) -> list[dict]:
    """T5's comparisons: this method at each level minus the uniform LSQ model of that bit-width (integer levels
    with a baseline) and minus the supernet without pre-training, paired per seed on the same test images.

    Each row: target, level, the other arm, the mean difference and per-seed differences (points), the number of
    collapsed runs among the two arms' runs (kept in the verdict), and ``verdict``, a ``stats.Verdict`` from the
    per-image correctness of every seed (``paired_verdict``: both the seed spread and the test-image noise).
    """
    rows = []
    for target in targets:
        for level in levels:
            pairs = [("supernet without pre-training", level)]
            if int(level) == level and int(level) in baseline_bits:
                pairs.insert(0, (lsq_arm(int(level)), int(level)))
            for arm_b, level_b in pairs:
                ours = [_find(records, target, s, "this method", level) for s in seeds]
                other = [_find(records, target, s, arm_b, level_b) for s in seeds]
                v = paired_verdict(np.stack([(r["preds"] == r["labels"]).numpy() for r in ours]),
                                   np.stack([(r["preds"] == r["labels"]).numpy() for r in other]),
                                   expected=EXPECTED[arm_family(arm_b)])
                rows.append({"target": target, "level": level, "this method minus": arm_b, "mean (points)": v.diff,
                             "per seed": " / ".join(f"{d:+.2f}" for d in v.per_seed),
                             "collapsed runs": sum(bool(r.get("collapsed")) for r in ours + other), "verdict": v})
    return rows


def comparison_table(comparisons: Sequence[Mapping]) -> pd.DataFrame:
    """``paired_comparisons`` for display: the interval and the verdict's words (its note: ``comparison_note``)."""
    return pd.DataFrame([{**{k: v for k, v in c.items() if k != "verdict"},
                          "95% interval": f"[{c['verdict'].low:+.2f}, {c['verdict'].high:+.2f}]",
                          "verdict": c["verdict"].text()} for c in comparisons])


def comparison_note(comparisons: Sequence[Mapping]) -> str:
    """The line under T5's comparisons: how many, how many clear of zero by chance, and after Holm."""
    return table_note([c["verdict"] for c in comparisons])


def collapsed_runs(records: Sequence[Mapping]) -> list[dict]:
    """The collapsed runs, once each: target, arm, seed, held-out top-1 and why."""
    runs = {(r["target"], r["arm"], r["seed"]): r for r in records if r.get("collapsed")}
    return [{"target": t, "arm": a, "seed": s, "heldout top-1": r["heldout top-1"], "why": r["collapse"]}
            for (t, a, s), r in runs.items()]


HIDDEN = ("preds", "labels", "heldout_correct", "curve")      # per-image data and curves: not in the runs' JSON


def transfer_metrics(*, profile: str, seed: int, spec: ModelSpec, device: torch.device | str, transfer: TransferConfig,
                     result: TransferResult, t5: pd.DataFrame, comparisons: Sequence[Mapping],
                     convergence: pd.DataFrame) -> dict:
    """``reports/metrics/transfer.json`` (T5), strict JSON (no NaN): the run's scale and config; per target the
    budget with every arm's epochs, steps and passes (``equal passes``: the same for every arm); the stage's
    passes; the rate grid and the chosen rates; FP's convergence check and curves; T5; the comparisons, each with its
    verdict (``Verdict.as_dict``), and their note (``comparison_note``); the collapsed runs; every compared run
    without its predictions (with its test top-1 as a fraction)."""
    budgets = {}
    for target, b in result.budgets.items():
        arms = {r["arm"]: {"lr": r["lr"], "epochs": r["epochs"], "steps": r["steps"], "passes": r["passes"]}
                for r in result.records if r["target"] == target}
        budgets[target] = {"steps_per_epoch": b.steps_per_epoch, "passes_per_supernet_step": b.paths,
                           "supernet_epochs": b.supernet_epochs, "passes": b.passes, "arms": arms,
                           "equal_passes": len({a["passes"] for a in arms.values()}) == 1}
    return json_ready({
        "profile": profile, "seed": seed, "model": spec.name, "width_mult": spec.width_mult, "device": str(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "stage_seconds": round(result.seconds, 1),
        "transfer": dataclasses.asdict(transfer), "budget": budgets, "passes": stage_passes(result),
        "lr_grid": {"rows": [dict(r) for r in result.grid], "chosen": result.lrs},
        "fp_convergence": {"rows": convergence.to_dict(orient="records"), "curves": fp_curves(result)},
        "t5": t5.to_dict(orient="records"),
        "comparisons": [{**c, "verdict": c["verdict"].as_dict()} for c in comparisons],
        "comparisons_note": comparison_note(comparisons),
        "collapsed": collapsed_runs(result.records),
        "runs": [{k: v for k, v in r.items() if k not in HIDDEN} | {"test_acc": accuracy(r["preds"], r["labels"])}
                 for r in result.records]})


def transfer_figure(records: Sequence[Mapping], curves: Sequence[Mapping], budgets: Mapping[str, Budget],
                    targets: Sequence[str], title: str):
    """T5 as a figure, one column per target. Top: test top-1 against G-BitOPs of each quantized arm (mean over
    seeds, every seed as a dot, collapsed runs as red crosses) and FP fine-tuned as a dashed line. Bottom: FP
    fine-tuning's held-out top-1 against passes (``fp_curves``), every seed at the budget and the longer run, the
    budget dotted."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    df = pd.DataFrame(records)
    df["top1"] = [100 * accuracy(p, l) for p, l in zip(df.preds, df.labels)]
    fig, axes = plt.subplots(2, len(targets), figsize=(5.5 * len(targets), 7.2), squeeze=False)
    for col, target in enumerate(targets):
        ax, ax_curve = axes[0][col], axes[1][col]
        sub = df[df.target == target]
        for arm, g in sub[sub.arm != "FP"].groupby("arm", sort=False):
            means = g.groupby("level", sort=False).agg(x=("gbitops", "first"), y=("top1", "mean"))
            label = arm + (", no retraining" if arm in SUPERNET_ARMS else "")
            line, = ax.plot(means.x, means.y, marker="o", label=label)
            ok = g[~g.get("collapsed", pd.Series(False, index=g.index)).astype(bool)]
            ax.scatter(ok.gbitops, ok.top1, s=10, color=line.get_color(), alpha=0.5)
            bad = g[g.get("collapsed", pd.Series(False, index=g.index)).astype(bool)]
            if len(bad):
                ax.scatter(bad.gbitops, bad.top1, marker="x", color="red", zorder=3)
        fp = sub[sub.arm == "FP"]
        if len(fp):
            ax.axhline(fp.top1.mean(), color="grey", ls="--", lw=1, label="FP fine-tuned")
        ax.set(xlabel="G-BitOPs", ylabel="test top-1 (%)", title=target)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        for c in (c for c in curves if c["target"] == target):
            ax_curve.plot(c["passes"], c["heldout top-1"], marker=".", lw=1.5 if c["multiple"] > 1 else 0.8,
                          label=f"{c['multiple']}x budget, seed {c['seed']}")
        if target in budgets:
            ax_curve.axvline(budgets[target].passes, color="grey", ls=":", lw=1, label="the budget")
        ax_curve.set(xlabel="forward/backward passes", ylabel="held-out top-1 (%)", title=f"{target}: FP fine-tuning")
        ax_curve.grid(alpha=0.3)
        ax_curve.legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 75 * len(targets)), fontsize=9)
    fig.tight_layout()
    return fig


def transfer_findings(result: TransferResult, tr: TransferConfig, t5: pd.DataFrame, comparisons: Sequence[Mapping],
                      convergence: pd.DataFrame) -> list[str]:
    """The findings bullets of notebook 06 (T5): the equal budgets, the chosen rates, whether FP fine-tuning
    flattened, each target's comparisons with their verdicts and the table's note, the collapsed runs, and each
    target's FP fine-tuned top-1."""
    lines = []
    for target, b in result.budgets.items():
        lines.append(f"{target}: every arm made {b.passes} forward/backward passes over the same {b.steps_per_epoch} "
                     f"batches per epoch (FP and LSQ: {b.epochs(1)} epochs, {b.steps(1)} steps; the supernets: "
                     f"{b.supernet_epochs} epochs, {b.steps(b.paths)} steps of {b.paths} passes)")
    lines.append(f"the stage made {passes_note(result)}")
    families = {"FP": tr.fp_lrs, "LSQ": tr.lsq_lrs, "supernet": tr.supernet_lrs}
    for target, lrs in result.lrs.items():
        edge = [f for f, lr in lrs.items() if len(families[f]) > 1 and lr in (min(families[f]), max(families[f]))]
        lines.append(f"{target}: rates chosen on held-out training images (seed {tr.grid_seed}, "
                     f"{100 * tr.grid_images:.0f}% of the training images): "
                     + ", ".join(f"{f} {lr:g} of {list(families[f])}" for f, lr in lrs.items())
                     + (f"; at the grid's edge: {', '.join(edge)}" if edge else ""))
    for _, c in convergence.iterrows():
        state = ("flattened" if c["flattened"] else
                 "still rising: the budget is short of FP fine-tuning's convergence, and every arm shares it")
        lines.append(f"{c.target}: FP fine-tuning reached {c['heldout top-1 at budget']:.2f}% on held-out images at "
                     f"the budget and {c['heldout top-1 longer']:.2f}% with {tr.curve_multiple}x the passes "
                     f"({c['gain (points)']:+.2f} ± {c['gain SE']:.2f} points, paired SE): {state} "
                     f"(criterion: a gain under {tr.flat_points:g} point{'' if tr.flat_points == 1 else 's'})")
    for c in comparisons:
        lines.append(f"{c['target']}: this method (no retraining) minus {c['this method minus']} at level "
                     f"{c['level']}: {c['verdict'].text()} (per seed {c['per seed']}"
                     + (f"; {c['collapsed runs']} collapsed run(s) included" if c["collapsed runs"] else "") + ")")
    if comparisons:
        lines.append(f"comparisons: {comparison_note(comparisons)}")
    collapsed = collapsed_runs(result.records)
    runs = len({(r["target"], r["arm"], r["seed"]) for r in result.records})
    if collapsed:
        lines.append(f"{len(collapsed)} of {runs} runs collapsed, kept in every mean and verdict: " + "; ".join(
            f"{c['target']} {c['arm']} seed {c['seed']} ({c['why']})" for c in collapsed))
    else:
        lines.append(f"none of the {runs} runs collapsed (no non-finite loss; no held-out top-1 of a max path more "
                     f"than {tr.collapse_points:g} points under its arm's median over seeds, nor a supernet's under "
                     f"FP fine-tuned with the same seed)")
    for target in result.budgets:
        fp_row = t5[(t5.target == target) & (t5.method == "FP")]
        if len(fp_row):
            lines.append(f"{target}: the FP model fine-tuned reaches {fp_row['top-1 mean'].iloc[0]:.2f}% on the test "
                         f"images (per seed {fp_row['per seed'].iloc[0]})")
    return lines
