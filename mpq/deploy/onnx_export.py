"""ONNX export of a ``DeployedModel`` in Q/DQ form, built node by node with ``onnx.helper``, run in ONNX Runtime.

Each quantized layer reads ``DequantizeLinear(Clip(QuantizeLinear(x, s_a)), 1)``: the input codes as float32
integers. 2-, 4- and 8-bit codes travel in INT2/UINT2, INT4/UINT4, INT8/UINT8 (QuantizeLinear saturates to
the type's range); 3-, 5- and 6-bit codes in 8-bit types with a Clip to their range between Q and DQ. Weights
are INT2/INT4/INT8 initializers (a Clip marks 3, 5 and 6 bits), dequantized with scale 1, so the Conv or Gemm
sums integers, exactly while ``acc_bound < 2^24``; then Mul by the multiplier and Add the bias, as in
``mpq.deploy.integer``. The stem reads the uint8 pixels through a Cast. Opset 21 (INT4), 25 when a 2-bit
type occurs.

ONNX Runtime must run the graph as written: with its default optimizations it fuses DQ-Conv-Q into QLinearConv
(refused for 4- and 2-bit types) and folds Mul/Add into the conv's float weights (no longer exact), so
``session`` disables graph optimizations. It also turns off ONNX Runtime's buffer reuse: with activations of
mixed sub-byte types (say UINT2 beside UINT4) its reuse of freed buffers corrupted the heap (onnxruntime
1.30, measured on a random EfficientNet-Lite configuration; the process aborts).

onnx and onnxruntime are the optional ``deploy`` extra: ``pip install -e .[deploy]``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mpq.deploy.model import FLOAT32_EXACT, DeployedModel
from mpq.deploy.pack import pack_codes
from mpq.method.quantizer import int_range

OPSET_INT4, OPSET_INT2 = 21, 25
NATIVE_BITS = (2, 4, 8)        # bit-widths with an ONNX integer type of their own


def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or an ImportError that says how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ImportError(f"ONNX export needs onnx and onnxruntime ({exc.name} is missing); install the "
                          "package's deploy extra: pip install -e .[deploy]") from None
    return onnx, onnxruntime


def _int_type(onnx: Any, bits: int, signed: bool) -> int:
    """The ONNX element type that carries ``bits``-bit codes: its own type for 2, 4, 8 bits, else 8 bits."""
    width = bits if bits in NATIVE_BITS else 8
    return getattr(onnx.TensorProto, f"{'' if signed else 'U'}INT{width}")


class _Builder:
    """Collects nodes and initializers; each helper returns the name of the value it made."""

    def __init__(self, onnx: Any) -> None:
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def int_const(self, hint: str, values: np.ndarray, bits: int, signed: bool) -> str:
        """An integer initializer in the type that carries ``bits``, as raw bytes: ONNX packs INT4 two to a byte
        and INT2 four to a byte, first element in the low bits, which is ``pack_codes``'s layout."""
        name = self.name(hint)
        values = np.asarray(values, dtype=np.int64)
        width = bits if bits in NATIVE_BITS else 8
        self.inits.append(self.helper.make_tensor(name, _int_type(self.onnx, bits, signed), list(values.shape),
                                                  pack_codes(values, width, signed).tobytes(), raw=True))
        return name

    def clip_to_bits(self, value: str, bits: int, signed: bool, hint: str) -> str:
        """A Clip to the ``bits``-bit range for codes carried in an 8-bit type (3, 5, 6 bits)."""
        if bits in NATIVE_BITS:
            return value
        qmin, qmax = int_range(bits, signed)
        return self.node("Clip", [value, self.int_const(f"{hint}_qmin", np.array(qmin), bits, signed),
                                  self.int_const(f"{hint}_qmax", np.array(qmax), bits, signed)], f"{hint}_clip")

    def dequantize(self, codes: str, bits: int, signed: bool, hint: str) -> str:
        """DequantizeLinear with scale 1 and zero point 0: the codes as float32 integers."""
        zero = self.int_const(f"{hint}_zero", np.array(0), bits, signed)
        return self.node("DequantizeLinear", [codes, self.const(f"{hint}_one", np.array(1.0, np.float32)), zero],
                         f"{hint}_dq")


