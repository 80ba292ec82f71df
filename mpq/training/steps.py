"""What the eager and the graphed one-shot steps share: gradient clipping, the weight decay of a step and the
step's numbers."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from mpq.training.recipe import OneShotConfig
from mpq.method.layers import quant_layers
from mpq.method.supernet import Supernet


@torch.no_grad()
def apply_weight_decay(supernet: Supernet, weight_decay: float, skip: set[str], linear: bool = False) -> None:
    """Add ``weight_decay * w`` to the gradient of every conv weight (and linear weight with ``linear``)
    except the layers in ``skip``."""
    for name, layer in quant_layers(supernet.model).items():
        if name in skip or layer.weight.grad is None or (layer.weight.dim() != 4 and not linear):
            continue
        layer.weight.grad.add_(layer.weight, alpha=weight_decay)


def decay_weights(supernet: Supernet, cfg: OneShotConfig, random_configs: Sequence[Mapping[str, Sequence[int]]]) -> None:
    """A one-shot step's weight decay: every conv weight's (and with ``cfg.decay_linear`` every linear weight's),
    except, with ``cfg.cancel_2bit_decay``, the layers some random path sampled at 2-bit weights."""
    two_bit = {n for c in random_configs for n, (w, _) in c.items() if w == 2} if cfg.cancel_2bit_decay else set()
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
