"""Evaluating bit configurations of a trained supernet: search scores, BN recalibration, test accuracy.

The search (``mpq.search.space``) knows nothing about models; this module turns a supernet and data into the
evaluator and cost function it takes (docs/method.md section 2, "Greedy search"):

- ``make_scorer``: the score of a configuration on the fixed scoring subset of held-out *training*
  images (never the test set), with the supernet forward only.
- ``search_space``: each searchable layer's candidates (optionally narrowed, e.g. by a scheduler).
- ``recalibrated_accuracy``: recalibrate the configuration's BN statistics on the calibration subset,
  then measure top-1 on the test set: what a searched configuration is reported with.
"""
from __future__ import annotations

import logging
import itertools
from contextlib import contextmanager, nullcontext
from typing import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mpq.data.datasets import ImageSet, batches
from mpq.search.incremental import GraphCache
from mpq.search.space import SearchSpace
from mpq.method.supernet import Supernet, active_batchnorms, recalibrate_bn
from mpq.training.fp import evaluate, to_device

log = logging.getLogger(__name__)


@contextmanager
def batch_statistics(model: nn.Module, bns: Sequence[nn.BatchNorm2d] | None = None) -> Iterator[None]:
    """Normalise with each batch's own statistics in the active BNs (or ``bns``), leaving every buffer untouched.

    Why: a rarely sampled bit pair's BN has stale running statistics (W2A2 is drawn in about 1 path
    in 25), which would bias a score towards often-sampled pairs; a scoring batch of a few hundred
    images gives good statistics of its own, at no extra cost. The BNs run in training mode with
    ``track_running_stats`` off, so they neither read nor write their running statistics.
    """
    bns = active_batchnorms(model) if bns is None else list(bns)
    saved = [(bn.training, bn.track_running_stats) for bn in bns]
    for bn in bns:
        bn.training = True
        bn.track_running_stats = False
    try:
        yield
    finally:
        for bn, (training, tracking) in zip(bns, saved):
            bn.training = training
            bn.track_running_stats = tracking


