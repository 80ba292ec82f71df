"""Bit-width scheduler (claim C3; docs/method.md section 2) and the oscillation measures it rests on (C2).

Coupling 2-bit weights into the shared float weights makes the quantized weights of the other
bit-widths oscillate across rounding thresholds. The scheduler measures, per layer, how many weights sit
near a rounding threshold ("turbulence"), and takes the lowest weight candidate away from the most
turbulent layers until its next call, so the rest can settle. Three steps, three functions:

- measure: ``turbulence`` (one tensor, one bit-width), ``turbulence_table`` (every searchable layer of a supernet at
  each of its candidates) and ``score_layers`` (each layer's score over its current weight candidates, the paper's,
  or over its full list, this package's variant: ``SchedulerConfig.score_candidates``, ``decision_scores``);
- decide: ``decide_frozen`` is a pure function of the scores and the freeze ratio (``freeze_ratio``
  anneals it from 0.5 to 0.2 with a cosine over training); ``frozen_count`` says how many layers that is;
- apply: ``apply_decision`` turns the decision into each layer's candidates, which sampling
  (``Supernet.sample_config(gen, candidates)``) and the search (``evaluation.search_space``) take. A frozen
  layer loses its lowest weight candidate, and with ``activations`` its lowest activation candidate too: the
  official ResNet config keeps one candidate list for both (so freezing removes W2 and A2), the MobileNetV2
  config two (freezing removes the weights' lowest only); ``mpq.models`` records which each model follows.

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
ROUNDINGS = ("floor", "round")                         # how a freeze ratio becomes a number of layers
SCORE_CANDIDATES = ("current", "full")                 # which weight candidates a layer's score averages over


@dataclass(frozen=True)
class SchedulerConfig:
    """When and how hard the scheduler freezes; times are fractions of the whole training run.

    The official code calls the scheduler every 2 epochs of a 150-epoch run, the first time after the
    first 7 epochs (``warmup`` 7/150, about 0.047), until 72% of training (``late_from``), and every 15 epochs after
    (``every_late`` 0.1); ``every`` is 2/150. There a decision lasts thousands of optimizer steps, and
    weights move between calls. Our runs have a few hundred steps, where those proportions would replace a
    decision every few steps (a rotation, not a response to turbulence), so ``min_steps`` spaces consecutive
    calls at least that many optimizer steps apart: about the EMA horizon (1 / (1 - ema_decay)). Where the
    two conflict, persistence wins (DESIGN.md section 2) and the run has fewer calls.

    ``count_rounding``: how many of n layers a ratio r freezes, ``"floor"`` (official ``int(n * r)``) or
    ``"round"``. ``score_candidates``: a layer's score averages turbulence over its ``"current"`` weight candidates
    (the paper's and the official code's: a layer frozen by the previous call is scored without its lowest
    bit-width, whose term is usually the largest, so it tends to drop out of the next decision and the frozen sets
    rotate) or over its ``"full"`` candidate list (this package's variant, not the paper's: a frozen layer keeps the
    score it would have, so a decision can persist while its turbulence does). ``freeze_activations``: whether a frozen layer also loses its lowest activation candidate (the
    official ResNet config; ``apply_decision``); None until resolved for a model (``OneShotConfig.for_model``).
    """

    warmup: float = 0.047              # official: first call after epoch 7 of 150
    every: float = 0.0133
    late_from: float = 0.72
    every_late: float = 0.1
    min_steps: int = 100               # fewest optimizer steps between two calls (a decision's persistence)
    ratio_start: float = 0.5           # fraction of layers frozen at the first call (paper: 0.5)
    ratio_end: float = 0.2             # ... at the end of training (paper: 0.2)
    band: float = 0.125                # "near a threshold": within band * step size (paper: 0.125)
    count_rounding: str = "floor"      # layers frozen: floor(r * n) (official int(n * r)) or "round"
    score_candidates: str = "current"  # scores over the current weight candidates (paper) or the "full" list
    freeze_activations: bool | None = None   # frozen layers lose their lowest activation candidate too

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
        if self.count_rounding not in ROUNDINGS:
            raise ValueError(f"scheduler.count_rounding must be one of {list(ROUNDINGS)}, got {self.count_rounding!r}")
        if self.score_candidates not in SCORE_CANDIDATES:
            raise ValueError(f"scheduler.score_candidates must be one of {list(SCORE_CANDIDATES)} (current: the "
                             f"paper's), got {self.score_candidates!r}")
        if self.freeze_activations not in (True, False, None):
            raise ValueError("scheduler.freeze_activations must be true, false or null (the model family's), "
                             f"got {self.freeze_activations!r}")


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


def turbulence_table(supernet, band: float = 0.125) -> dict[str, dict[int, float]]:
    """Turbulence of every searchable layer's weights at each of its full weight candidates: layer -> {bits: value}."""
    from mpq.method.layers import quant_layers

    layers = quant_layers(supernet.model)
    table = {}
    for name in supernet.searchable:
        layer = layers[name]
        steps = layer.weight_quantizer.step_size
        table[name] = {b: turbulence(layer.weight, float(steps[str(b)].detach()), b, band)
                       for b in supernet.choices[name][0]}
    return table


