"""Weight oscillation measured where it happens: every step over dense windows of training (claim C2).

A sparse measurement (``scheduler.OscillationMonitor``, every 5% of training) cannot see an oscillation whose
period is shorter than twice its spacing, and it counts a level change caused by a step-size update as a flip.
Here, over a window of consecutive optimizer steps, every searchable layer's latent weights are rounded to
integer levels at each watched bit-width *with the step size frozen at the window's start*, after every step:

- a **change**: a weight's level (under the frozen step size) differs from the step before;
- a **reversal** (an oscillation's half period): a change whose direction is opposite to the same weight's
  previous change in the window (up then down, or down then up: the weight returns across a threshold);
- a **step-size-driven change**: the level under the *current* step size changed while the level under the
  frozen one did not: the grid moved, not the weight.

``level_changes`` is the pure count over a trajectory of integer levels; ``WindowMonitor`` records it during
training (``train_oneshot(..., on_step=monitor)``) for ``count`` windows of ``steps`` steps spread over the run.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mpq.method.quantizer import int_range


def _levels(weight: Tensor, step_size: float, bits: int) -> Tensor:
    qmin, qmax = int_range(bits, signed=True)
    return torch.round(weight.detach().float() / float(step_size)).clamp_(qmin, qmax).to(torch.int16)


def level_changes(levels: Tensor) -> dict[str, int]:
    """Changes and reversals in a trajectory of integer levels ``(steps + 1, weights)``, row 0 the reference.

    A change is a step where a weight's level differs from the step before (a jump of several levels counts
    once); a reversal is a change opposite in sign to that weight's previous change; ``oscillating`` counts the
    weights with at least one reversal.

    >>> level_changes(torch.tensor([[0, 0], [1, 0], [0, 1], [1, 2]]))
    {'changes': 5, 'reversals': 2, 'oscillating': 1}
    """
    if levels.ndim != 2 or levels.shape[0] < 2:
        raise ValueError(f"levels must be (steps + 1, weights) with 2+ rows, got {tuple(levels.shape)}")
    direction = torch.sign(torch.diff(levels.to(torch.int32), dim=0))          # (steps, weights) in {-1, 0, 1}
    last = torch.zeros(levels.shape[1], dtype=torch.int32)
    reversals = torch.zeros(levels.shape[1], dtype=torch.int32)
    for d in direction:
        moved = d != 0
        reversals += (moved & (last == -d)).int()
        last = torch.where(moved, d, last)
    return {"changes": int((direction != 0).sum()), "reversals": int(reversals.sum()),
            "oscillating": int((reversals > 0).sum())}


def window_starts(total_steps: int, count: int, steps: int) -> list[int]:
    """The reference step (0-based) of each of ``count`` windows of ``steps`` steps, centred on equal parts of
    training and never overlapping; a window compares the levels after steps ``start + 1 .. start + steps``
    with those after step ``start``.

    >>> window_starts(1000, 4, 20)
    [114, 364, 614, 864]
    """
    if count < 1 or steps < 1:
        raise ValueError(f"count and steps must be positive, got {count} and {steps}")
    if count * (steps + 1) > total_steps:
        raise ValueError(f"{count} windows of {steps} steps (each with its reference step) do not fit in "
                         f"{total_steps} training steps; fewer or shorter windows")
    starts = []
    for i in range(count):
        centre = (i + 0.5) * total_steps / count
        start = int(round(centre - (steps + 1) / 2))
        starts.append(min(max(start, 0), total_steps - 1 - steps))
    return starts


class _Window:
    """Running counts of one window at one bit-width, pooled over the watched layers."""

    def __init__(self, start: int, fixed: Tensor, current: Tensor, steps0: dict[str, float]) -> None:
        self.start, self.steps0 = start, steps0
        self.fixed, self.current = fixed, current
        self.last = torch.zeros_like(fixed, dtype=torch.int8)
        self.reversed = torch.zeros_like(fixed, dtype=torch.bool)
        self.changes = self.reversals = self.current_changes = self.step_driven = self.steps = 0
        self.step_ratio = 1.0

    def update(self, fixed: Tensor, current: Tensor) -> None:
        d = torch.sign(fixed - self.fixed).to(torch.int8)
        moved = d != 0
        turn = moved & (self.last == -d)
        moved_current = current != self.current
        self.changes += int(moved.sum())
        self.reversals += int(turn.sum())
        self.current_changes += int(moved_current.sum())
        self.step_driven += int((moved_current & ~moved).sum())
        self.reversed |= turn
        self.last = torch.where(moved, d, self.last)
        self.fixed, self.current = fixed, current
        self.steps += 1

    def as_dict(self) -> dict:
        n = self.fixed.numel() * max(self.steps, 1)
        return {"start": self.start, "steps": self.steps, "weights": int(self.fixed.numel()),
                "changes": self.changes, "reversals": self.reversals, "oscillating": int(self.reversed.sum()),
                "changes_current_step": self.current_changes, "step_driven": self.step_driven,
                "change_rate": self.changes / n, "reversal_rate": self.reversals / n,
                "oscillating_fraction": int(self.reversed.sum()) / max(self.fixed.numel(), 1),
                "step_driven_rate": self.step_driven / n, "step_size_ratio": self.step_ratio}


class WindowMonitor:
    """Dense oscillation windows during one-shot training (pass as ``train_oneshot(..., on_step=monitor)``).

    ``count`` windows of ``steps`` optimizer steps each (``window_starts``); at each window's reference step the
    step size of every watched (layer, bit-width) is frozen, and after every step of the window each weight's
    level under it (and under the current step size) is compared with the step before (``level_changes``'s
    counts, kept incrementally). ``as_dict()``: per bit-width, one record per window with its counts and rates
    per weight and step, and ``step_size_ratio``, the mean over layers of the current over the frozen step
    size at the window's end. Reads the supernet, never writes it.
    """

    def __init__(self, bits: Sequence[int] = (4, 5, 6), count: int = 4, steps: int = 20) -> None:
        self.bits, self.count, self.window_steps = tuple(bits), count, steps
        self.starts: list[int] | None = None
        self.open: dict[int, _Window] = {}
        self.done: dict[int, list[dict]] = {b: [] for b in self.bits}

    def _read(self, supernet, bits: int, steps0: dict[str, float] | None) -> tuple[Tensor, Tensor, dict[str, float]]:
        from mpq.method.layers import quant_layers

        layers = quant_layers(supernet.model)
        fixed, current, now = [], [], {}
        for name in supernet.searchable:
            step_sizes = layers[name].weight_quantizer.step_size
            if str(bits) not in step_sizes:
                continue
            s = float(step_sizes[str(bits)].detach())
            now[name] = s
            weight = layers[name].weight
            fixed.append(_levels(weight, s if steps0 is None else steps0[name], bits).flatten())
            current.append(_levels(weight, s, bits).flatten())
        if not fixed:
            raise ValueError(f"no searchable layer has a {bits}-bit weight candidate")
        return torch.cat(fixed), torch.cat(current), now

    @torch.no_grad()
    def __call__(self, step: int, total_steps: int, supernet) -> None:
        if self.starts is None:
            self.starts = window_starts(total_steps, self.count, self.window_steps)
        for b, window in list(self.open.items()):         # first the open windows (one may end at this step) ...
            fixed, current, now = self._read(supernet, b, window.steps0)
            window.update(fixed, current)
            if window.steps == self.window_steps:
                window.step_ratio = sum(now[n] / window.steps0[n] for n in now) / len(now)
                self.done[b].append(window.as_dict())
                del self.open[b]
        if step in self.starts:                            # ... then the window whose reference this step is
            for b in self.bits:
                fixed, current, steps0 = self._read(supernet, b, None)
                self.open[b] = _Window(step, fixed, current, steps0)

    def as_dict(self) -> dict:
        """Per bit-width (as a string) the finished windows' records, and the window layout."""
        return {"window_steps": self.window_steps, "starts": list(self.starts or []),
                "windows": {str(b): list(v) for b, v in self.done.items()}}
