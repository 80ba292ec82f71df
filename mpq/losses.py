"""Information distortion mitigation, IDM (claim C4; DESIGN.md section 2).

On a random path, the layers running at their lowest available weight bit-width produce features that
drift from the ones the same layers produce on the max path (every layer at its highest candidate). IDM
adds, for those layers, the mean squared error between their BN outputs (pre-activation) and the max
path's BN outputs on the same batch, the max path's detached: the low-bit path learns to produce the
high-bit features, and no gradient reaches the teacher. Weight 0.01 in the paper's code.

``capture_bn_outputs`` records the BN outputs of named layers during one forward pass (hooks removed on
exit); ``lowest_bit_layers`` picks the layers at their lowest candidate; ``idm_loss`` is the term.

Not wired into one-shot training yet (see the issue "Bit-width interference"); the distillation and
quantization-error terms still live in ``mpq.oneshot``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping, Sequence

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
