"""Whether a training run stayed healthy (DESIGN.md section 5, "every run counts").

A supernet's run is recorded as collapsed when a loss went non-finite, or when its max path (every layer at
its highest candidate, W6A6; BN recalibrated) scores on held-out training images more than ``margin`` under the FP model it
started from on the same images. The max path is the configuration the run trains hardest and the one
nearest FP, so a run whose max path fell that far has lost what the FP model knew; the lower configurations
of such a run are not evidence about the method. A fixed-precision model (a uniform LSQ baseline, a
retrained configuration) has only its own, low-bit configuration, which may lie far under FP by design:
``margin=None`` flags it only when a loss went non-finite or it fell to twice chance or below. A collapsed
run is shown and counted, never dropped or averaged silently; a subtler failure shows against the run's
sibling seeds, which every table lists.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from mpq.data.datasets import ImageSet
from mpq.method.supernet import Supernet
from mpq.search.evaluation import recalibrated_accuracy

COLLAPSE_MARGIN = 0.05      # top-1 (fraction) under the FP model on the same held-out images


def training_health(losses: Sequence[float], model: Supernet, calib: ImageSet, heldout: ImageSet,
                    fp_heldout_acc: float, margin: float | None = COLLAPSE_MARGIN) -> dict:
    """The health record of one run: ``losses`` (per epoch, as training logged them), the trained ``model``
    (its EMA copy), the calibration images its max path's BN statistics are recalibrated on (as every
    evaluation here and in the official code does), held-out images no training step saw (the scoring
    subset) and the FP model's top-1 on them; ``margin`` (a fraction) for a supernet, None for a
    fixed-precision model.

    Without the recalibration the check would judge the EMA's own running statistics, which can be far off
    while every recalibrated configuration is fine (one ablation run's max path read 21.6% that way and 89.0%
    recalibrated). Returns ``{"finite", "max_path_heldout_acc", "fp_heldout_acc", "heldout_images",
    "collapsed", "why"}``; the max path's BN statistics are left recalibrated.
    """
    finite = all(math.isfinite(v) for v in losses) and all(bool(torch.isfinite(p).all()) for p in model.parameters())
    acc = recalibrated_accuracy(model, model.max_config(), calib, heldout) if finite else math.nan
    chance = 1.0 / len(heldout.classes)
    if not finite:
        why = "a loss or weight went non-finite"
    elif margin is not None and acc < fp_heldout_acc - margin:
        why = (f"max path {100 * acc:.2f}% on held-out images, more than {100 * margin:.0f} points under FP "
               f"({100 * fp_heldout_acc:.2f}%)")
    elif margin is None and acc <= 2 * chance:
        why = f"{100 * acc:.2f}% on held-out images, at most twice chance"
    else:
        why = ""
    return {"finite": finite, "max_path_heldout_acc": None if math.isnan(acc) else acc,
            "fp_heldout_acc": fp_heldout_acc, "heldout_images": len(heldout), "collapsed": bool(why), "why": why}
