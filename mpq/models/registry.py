"""Model registry (timm style): builders register themselves by decorator, ``create_model`` builds by name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """A registered model and the facts the study needs about it.

    ``shared_candidates``: whether the official code's config for this model's family keeps one bit-width
    candidate list for weights and activations (the ResNet-18 config: True) or one each (the MobileNetV2 config,
    ``split_aw_cands``: False; EfficientNet-Lite follows it here). It decides what the bit-width scheduler takes
    from a frozen layer by default (``oneshot.sched_freeze_activations``, docs/method.md section 2).
    """

    name: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]   # (C, H, W) the model is designed for
    role: str                          # what it stands in for, or what it is for
    shared_candidates: bool            # its family's official config: one candidate list for weights and activations


_REGISTRY: dict[str, ModelEntry] = {}  # filled once at import time by @register_model; never mutated after


def register_model(name: str, input_size: tuple[int, int, int], role: str, *, shared_candidates: bool):
    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, input_size, role, shared_candidates)
        return builder
    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, *, num_classes: int = 10, width_mult: float = 1.0, in_channels: int | None = None) -> nn.Module:
    """Build a registered model. ``in_channels`` defaults to the model's designed input."""
    entry = model_entry(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    channels = entry.input_size[0] if in_channels is None else in_channels
    return entry.builder(num_classes=num_classes, width_mult=width_mult, in_channels=channels)