def score_layers(table: Mapping[str, Mapping[int, float]], candidates: Mapping[str, Choices]) -> dict[str, float]:
    """Each layer's score: the mean over its weight candidates b in ``candidates`` of turbulence / b (``table``:
    ``turbulence_table``). Pass each layer's current candidates for the paper's score, its full list for the
    full-candidate score (``SchedulerConfig.score_candidates``).

    >>> table = {"a": {2: 0.5, 3: 0.375}, "b": {2: 0.125, 3: 0.375}}
    >>> score_layers(table, {"a": ((2, 3), (2,)), "b": ((2, 3), (2,))})
    {'a': 0.1875, 'b': 0.09375}
    >>> score_layers(table, {"a": ((3,), (2,)), "b": ((2, 3), (2,))})     # a frozen: its 2-bit term is gone
    {'a': 0.125, 'b': 0.09375}
    """
    return {name: sum(turb[b] / b for b in candidates[name][0]) / len(candidates[name][0])
            for name, turb in table.items()}


def decision_scores(table: Mapping[str, Mapping[int, float]], full: Mapping[str, Choices],
                    current: Mapping[str, Choices], score_candidates: str = "current") -> dict[str, float]:
    """The scores a scheduler call decides on: over each layer's ``current`` candidates (``"current"``, the paper's)
    or its ``full`` list (``"full"``, this package's variant, under which a frozen layer keeps its score)."""
    if score_candidates not in SCORE_CANDIDATES:
        raise ValueError(f"score_candidates must be one of {list(SCORE_CANDIDATES)}, got {score_candidates!r}")
    return score_layers(table, full if score_candidates == "full" else current)


def layer_scores(supernet, candidates: Mapping[str, Choices] | None = None, band: float = 0.125) -> dict[str, float]:
    """Turbulence score per searchable layer: mean over its current weight candidates b of turbulence / b."""
    return score_layers(turbulence_table(supernet, band), candidates or supernet.choices)


def frozen_count(layers: int, ratio: float, rounding: str = "floor") -> int:
    """How many of ``layers`` a freeze ``ratio`` freezes: ``int(layers * ratio)`` as the official code counts
    (``"floor"``), or the nearest integer (``"round"``).

    >>> frozen_count(20, 0.475), frozen_count(20, 0.475, "round")
    (9, 10)
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1], got {ratio}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {list(ROUNDINGS)}, got {rounding!r}")
    return int(layers * ratio) if rounding == "floor" else int(round(ratio * layers))


def top_layers(scores: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` layers with the highest scores (ties: the earlier layer first), in layer order.

    >>> top_layers({"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.0}, 2)
    ['b', 'c']
    """
    names = list(scores)
    ranked = sorted(range(len(names)), key=lambda i: (-scores[names[i]], i))[:k]
    return [names[i] for i in sorted(ranked)]


