"""One configuration in three forms: fake quantization (the supernet), the integer reference, ONNX Runtime.

``accuracies`` gives top-1 of each form on the same images and how often they agree; ``code_agreement``
compares fake quantization with the integer reference layer by layer: each quantized layer is computed both
ways *from the same input codes*, and the codes its output gets at the next quantizers are compared (every
other layer keeps the reference's output, so a difference is that layer's alone).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mpq.data.datasets import ImageSet, batches, normalize
from mpq.deploy import integer
from mpq.deploy.model import DeployedModel
from mpq.method.layers import QConv2d


def _logits(logits_of, data: ImageSet, batch_size: int) -> Tensor:
    return torch.cat([logits_of(x) for x, _ in batches(data, batch_size, shuffle=False)])


@torch.no_grad()
def logits(deployed: DeployedModel, data: ImageSet, *, fake_quant: nn.Module | None = None,
           onnx_session: Any = None, batch_size: int = 500) -> dict[str, Tensor]:
    """Logits ``(N, classes)`` for each form given: ``integer`` always, ``fake_quant`` (the supernet at the
    deployed configuration, BN as deployed), ``onnx`` (an ``onnx_export.session``)."""
    out = {"integer": _logits(lambda x: integer.forward(deployed, x), data, batch_size)}
    if fake_quant is not None:
        fake_quant.eval()
        out["fake_quant"] = _logits(lambda x: fake_quant(normalize(x)), data, batch_size)
    if onnx_session is not None:
        from mpq.deploy.onnx_export import run

        out["onnx"] = _logits(lambda x: run(onnx_session, x), data, batch_size)
    return out


def accuracies(logits_of: dict[str, Tensor], labels: Tensor) -> dict[str, float]:
    """Top-1 of each form, and the share of images where each other form predicts what the integer one does."""
    preds = {form: x.argmax(1) for form, x in logits_of.items()}
    out = {f"acc_{form}": float((p == labels).double().mean()) for form, p in preds.items()}
    for form, p in preds.items():
        if form != "integer":
            out[f"top1_agreement_{form}_integer"] = float((p == preds["integer"]).double().mean())
    return out


def _fake_quant_layer(layer: nn.Module, bn: nn.Module | None, op: dict, codes: Tensor, normal: dict) -> Tensor:
    """The fake-quant layer (and its BN) on the inputs whose codes are ``codes``, in float32."""
    if op["a_step"] is None:     # the stem sees the normalised image (``normalize``), as in training
        x = (codes.div(255.0) - normal["mean"]).div_(normal["std"])
    else:
        x = codes * layer.input_quantizer.step_size[str(op["a_bits"])]
    w = layer.weight_quantizer(layer.weight)
    y = layer._conv_forward(x, w, layer.bias) if isinstance(layer, QConv2d) else F.linear(x, w, layer.bias)
    return bn(y) if bn is not None else y


@torch.no_grad()
def code_agreement(deployed: DeployedModel, fake_quant_model: nn.Module, pixels: Tensor) -> dict[str, dict]:
    """Per quantized layer: ``{"codes": n compared, "differ": share that differ, "max_diff": largest |difference|}``
    over the codes its output gets at the next quantizers, fake quantization against the integer reference,
    both from the reference's input codes (``fake_quant_model``: ``Supernet.export`` of the configuration).
    The last layer has no next quantizer: its entry compares top-1 instead (``differ``: share of images)."""
    fake_quant_model.eval()
    modules = dict(fake_quant_model.named_modules())
    ref: dict[str, Tensor] = {}
    logits = integer.forward(deployed, pixels, record=ref)
    layers = deployed.layers
    out: dict[str, dict] = {}
    for op in layers:
        layer, bn = modules[op["name"]], modules.get(op["bn"]) if op.get("bn") else None

        def swap(o: dict, codes: Tensor) -> Tensor:     # this layer in fake quantization, the others as recorded
            if o["name"] != op["name"]:
                return ref[o["output"]]
            return _fake_quant_layer(layer, bn, op, codes, deployed.meta["input"])

        seen: dict[str, Tensor] = {}
        mixed = integer.forward(deployed, pixels, record=seen, layer_fn=swap)
        differ = max_diff = 0
        for other in layers:
            key = f"{other['name']}.codes"
            if not torch.equal(seen[key], ref[key]):
                diff = (seen[key] - ref[key]).abs()
                differ += int((diff > 0).sum())
                max_diff = max(max_diff, int(diff.max()))
        consumers = [o for o in layers if _reads(deployed, o, op["output"])]
        compared = sum(ref[f"{o['name']}.codes"].numel() for o in consumers)
        if compared:
            out[op["name"]] = {"codes": compared, "differ": differ / compared, "max_diff": max_diff}
        else:
            out[op["name"]] = {"codes": 0, "differ": float((mixed.argmax(1) != logits.argmax(1)).double().mean()),
                               "max_diff": max_diff, "compared": "top-1"}
    return out


def _reads(deployed: DeployedModel, layer: dict, value: str) -> bool:
    """Whether ``layer``'s input depends on ``value`` through element-wise operations only (no other layer)."""
    producers = {op["output"]: op for op in deployed.ops}
    stack = [layer["input"]]
    while stack:
        name = stack.pop()
        if name == value:
            return True
        op = producers.get(name)
        if op is None or op["op"] in ("conv", "linear"):
            continue
        stack += op["inputs"] if op["op"] == "add" else [op["input"]]
    return False
