"""Verdicts over seeds (docs/method.md, "What a verdict needs"): is a difference larger than the seed-to-seed spread?

A paired comparison on the same test images captures test-set noise only; training noise shows between
seeds. So a verdict takes one paired difference per seed (same seed, same images, two arms) and asks
whether their mean lies outside its 95% t interval over seeds.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def t_critical(n: int, confidence: float = 0.95) -> float:
    """Two-sided critical value of Student's t with ``n - 1`` degrees of freedom (inf for n < 2)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, n - 1)) if n > 1 else math.inf


def seed_verdict(diffs: Sequence[float]) -> str:
    """A plain sentence on per-seed paired differences (cell minus reference, same seed, in points).

    "higher"/"lower" only when the mean lies outside its 95% t interval over seeds (the seed spread);
    otherwise "within the seed spread".
    """
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return "one seed: no verdict"
    half = t_critical(len(d)) * d.std(ddof=1) / math.sqrt(len(d))
    if d.mean() - half > 0:
        return "higher, beyond the seed spread"
    if d.mean() + half < 0:
        return "lower, beyond the seed spread"
    return "within the seed spread"


def mean_sd_half(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean, SD (n - 1) and the half-width of the 95% t interval of ``values`` (SD nan, half inf for n < 2)."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    sd = float(v.std(ddof=1)) if n > 1 else math.nan
    return float(v.mean()), sd, t_critical(n) * sd / math.sqrt(n) if n > 1 else math.inf
