"""Bit-width interference in miniature (claim C2; the paper's Figure 1, DESIGN.md section 4 "F1").

Two shared float weights serve every candidate bit-width, as in a weight-coupled supernet. Each step
draws one bit-width from the candidate set, quantizes the shared weights at that bit-width (fixed step
size, straight-through rounding) and takes one SGD step on a least-squares loss whose optimum lies off
every grid. Comparing candidate sets {4, 6} and {2, 4, 6} isolates what the 2-bit candidate does to the
*other* bit-widths: how often their quantized weights cross a rounding threshold, and how much the
shared gradient varies from step to step.

``coupled_toy`` runs one such training; ``rolling_variance`` smooths the gradient record. Both are
pure functions of their arguments and a seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .quantizer import int_range


@dataclass(frozen=True)
class ToyTrace:
    """What one toy run records per step: shared weights, gradients, and threshold crossings."""

    candidates: tuple[int, ...]
    weights: Tensor                     # (steps + 1, 2): float weights before each step and after the last
    grads: Tensor                       # (steps, 2): straight-through gradient of each step
    sampled: Tensor                     # (steps,): the bit-width drawn at each step
    crossings: dict[int, Tensor]        # bits -> (steps,): cumulative count of integer-level changes


def toy_step_size(bits: int, clip: float = 1.0) -> float:
    """Fixed step size that maps the signed range of ``bits`` onto about ``[-clip, clip)``.

    >>> toy_step_size(2), toy_step_size(4)
    (0.5, 0.125)
    """
    return clip / 2 ** (bits - 1)


def _levels(w: Tensor, bits: int) -> Tensor:
    qmin, qmax = int_range(bits, signed=True)
    return torch.round(w / toy_step_size(bits)).clamp(qmin, qmax)


def coupled_toy(candidates: Sequence[int], *, watch: Sequence[int] = (4, 6), steps: int = 3000, lr: float = 0.05,
                batch: int = 16, target: tuple[float, float] = (0.37, -0.61), start: tuple[float, float] = (0.0, 0.0),
                seed: int = 0) -> ToyTrace:
    """Train two shared weights with a bit-width drawn uniformly from ``candidates`` at every step.

    Loss: ``mean((x . q_b(w) - x . target)^2)`` on a fresh batch ``x ~ N(0, I_2)`` of ``batch`` points;
    ``q_b`` quantizes at ``bits`` with ``toy_step_size(bits)``; the gradient reaches ``w`` straight
    through the rounding and is zero where ``w`` is clipped. ``watch``: the bit-widths whose threshold
    crossings are counted (also for bit-widths that are not candidates: they are only measured).
    The same ``seed`` gives the same data and draws for any candidate set of the same length.
    """
    cands = tuple(sorted(candidates))
    if not cands or min(cands) < 2:
        raise ValueError(f"candidates must be bit-widths >= 2, got {candidates}")
    gen = torch.Generator().manual_seed(seed)
    w = torch.tensor(start, dtype=torch.float64)
    t = torch.tensor(target, dtype=torch.float64)
    weights, grads, sampled = [w.clone()], [], []
    crossings = {b: torch.zeros(steps, dtype=torch.long) for b in watch}
    prev = {b: _levels(w, b) for b in watch}
    count = {b: 0 for b in watch}
    for i in range(steps):
        bits = cands[int(torch.randint(len(cands), (1,), generator=gen))]
        x = torch.randn(batch, 2, generator=gen, dtype=torch.float64)
        qmin, qmax = int_range(bits, signed=True)
        s = toy_step_size(bits)
        q = _levels(w, bits) * s
        inside = ((w / s) >= qmin) & ((w / s) <= qmax)
        residual = x @ q - x @ t                                   # (batch,)
        grad = (2.0 / batch) * (x.T @ residual) * inside            # (2,): straight through round, 0 if clipped
        w = w - lr * grad
        for b in watch:
            now = _levels(w, b)
            count[b] += int((now != prev[b]).sum())
            prev[b] = now
            crossings[b][i] = count[b]
        weights.append(w.clone())
        grads.append(grad)
        sampled.append(bits)
    return ToyTrace(cands, torch.stack(weights), torch.stack(grads), torch.tensor(sampled), crossings)


def rolling_variance(values: Tensor, window: int) -> Tensor:
    """Variance over the last ``window`` steps, summed over components: ``(steps, d)`` -> ``(steps - window + 1,)``."""
    if values.ndim == 1:
        values = values[:, None]
    if not 1 < window <= values.shape[0]:
        raise ValueError(f"window must lie in (1, {values.shape[0]}], got {window}")
    windows = values.unfold(0, window, 1)                         # (steps - window + 1, d, window)
    return windows.var(dim=-1, unbiased=True).sum(dim=-1)


def summarize(trace: ToyTrace, window: int) -> dict[str, float]:
    """One run in numbers: threshold crossings per watched bit-width over the whole run and its second
    half, and the mean rolling gradient variance over the second half."""
    steps = trace.grads.shape[0]
    half = steps // 2
    out = {}
    for bits, cum in trace.crossings.items():
        out[f"crossings_w{bits}"] = int(cum[-1])
        out[f"crossings_w{bits}_second_half"] = int(cum[-1] - cum[half - 1])
    out["grad_var_second_half"] = float(rolling_variance(trace.grads[half:], window).mean())
    return out


def toy_study(candidate_sets: Sequence[Sequence[int]], lrs: Sequence[float], seeds: int, *, steps: int,
              window: int) -> list[dict]:
    """``summarize`` of every (candidate set, learning rate, seed) run: one row each, the same seeds per set."""
    rows = []
    for lr in lrs:
        for seed in range(seeds):
            for cands in candidate_sets:
                trace = coupled_toy(cands, steps=steps, lr=lr, seed=seed)
                rows.append({"candidates": "{" + ",".join(map(str, trace.candidates)) + "}", "lr": lr, "seed": seed,
                             **summarize(trace, window)})
    return rows
