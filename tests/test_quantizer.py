"""Tests for mpq.method.quantizer: integer ranges, fused LSQ vs its plain-autograd oracle, the module."""

from __future__ import annotations

import math

import pytest
import torch

from mpq.method.quantizer import (LSQQuantizer, init_act_step, init_weight_step, int_range, lsq_fake_quant,
                                  lsq_grad_scale, lsq_reference)


@pytest.mark.parametrize(
    ("bits", "signed", "expected"),
    [
        (1, False, (0, 1)),
        (1, True, (-1, 0)),
        (2, True, (-2, 1)),
        (2, False, (0, 3)),
        (4, True, (-8, 7)),
        (4, False, (0, 15)),
        (8, True, (-128, 127)),
        (8, False, (0, 255)),
    ],
)
def test_int_range_table(bits, signed, expected):
    assert int_range(bits, signed) == expected


@pytest.mark.parametrize("bits", [0, -3])
def test_int_range_rejects_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        int_range(bits, signed=True)


def test_lsq_grad_scale():
    assert lsq_grad_scale(100, 4) == pytest.approx(1 / 20)
    with pytest.raises(ValueError):
        lsq_grad_scale(10, 0)


def _make_input(gen: torch.Generator, bits: int, signed: bool, step: float) -> torch.Tensor:
    """Random shape; random values plus values exactly on the bounds, just past them, at half-points."""
    qmin, qmax = int_range(bits, signed)
    ndim = int(torch.randint(1, 5, (1,), generator=gen))
    shape = [int(d) for d in torch.randint(1, 6, (ndim,), generator=gen)]
    shape[-1] += 24  # room for the special values below
    x = (torch.randn(shape, generator=gen) * (qmax - qmin) / 3 * step).flatten()
    halves = torch.arange(qmin, qmax).float() + 0.5
    halves = halves[torch.randperm(len(halves), generator=gen)[:8]]
    special = torch.cat([
        torch.tensor([qmin, qmax, qmin - 0.5, qmax + 0.5, qmin - 1e-3, qmax + 1e-3, 0.0, qmax - 0.5]),
        halves,
    ]) * step
    x[: len(special)] = special
    return x[torch.randperm(x.numel(), generator=gen)].reshape(shape)


def _run(fn, x, step, qmin, qmax, grad_scale, grad_out):
    x = x.clone().requires_grad_()
    s = step.clone().requires_grad_()
    out = fn(x, s, qmin, qmax, grad_scale)
    out.backward(grad_out)
    return out.detach(), x.grad, s.grad


@pytest.mark.parametrize("grad_scale", [1.0, 0.0137])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", range(2, 9))
def test_fast_matches_reference(bits, signed, grad_scale):
    gen = torch.Generator().manual_seed(1000 * bits + 10 * signed + int(grad_scale == 1.0))
    qmin, qmax = int_range(bits, signed)
    # a power-of-two step makes x / s exact, so the special values land exactly on bounds and
    # half-points; a random step covers the general case
    for step_value in (0.125, float(torch.rand((), generator=gen)) * 0.2 + 0.01):
        step = torch.tensor(step_value)
        x = _make_input(gen, bits, signed, step_value)
        grad_out = torch.randn(x.shape, generator=gen)
        out_f, gx_f, gs_f = _run(lsq_fake_quant, x, step, qmin, qmax, grad_scale, grad_out)
        out_r, gx_r, gs_r = _run(lsq_reference, x, step, qmin, qmax, grad_scale, grad_out)
        assert torch.equal(out_f, out_r)
        torch.testing.assert_close(gx_f, gx_r, rtol=1e-6, atol=1e-6)
        assert gs_f.shape == step.shape
        # the oracle sums two autograd paths that cancel; allow for float32 rounding of each
        tol = 1e-5 * grad_scale * float(grad_out.abs().sum()) * max(-qmin, qmax)
        torch.testing.assert_close(gs_f, gs_r, rtol=1e-5, atol=tol)


def test_gradient_at_bounds_is_inclusive():
    step = torch.tensor(0.5)
    qmin, qmax = int_range(3, signed=True)
    x = torch.tensor([qmin - 1e-3, qmin, qmin + 0.25, qmax, qmax + 1e-3]) * step
    for fn in (lsq_reference, lsq_fake_quant):
        _, gx, gs = _run(fn, x, step, qmin, qmax, 1.0, torch.ones(5))
        assert gx.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
        # qmin + 0 + (round(qmin + .25) - (qmin + .25)) + 0 + qmax
        assert gs.item() == pytest.approx(qmin - 0.25 + qmax)