def decide_frozen(scores: Mapping[str, float], ratio: float, rounding: str = "floor") -> list[str]:
    """The ``frozen_count(n, ratio, rounding)`` layers with the highest scores, in layer order.

    >>> decide_frozen({"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.0}, 0.5)
    ['b', 'c']
    >>> scores = {"a": 0.1, "b": 0.3, "c": 0.2}
    >>> decide_frozen(scores, 0.5), decide_frozen(scores, 0.5, "round")
    (['b'], ['b', 'c'])
    """
    return top_layers(scores, frozen_count(len(scores), ratio, rounding))


def apply_decision(choices: Mapping[str, Choices], frozen: Sequence[str], *, activations: bool) -> dict[str, Choices]:
    """Each layer's candidates after a decision: frozen layers lose their lowest weight candidate (2, or 3 for
    depthwise convs) and, with ``activations``, their lowest activation candidate too; every other layer has its
    full lists; a list keeps at least one candidate.

    ``activations`` True is the official ResNet config, whose layers keep one candidate list for weights and
    activations (a frozen layer's lowest point becomes W3A3); False the MobileNetV2 config, which splits them.

    >>> apply_decision({"a": ((2, 3, 4), (2, 4)), "b": ((3, 4), (2, 4))}, ["a"], activations=False)
    {'a': ((3, 4), (2, 4)), 'b': ((3, 4), (2, 4))}
    >>> apply_decision({"a": ((2, 3, 4), (2, 4)), "b": ((3, 4), (2, 4))}, ["a"], activations=True)
    {'a': ((3, 4), (4,)), 'b': ((3, 4), (2, 4))}
    """
    if activations not in (True, False):
        raise ValueError(f"activations must be True or False (what a frozen layer loses), got {activations!r}; "
                         "resolve oneshot.sched_freeze_activations for the model (OneShotConfig.for_model)")
    unknown = set(frozen) - set(choices)
    if unknown:
        raise ValueError(f"frozen layers {sorted(unknown)} are not searchable layers")
    out = {}
    for name, (w, a) in choices.items():
        w, a = tuple(sorted(w)), tuple(sorted(a))
        if name in frozen:
            w = w[1:] if len(w) > 1 else w
            a = a[1:] if activations and len(a) > 1 else a
        out[name] = (w, a)
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


# --- what the scheduler did: one record per call, and whether it followed turbulence or rotated -----------------

def frozen_overlap(before: Sequence[str], after: Sequence[str]) -> tuple[int, float]:
    """Layers two consecutive decisions share, and their Jaccard index (shared / either; 1.0 for two empty sets).

    >>> frozen_overlap(["a", "b", "c"], ["b", "c", "d"])
    (2, 0.5)
    """
    a, b = set(before), set(after)
    return len(a & b), (len(a & b) / len(a | b) if a | b else 1.0)


def chance_overlap(k_before: int, k_after: int, layers: int) -> float:
    """Expected shared layers of two decisions of these sizes drawn at random from ``layers``: k1 k2 / n.

    >>> chance_overlap(9, 8, 18)
    4.0
    """
    return k_before * k_after / layers if layers else 0.0


def score_gap(scores: Mapping[str, float], frozen: Sequence[str]) -> float | None:
    """Mean score of the frozen layers minus that of the others (None when either group is empty).

    >>> round(score_gap({"a": 0.3, "b": 0.1, "c": 0.2}, ["a"]), 3)
    0.15
    """
    inside = [v for k, v in scores.items() if k in set(frozen)]
    outside = [v for k, v in scores.items() if k not in set(frozen)]
    if not inside or not outside:
        return None
    return sum(inside) / len(inside) - sum(outside) / len(outside)


