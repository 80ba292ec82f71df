"""The integer reference forward of a ``DeployedModel``, in PyTorch: the definition ONNX Runtime must equal.

Per quantized layer: input codes ``clamp(round(x / s_a), qmin, qmax)`` (float32 division, round half to even:
``torch.round``), an integer accumulation (float32 while ``acc_bound < 2^24``, where every partial sum is an
exact integer whatever the summation order; float64 otherwise), then ``y = acc * multiplier + bias`` in float32.
ReLU, ReLU6 and adds are float32 element-wise operations (the same IEEE result in any library); global
average pooling sums in float64 and divides by ``H * W`` before rounding to float32.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from mpq.deploy.model import FLOAT32_EXACT, DeployedModel
from mpq.method.quantizer import int_range


def input_codes(x: Tensor, step: float, bits: int, signed: bool) -> Tensor:
    """``clamp(round(x / step), qmin, qmax)`` as float32 integers; the fake-quant value is ``codes * step``."""
    qmin, qmax = int_range(bits, signed)
    return torch.div(x, torch.tensor(step, dtype=torch.float32)).clamp_(qmin, qmax).round_()


def layer_codes(op: dict, x: Tensor) -> Tensor:
    """The input codes of quantized layer ``op`` for its input value ``x`` (the stem: uint8 pixels as they are)."""
    if op["a_step"] is None:
        return x.float()
    return input_codes(x, op["a_step"], op["a_bits"], op["a_signed"])


def accumulate(op: dict, codes: Tensor, weight: Tensor) -> Tensor:
    """Integer accumulator of quantized layer ``op`` (float32 when exact there, else float64)."""
    dtype = torch.float32 if op["acc_bound"] < FLOAT32_EXACT else torch.float64
    w = weight.to(dtype)
    if op["op"] == "linear":
        return F.linear(codes.to(dtype), w)
    return F.conv2d(codes.to(dtype), w, None, op["stride"], op["padding"], op["dilation"], op["groups"])


def rescale(op: dict, acc: Tensor, multiplier: Tensor, bias: Tensor) -> Tensor:
    """``acc * multiplier + bias`` per output channel, float32 (float64 then rounded once for a wide accumulator)."""
    shape = (1, -1) + (1,) * (acc.dim() - 2)          # (1, C) or (1, C, 1, 1)
    m = multiplier.reshape(shape).to(acc.dtype)
    b = bias.reshape(shape if bias.dim() == 1 else (1, *bias.shape)).to(acc.dtype)
    return (acc * m + b).float()


LayerFn = Callable[[dict, Tensor], Tensor]


@torch.no_grad()
def forward(deployed: DeployedModel, pixels: Tensor, *, record: dict[str, Tensor] | None = None,
            layer_fn: LayerFn | None = None) -> Tensor:
    """Logits ``(B, classes)`` for uint8 images ``(B, C, H, W)``.

    ``record``: filled with every value by name and each layer's input codes as ``NAME.codes``.
    ``layer_fn(op, codes)``: replaces a quantized layer's output computed from its input codes (to compare
    another implementation layer by layer).
    """
    if pixels.dtype != torch.uint8:
        raise ValueError(f"the deployed model takes uint8 images, got {pixels.dtype}")
    values: dict[str, Tensor] = {deployed.meta["input"]["name"]: pixels}
    t = deployed.tensors
    for op in deployed.ops:
        kind = op["op"]
        if kind in ("conv", "linear"):
            codes = layer_codes(op, values[op["input"]])
            if record is not None:
                record[f"{op['name']}.codes"] = codes
            name = op["name"]
            out = (layer_fn(op, codes) if layer_fn is not None else
                   rescale(op, accumulate(op, codes, t[f"{name}.weight"]), t[f"{name}.multiplier"], t[f"{name}.bias"]))
        elif kind == "relu":
            out = torch.relu(values[op["input"]])
        elif kind == "relu6":
            out = values[op["input"]].clamp(0.0, 6.0)
        elif kind == "add":
            out = values[op["inputs"][0]] + values[op["inputs"][1]]
        elif kind == "avgpool":
            x = values[op["input"]]
            out = (x.double().sum(dim=(2, 3), keepdim=True) / (x.shape[2] * x.shape[3])).float()
        elif kind == "flatten":
            out = values[op["input"]].flatten(1)
        else:
            raise ValueError(f"unknown operation {kind!r} in the deployed model")
        values[op["output"]] = out
    if record is not None:
        record.update(values)
    return values[deployed.output]