@pytest.mark.parametrize("signed", [True, False])
def test_values_on_grid_and_in_range(signed):
    gen = torch.Generator().manual_seed(7)
    step = torch.tensor(0.0371)
    for bits in (2, 4, 8):
        qmin, qmax = int_range(bits, signed)
        x = torch.randn(3, 50, generator=gen) * qmax * 0.05
        out = lsq_fake_quant(x.requires_grad_(), step, qmin, qmax)
        levels = out.detach() / step
        torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
        assert levels.min() >= qmin - 1e-4 and levels.max() <= qmax + 1e-4


def test_step_gradient_shape_and_partial_requires_grad():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 9, generator=gen)
    grad_out = torch.randn(4, 9, generator=gen)
    step = torch.tensor([0.3])  # 1-element, not 0-d
    out_f, gx_f, gs_f = _run(lsq_fake_quant, x, step, -8, 7, 0.5, grad_out)
    out_r, gx_r, gs_r = _run(lsq_reference, x, step, -8, 7, 0.5, grad_out)
    assert gs_f.shape == (1,) and torch.equal(out_f, out_r)
    torch.testing.assert_close(gs_f, gs_r)
    # only one input needing a gradient, and no autograd at all
    s = step.clone().requires_grad_()
    lsq_fake_quant(x, s, -8, 7, 0.5).backward(grad_out)
    torch.testing.assert_close(s.grad, gs_r)
    xg = x.clone().requires_grad_()
    lsq_fake_quant(xg, step, -8, 7).backward(grad_out)
    torch.testing.assert_close(xg.grad, gx_r)
    with torch.no_grad():
        assert torch.equal(lsq_fake_quant(xg, s, -8, 7), out_r)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="one element"):
        lsq_fake_quant(torch.randn(3), torch.ones(2), 0, 3)
    with pytest.raises(ValueError, match="qmin"):
        lsq_fake_quant(torch.randn(3), torch.tensor(1.0), 3, 0)


def test_channels_last_preserved():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 5, 4, generator=gen).to(memory_format=torch.channels_last)
    grad_out = torch.randn(2, 6, 5, 4, generator=gen).to(memory_format=torch.channels_last)
    step = torch.tensor(0.1)
    out_f, gx_f, gs_f = _run(lsq_fake_quant, x, step, 0, 15, 1.0, grad_out)
    out_r, gx_r, gs_r = _run(lsq_reference, x, step, 0, 15, 1.0, grad_out)
    assert out_f.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out_f, out_r)
    torch.testing.assert_close(gx_f, gx_r)
    torch.testing.assert_close(gs_f, gs_r)
    with torch.no_grad():
        assert lsq_fake_quant(x, step, 0, 15).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(11)
    x = _make_input(gen, 4, True, 0.125)
    grad_out = torch.randn(x.shape, generator=gen)
    step = torch.tensor(0.125)
    out_c, gx_c, gs_c = _run(lsq_fake_quant, x, step, -8, 7, 0.3, grad_out)
    out_g, gx_g, gs_g = _run(lsq_fake_quant, x.cuda(), step.cuda(), -8, 7, 0.3, grad_out.cuda())
    assert torch.equal(out_g.cpu(), out_c)
    torch.testing.assert_close(gx_g.cpu(), gx_c)
    torch.testing.assert_close(gs_g.cpu(), gs_c)


def test_init_weight_step_hand_computed():
    w = torch.tensor([[1.0, -1.0], [3.0, 1.0]])
    # mean 1, population std sqrt(((0)+(4)+(4)+(0))/4) = sqrt(2); max(|1-3√2|, |1+3√2|) = 1+3√2
    assert init_weight_step(w, 4) == pytest.approx((1 + 3 * math.sqrt(2)) / 8)
    assert init_weight_step(torch.zeros(5), 2) == pytest.approx(1e-8)


def test_init_act_step_hand_computed():
    x = torch.tensor([1.0, -2.0, 3.0, 0.0])
    assert init_act_step(x, 4, signed=False) == pytest.approx(2 * 1.5 / math.sqrt(15))
    assert init_act_step(x, 4, signed=True) == pytest.approx(2 * 1.5 / math.sqrt(7))
    assert init_act_step(torch.zeros(3), 4, signed=False) == pytest.approx(1e-8)


