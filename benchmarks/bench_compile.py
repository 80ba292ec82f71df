"""Would a fused fake-quant kernel pay? The LSQ quantizer compiled with ``torch.compile`` against the eager one.

    python benchmarks/bench_compile.py --device cuda --batch-sizes 128 1024 --out compile.json

An experiment, not part of the library: it swaps ``mpq.method.quantizer.lsq_fake_quant`` in this process for a
version whose forward and backward are each one compiled function (inductor fuses divide, clamp, round,
multiply and the masks into one pass; with ``dynamic=True`` and the integer range passed as tensors, one
compilation serves every layer shape and bit-width). It reports, for ResNet-20 x0.5, the time of a float
training step, one fake-quantized path and one plain one-shot step with each quantizer, and the largest
difference between the two quantizers' values and gradients on a random tensor at each bit-width (the
library's quantizer is the oracle; a mismatch would rule the compiled one out). On a CPU the library's
quantizer now runs its own one-pass loops (``mpq.method.cpu_kernels``), so there this compares two fused versions.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import Tensor
from torch.nn import functional as F

from bench_throughput import _time          # the synchronising timer (this script's folder is on sys.path)

import mpq.method.quantizer as quantizer
from mpq.training.checkpoint import write_json
from mpq.training.hardware import place
from mpq.models import create_model
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import train_step
from mpq.method.supernet import Supernet


def _forward(x: Tensor, s: Tensor, qmin: Tensor, qmax: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    v = x / s
    c = torch.minimum(torch.maximum(v, qmin), qmax)
    inside = c == v
    r = torch.round(c)
    return r * s, inside, torch.where(inside, r - v, r)


def _backward(g: Tensor, inside: Tensor, residual: Tensor) -> tuple[Tensor, Tensor]:
    return torch.where(inside, g, torch.zeros_like(g)), (g * residual).sum()


_BOUNDS: dict = {}


def _layout(t: Tensor) -> torch.memory_format:
    """The dense layout to keep ``t`` in (channels_last activations stay so), so its storage can be read flat."""
    channels_last = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def _flat(t: Tensor) -> Tensor:
    """A dense tensor's storage as 1-d: the compiled functions then see one rank and no size-1 dimensions,
    so one compilation serves every layer (elementwise work does not care about the order)."""
    return t.as_strided((t.numel(),), (1,))


class _Compiled(torch.autograd.Function):
    forward_fn = backward_fn = None

    @staticmethod
    def forward(ctx, x, step_size, qmin, qmax, grad_scale):
        ctx.layout = _layout(x)
        x = x.contiguous(memory_format=ctx.layout)
        s = step_size.reshape(())
        key = (qmin, qmax, x.dtype, x.device)
        if key not in _BOUNDS:                    # the integer range as tensors: no recompilation per bit-width
            _BOUNDS[key] = torch.tensor([qmin, qmax], dtype=x.dtype, device=x.device)
        bounds = _BOUNDS[key]
        out, inside, residual = _Compiled.forward_fn(_flat(x), s, bounds[0], bounds[1])
        ctx.save_for_backward(inside, residual)
        ctx.grad_scale, ctx.step_shape, ctx.x_shape, ctx.x_stride = grad_scale, step_size.shape, x.shape, x.stride()
        return out.as_strided(x.shape, x.stride())

    @staticmethod
    def backward(ctx, grad_out):
        inside, residual = ctx.saved_tensors
        g = grad_out.contiguous(memory_format=ctx.layout)       # the gradient in x's layout: same storage order
        grad_x, grad_s = _Compiled.backward_fn(_flat(g), inside, residual)
        return (grad_x.as_strided(ctx.x_shape, ctx.x_stride), (grad_s * ctx.grad_scale).reshape(ctx.step_shape),
                None, None, None)


def compiled_fake_quant(x: Tensor, step_size: Tensor, qmin: int, qmax: int, grad_scale: float = 1.0) -> Tensor:
    if torch.is_grad_enabled() and (x.requires_grad or step_size.requires_grad):
        return _Compiled.apply(x, step_size, qmin, qmax, grad_scale)
    s = step_size.reshape(())
    return torch.div(x, s).clamp_(qmin, qmax).round_().mul_(s)


def agreement(device: torch.device) -> dict:
    """Largest |difference| of values and input gradients, and the relative difference of the step-size gradient
    (a sum over every element, so its order of summation differs), compiled against the library's quantizer."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 16, 14, 14, generator=gen).to(device)
    out = {}
    for bits in (2, 3, 4, 6):
        qmin, qmax = quantizer.int_range(bits, signed=True)
        results = []
        for fn in (quantizer.lsq_fake_quant, compiled_fake_quant):
            x = x0.clone().requires_grad_()
            s = torch.tensor(0.3, device=device, requires_grad=True)
            y = fn(x, s, qmin, qmax, 0.5)
            torch.manual_seed(bits)
            g = torch.randn(y.shape, device=device)
            y.backward(g)
            results.append((y.detach(), x.grad, s.grad))
        (v0, gx0, gs0), (v1, gx1, gs1) = results
        out[str(bits)] = {"value": float((v0 - v1).abs().max()), "grad_x": float((gx0 - gx1).abs().max()),
                          "grad_step_relative": float((gs0 - gs1).abs() / gs0.abs())}   # a sum: order differs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    _Compiled.forward_fn = torch.compile(_forward, dynamic=True, fullgraph=True)
    _Compiled.backward_fn = torch.compile(_backward, dynamic=True, fullgraph=True)
    eager = quantizer.lsq_fake_quant
    result = {"device": str(device), "torch": torch.__version__,
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    start = time.perf_counter()
    result["max_abs_difference"] = agreement(device)
    result["first_compile_seconds"] = round(time.perf_counter() - start, 1)
    torch.manual_seed(0)
    float_model = create_model("resnet20", width_mult=0.5)
    supernet = Supernet(create_model("resnet20", width_mult=0.5), (1, 28, 28))
    supernet.calibrate(torch.randn(256, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    place(float_model, device), place(supernet, device)
    cfg = OneShotConfig(scheduler=False, idm=False)
    fp_opt = torch.optim.SGD(float_model.parameters(), lr=1e-3, momentum=0.9)
    sn_opt = torch.optim.SGD(supernet.parameters(), lr=1e-3, momentum=0.9)
    result["batches"] = {}
    for batch in args.batch_sizes:
        x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last).to(device)
        y = torch.randint(0, 10, (batch,)).to(device)
        gen = torch.Generator().manual_seed(0)

        def fp_step():
            fp_opt.zero_grad(set_to_none=True)
            F.cross_entropy(float_model(x), y).backward()
            fp_opt.step()

        def fq_path():
            supernet.set_config(supernet.sample_config(gen))
            sn_opt.zero_grad(set_to_none=True)
            F.cross_entropy(supernet(x), y).backward()
            sn_opt.step()

        def oneshot_step():
            sn_opt.zero_grad(set_to_none=True)
            train_step(supernet, x, y, cfg, gen, qe_weight=0.0)
            sn_opt.step()

        times = {k: [] for k in ("fp_train", "fq_path_eager", "fq_path_compiled", "oneshot_eager", "oneshot_compiled")}
        for fn in (fp_step, fq_path, oneshot_step):
            fn()
        quantizer.lsq_fake_quant = compiled_fake_quant
        for _ in range(3):                        # warm-up: compile the shapes of this batch size
            fq_path(), oneshot_step()
        quantizer.lsq_fake_quant = eager
        for _ in range(args.rounds):              # interleaved, so drift hits both alike
            times["fp_train"].append(_time(fp_step, args.reps, device))
            for name, fn in (("eager", eager), ("compiled", compiled_fake_quant)):
                quantizer.lsq_fake_quant = fn
                times[f"fq_path_{name}"].append(_time(fq_path, args.reps, device))
                times[f"oneshot_{name}"].append(_time(oneshot_step, max(1, args.reps // 4), device))
            quantizer.lsq_fake_quant = eager
        med = {k: statistics.median(v) for k, v in times.items()}
        result["batches"][str(batch)] = {
            "ms": {k: round(1e3 * v, 2) for k, v in med.items()},
            "ratio_fq_vs_fp": {n: round(med[f"fq_path_{n}"] / med["fp_train"], 3) for n in ("eager", "compiled")},
            "ratio_oneshot_vs_fp": {n: round(med[f"oneshot_{n}"] / med["fp_train"], 3) for n in ("eager", "compiled")}}
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()
