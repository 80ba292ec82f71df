"""A deployed model: a supernet at one configuration lowered to integer weights and a plain list of operations.

``lower(supernet, bit_cfg)`` traces the fixed model (``Supernet.export``) with ``torch.fx`` and writes one
operation per node. Every conv and linear becomes a *quantized layer*:

* its input is quantized by its own LSQ quantizer, ``codes = clamp(round(x / s_a), qmin, qmax)`` (round half
  to even, a true division), exactly as the fake-quant model does;
* its weight is stored as integer codes ``clamp(round(w / s_w), qmin, qmax)`` at ``w_bits``;
* the integer accumulator ``acc = conv(codes, weight codes)`` is rescaled by a per-channel ``multiplier``
  and ``bias`` that fold the two step sizes and the BN that follows (computed in float64, stored float32):
  ``y = acc * multiplier + bias`` (float32, multiply then add).

The stem's input is the image itself as 8-bit codes (uint8 pixels ``p``): the float model sees
``(p / 255 - mean) / std`` with zero padding, so the stem's ``acc = conv(p, codes)`` is exact and the mean
moves into a per-position bias (``(C, H, W)``: near the border fewer pixels meet the kernel). This is the
same 8-bit input the cost accounting assumes for the first layer, with no rounding at all.

Between quantized layers values are float32 tensors (ReLU, ReLU6, residual adds); global average pooling
sums in float64. The operations are plain JSON data; the tensors live beside them (``save`` / ``load``).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import operator
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.fx
from torch import Tensor, nn
from torch.nn import functional as F

from mpq.data.datasets import NORM_MEAN, NORM_STD
from mpq.deploy.pack import pack_codes, unpack_codes
from mpq.method.layers import QConv2d, QLinear
from mpq.method.quantizer import int_range
from mpq.method.supernet import Supernet

FORMAT = "mpq-deployed"
VERSION = 2                    # 2: model.json pins the other files and itself by sha256
INPUT_BITS = 8                 # the stem's input: uint8 pixels
FLOAT32_EXACT = 2 ** 24        # integers up to this magnitude are exact in float32


@dataclass
class DeployedModel:
    """Operations (plain data, in execution order) and their tensors.

    ``tensors`` holds per quantized layer ``NAME.weight`` (int8 codes, the layer's weight shape),
    ``NAME.multiplier`` (float32, ``(C_out,)``) and ``NAME.bias`` (float32, ``(C_out,)``, the stem's
    ``(C_out, H, W)``). ``meta`` says what the model is: model name, width, classes, data identity, the
    configuration, input shape and normalisation, BitOPs and size.
    """

    ops: list[dict[str, Any]]
    tensors: dict[str, Tensor]
    output: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[dict[str, Any]]:
        """The quantized layers (conv and linear operations) in execution order."""
        return [op for op in self.ops if op["op"] in ("conv", "linear")]

    def weight_bytes(self) -> int:
        """Bytes of the packed weight codes: ``sum(ceil(count * w_bits / 8))`` over the layers."""
        return sum((self.tensors[f"{op['name']}.weight"].numel() * op["w_bits"] + 7) // 8 for op in self.layers)


class _LeafTracer(torch.fx.Tracer):
    """Keeps quantized layers as single nodes (their quantizers hold Python state fx cannot trace)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (QConv2d, QLinear)) or super().is_leaf_module(m, qualname)


def weight_codes(layer: QConv2d | QLinear, bits: int) -> Tensor:
    """The layer's weight as integer codes at ``bits`` (int8): the fake-quant weight is ``codes * step``."""
    step = layer.weight_quantizer.step_size[str(bits)].detach()
    qmin, qmax = int_range(bits, signed=True)
    return torch.div(layer.weight.detach(), step).clamp_(qmin, qmax).round_().to(torch.int8)


def accumulator_bound(codes: Tensor, a_bits: int, a_signed: bool) -> int:
    """Largest ``|acc|`` any input can give: ``max over outputs of sum |weight codes| * max |input code|``."""
    qmin, qmax = int_range(a_bits, a_signed)
    per_output = codes.abs().to(torch.int64).reshape(codes.shape[0], -1).sum(1)
    return int(per_output.max()) * max(abs(qmin), qmax)