def _layer(b: _Builder, op: dict, x: str, tensors: dict[str, Tensor]) -> str:
    name = op["name"]
    if op["a_step"] is None:                                   # the stem: uint8 pixels are its codes
        codes = b.node("Cast", [x], f"{name}_codes", to=b.onnx.TensorProto.FLOAT)
    else:
        bits, signed = op["a_bits"], op["a_signed"]
        q = b.node("QuantizeLinear", [x, b.const(f"{name}_a_step", np.array(op["a_step"], np.float32)),
                                      b.int_const(f"{name}_a_zero", np.array(0), bits, signed)], f"{name}_q")
        codes = b.dequantize(b.clip_to_bits(q, bits, signed, f"{name}_a"), bits, signed, f"{name}_a")
    w = b.int_const(f"{name}_w_codes", tensors[f"{name}.weight"].numpy(), op["w_bits"], True)
    weight = b.dequantize(b.clip_to_bits(w, op["w_bits"], True, f"{name}_w"), op["w_bits"], True, f"{name}_w")
    if op["op"] == "conv":
        pad_h, pad_w = op["padding"]
        acc = b.node("Conv", [codes, weight], f"{name}_acc", strides=op["stride"], dilations=op["dilation"],
                     pads=[pad_h, pad_w, pad_h, pad_w], group=op["groups"],
                     kernel_shape=op["weight_shape"][2:])
        multiplier = tensors[f"{name}.multiplier"].numpy().reshape(1, -1, 1, 1)
        bias = tensors[f"{name}.bias"].numpy()
        bias = bias.reshape(1, -1, 1, 1) if bias.ndim == 1 else bias[None]
    else:
        acc = b.node("Gemm", [codes, weight], f"{name}_acc", transB=1)
        multiplier, bias = tensors[f"{name}.multiplier"].numpy(), tensors[f"{name}.bias"].numpy()
    scaled = b.node("Mul", [acc, b.const(f"{name}_multiplier", multiplier)], f"{name}_mul")
    return b.node("Add", [scaled, b.const(f"{name}_bias", bias)], name)


def to_onnx(deployed: DeployedModel) -> Any:
    """The deployed model as an ``onnx.ModelProto``: input ``pixels`` uint8 ``(N, C, H, W)``, output ``logits``.

    Raises ValueError where a layer's accumulator could leave float32's exact integers (``acc_bound``).
    """
    onnx, _ = require_onnx()
    b = _Builder(onnx)
    wide = [op["name"] for op in deployed.layers if op["acc_bound"] >= FLOAT32_EXACT]
    if wide:
        raise ValueError(f"layers {wide} can accumulate beyond 2^24, where float32 Conv is no longer exact; "
                         "they have no exact ONNX form (use fewer bits there)")
    meta = deployed.meta
    values = {meta["input"]["name"]: "pixels"}
    for op in deployed.ops:
        kind = op["op"]
        if kind in ("conv", "linear"):
            out = _layer(b, op, values[op["input"]], deployed.tensors)
        elif kind == "relu":
            out = b.node("Relu", [values[op["input"]]], op["output"])
        elif kind == "relu6":
            out = b.node("Clip", [values[op["input"]], b.const("zero", np.array(0.0, np.float32)),
                                  b.const("six", np.array(6.0, np.float32))], op["output"])
        elif kind == "add":
            out = b.node("Add", [values[i] for i in op["inputs"]], op["output"])
        elif kind == "avgpool":               # float64 sum, then / (H * W), then float32: as the reference
            wide_x = b.node("Cast", [values[op["input"]]], f"{op['output']}_f64", to=onnx.TensorProto.DOUBLE)
            total = b.node("ReduceSum", [wide_x, b.const("hw_axes", np.array([2, 3], np.int64))],
                           f"{op['output']}_sum", keepdims=1)
            area = b.node("Mul", [b.node("Shape", [wide_x], "shape", start=2, end=3),
                                  b.node("Shape", [wide_x], "shape", start=3, end=4)], "area")
            mean = b.node("Div", [total, b.node("Cast", [area], "area_f64", to=onnx.TensorProto.DOUBLE)],
                          f"{op['output']}_mean")
            out = b.node("Cast", [mean], op["output"], to=onnx.TensorProto.FLOAT)
        elif kind == "flatten":
            out = b.node("Flatten", [values[op["input"]]], op["output"], axis=1)
        else:
            raise ValueError(f"unknown operation {kind!r} in the deployed model")
        values[op["output"]] = out
    b.nodes.append(onnx.helper.make_node("Identity", [values[deployed.output]], ["logits"], name="logits"))
    channels, height, width = meta["input"]["shape"]
    classes = deployed.tensors[f"{deployed.layers[-1]['name']}.multiplier"].numel()
    graph = onnx.helper.make_graph(
        b.nodes, meta.get("model", "mpq"),
        [onnx.helper.make_tensor_value_info("pixels", onnx.TensorProto.UINT8, ["batch", channels, height, width])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", classes])], b.inits)
    return _finish(onnx, graph, two_bit=any(op["w_bits"] == 2 or op["a_bits"] == 2 for op in deployed.layers))


def quantizer_model(step: float, bits: int, signed: bool) -> Any:
    """A graph of one activation quantizer as ``to_onnx`` writes it: float32 ``x`` -> Q -> (Clip) -> DQ -> ``codes``."""
    onnx, _ = require_onnx()
    b = _Builder(onnx)
    q = b.node("QuantizeLinear", ["x", b.const("step", np.array(step, np.float32)),
                                  b.int_const("zero", np.array(0), bits, signed)], "q")
    codes = b.dequantize(b.clip_to_bits(q, bits, signed, "a"), bits, signed, "a")
    b.nodes.append(onnx.helper.make_node("Identity", [codes], ["codes"], name="codes"))
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(b.nodes, "quantizer", [value("x", onnx.TensorProto.FLOAT, ["n"])],
                                   [value("codes", onnx.TensorProto.FLOAT, ["n"])], b.inits)
    return _finish(onnx, graph, two_bit=bits == 2)


def _finish(onnx: Any, graph: Any, two_bit: bool) -> Any:
    """A checked model of ``graph`` at opset 21, or 25 where a 2-bit type occurs."""
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET_INT2 if two_bit
                                                                                  else OPSET_INT4)],
                                   producer_name="mpq")
    model.ir_version = 11 if two_bit else 10
    onnx.checker.check_model(model)
    return model


