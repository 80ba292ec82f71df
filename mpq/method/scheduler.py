"""Bit-width scheduler (claim C3; docs/method.md section 2) and the oscillation measures it rests on (C2).

Coupling 2-bit weights into the shared float weights makes the quantized weights of the other
bit-widths oscillate across rounding thresholds. The scheduler measures, per layer, how many weights sit
near a rounding threshold ("turbulence"), and takes the lowest weight candidate away from the most
turbulent layers until its next call, so the rest can settle. Three steps, three functions:

- measure: ``turbulence`` (one tensor, one bit-width) and ``layer_scores`` (every searchable layer of a
  supernet, over its current weight candidates);
- decide: ``decide_frozen`` is a pure function of the scores and the freeze ratio (``freeze_ratio``
  anneals it from 0.5 to 0.2 with a cosine over training);
- apply: ``apply_decision`` turns the decision into each layer's candidates, which sampling
  (``Supernet.sample_config(gen, candidates)``) and the search (``evaluation.search_space``) take.

Oscillation instrumentation for the interference study: ``integer_levels`` of a weight at a bit-width,
``flip_rate`` between two measurements, ``quantization_distance``, and ``OscillationMonitor``, which
records both over a training run (``train_oneshot(..., on_step=monitor)``).

``mpq.training.oneshot.train_oneshot`` calls the scheduler (``oneshot.scheduler``) at ``call_steps``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from mpq.method.quantizer import int_range

Choices = tuple[tuple[int, ...], tuple[int, ...]]      # (weight candidates, activation candidates)


@dataclass(frozen=True)
class SchedulerConfig:
    """When and how hard the scheduler freezes; times are fractions of the whole training run.

    The official code calls the scheduler every 2 epochs of a 150-epoch run, the first time after the
    first 7 epochs (``warmup`` about 0.04), until 72% of training (``late_from``), and every 15 epochs after
    (``every_late`` 0.1); ``every`` is 2/150. There a decision lasts thousands of optimizer steps, and
    weights move between calls. Our runs have a few hundred steps, where those proportions would replace a
    decision every few steps (a rotation, not a response to turbulence), so ``min_steps`` spaces consecutive
    calls at least that many optimizer steps apart: about the EMA horizon (1 / (1 - ema_decay)). Where the
    two conflict, persistence wins (DESIGN.md section 2) and the run has fewer calls.
    """

    warmup: float = 0.04
    every: float = 0.0133
    late_from: float = 0.72
    every_late: float = 0.1
    min_steps: int = 100               # fewest optimizer steps between two calls (a decision's persistence)
    ratio_start: float = 0.5           # fraction of layers frozen at the first call (paper: 0.5)
    ratio_end: float = 0.2             # ... at the end of training (paper: 0.2)
    band: float = 0.125                # "near a threshold": within band * step size (paper: 0.125)

    def __post_init__(self) -> None:
        for name in ("warmup", "late_from", "ratio_start", "ratio_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"scheduler.{name} must lie in [0, 1], got {getattr(self, name)!r}")
        for name in ("every", "every_late"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"scheduler.{name} must lie in (0, 1], got {getattr(self, name)!r}")
        if self.min_steps < 1:
            raise ValueError(f"scheduler.min_steps must be at least 1, got {self.min_steps!r}")
        if not 0.0 < self.band < 0.5:
            raise ValueError(f"scheduler.band must lie in (0, 0.5), got {self.band!r}")


def call_steps(total_steps: int, cfg: SchedulerConfig) -> list[int]:
    """The training steps (0-based) at which the scheduler is called.

    The first at ``warmup * total_steps``; then every ``every * total_steps`` steps until ``late_from``,
    ``every_late * total_steps`` after; never two calls closer than ``min_steps``.

    >>> call_steps(100, SchedulerConfig(warmup=0.1, every=0.2, late_from=0.5, every_late=0.25, min_steps=1))
    [10, 30, 50, 75]
    >>> call_steps(100, SchedulerConfig(warmup=0.1, every=0.2, late_from=0.5, every_late=0.25, min_steps=30))
    [10, 40, 70]
    """
    steps, t = [], cfg.warmup * total_steps
    while t < total_steps - 1e-9:
        steps.append(int(round(t)))
        gap = cfg.every if t < cfg.late_from * total_steps - 1e-9 else cfg.every_late
        t += max(gap * total_steps, cfg.min_steps)
    return sorted({s for s in steps if s < total_steps})


def persistence(calls: Sequence[int], total_steps: int) -> list[int]:
    """Optimizer steps each decision lasts: until the next call, the last one until the end of training.

    >>> persistence([10, 40, 70], 100)
    [30, 30, 30]
    """
    return [b - a for a, b in zip(calls, [*calls[1:], total_steps])]


def freeze_ratio(progress: float, start: float = 0.5, end: float = 0.2) -> float:
    """Fraction of layers to freeze at ``progress`` in [0, 1] of training: cosine from ``start`` to ``end``.

    >>> freeze_ratio(0.0), freeze_ratio(0.5), freeze_ratio(1.0)
    (0.5, 0.35, 0.2)
    """
    progress = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def turbulence(weight: Tensor, step_size: float, bits: int, band: float = 0.125) -> float:
    """Fraction of weights within ``band * step_size`` of a rounding threshold at signed ``bits``.

    Thresholds lie halfway between neighbouring integer levels of ``[-2^(b-1), 2^(b-1)-1]``; beyond the
    two extreme levels there is no threshold (values there clip), so their outer sides never count.
    """
    qmin, qmax = int_range(bits, signed=True)
    v = weight.detach().float() / float(step_size)
    nearest = (torch.floor(v) + 0.5).clamp(qmin + 0.5, qmax - 0.5)
    return float(((v - nearest).abs() < band).float().mean())


def layer_scores(supernet, candidates: Mapping[str, Choices] | None = None, band: float = 0.125) -> dict[str, float]:
    """Turbulence score per searchable layer: mean over its current weight candidates b of turbulence / b."""
    from mpq.method.layers import quant_layers

    cands = candidates or supernet.choices
    layers = quant_layers(supernet.model)
    scores = {}
    for name in supernet.searchable:
        layer = layers[name]
        steps = layer.weight_quantizer.step_size
        bits = cands[name][0]
        scores[name] = sum(turbulence(layer.weight, float(steps[str(b)].detach()), b, band) / b for b in bits) / len(bits)
    return scores


def decide_frozen(scores: Mapping[str, float], ratio: float) -> list[str]:
    """The ``round(ratio * n)`` layers with the highest scores (ties: the earlier layer first), in layer order.

    >>> decide_frozen({"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.0}, 0.5)
    ['b', 'c']
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1], got {ratio}")
    names = list(scores)
    k = int(round(ratio * len(names)))
    ranked = sorted(range(len(names)), key=lambda i: (-scores[names[i]], i))[:k]
    return [names[i] for i in sorted(ranked)]


def apply_decision(choices: Mapping[str, Choices], frozen: Sequence[str]) -> dict[str, Choices]:
    """Each layer's candidates after a decision: frozen layers lose their lowest weight candidate
    (2, or 3 for depthwise convs), every other layer has its full list; a layer keeps at least one.

    >>> apply_decision({"a": ((2, 3, 4), (2, 4)), "b": ((3, 4), (2, 4))}, ["a"])
    {'a': ((3, 4), (2, 4)), 'b': ((3, 4), (2, 4))}
    """
    unknown = set(frozen) - set(choices)
    if unknown:
        raise ValueError(f"frozen layers {sorted(unknown)} are not searchable layers")
    out = {}
    for name, (w, a) in choices.items():
        w = tuple(sorted(w))
        out[name] = ((w[1:] if name in frozen and len(w) > 1 else w), tuple(a))
    return out


# --- oscillation instrumentation -----------------------------------------------------------------------

def integer_levels(weight: Tensor, step_size: float, bits: int) -> Tensor:
    """The integer level of each weight at signed ``bits``: ``round(clamp(w / s))`` as int8, same shape."""
    qmin, qmax = int_range(bits, signed=True)
    return torch.round(weight.detach().float() / float(step_size)).clamp_(qmin, qmax).to(torch.int8)


def flip_rate(before: Tensor, after: Tensor) -> float:
    """Fraction of weights whose integer level changed between two measurements."""
    if before.shape != after.shape:
        raise ValueError(f"shapes differ: {tuple(before.shape)} vs {tuple(after.shape)}")
    return float((before != after).float().mean())


def quantization_distance(weight: Tensor, step_size: float, bits: int) -> float:
    """Mean |w - q(w)| / s: how far the float weights sit from their quantized values, in steps."""
    levels = integer_levels(weight, step_size, bits).float()
    return float((weight.detach().float() / float(step_size) - levels).abs().mean())


class OscillationMonitor:
    """Records, every ``every`` fraction of training, how the integer weight levels move (claim C2).

    At each measurement and for each bit-width in ``bits``, every searchable layer's latent weights are
    rounded to integer levels with the layer's current step size for that bit-width. Pooled over the
    weights of all those layers: the flip rate (fraction of weights whose level changed since the previous
    measurement; none at the first) and the distance ``mean |w / s - level|``. Cheap: a few elementwise
    passes over the weights. Pass it to ``train_oneshot(..., on_step=monitor)``; it reads, never writes.
    """

    def __init__(self, bits: Sequence[int] = (4, 5, 6), every: float = 0.05) -> None:
        if not 0.0 < every <= 1.0:
            raise ValueError(f"every must lie in (0, 1], got {every}")
        self.bits, self.every = tuple(bits), every
        self.steps: list[int] = []
        self.progress: list[float] = []
        self.flip_rate: dict[int, list[float | None]] = {b: [] for b in self.bits}
        self.distance: dict[int, list[float]] = {b: [] for b in self.bits}
        self._last: dict[int, Tensor] = {}

    def __call__(self, step: int, total_steps: int, supernet) -> None:
        interval = max(1, int(round(self.every * total_steps)))
        if (step + 1) % interval and step != total_steps - 1:
            return
        self.measure(supernet)
        self.steps.append(step + 1)
        self.progress.append((step + 1) / total_steps)

    @torch.no_grad()
    def measure(self, supernet) -> None:
        from mpq.method.layers import quant_layers

        layers = quant_layers(supernet.model)
        for b in self.bits:
            levels, dists = [], []
            for name in supernet.searchable:
                layer = layers[name]
                steps = layer.weight_quantizer.step_size
                if str(b) not in steps:
                    continue
                s_b = float(steps[str(b)])
                level = integer_levels(layer.weight, s_b, b)
                levels.append(level.flatten())
                dists.append((layer.weight.detach().float().flatten() / s_b - level.flatten().float()).abs())
            if not levels:
                raise ValueError(f"no searchable layer has a {b}-bit weight candidate")
            now = torch.cat(levels)
            self.flip_rate[b].append(flip_rate(self._last[b], now) if b in self._last else None)
            self.distance[b].append(float(torch.cat(dists).mean()))
            self._last[b] = now

    def as_dict(self) -> dict:
        """The record as plain lists (JSON): steps, progress, and per bit-width flip rate and distance."""
        return {"steps": list(self.steps), "progress": list(self.progress),
                "flip_rate": {str(b): list(v) for b, v in self.flip_rate.items()},
                "distance": {str(b): list(v) for b, v in self.distance.items()}}