def _bn_fold(bn: nn.BatchNorm2d | None, channels: int, layer_bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(gain, shift)`` in float64 with ``bn(z + layer_bias) = z * gain + shift`` per channel (eval mode)."""
    bias = layer_bias.detach().double() if layer_bias is not None else torch.zeros(channels, dtype=torch.float64)
    if bn is None:
        return torch.ones(channels, dtype=torch.float64), bias
    gain = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return gain, bn.bias.detach().double() + (bias - bn.running_mean.double()) * gain


def _only_user(node: torch.fx.Node) -> torch.fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


@torch.no_grad()
def lower(supernet: Supernet, bit_cfg: Mapping[str, Sequence[int]], *, mean: float = NORM_MEAN,
          std: float = NORM_STD, meta: Mapping[str, Any] | None = None) -> DeployedModel:
    """The supernet at ``bit_cfg`` (its BN statistics as they are now: recalibrate first) as a ``DeployedModel``.

    ``mean`` and ``std`` are the input normalisation the supernet was trained with (``normalize``).
    Raises ValueError for a model with an operation that has no deployed form.
    """
    cfg = supernet.validate(bit_cfg)
    model = supernet.export(cfg).eval()
    graph = _LeafTracer().trace(model)
    modules = dict(model.named_modules())
    ops: list[dict[str, Any]] = []
    tensors: dict[str, Tensor] = {}
    value: dict[str, str] = {}           # fx node name -> the value (an op output) it stands for
    folded: set[str] = set()             # BN nodes folded into the layer before them
    input_name, output = None, None
    for node in graph.nodes:
        target = modules.get(node.target) if node.op == "call_module" else None
        args = [value[a.name] for a in node.args if isinstance(a, torch.fx.Node)]
        if node.op == "placeholder":
            input_name = value[node.name] = node.name
        elif isinstance(target, (QConv2d, QLinear)):
            bn_node = _only_user(node)
            bn = modules.get(bn_node.target) if bn_node is not None and bn_node.op == "call_module" else None
            if not isinstance(bn, nn.BatchNorm2d):
                bn, bn_node = None, None
            op = _lower_layer(node.target, target, args[0], args[0] == input_name, bn, supernet.input_size,
                              mean, std, tensors)
            op["bn"] = bn_node.target if bn_node is not None else None
            ops.append(op)
            value[node.name] = op["output"]
            if bn_node is not None:
                value[bn_node.name] = op["output"]
                folded.add(bn_node.name)
        elif node.name in folded:
            continue
        elif isinstance(target, nn.Identity):
            value[node.name] = args[0]
        elif isinstance(target, nn.ReLU6):
            ops.append({"op": "relu6", "input": args[0], "output": node.name})
            value[node.name] = node.name
        elif isinstance(target, nn.ReLU) or (node.op == "call_function" and node.target is F.relu):
            ops.append({"op": "relu", "input": args[0], "output": node.name})
            value[node.name] = node.name
        elif node.op == "call_function" and node.target in (operator.add, torch.add) and len(args) == 2:
            ops.append({"op": "add", "inputs": args, "output": node.name})
            value[node.name] = node.name
        elif isinstance(target, nn.AdaptiveAvgPool2d) and target.output_size in (1, (1, 1)):
            ops.append({"op": "avgpool", "input": args[0], "output": node.name})
            value[node.name] = node.name
        elif node.op == "call_method" and node.target == "flatten" and tuple(node.args[1:]) in ((1,), ()):
            ops.append({"op": "flatten", "input": args[0], "output": node.name})
            value[node.name] = node.name
        elif node.op == "output":
            output = value[node.args[0].name]
        else:
            raise ValueError(f"node {node.name} ({node.op} {node.target}) has no deployed form; deployable models "
                             "use conv, linear, BN after a conv, ReLU, ReLU6, add, global average pooling, flatten")
    _require_finite(tensors, "the lowered model", "its checkpoint's weights or BN statistics are unusable")
    deployed = DeployedModel(ops, tensors, output)
    deployed.meta = {"format": FORMAT, "version": VERSION, "bit_cfg": {k: list(v) for k, v in cfg.items()},
                     "input": {"name": input_name, "shape": list(supernet.input_size), "bits": INPUT_BITS,
                               "mean": mean, "std": std},
                     "gbitops": supernet.bitops(cfg) / 1e9, "size_mib": supernet.size_mib(cfg), **(meta or {})}
    return deployed


def _lower_layer(name: str, layer: QConv2d | QLinear, source: str, is_stem: bool, bn: nn.BatchNorm2d | None,
                 input_size: Sequence[int], mean: float, std: float, tensors: dict[str, Tensor]) -> dict[str, Any]:
    """One quantized layer's operation; its codes, multiplier and bias go into ``tensors``."""
    w_bits, a_bits = layer.bits
    if w_bits is None:
        raise ValueError(f"layer {name} has no weight bit-width set")
    if is_stem != (a_bits is None):
        raise ValueError(f"layer {name}: only the stem (the layer reading the image) may have an unquantized input")
    w_step = float(layer.weight_quantizer.step_size[str(w_bits)])
    a_step = None if is_stem else float(layer.input_quantizer.step_size[str(a_bits)])
    for what, step in (("weight", w_step), ("input", a_step)):
        if step is not None and not (math.isfinite(step) and step > 0):
            raise ValueError(f"layer {name}: its {what} step size at {w_bits if what == 'weight' else a_bits} bits is "
                             f"{step}, not a finite number > 0: the checkpoint's weights are unusable")
    codes = weight_codes(layer, w_bits)
    out_channels = codes.shape[0]
    gain, shift = _bn_fold(bn, out_channels, layer.bias)
    op: dict[str, Any] = {"op": "conv" if isinstance(layer, QConv2d) else "linear", "name": name, "input": source,
                          "output": name, "w_bits": w_bits, "w_step": w_step, "weight_shape": list(codes.shape)}
    if isinstance(layer, QConv2d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError(f"layer {name}: only explicit zero padding is deployable")
        op.update(stride=list(layer.stride), padding=list(layer.padding), dilation=list(layer.dilation),
                  groups=layer.groups)
    if is_stem:
        # x = (p - 255 mean * inside) / (255 std): the float model's zero padding is 0 in normalised units
        in_scale = 1.0 / (255.0 * std)
        multiplier = gain * w_step * in_scale
        if op["op"] != "conv":
            raise ValueError(f"layer {name}: the stem (the layer reading the image) must be a conv")
        inside = torch.ones(1, *input_size, dtype=torch.float64)
        corr = F.conv2d(inside, codes.double(), None, layer.stride, layer.padding, layer.dilation,
                        layer.groups)[0]                       # (C, H, W): sum of the weight codes meeting the image
        bias = shift.reshape(-1, 1, 1) - (multiplier * 255.0 * mean).reshape(-1, 1, 1) * corr
        op.update(a_bits=INPUT_BITS, a_signed=False, a_step=None)
    else:
        multiplier = gain * w_step * a_step
        bias = shift
        op.update(a_bits=a_bits, a_signed=bool(layer.input_quantizer.signed), a_step=a_step)
    op["acc_bound"] = accumulator_bound(codes, op["a_bits"], op["a_signed"])
    tensors[f"{name}.weight"] = codes
    tensors[f"{name}.multiplier"] = multiplier.float()
    tensors[f"{name}.bias"] = bias.float()
    return op


def _require_finite(tensors: Mapping[str, Tensor], where: str, fix: str) -> None:
    """Refuse multipliers and biases with nan or inf: such a model computes nothing, yet would run."""
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"{where} holds nan or inf in {', '.join(bad[:3])}{more}; {fix}")


# --- the file format ------------------------------------------------------------------------------------

MODEL_JSON, WEIGHTS_NPZ, MODEL_ONNX = "model.json", "weights.npz", "model.onnx"
EXPORT_FIX = "export the model again (`python -m mpq export`)"


def _doc_digest(doc: Mapping[str, Any]) -> str:
    """sha256 of ``model.json``'s content (canonical JSON: sorted keys, no spaces), its own ``sha256`` left out."""
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save(deployed: DeployedModel, folder: str | Path, files: Mapping[str, bytes] | None = None) -> None:
    """Write ``weights.npz`` (packed codes, multipliers, biases), the other ``files`` given (``model.onnx``), and
    last ``model.json`` (operations, bits, steps, shapes, metadata) into ``folder`` (created if missing).

    ``model.json`` is the export's manifest: it records every other file's sha256 (``files``) and its own
    content's (``sha256``), so ``load`` refuses a damaged file, or one swapped in from another export."""
    _require_finite(deployed.tensors, "the deployed model", "its checkpoint's weights are unusable")
    unknown = sorted(set(files or {}) - {MODEL_ONNX})
    if unknown:
        raise ValueError(f"an export folder holds {MODEL_JSON}, {WEIGHTS_NPZ} and {MODEL_ONNX}, not {unknown}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for op in deployed.layers:
        name = op["name"]
        arrays[f"{name}.weight"] = pack_codes(deployed.tensors[f"{name}.weight"].numpy(), op["w_bits"], signed=True)
        for key in ("multiplier", "bias"):
            arrays[f"{name}.{key}"] = deployed.tensors[f"{name}.{key}"].numpy()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    blobs = {WEIGHTS_NPZ: buffer.getvalue(), **(files or {})}
    for fname, data in blobs.items():
        (folder / fname).write_bytes(data)
    meta = {k: v for k, v in deployed.meta.items() if k not in ("files", "sha256")}
    doc = json.loads(json.dumps({**meta, "output": deployed.output, "ops": deployed.ops,
                                 "files": {fname: hashlib.sha256(data).hexdigest() for fname, data in blobs.items()}}))
    doc["sha256"] = _doc_digest(doc)
    (folder / MODEL_JSON).write_text(json.dumps(doc, indent=1) + "\n")


def _verified(folder: Path, doc: Mapping[str, Any]) -> dict[str, bytes]:
    """The bytes of every file ``model.json`` lists, each checked against the sha256 it records."""
    files = doc.get("files")
    if not isinstance(files, dict) or WEIGHTS_NPZ not in files or not set(files) <= {WEIGHTS_NPZ, MODEL_ONNX}:
        raise ValueError(f"{folder / MODEL_JSON} lists no valid files; {EXPORT_FIX}")
    out = {}
    for fname, digest in files.items():
        path = folder / fname
        if not path.is_file():
            raise ValueError(f"{folder} holds no {fname}, which its {MODEL_JSON} lists; {EXPORT_FIX}")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{path} does not belong to this export: its sha256 differs from the one {MODEL_JSON} "
                             f"records (a damaged file, or one from another export); {EXPORT_FIX}")
        out[fname] = data
    return out


def load(folder: str | Path) -> DeployedModel:
    """Read a folder written by ``save``: plain JSON and numpy arrays (no pickle), each file checked against the
    sha256 ``model.json`` records (and ``model.json`` against its own), the weights checked finite."""
    folder = Path(folder)
    for fname in (MODEL_JSON, WEIGHTS_NPZ):
        if not (folder / fname).is_file():
            raise ValueError(f"{folder} holds no {fname}: not a deployed model; write one with `python -m mpq export`")
    try:
        doc = json.loads((folder / MODEL_JSON).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{folder / MODEL_JSON} is not valid JSON ({exc}); {EXPORT_FIX}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{folder / MODEL_JSON} is not an {FORMAT} file; {EXPORT_FIX}")
    if doc.get("version") != VERSION:
        raise ValueError(f"{folder / MODEL_JSON} is of format version {doc.get('version')!r}, this version reads "
                         f"{VERSION} (whose files are pinned by sha256); {EXPORT_FIX}")
    if doc.get("sha256") != _doc_digest(doc):
        raise ValueError(f"{folder / MODEL_JSON} is damaged: its content does not match the sha256 it records; "
                         f"{EXPORT_FIX}")
    blobs = _verified(folder, doc)
    tensors: dict[str, Tensor] = {}
    try:
        with np.load(io.BytesIO(blobs[WEIGHTS_NPZ]), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        for op in doc["ops"]:
            if op["op"] not in ("conv", "linear"):
                continue
            name, shape = op["name"], tuple(op["weight_shape"])
            codes = unpack_codes(arrays[f"{name}.weight"], op["w_bits"], True, shape)
            tensors[f"{name}.weight"] = torch.from_numpy(codes.astype(np.int8))
            for key in ("multiplier", "bias"):
                arr = arrays[f"{name}.{key}"]
                if arr.dtype != np.float32 or arr.shape[0] != shape[0]:
                    raise ValueError(f"{key} of layer {name} has dtype {arr.dtype} and shape {arr.shape}")
                tensors[f"{name}.{key}"] = torch.from_numpy(arr.copy())
    except (KeyError, ValueError, TypeError, IndexError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{folder / WEIGHTS_NPZ} does not match {MODEL_JSON} ({type(exc).__name__}: {exc}); "
                         f"{EXPORT_FIX}") from None
    _require_finite(tensors, str(folder / WEIGHTS_NPZ), EXPORT_FIX)
    meta = {k: v for k, v in doc.items() if k not in ("ops", "output", "files", "sha256")}
    return DeployedModel(doc["ops"], tensors, doc["output"], meta)