@dataclass(frozen=True)
class SchedulerCall:
    """One scheduler call: when, how hard, what it froze, and the layer scores it saw.

    ``scores`` are what the decision used: each layer's turbulence over its *current* candidates, so a layer
    frozen by the previous call is scored without its lowest bit-width, whose term (turbulence / b at the
    smallest b) is usually the largest. ``full_scores`` are over every layer's full candidate list, comparable
    between layers and calls whatever the previous decision: they tell a decision that follows turbulence from
    one that rotates because freezing a layer lowers its own score. ``frozen_lowest`` shows what freezing took:
    (3, 3) for a ResNet layer (weights and activations share one list), (3, 2) where only weights lose theirs.
    """

    step: int                          # optimizer step (0-based) before which the decision takes effect
    ratio: float                       # fraction of layers frozen (``freeze_ratio``)
    frozen: tuple[str, ...]
    scores: dict[str, float]
    full_scores: dict[str, float]
    frozen_lowest: dict[str, tuple[int, int]]   # each frozen layer's lowest (w_bits, a_bits) after the decision


class SchedulerLog:
    """Every scheduler call of a training run (``train_oneshot(..., sched_log=log)``), and its summary.

    ``as_dict(total_steps)`` gives the calls and ``schedule_summary``'s numbers, JSON-ready (finite floats,
    None where a number does not exist); ``state``/``load_state`` carry it through a checkpoint.
    """

    def __init__(self) -> None:
        self.calls: list[SchedulerCall] = []

    def record(self, step: int, ratio: float, frozen: Sequence[str], scores: Mapping[str, float],
               full_scores: Mapping[str, float], candidates: Mapping[str, Choices]) -> None:
        """One call; ``candidates``: every layer's candidates after the decision (``apply_decision``)."""
        lowest = {n: (int(min(candidates[n][0])), int(min(candidates[n][1]))) for n in frozen}
        self.calls.append(SchedulerCall(int(step), float(ratio), tuple(frozen), dict(scores), dict(full_scores),
                                        lowest))

    def state(self) -> list[dict]:
        return [{"step": c.step, "ratio": c.ratio, "frozen": list(c.frozen), "scores": dict(c.scores),
                 "full_scores": dict(c.full_scores), "frozen_lowest": {n: list(p) for n, p in c.frozen_lowest.items()}}
                for c in self.calls]

    def load_state(self, state: Sequence[Mapping]) -> None:
        self.calls = [SchedulerCall(int(c["step"]), float(c["ratio"]), tuple(c["frozen"]), dict(c["scores"]),
                                    dict(c["full_scores"]), {n: tuple(p) for n, p in c["frozen_lowest"].items()})
                      for c in state]

    def as_dict(self, total_steps: int) -> dict:
        return {"calls": self.state(), "summary": schedule_summary(self.calls, total_steps)}


def _median(values: Sequence[float]) -> float | None:
    v = sorted(values)
    if not v:
        return None
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def schedule_summary(calls: Sequence[SchedulerCall], total_steps: int) -> dict:
    """What a run's scheduler did, in numbers (the powered ablation's record; docs/method.md section 2).

    - ``steps_between``: optimizer steps between consecutive calls; ``persistence``: steps each decision lasts
      (the last until the end of training), and their median and minimum;
    - ``overlap`` and ``jaccard`` of consecutive frozen sets, with ``chance_overlap``, the shared layers two
      random decisions of those sizes would have: a scheduler that follows persistent turbulence keeps layers
      frozen (overlap well above chance), a rotation swaps them (overlap at or below chance);
    - ``score_gap``: mean score of the frozen layers minus the others', per call, on the scores the decision
      used and on ``full_scores``; ``refrozen_by_full_scores``: per call after the first, the Jaccard index of the
      decision made with what the previous decision left against the one the full scores would give for the same
      number of layers (1: the previous freeze did not change who is most turbulent);
    - ``frozen_lowest_points``: the distinct lowest (w_bits, a_bits) of frozen layers over every call, e.g.
      ``[[3, 3]]`` where freezing takes the lowest weight and activation candidate (ResNet), ``[[3, 2]]`` where it
      takes the weights' only.
    """
    steps = [c.step for c in calls]
    keep = persistence(steps, total_steps) if calls else []
    pairs = list(zip(calls, calls[1:]))
    overlaps = [frozen_overlap(a.frozen, b.frozen) for a, b in pairs]
    layers = len(calls[0].scores) if calls else 0
    full_decisions = [top_layers(c.full_scores, len(c.frozen)) for c in calls]
    return {"calls": len(calls), "total_steps": int(total_steps), "call_steps": steps,
            "steps_between": [b - a for a, b in zip(steps, steps[1:])], "persistence": keep,
            "median_persistence": _median(keep), "min_persistence": min(keep) if keep else None,
            "frozen_sizes": [len(c.frozen) for c in calls], "layers": layers,
            "overlap": [o for o, _ in overlaps], "jaccard": [j for _, j in overlaps],
            "chance_overlap": [chance_overlap(len(a.frozen), len(b.frozen), layers) for a, b in pairs],
            "mean_overlap": _mean([o for o, _ in overlaps]), "mean_jaccard": _mean([j for _, j in overlaps]),
            "mean_chance_overlap": _mean([chance_overlap(len(a.frozen), len(b.frozen), layers) for a, b in pairs]),
            "score_gap": [score_gap(c.scores, c.frozen) for c in calls],
            "full_score_gap": [score_gap(c.full_scores, c.frozen) for c in calls],
            "mean_score_gap": _mean([score_gap(c.scores, c.frozen) for c in calls]),
            "mean_full_score_gap": _mean([score_gap(c.full_scores, c.frozen) for c in calls]),
            "refrozen_by_full_scores": [frozen_overlap(c.frozen, f)[1] for c, f in zip(calls, full_decisions)][1:],
            "frozen_lowest_points": [list(p) for p in sorted({tuple(p) for c in calls
                                                              for p in c.frozen_lowest.values()})]}