def session(model: Any, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session that runs ``model`` (a ModelProto, bytes or a path) exactly as written."""
    onnx, ort = require_onnx()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # no QLinearConv, no folding
    options.enable_mem_reuse = False      # reuse across sub-byte tensors corrupts the heap (module docstring)
    options.enable_mem_pattern = False
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(sess: Any, pixels: Tensor) -> Tensor:
    """Logits ``(B, classes)`` of uint8 images ``(B, C, H, W)`` from an ONNX Runtime session."""
    return torch.from_numpy(sess.run(["logits"], {"pixels": pixels.numpy()})[0])


# --- BitOPs counted on the graph ------------------------------------------------------------------------

_TYPE_BITS = {"INT2": (2, True), "UINT2": (2, False), "INT4": (4, True), "UINT4": (4, False),
              "INT8": (8, True), "UINT8": (8, False)}


def graph_bitops(model: Any) -> int:
    """BitOPs of an exported graph, counted from the graph alone: per Conv and Gemm, ``w_bits * a_bits * MACs``.

    Bits come from each operand's integer type, narrowed by a Clip where there is one; MACs from the weight's
    shape and the inferred output shape. It should equal the package's accounting (``mpq.method.cost``).
    """
    onnx, _ = require_onnx()
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    inits = {t.name: t for t in graph.initializer}
    types = {v.name: v.type.tensor_type for v in list(graph.value_info) + list(graph.input) + list(graph.output)}

    def elem_bits(name: str) -> int:
        elem = inits[name].data_type if name in inits else types[name].elem_type
        return _TYPE_BITS[onnx.TensorProto.DataType.Name(elem)][0]

    def bits_of(value: str) -> int:
        node = producer[value]
        if node.op_type == "Cast":                        # the stem: uint8 pixels
            return elem_bits(node.input[0])
        if node.op_type != "DequantizeLinear":
            raise ValueError(f"{value}: a Conv/Gemm operand that is not dequantized codes")
        src = node.input[0]
        clip = producer.get(src)
        if clip is not None and clip.op_type == "Clip":
            lo, hi = (int(onnx.numpy_helper.to_array(inits[n])) for n in clip.input[1:3])
            return int(math.log2(hi - lo + 1))
        return elem_bits(src)

    def weight_dims(value: str) -> list[int]:
        src = producer[value].input[0]
        src = producer[src].input[0] if src in producer else src          # through the Clip
        return list(inits[src].dims)

    total = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        dims = weight_dims(node.input[1])
        macs = int(np.prod(dims))                       # C_out * C_in / groups * k_h * k_w (Gemm: C_out * C_in)
        if node.op_type == "Conv":
            out_shape = [d.dim_value for d in types[node.output[0]].shape.dim]
            macs *= out_shape[2] * out_shape[3]
        total += bits_of(node.input[0]) * bits_of(node.input[1]) * macs
    return total
