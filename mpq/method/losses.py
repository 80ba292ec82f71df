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
  weights towards their quantization grid late in training; ``qe_weight_at`` is its ramp.

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


def quantization_error(supernet) -> Tensor:
    """Sum over searchable layers of mean(((w - q(w)) / s)^2) at each layer's current weight bit-width.

    Normalised by the step size so layers and bit-widths weigh alike; the quantized value is a constant,
    so the gradient pulls the latent weights towards their grid points.
    """
    from mpq.method.layers import quant_layers

    layers = quant_layers(supernet.model)
    chosen = [layers[name] for name in supernet.searchable]
    steps = [layer.weight_quantizer.step_size[str(layer.weight_quantizer.bits)] for layer in chosen]
    return scaled_rounding_error(zip(chosen, steps), next(supernet.parameters()).device)


def scaled_rounding_error(layers_and_steps: Iterable[tuple[nn.Module, Tensor]], device: torch.device) -> Tensor:
    """``quantization_error``'s sum over ``(layer, step size)`` pairs, each layer quantized at its current
    weight bit-width and divided by the step size given (a 0-d tensor; no gradient flows into it)."""
    total = torch.zeros((), device=device)
    for layer, step in layers_and_steps:
        total = total + ((layer.weight - layer.quantized_weight().detach()) / step.detach()).pow(2).mean()
    return total


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
