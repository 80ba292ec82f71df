"""Evaluating bit configurations of a trained supernet: search scores, BN recalibration, test accuracy.

The search (``mpq.search``) knows nothing about models; this module turns a supernet and data into the
evaluator and cost function it takes (DESIGN.md section 2, "Greedy search"):

- ``make_scorer``: the score of a configuration on the fixed scoring subset of held-out *training*
  images (never the test set), with the supernet forward only.
- ``search_space``: each searchable layer's candidates (optionally narrowed, e.g. by a scheduler).
- ``recalibrated_accuracy``: recalibrate the configuration's BN statistics on the calibration subset,
  then measure top-1 on the test set: what a searched configuration is reported with.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .data import ImageSet, batches
from .search import SearchSpace
from .supernet import BitCfg, Supernet, active_batchnorms, recalibrate_bn
from .train import evaluate, to_device

log = logging.getLogger(__name__)


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Normalise with each batch's own statistics in the active BNs, leaving every buffer untouched.

    Why: a rarely sampled bit pair's BN has stale running statistics (W2A2 is drawn in about 1 path
    in 25), which would bias a score towards often-sampled pairs; a scoring batch of a few hundred
    images gives good statistics of its own, at no extra cost.
    """
    bns = active_batchnorms(model)
    saved = [(bn.training, bn.momentum, bn.num_batches_tracked.clone()) for bn in bns]
    for bn in bns:
        bn.train()
        bn.momentum = 0.0            # running = 1 * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for bn, (training, momentum, tracked) in zip(bns, saved):
            bn.train(training)
            bn.momentum = momentum
            bn.num_batches_tracked.copy_(tracked)


def make_scorer(supernet: Supernet, data: ImageSet, *, metric: str = "loss", batch_size: int = 500,
                bn_mode: str = "batch") -> Callable[[Mapping[str, Sequence[int]]], float]:
    """An evaluator for the search: configuration -> score on ``data`` (lower is better).

    ``metric``: "loss" (mean cross-entropy; smooth, so small differences between neighbouring
    configurations are visible on 1-2k images) or "error" (top-1 error, the paper's criterion).
    ``bn_mode``: "batch" (batch statistics, see ``batch_statistics``) or "running" (stored statistics).
    The data are normalised once and kept on the supernet's device.
    """
    if metric not in ("loss", "error"):
        raise ValueError(f"metric must be 'loss' or 'error', got {metric!r}")
    if bn_mode not in ("batch", "running"):
        raise ValueError(f"bn_mode must be 'batch' or 'running', got {bn_mode!r}")
    device = next(supernet.parameters()).device
    cached = [to_device(x, y, device) for x, y in batches(data, batch_size, shuffle=False)]

    @torch.no_grad()
    def score(bit_cfg: Mapping[str, Sequence[int]]) -> float:
        supernet.set_config(bit_cfg)
        supernet.eval()
        total = 0.0
        with batch_statistics(supernet) if bn_mode == "batch" else nullcontext():
            for x, y in cached:
                logits = supernet(x)
                if metric == "loss":
                    total += float(F.cross_entropy(logits, y, reduction="sum"))
                else:
                    total += float((logits.argmax(1) != y).sum())
        return total / len(data)

    return score


def search_space(supernet: Supernet, candidates: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None) -> SearchSpace:
    """The supernet's searchable layers and their candidates, optionally narrowed to ``candidates``."""
    cands = candidates or supernet.choices
    w = {n: tuple(sorted(cands[n][0])) for n in supernet.searchable}
    a = {n: tuple(sorted(cands[n][1])) for n in supernet.searchable}
    return SearchSpace(w, a)


def recalibrate(supernet: Supernet, bit_cfg: Mapping[str, Sequence[int]], calib: ImageSet, *,
                batch_size: int = 256) -> None:
    """Set ``bit_cfg`` and re-estimate its BN statistics on ``calib``."""
    device = next(supernet.parameters()).device
    supernet.set_config(bit_cfg)
    recalibrate_bn(supernet, (to_device(x, y, device)[0] for x, y in batches(calib, batch_size, shuffle=False)))


def recalibrated_accuracy(supernet: Supernet, bit_cfg: Mapping[str, Sequence[int]], calib: ImageSet,
                          test: ImageSet, *, batch_size: int = 256) -> float:
    """Top-1 on ``test`` at ``bit_cfg`` after recalibrating its BN statistics on ``calib``."""
    recalibrate(supernet, bit_cfg, calib, batch_size=batch_size)
    return evaluate(supernet, test, device=next(supernet.parameters()).device)


def paired_difference(pred_a: Tensor, pred_b: Tensor, labels: Tensor) -> tuple[float, float]:
    """Accuracy of A minus accuracy of B on the same images, and the standard error of that difference.

    Paired: per image d = correct_a - correct_b in {-1, 0, 1}; SE = std(d) / sqrt(n). Far tighter than
    comparing two independent accuracies when both models get most images right.
    """
    d = (pred_a == labels).double() - (pred_b == labels).double()
    n = d.numel()
    return float(d.mean()), float(d.std(unbiased=True) / n ** 0.5) if n > 1 else float("nan")


def test_predictions(supernet: Supernet, bit_cfg: Mapping[str, Sequence[int]], calib: ImageSet, test: ImageSet,
                     *, batch_size: int = 256) -> Tensor:
    """Predicted class per test image at ``bit_cfg``, after BN recalibration on ``calib``."""
    from .train import predictions

    recalibrate(supernet, bit_cfg, calib, batch_size=batch_size)
    return predictions(supernet, test)