def overlap_against_chance(calls: Sequence[SchedulerCall]) -> dict | None:
    """Whether consecutive decisions keep the same layers frozen more than chance would: the mean number of layers
    two consecutive frozen sets share, against the mean that two random decisions of the same sizes would share
    (the hypergeometric mean ``k1 k2 / n``, ``chance_overlap``), their difference and ratio, and how many pairs of
    calls there are. None for a run with fewer than two calls (nothing to compare).

    >>> calls = [SchedulerCall(s, 0.5, f, {n: 0.0 for n in "abcd"}, {}, {}) for s, f in
    ...          ((0, ("a", "b")), (10, ("a", "b")), (20, ("a", "c")))]
    >>> overlap_against_chance(calls)
    {'pairs': 2, 'mean_overlap': 1.5, 'mean_chance_overlap': 1.0, 'excess': 0.5, 'ratio': 1.5, 'above_chance': True}
    """
    if len(calls) < 2:
        return None
    layers = len(calls[0].scores)
    shared = [frozen_overlap(a.frozen, b.frozen)[0] for a, b in zip(calls, calls[1:])]
    chance = [chance_overlap(len(a.frozen), len(b.frozen), layers) for a, b in zip(calls, calls[1:])]
    mean, expected = sum(shared) / len(shared), sum(chance) / len(chance)
    return {"pairs": len(shared), "mean_overlap": mean, "mean_chance_overlap": expected, "excess": mean - expected,
            "ratio": mean / expected if expected > 0 else None, "above_chance": mean > expected}


def schedule_design(total_steps: int, cfg: SchedulerConfig, ema_decay: float) -> dict:
    """The scheduler's timing in a run of ``total_steps``, before training: its calls, each decision's persistence
    and the EMA horizon ``1 / (1 - ema_decay)`` that a decision should outlast (DESIGN.md section 2).

    >>> d = schedule_design(1500, SchedulerConfig(min_steps=100), 0.99)
    >>> d["calls"], d["median_persistence"], d["ema_horizon"], d["decisions_outlast_ema"]
    (14, 100.0, 100.0, True)
    """
    steps = call_steps(total_steps, cfg)
    keep = persistence(steps, total_steps)
    horizon = round(1.0 / (1.0 - ema_decay), 6)        # 1 / (1 - 0.99) is 99.99999999999991 in floats
    median = _median(keep)
    return {"total_steps": int(total_steps), "call_steps": steps, "calls": len(steps), "persistence": keep,
            "median_persistence": median, "ema_horizon": horizon,
            "decisions_outlast_ema": median is not None and median >= horizon}