def test_quantizer_validation_and_set_bits():
    q = LSQQuantizer([8, 2, 4], signed=True)
    assert q.bit_choices == (2, 4, 8)
    assert sorted(q.step_size.keys()) == ["2", "4", "8"]
    with pytest.raises(ValueError, match=r"bit_choices=\(2, 4, 8\)"):
        q.set_bits(3)
    for bad in ([], [2, 2], [0, 4], [1, 4]):  # signed 1-bit has no positive level
        with pytest.raises(ValueError):
            LSQQuantizer(bad, signed=True)
    assert LSQQuantizer([1, 2], signed=False).bit_choices == (1, 2)
    assert "bit_choices=(2, 4, 8)" in repr(q)


def test_quantizer_identity_and_requires_init():
    q = LSQQuantizer([2, 4], signed=False)
    x = torch.rand(2, 3)
    assert q(x) is x  # bits None: pass-through, even before calibration
    q.set_bits(4)
    with pytest.raises(RuntimeError, match="init_from_weight / init_from_activation"):
        q(x)
    q.init_from_activation(x)
    assert bool(q.initialized)
    assert q.step_size["2"].item() == pytest.approx(init_act_step(x, 2, signed=False))
    q.set_bits(None)
    assert q(x) is x


def test_quantizer_only_active_step_gets_gradient():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(4, 3, 3, 3, generator=gen)
    q = LSQQuantizer([2, 4, 8], signed=True)
    q.init_from_weight(w)
    q.set_bits(4)
    w.requires_grad_()
    q(w).sum().backward()
    assert q.step_size["4"].grad is not None
    assert q.step_size["2"].grad is None and q.step_size["8"].grad is None
    assert w.grad is not None


@pytest.mark.parametrize("per_sample_numel", [False, True])
def test_quantizer_grad_scaling(per_sample_numel):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 2, generator=gen)
    grads = []
    for grad_scaling in (False, True):
        q = LSQQuantizer([4], signed=True, grad_scaling=grad_scaling, per_sample_numel=per_sample_numel)
        q.init_from_activation(x)
        q.set_bits(4)
        q(x).sum().backward()
        grads.append(q.step_size["4"].grad)
    numel = 10 if per_sample_numel else 30
    torch.testing.assert_close(grads[1], grads[0] * lsq_grad_scale(numel, 7))


def test_quantizer_state_dict_round_trip():
    w = torch.tensor([0.5, -0.25, 0.75, 0.1])
    q = LSQQuantizer([2, 8], signed=True)
    q.init_from_weight(w)
    state = q.state_dict()
    assert set(state) == {"step_size.2", "step_size.8", "initialized"}
    fresh = LSQQuantizer([2, 8], signed=True)
    assert not bool(fresh.initialized)
    fresh.load_state_dict(state)
    assert bool(fresh.initialized)
    for k in ("2", "8"):
        assert torch.equal(fresh.step_size[k], q.step_size[k])
    fresh.set_bits(2)
    q.set_bits(2)
    assert torch.equal(fresh(w), q(w))


def test_quantizer_forward_reads_a_flag_not_the_buffer_and_loading_sets_it():
    """forward must not read the ``initialized`` buffer once ready (on a GPU that is a host sync per call);
    loading a state dict sets the flag either way."""
    w = torch.tensor([0.5, -0.25, 0.75, 0.1])
    q = LSQQuantizer([2], signed=True)
    q.init_from_weight(w)
    q.set_bits(2)
    expected = q(w)
    saved = q._buffers["initialized"]
    q._buffers["initialized"] = None            # bool(None) is False: reading it would raise below
    assert torch.equal(q(w), expected)
    q._buffers["initialized"] = saved
    state = {k: v.clone() for k, v in q.state_dict().items()}          # (a state dict shares the buffers)
    q.load_state_dict(LSQQuantizer([2], signed=True).state_dict())     # an uncalibrated state
    with pytest.raises(RuntimeError, match="not initialised"):
        q(w)
    q.load_state_dict(state)
    assert torch.equal(q(w), expected)
    by_hand = LSQQuantizer([2], signed=True)
    by_hand.initialized.fill_(True)              # set without the hooks: forward falls back to the buffer
    by_hand.set_bits(2)
    assert torch.equal(by_hand(w), lsq_reference(w, by_hand.step_size["2"], -2, 1))