def equal_batches(images: int, batch_size: int) -> list[int]:
    """The sizes of as few batches of at most ``batch_size`` as hold ``images``, differing by at most one image:
    with batch statistics (``batch_statistics``) a remainder batch would normalise a few images by their own
    statistics (512 images at 500 a batch would be 500 and 12).

    >>> [equal_batches(n, 500) for n in (128, 512, 1001, 2000)]
    [[128], [256, 256], [334, 334, 333], [500, 500, 500, 500]]
    """
    if images < 1 or batch_size < 1:
        raise ValueError(f"need at least one image and a batch size of at least 1, got {images} and {batch_size}")
    count = -(-images // batch_size)
    return [images // count + (i < images % count) for i in range(count)]


CACHE_BYTES = 2**30     # the incremental scorer keeps one configuration's activations up to this size


class Scorer:
    """The search's evaluator: configuration -> score on the scoring images (lower is better).

    ``metric``: "loss" (mean cross-entropy; smooth, so small differences between neighbouring
    configurations are visible on 1-2k images) or "error" (top-1 error, the paper's criterion).
    ``bn_mode``: "batch" (batch statistics, see ``batch_statistics``) or "running" (stored statistics).
    The scoring images are split into batches of nearly equal size, at most ``batch_size`` (``equal_batches``).
    The data are normalised once and kept on the supernet's device.

    Incremental (``incremental=True``; the default on CPU): ``around(bit_cfg)`` makes ``bit_cfg`` the base and
    keeps its activations (``mpq.search.incremental.GraphCache``); a configuration that differs from the base in
    one layer is then scored by re-running only the network downstream of that layer, with the same result
    as a full pass. The greedy walk calls ``around`` with the configuration it moves from. The cache is
    dropped when any parameter or buffer of the supernet changes in place (training, ``load_state_dict``),
    and not kept when one configuration's activations exceed ``cache_bytes``. ``incremental=None`` chooses
    by device: on CPU it made a greedy evaluation of ResNet-20 x0.5 1.8-2.0x faster; on an H100, where a
    128-image pass is bound by kernel launches rather than arithmetic, it was 0.74-0.89x as fast as a full
    pass (``benchmarks/bench_throughput.py --device cuda``), so GPUs score with full passes.
    """

    def __init__(self, supernet: Supernet, data: ImageSet, *, metric: str = "loss", batch_size: int = 500,
                 bn_mode: str = "batch", incremental: bool | None = None, cache_bytes: int = CACHE_BYTES) -> None:
        if metric not in ("loss", "error"):
            raise ValueError(f"metric must be 'loss' or 'error', got {metric!r}")
        if bn_mode not in ("batch", "running"):
            raise ValueError(f"bn_mode must be 'batch' or 'running', got {bn_mode!r}")
        self.supernet, self.metric, self.bn_mode, self.cache_bytes = supernet, metric, bn_mode, cache_bytes
        self.num_images = len(data)
        device = next(supernet.parameters()).device
        incremental = device.type == "cpu" if incremental is None else incremental
        # ImageSet slices in order, as ``batches`` yields them when the sizes are equal
        ends = list(itertools.accumulate(equal_batches(len(data), batch_size)))
        self.batches = [to_device(data.images[a:b], data.labels[a:b], device) for a, b in zip([0] + ends, ends)]
        self._switch = list(supernet.bn_layers().values())
        inside = {id(bn) for sw in self._switch for bn in sw.bns.values()}
        self._plain_bns = [m for m in supernet.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in inside]
        # walked on every evaluation: listed once here, since walking the module tree (`parameters()`,
        # `eval()`) took about a quarter of a greedy walk (ResNet-20 x0.5, level 3: 37.1 s -> 28.6 s, 2-core CPU)
        self._modules = list(supernet.modules())
        self._tensors = list(itertools.chain(supernet.parameters(), supernet.buffers()))
        self.graph = None
        if incremental:
            changeable = {n: (n, supernet.bn_of[n]) if n in supernet.bn_of else (n,) for n in supernet.searchable}
            self.graph = GraphCache(supernet.model, changeable)
        self._base: tuple[tuple, tuple, list[dict]] | None = None     # (configuration, versions, values per batch)
        self.full_passes = self.partial_passes = 0

    def _versions(self) -> tuple[int, ...]:
        return tuple(t._version for t in self._tensors)

    def _eval_mode(self) -> None:
        """``supernet.eval()`` without walking the module tree; modules already in eval mode are not touched."""
        for m in self._modules:
            if m.training:
                m.training = False

    def _context(self):
        if self.bn_mode == "running":
            return nullcontext()
        return batch_statistics(self.supernet, [sw.bns[sw.active] for sw in self._switch] + self._plain_bns)

    def _changed_layer(self, key: tuple, versions: tuple[int, ...]) -> str | None | bool:
        """The one layer where ``key`` differs from the base; None when equal; False when not a one-layer move."""
        if self._base is None or self._base[1] != versions:
            return False
        diff = [n for n, a, b in zip(self.supernet.searchable, key, self._base[0]) if a != b]
        return diff[0] if len(diff) == 1 else (None if not diff else False)

    @torch.no_grad()
    def _logits(self, bit_cfg: Mapping[str, Sequence[int]], keep: bool) -> list[Tensor]:
        self.supernet.set_config(bit_cfg)
        self._eval_mode()
        cfg = self.supernet.config
        key = tuple(cfg[n] for n in self.supernet.searchable)
        versions = self._versions() if self.graph is not None else ()
        changed = self._changed_layer(key, versions) if self.graph is not None else False
        out, envs = [], []
        with self._context():
            for i, (x, _) in enumerate(self.batches):
                if changed is None:                       # the base itself
                    env = self._base[2][i]
                    logits = env[self.graph.output]
                elif changed is False:                    # no usable base, or more than one layer changed
                    logits, env = self.graph.full(x) if keep else (self.supernet(x), None)
                    self.full_passes += 1
                else:
                    logits, env = self.graph.partial(self._base[2][i], changed)
                    self.partial_passes += 1
                out.append(logits)
                envs.append(env)
        if keep and changed is not None:
            size = sum(v.numel() * v.element_size() for env in envs for v in env.values() if isinstance(v, Tensor))
            self._base = (key, versions, envs) if size <= self.cache_bytes else None
        return out

    def _score(self, logits: list[Tensor]) -> float:
        total = 0.0
        for out, (_, y) in zip(logits, self.batches):
            if self.metric == "loss":
                total += float(F.cross_entropy(out, y, reduction="sum"))
            else:
                total += float((out.argmax(1) != y).sum())
        return total / self.num_images

    def __call__(self, bit_cfg: Mapping[str, Sequence[int]]) -> float:
        return self._score(self._logits(bit_cfg, keep=False))

    def around(self, bit_cfg: Mapping[str, Sequence[int]]) -> None:
        """Make ``bit_cfg`` the base that one-layer moves are scored from (a no-op without ``incremental``)."""
        if self.graph is not None:
            self._logits(bit_cfg, keep=True)

    def reset(self) -> None:
        """Drop the cached base (its activations)."""
        self._base = None


def make_scorer(supernet: Supernet, data: ImageSet, *, metric: str = "loss", batch_size: int = 500,
                bn_mode: str = "batch", incremental: bool | None = None) -> Scorer:
    """The search's evaluator on ``data`` (see ``Scorer``)."""
    return Scorer(supernet, data, metric=metric, batch_size=batch_size, bn_mode=bn_mode, incremental=incremental)


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
    from mpq.training.fp import predictions

    recalibrate(supernet, bit_cfg, calib, batch_size=batch_size)
    return predictions(supernet, test)
