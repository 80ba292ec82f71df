"""Transfer: one supernet trained on the main data set, adapted once to a new one (T5; claim C6).

The path a user with a small data set of their own takes: load the supernet trained on Fashion-MNIST,
give it a new classifier for the target's classes, fine-tune it once with the same one-shot procedure
(max path + random paths, scheduler and IDM as the ``oneshot`` section sets them), and then pick a
configuration for any budget with the inference-only search on the target's own held-out scoring
images: no retraining per configuration.

Protocol (the notebook ``06_transfer`` states it beside its numbers):
- nothing is frozen: every weight, BN and step size is fine-tuned; the new classifier starts from
  PyTorch's default initialisation (seeded) and keeps the package's convention of 8-bit weights and
  inputs, its step sizes initialised on one calibration batch of the target;
- every arm gets the same budget, ``transfer.epochs`` over the target's training images, with the
  recipe of its own kind (the ``fp`` section for the float model, ``oneshot`` for the quantized ones)
  and the fine-tuning learning rates and EMA decay of the ``transfer`` section (a fine-tuning run has
  50-100 steps, so the one-shot EMA's horizon of ~100 steps would keep a third or more of the model
  with its untrained classifier: measured, 66% against 83% for the raw weights on Animal-MNIST at W4A4);
- the data split of each target is seeded by the study's ``seed``; the runs' own seeds vary the
  classifier's initialisation, path sampling, augmentation and batch order.

Pieces: ``load_target`` (a named data set or an image folder, with clear errors), ``head_name`` and
``replace_head`` (a float model's classifier), ``retarget_supernet`` (a trained supernet's weights, BNs
and step sizes in a supernet built for the target's classes), ``check_input_channels``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError
from .config import _positive
from .data import NAMED_DATASETS, DataError, Splits, make_splits
from .layers import quant_layers
from .supernet import Supernet

TARGETS = tuple(n for n in NAMED_DATASETS if n != "fashion_mnist") + ("folder",)
NO_FLIP = {"mnist5k", "folder"}          # digits change meaning when mirrored; a user's folder may too


@dataclass(frozen=True)
class TransferConfig:
    """The ``transfer`` section of params.yaml (notebook 06)."""

    model: str = "resnet20"            # registry name; width from the ``models`` section
    targets: tuple[str, ...] = ("animal_mnist", "mnist5k")   # named data sets, or "folder" (with ``root``)
    root: str | None = None            # the image folder (one sub-folder per class) when a target is "folder"
    seeds: tuple[int, ...] = (0, 1)    # fine-tuning seeds
    epochs: int = 2                    # fine-tuning epochs over the target's training images, every arm
    fp_lr: float = 0.05                # SGD learning rate of the float fine-tuning (FP training used 0.1)
    lr: float = 0.02                   # SGD learning rate of the quantized fine-tuning (one-shot used 0.04)
    step_lr: float = 0.0015            # Adam learning rate of the step sizes (one-shot used 0.003)
    ema_decay: float = 0.9             # per step: a horizon of ~10 of the 50-100 fine-tuning steps (one-shot: 0.99)
    train_size: int | None = None      # cap on the target's training images (None: all that remain)
    score_size: int = 500              # held-out training images of the target scoring the search
    calib_size: int = 500              # held-out training images of the target for BN recalibration
    test_fraction: float = 0.2         # targets without a test split lose this shuffled share to it
    levels: tuple[float, ...] = (4, 3)  # BitOPs levels searched on the transferred supernets
    baseline_bits: tuple[int, ...] = (3, 4)   # uniform LSQ models fine-tuned as baselines

    def __post_init__(self) -> None:
        for name in ("targets", "seeds", "levels", "baseline_bits"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _positive("transfer", epochs=self.epochs, fp_lr=self.fp_lr, lr=self.lr, step_lr=self.step_lr,
                  train_size=self.train_size, score_size=self.score_size, calib_size=self.calib_size)
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"transfer.targets: unknown {unknown}; choose from {list(TARGETS)}")
        if "folder" in self.targets and not self.root:
            raise ValueError("transfer.targets names 'folder' but transfer.root is empty; set it to a folder "
                             "holding one sub-folder of images per class")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"transfer.ema_decay must lie in (0, 1), got {self.ema_decay}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"transfer.test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"transfer.seeds must be distinct seeds, got {list(self.seeds)}")


def load_target(name: str, cfg: TransferConfig, seed: int) -> Splits:
    """The target's seeded splits: training, held-out scoring and calibration subsets, test.

    An image folder is read in grey at 28x28 (colour images are converted, any size is resized); a
    folder with fewer than two classes, no images, or a file that is not a readable image is refused
    with the problem and the fix named.
    """
    if name not in TARGETS:
        raise ValueError(f"unknown transfer target {name!r}; choose from {list(TARGETS)}")
    root = Path(cfg.root) if name == "folder" else None
    try:
        return make_splits(name, seed=seed, train_size=cfg.train_size, score_size=cfg.score_size,
                           calib_size=cfg.calib_size, test_fraction=cfg.test_fraction, root=root)
    except (OSError, SyntaxError) as exc:     # what PIL raises for an unreadable or broken image file
        if isinstance(exc, DataError) or name != "folder":
            raise
        raise DataError(f"image folder {root}: {exc}; remove or replace the file (every file with an image "
                        f"suffix must be a readable image)") from None


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
