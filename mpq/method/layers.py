"""Weight-coupled layers (claim C1): one float weight serves every bit-width.

``QConv2d`` and ``QLinear`` subclass the float layers, so stride, padding, dilation, groups and bias keep
their exact semantics; they add one weight quantizer and one input-activation quantizer, each with a
step size per candidate bit-width. With both quantizers at ``bits=None`` they compute exactly the float
layer. ``SwitchableBatchNorm2d`` holds one independent BN per (w_bits, a_bits) pair, plus the float BN
(key ``"fp"``) that the model was converted from.

A BN with batch statistics (training, recalibration, search scoring) on a channels_last CPU tensor with fewer
channels than an AVX-512 vector holds (16 floats) runs on an NCHW copy: torch's channels_last kernel
vectorises over channels and was 2-4x slower there (see ``nchw_bn_below``).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mpq.method.quantizer import LSQQuantizer

BitPair = tuple[int, int]


def nchw_bn_below(capability: str | None = None) -> int:
    """Channel count under which batch-statistics BN runs on an NCHW copy of a channels_last input (0: never).

    Measured with torch 2.13 on an AVX-512 2-core CPU, batch 128, forward / forward + backward, ms:

    ==============  =========================  =========================
    channels, HxW   channels_last              NCHW copy (both copies in)
    ==============  =========================  =========================
    4, 28x28        1.56 / 3.27                0.39 / 1.14
    8, 28x28        1.40 / 2.90                0.75 / 2.33
    12, 28x28       1.41 / 4.19                1.26 / 3.71
    8, 14x14        0.37 / 0.66                0.21 / 0.46
    16, 28x28       0.47 / 1.29                1.50 / 4.70
    24, 14x14       0.39 / 0.88                0.61 / 1.56
    ==============  =========================  =========================

    On other CPU kinds (AVX2: 8-float vectors) the crossing was not measured, so the route is off there.
    The two routes agree to float rounding (about 1e-5 on unit-variance inputs), not bit for bit.
    """
    capability = capability if capability is not None else torch.backends.cpu.get_cpu_capability()
    return 16 if capability.upper().startswith("AVX512") else 0


_NCHW_BN_BELOW = nchw_bn_below()


def bn_key(w_bits: int | None, a_bits: int | None) -> str:
    """ModuleDict key of the BN for a bit pair; ``"fp"`` for the unquantized layer."""
    return "fp" if w_bits is None else f"w{w_bits}a{a_bits}"


class _QuantMixin:
    """Shared bit-width handling of QConv2d and QLinear (weight and input quantizers)."""

    weight_quantizer: LSQQuantizer
    input_quantizer: LSQQuantizer

    def _init_quantizers(self, w_bit_choices: Sequence[int], a_bit_choices: Sequence[int] | None,
                         grad_scaling: bool) -> None:
        self.weight_quantizer = LSQQuantizer(w_bit_choices, signed=True, grad_scaling=grad_scaling)
        # the input's sign is only known from data: `Supernet.calibrate` sets it (signed after a linear bottleneck)
        self.input_quantizer = LSQQuantizer(a_bit_choices or (8,), signed=False, grad_scaling=grad_scaling,
                                            per_sample_numel=True)
        self.quantize_input = a_bit_choices is not None

    @property
    def w_bit_choices(self) -> tuple[int, ...]:
        return self.weight_quantizer.bit_choices

    @property
    def a_bit_choices(self) -> tuple[int, ...] | None:
        return self.input_quantizer.bit_choices if self.quantize_input else None

    @property
    def bits(self) -> tuple[int | None, int | None]:
        return self.weight_quantizer.bits, self.input_quantizer.bits

    def set_bits(self, w_bits: int | None, a_bits: int | None) -> None:
        """Select the bit pair for the next forward passes; ``None`` leaves that side unquantized."""
        if a_bits is not None and not self.quantize_input:
            raise ValueError("this layer's input is never quantized (first layer): pass a_bits=None")
        self.weight_quantizer.set_bits(w_bits)
        self.input_quantizer.set_bits(a_bits)

    def quantized_weight(self) -> Tensor:
        return self.weight_quantizer(self.weight)


class QConv2d(_QuantMixin, nn.Conv2d):
    """Conv2d with LSQ fake quantization of its weight (signed) and input activation."""

    @classmethod
    def from_float(cls, conv: nn.Conv2d, w_bit_choices: Sequence[int], a_bit_choices: Sequence[int] | None,
                   grad_scaling: bool = False) -> "QConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.groups, conv.bias is not None, conv.padding_mode,
                device=conv.weight.device, dtype=conv.weight.dtype)
        q.load_state_dict(conv.state_dict())
        q._init_quantizers(w_bit_choices, a_bit_choices, grad_scaling)
        return q

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self.input_quantizer(x), self.weight_quantizer(self.weight), self.bias)


class QLinear(_QuantMixin, nn.Linear):
    """Linear with LSQ fake quantization of its weight (signed) and input activation."""

    @classmethod
    def from_float(cls, linear: nn.Linear, w_bit_choices: Sequence[int], a_bit_choices: Sequence[int] | None,
                   grad_scaling: bool = False) -> "QLinear":
        q = cls(linear.in_features, linear.out_features, linear.bias is not None,
                device=linear.weight.device, dtype=linear.weight.dtype)
        q.load_state_dict(linear.state_dict())
        q._init_quantizers(w_bit_choices, a_bit_choices, grad_scaling)
        return q

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.input_quantizer(x), self.weight_quantizer(self.weight), self.bias)


class SwitchableBatchNorm2d(nn.Module):
    """One independent BatchNorm2d (affine parameters and running statistics) per (w_bits, a_bits) pair.

    Every pair's BN starts as a copy of the float BN it replaces; the float BN stays under key ``"fp"`` so
    the converted model at ``bits=None`` is the float model.
    """

    def __init__(self, bn: nn.BatchNorm2d, pairs: Sequence[BitPair]) -> None:
        super().__init__()
        self.bns = nn.ModuleDict({"fp": bn})
        for w_bits, a_bits in pairs:
            self.bns[bn_key(w_bits, a_bits)] = copy.deepcopy(bn)
        self.active = "fp"

    @property
    def pairs(self) -> list[BitPair]:
        return [(int(k[1:k.index("a")]), int(k[k.index("a") + 1:])) for k in self.bns if k != "fp"]

    def set_bits(self, w_bits: int | None, a_bits: int | None) -> None:
        key = bn_key(w_bits, a_bits)
        if key not in self.bns:
            raise ValueError(f"no BN for the pair {key}; this layer has {sorted(self.bns)}")
        self.active = key

    @property
    def active_bn(self) -> nn.BatchNorm2d:
        return self.bns[self.active]

    def forward(self, x: Tensor) -> Tensor:
        bn = self.bns[self.active]
        if (bn.training and x.dim() == 4 and x.shape[1] < _NCHW_BN_BELOW and x.device.type == "cpu"
                and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
            return bn(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return bn(x)


def quant_layers(model: nn.Module) -> dict[str, QConv2d | QLinear]:
    """Every weight-coupled layer of ``model`` by qualified name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (QConv2d, QLinear))}
