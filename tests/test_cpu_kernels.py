"""The one-pass CPU kernels (mpq.method.cpu_kernels) give the LSQ quantizer's torch ops' results bit for bit.

Every comparison is between the quantizer with its kernels and the same quantizer with them switched off
(``cpu_kernels.load`` patched to return None, which sends it down its torch ops): values, the saved masks and
residuals, gradients, output strides, and a whole one-shot step of two models.
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil

import pytest
import torch

from mpq.method import cpu_kernels
from mpq.models import create_model
from mpq.training.recipe import OneShotConfig
from mpq.training.hardware import place
from mpq.training.oneshot import train_step
from mpq.method.quantizer import _LSQFakeQuant, int_range, lsq_fake_quant
from mpq.method.supernet import Supernet

pytestmark = pytest.mark.skipif(
    cpu_kernels.load() is None and (os.environ.get("MPQ_CPU_KERNELS") == "0"
                                    or shutil.which("cc") is None and shutil.which("gcc") is None),
    reason="kernels switched off or no C compiler here: the quantizer runs its torch ops, which the other tests cover",
)


@pytest.fixture
def torch_ops(monkeypatch):
    """Switch the kernels off inside a ``with`` block."""
    class _Off:
        def __enter__(self):
            monkeypatch.setattr(cpu_kernels, "load", lambda: None)

        def __exit__(self, *exc):
            monkeypatch.undo()
    return _Off()


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns, so that -0.0 differs from 0.0 and NaN equals NaN."""
    return t.view(torch.int32) if t.dtype == torch.float32 else t


def _assert_same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, what
    assert a.stride() == b.stride(), f"{what}: strides {a.stride()} against {b.stride()}"
    assert torch.equal(_bits(a), _bits(b)), what


def _hard_values(n: int, step: float, qmin: int, qmax: int, gen: torch.Generator) -> torch.Tensor:
    """Random values across and beyond the range, plus the edge cases: half-points (ties round to even), the
    range ends and just past them, zeros of both signs, infinities and NaN."""
    x = torch.randn(n, generator=gen) * (qmax - qmin) / 2 * step
    halves = torch.arange(qmin, qmax + 1).float() + 0.5
    special = torch.cat([
        halves[torch.randperm(len(halves), generator=gen)[:16]] * step,
        torch.tensor([qmin, qmax, qmin - 1e-3, qmax + 1e-3, 1e30, -1e30]) * step,
        torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan")]),
    ])
    x[: len(special)] = special
    return x[torch.randperm(n, generator=gen)]


def test_the_kernels_build_here():
    """This machine has a C compiler (the module above is skipped otherwise), so the kernels must load: a broken
    build would otherwise only show as a slower quantizer."""
    assert cpu_kernels.load() is not None


@pytest.mark.parametrize("shape,channels_last", [
    ((4, 8, 7, 7), True),          # an activation as training keeps it
    ((4, 8, 7, 7), False),
    ((16, 1, 3, 3), False),        # a depthwise weight: size-1 dimension, whose stride decides a conv's layout
    ((16, 1, 3, 3), True),
    ((3, 1, 1, 40000), False),     # large enough for the kernels' second thread
    ((10, 33), False),
    ((257,), False),
])
@pytest.mark.parametrize("bits,signed", [(2, True), (3, False), (4, True), (6, False), (8, True)])
def test_forward_and_backward_equal_the_torch_ops_bit_for_bit(shape, channels_last, bits, signed, torch_ops):
    gen = torch.Generator().manual_seed(bits * 10 + signed)
    qmin, qmax = int_range(bits, signed)
    numel = torch.Size(shape).numel()
    for step in (0.125, 0.0371):          # a power of two puts the edge cases exactly on ties and ends
        x = _hard_values(numel, step, qmin, qmax, gen).reshape(shape)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        grad_out = torch.randn(shape, generator=gen)
        if channels_last:
            grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        results = []
        for kernels in (True, False):
            xr, sr = x.clone().requires_grad_(), torch.tensor(step).requires_grad_()
            with contextlib.nullcontext() if kernels else torch_ops:
                with torch.no_grad():
                    evaluated = lsq_fake_quant(xr, sr, qmin, qmax)
                out = _LSQFakeQuant.apply(xr, sr, qmin, qmax, 0.5)
                saved = list(out.grad_fn.saved_tensors)
                out.backward(grad_out)
            results.append((evaluated, out.detach(), *saved, xr.grad, sr.grad))
        names = ("evaluated", "out", "inside", "residual", "grad_x", "grad_step")
        for name, a, b in zip(names, *results):
            _assert_same(a, b, f"{name} at step {step}")


def test_inputs_the_kernels_do_not_take_go_through_the_torch_ops(torch_ops):
    """A strided view, float64 and an empty tensor: no kernel call, and the same results as with the kernels off."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(8, 20, generator=gen)
    step = torch.tensor(0.1)
    for x in (base[:, ::2], base.double(), torch.empty(0, 3)):
        assert cpu_kernels.lsq_forward_eval(x, step.to(x.dtype), -8, 7) is None
        assert cpu_kernels.lsq_forward_train(x, step.to(x.dtype), -8, 7) is None
        with torch_ops:
            expected = lsq_fake_quant(x, step.to(x.dtype), -8, 7)
        _assert_same(lsq_fake_quant(x, step.to(x.dtype), -8, 7), expected, str(x.dtype))


@pytest.mark.parametrize("model", ["resnet20", "mobilenetv2_28"])
def test_a_one_shot_step_is_the_same_with_and_without_the_kernels(model, torch_ops):
    """Max path, random paths, distillation, IDM and the penalty: every loss and gradient equal bit for bit.
    MobileNetV2 brings depthwise weights and signed activation ranges."""
    cfg = OneShotConfig(num_random_paths=2, idm=True, qe_max_path=True)
    torch.manual_seed(0)
    a = Supernet(create_model(model, width_mult=0.25), (1, 28, 28), cfg.supernet_spec())
    a.calibrate(torch.randn(16, 1, 28, 28))
    place(a, "cpu")                                # channels_last, with the AVX2 guard, as training runs
    a.train()
    b = copy.deepcopy(a)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 1, 28, 28, generator=gen).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,), generator=gen)
    stats_a = train_step(a, x, y, cfg, torch.Generator().manual_seed(2), 0.1)
    with torch_ops:
        stats_b = train_step(b, x, y, cfg, torch.Generator().manual_seed(2), 0.1)
    assert stats_a == stats_b
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert (pa.grad is None) == (pb.grad is None), name
        if pa.grad is not None:
            _assert_same(pa.grad, pb.grad, name)
    for (name, ba), bb in zip(a.named_buffers(), b.buffers()):
        assert torch.equal(ba, bb), name
