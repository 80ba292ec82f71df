"""The loss terms of one-shot training (docs/method.md section 2), one function each.

- ``distillation_loss``: each random path learns from the max path's detached logits (in-place
  distillation), KL(teacher || student) on softened distributions.
- ``idm_loss``, information distortion mitigation (claim C4): on a random path, the layers running at
  their lowest available weight bit-width produce features that drift from the ones the same layers
  produce on the max path (every layer at its highest candidate). IDM adds, for those layers, the mean
  squared error between their BN outputs (pre-activation) and the max path's BN outputs on the same
  batch, the max path's detached: the low-bit path learns to produce the high-bit features, and no
  gradient reaches the teacher. Weight 0.01 in the paper's code. ``capture_bn_outputs`` records the BN
  outputs during a forward pass; ``lowest_bit_layers`` picks the layers at their lowest candidate.
- ``quantization_error``: a term of the official code, not of the paper's text, that pulls latent
  weights towards the quantization grid the layer's lowest bit-width shares, late in training
  (``coupled_rounding_error`` per layer); ``qe_weight_at`` is its ramp.

``mpq.training.oneshot.train_step`` combines them; which terms apply on which path is its business.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping, Sequence

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@contextmanager
def capture_bn_outputs(bns: Mapping[str, nn.Module]) -> Iterator[dict[str, Tensor]]:
    """Yield a dict that fills with ``name -> output`` of each module in ``bns`` during the forward passes
    inside the block (the last pass wins). Outputs keep their graph: detach them for a teacher."""
    outputs: dict[str, Tensor] = {}
    handles = [bn.register_forward_hook(lambda m, i, out, name=name: outputs.__setitem__(name, out))
               for name, bn in bns.items()]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def lowest_bit_layers(bit_cfg: Mapping[str, Sequence[int]], candidates: Mapping[str, tuple[Sequence[int], Sequence[int]]]
                      ) -> list[str]:
    """Layers whose weight bit-width in ``bit_cfg`` is the lowest of their current weight candidates.

    >>> lowest_bit_layers({"a": (2, 4), "b": (3, 3), "c": (3, 2)}, {"a": ((2, 3), (2,)), "b": ((3, 4), (3,)), "c": ((2, 3), (2,))})
    ['a', 'b']
    """
    return [name for name, (w_bits, _) in bit_cfg.items() if w_bits == min(candidates[name][0])]


def idm_loss(student: Mapping[str, Tensor], teacher: Mapping[str, Tensor], layers: Iterable[str]) -> Tensor:
    """Sum over ``layers`` of MSE(student BN output, detached teacher BN output); 0 when no layer is given.

    Shapes per layer: ``(N, C, H, W)`` on both sides (same batch, same layer).
    """
    layers = list(layers)
    if not layers:
        any_out = next(iter(student.values()), None)
        return torch.zeros((), device=any_out.device if any_out is not None else None)
    missing = [n for n in layers if n not in student or n not in teacher]
    if missing:
        raise KeyError(f"no captured BN output for layers {missing}")
    return sum(F.mse_loss(student[n], teacher[n].detach()) for n in layers)


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) on softened distributions, times T^2 (Hinton et al.); logits ``(B, classes)``."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher.detach() / t, 1), log_target=True,
                    reduction="batchmean") * t * t


def quantization_error(supernet, candidates: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None) -> Tensor:
    """The official code's quantization-error term at each searchable layer's current weight bit-width.

    Per layer at weight bit-width b, with the layer's lowest *current* weight candidate b_min (``candidates``,
    as the scheduler left them; None: the supernet's full lists): ``coupled_rounding_error`` of its latent
    weight. Summed over layers. The gradient reaches the latent weights only (DESIGN.md section 2 (a)).
    """
    cands = candidates or supernet.choices
    layers = supernet.layers
    total = torch.zeros((), device=next(supernet.parameters()).device)
    for name in supernet.searchable:
        layer = layers[name]
        q = layer.weight_quantizer
        total = total + coupled_rounding_error(layer.weight, q.step_size[str(q.bits)], *grid(q.bits, min(cands[name][0])))
    return total


def grid(bits: int, lowest_bits: int) -> tuple[int, int, int, int]:
    """``(qmin, qmax, spacing, top)`` of ``coupled_rounding_error`` for signed weights at ``bits`` in a layer
    whose lowest current candidate is ``lowest_bits``: codes that are multiples of ``spacing = 2^(bits -
    lowest_bits)`` up to ``top`` are the ones the lowest bit-width shares (``k * spacing`` for k in its range).

    >>> grid(4, 2)      # 4-bit codes -8..7; the 2-bit grid -2..1 times 4: -8, -4, 0, 4
    (-8, 7, 4, 4)
    >>> grid(2, 2)
    (-2, 1, 1, 1)
    """
    from mpq.method.quantizer import int_range

    if lowest_bits > bits:
        raise ValueError(f"a layer at {bits}-bit weights cannot have a lowest candidate of {lowest_bits} bits")
    qmin, qmax = int_range(bits, True)
    spacing = 2 ** (bits - lowest_bits)
    return qmin, qmax, spacing, int_range(lowest_bits, True)[1] * spacing


def coupled_rounding_error(weight: Tensor, step_size: Tensor, qmin, qmax, spacing, top) -> Tensor:
    """One layer's quantization-error term, as the official code computes it (DESIGN.md section 2 (a)).

    The latent weight is clipped to the bit-width's range ``[qmin * s, qmax * s]``; its target is its
    quantized value ``s * round(clamp(w / s, qmin, qmax))``, detached. Only weights whose integer code is a
    multiple of ``spacing`` no higher than ``top`` (``grid``: the codes the layer's lowest candidate shares)
    are pulled; at the lowest candidate itself (spacing 1) every weight is. The squared error is summed over
    output channels (dim 0), then averaged over the rest; the step size gets no gradient from this term and
    the error is not divided by it. ``qmin``, ``qmax``, ``spacing`` and ``top`` may be numbers or 0-d tensors
    (the graphed step passes tensors, so one recording serves every bit-width).
    """
    s = step_size.detach()
    clipped = torch.clamp(weight, qmin * s, qmax * s)
    with torch.no_grad():
        code = torch.clamp(weight / s, qmin, qmax).round_()
        pulled = (torch.remainder(code, spacing) == 0) & (code <= top)
        target = torch.where(pulled, code * s, clipped)
    return (clipped - target).pow(2).sum(0).mean()


def qe_weight_at(step: int, total_steps: int, start: float, weight: float, ramp: str = "cosine") -> float:
    """The quantization-error weight at ``step`` (0-based) of ``total_steps``.

    0 before ``start * total_steps``; from there it rises to ``weight`` at the last step, along half a
    cosine (``ramp="cosine"``, the official code's shape) or a straight line (``"linear"``).

    >>> [round(qe_weight_at(s, 5, 0.2, 1.0), 3) for s in range(5)]
    [0.0, 0.0, 0.25, 0.75, 1.0]
    >>> [round(qe_weight_at(s, 5, 0.2, 1.0, "linear"), 3) for s in range(5)]
    [0.0, 0.0, 0.333, 0.667, 1.0]
    """
    if ramp not in ("cosine", "linear"):
        raise ValueError(f"ramp must be 'cosine' or 'linear', got {ramp!r}")
    begin, last = start * total_steps, total_steps - 1
    if step < begin or last <= begin:          # not yet, or no step left to ramp over
        return 0.0
    frac = (step - begin) / (last - begin)
    return weight * (0.5 * (1.0 - math.cos(math.pi * frac)) if ramp == "cosine" else frac)
