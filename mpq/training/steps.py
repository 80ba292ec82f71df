"""What the eager and the graphed one-shot steps share: gradient clipping, the weight decay of a step (with its
2-bit correction) and the step's numbers.

A step ends, in this order: ``correct_2bit_decay`` (the official 2-bit correction, part of the loss there),
``clip_gradients``, ``decay_weights`` (the optimiser's decay there, after the clip)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from mpq.training.recipe import OneShotConfig
from mpq.method.quantizer import int_range
from mpq.method.supernet import Supernet


def decayed(weight: torch.Tensor, linear: bool) -> bool:
    """Whether a searchable or fixed layer's weight takes weight decay: conv (4-D) weights, and linear ones with
    ``linear`` (``oneshot.decay_linear``; the official code decays conv weights only)."""
    return weight.dim() == 4 or linear


@torch.no_grad()
def apply_weight_decay(supernet: Supernet, weight_decay: float, skip: set[str], linear: bool = False) -> None:
    """Add ``weight_decay * w`` to the gradient of every conv weight (and linear weight with ``linear``)
    except the layers in ``skip``."""
    for name, layer in supernet.layers.items():
        if name in skip or layer.weight.grad is None or not decayed(layer.weight, linear):
            continue
        layer.weight.grad.add_(layer.weight, alpha=weight_decay)


@torch.no_grad()
def in_range_decay_correction(supernet: Supernet, weight_decay: float,
                              random_configs: Sequence[Mapping[str, Sequence[int]]], linear: bool = False) -> None:
    """The official 2-bit decay correction: for every random path and every decayed layer it samples at 2-bit
    weights, subtract ``weight_decay * w`` from the gradient of the weights inside that path's 2-bit range
    ``[qmin s_2, qmax s_2]`` (``s_2`` the layer's 2-bit step size; ends included); weights outside keep their decay.

    The official code gets this as the gradient of ``-weight_decay / 2 * sum(clamp(w, qmin s_2, qmax s_2)^2)``,
    a term of every such path's loss (``adaptive_region_weight_decay`` 0), before the gradients are clipped; so
    call it before ``clip_gradients``. A weight inside the range on two 2-bit paths of a step is corrected twice,
    a net growth term, as there.
    """
    layers = supernet.layers
    qmin, qmax = int_range(2, signed=True)
    for bit_cfg in random_configs:
        for name, (w_bits, _) in bit_cfg.items():
            weight = layers[name].weight
            if w_bits != 2 or weight.grad is None or not decayed(weight, linear):
                continue
            step = layers[name].weight_quantizer.step_size["2"].detach()
            inside = (weight >= step * qmin) & (weight <= step * qmax)
            weight.grad.sub_(torch.where(inside, weight, torch.zeros((), dtype=weight.dtype, device=weight.device)),
                             alpha=weight_decay)


def correct_2bit_decay(supernet: Supernet, cfg: OneShotConfig,
                       random_configs: Sequence[Mapping[str, Sequence[int]]]) -> None:
    """The part of a one-shot step's 2-bit decay rule that comes before gradient clipping: with
    ``cfg.cancel_2bit_decay`` and the official rule (``cancel_2bit_decay_rule: per_path_in_range``), the
    in-range correction of every 2-bit path (``in_range_decay_correction``); nothing otherwise."""
    if cfg.cancel_2bit_decay and cfg.cancel_2bit_decay_rule == "per_path_in_range":
        in_range_decay_correction(supernet, cfg.weight_decay, random_configs, cfg.decay_linear)


def decay_weights(supernet: Supernet, cfg: OneShotConfig, random_configs: Sequence[Mapping[str, Sequence[int]]]) -> None:
    """A one-shot step's weight decay, after gradient clipping: every conv weight's (and with ``cfg.decay_linear``
    every linear weight's), except, with ``cfg.cancel_2bit_decay`` and the rule ``per_step_layer``, the layers some
    random path sampled at 2-bit weights (the official rule corrects before clipping: ``correct_2bit_decay``)."""
    skip = cfg.cancel_2bit_decay and cfg.cancel_2bit_decay_rule == "per_step_layer"
    two_bit = {n for c in random_configs for n, (w, _) in c.items() if w == 2} if skip else set()
    apply_weight_decay(supernet, cfg.weight_decay, two_bit, cfg.decay_linear)


def clip_gradients(supernet: Supernet, value: float | None) -> None:
    """Clamp every gradient element of the supernet into ``[-value, value]`` (None: no clipping).

    The official step does this (``clip_grad_value_`` at 1.0) once, after every path's gradients have
    accumulated and before the optimisers step; weight decay, added to the gradients after it here, is
    applied after the clip there too (by the optimiser)."""
    if value is not None:
        torch.nn.utils.clip_grad_value_(supernet.parameters(), value)


def step_stats(values: Sequence[float], num_random: int) -> dict[str, float]:
    """A one-shot step's numbers from ``[loss_max, random paths' losses..., IDM terms...]``: the max path's loss,
    the random paths' mean loss (NaN without random paths) and the mean IDM term (0 without)."""
    rand, idm = values[1:1 + num_random], values[1 + num_random:]
    return {"loss_max": values[0], "loss_rand": sum(rand) / len(rand) if rand else float("nan"),
            "idm": sum(idm) / len(idm) if idm else 0.0}
