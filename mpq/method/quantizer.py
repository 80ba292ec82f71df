"""Per-tensor LSQ fake quantization (Esser et al., ICLR 2020).

Tang et al. (CVPR 2024, Sec. 3) quantize every conv/linear weight and its input activation with
LSQ; in the weight-coupled supernet each quantizer keeps one learnable step size *per candidate
bit-width* while the weights are shared. This module holds:

* pure functions: integer ranges, LSQ gradient scale, step-size initialisation, the quantizer
  written with plain autograd ops (``lsq_reference``, the test oracle) and the fused fast version
  (``lsq_fake_quant``) used in training;
* ``LSQQuantizer``: a thin ``nn.Module`` holding the per-bit-width step sizes.

The quantizer is ``q(x) = s * round(clamp(x / s, qmin, qmax))`` with a straight-through estimator
for ``round``, so the step size ``s`` gets LSQ's gradient through both the divide and the multiply:
``dq/ds = round(v) - v`` inside the range and ``qmin`` / ``qmax`` outside it, with ``v = x / s``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mpq.method import cpu_kernels

logger = logging.getLogger(__name__)

_MIN_STEP = 1e-8  # floor for initial step sizes: a zero step would divide by zero in x / s


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)`` of a ``bits``-bit quantizer.

    Signed: ``[-2^(b-1), 2^(b-1) - 1]``; unsigned: ``[0, 2^b - 1]``.

    ====  ======  ============
    bits  signed  (qmin, qmax)
    ====  ======  ============
    2     True    (-2, 1)
    2     False   (0, 3)
    4     True    (-8, 7)
    4     False   (0, 15)
    8     True    (-128, 127)
    8     False   (0, 255)
    ====  ======  ============

    Raises:
        ValueError: if ``bits < 1``.
    """
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got bits={bits}")
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def lsq_grad_scale(numel: int, qmax: int) -> float:
    """LSQ's step-size gradient scale ``1 / sqrt(numel * qmax)`` (Esser et al., Sec. 2.2).

    ``numel`` is the number of weights (weight quantizer) or of features per sample (activation
    quantizer); ``qmax`` is the upper end of the integer range (``Q_P`` in LSQ).
    """
    if numel < 1 or qmax < 1:
        raise ValueError(f"LSQ gradient scale needs numel >= 1 and qmax >= 1, got numel={numel}, qmax={qmax}")
    return 1.0 / math.sqrt(numel * qmax)


def init_weight_step(weight: Tensor, bits: int) -> float:
    """Initial weight step ``max(|mean - 3 std|, |mean + 3 std|) / 2^(b-1)`` (3-sigma rule).

    ``weight`` may have any shape; statistics are over all its elements (population std, so a
    single-element tensor is well defined). Floored at ``1e-8``.
    """
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got bits={bits}")
    w = weight.detach().double()  # float64: the statistic should not depend on reduction order
    mean, std = w.mean().item(), w.std(correction=0).item()
    return max(max(abs(mean - 3 * std), abs(mean + 3 * std)) / 2 ** (bits - 1), _MIN_STEP)


def init_act_step(x: Tensor, bits: int, signed: bool) -> float:
    """Initial activation step ``2 * mean(|x|) / sqrt(qmax)`` (LSQ's initialisation).

    ``qmax`` is the top of ``int_range(bits, signed)``. Floored at ``1e-8`` (e.g. all-zero x).
    """
    _, qmax = int_range(bits, signed)
    if qmax < 1:
        raise ValueError(f"the {bits}-bit {'signed' if signed else 'unsigned'} range has qmax={qmax} < 1")
    mean_abs = x.detach().double().abs().mean().item()
    return max(2.0 * mean_abs / math.sqrt(qmax), _MIN_STEP)


# Straight-through tricks used by the oracle.
def _round_ste(v: Tensor) -> Tensor:
    """``round(v)`` forward, identity backward."""
    return (v.round() - v).detach() + v


def _scale_grad(t: Tensor, scale: float) -> Tensor:
    """``t`` forward, gradient multiplied by ``scale`` backward.

    Written ``(t*g - (t*g).detach()) + t.detach()`` rather than LSQ's ``(t - t*g).detach() + t*g``:
    the latter can be one ulp away from ``t``, which flips roundings at half-points; here the
    forward value is exactly ``t + 0``.
    """
    scaled = t * scale
    return (scaled - scaled.detach()) + t.detach()


def _check_args(step_size: Tensor, qmin: int, qmax: int) -> None:
    if step_size.numel() != 1:
        raise ValueError(f"step_size must hold one element (per-tensor LSQ), got {tuple(step_size.shape)}")
    if qmin > qmax:
        raise ValueError(f"empty integer range: qmin={qmin} > qmax={qmax}")


def lsq_reference(x: Tensor, step_size: Tensor, qmin: int, qmax: int, grad_scale: float = 1.0) -> Tensor:
    """LSQ fake quantization with plain differentiable torch ops: the oracle for ``lsq_fake_quant``.

    Args:
        x: any shape, float.
        step_size: 0-d or 1-element tensor ``s``; its gradient keeps its shape.
        qmin, qmax: integer range (see ``int_range``).
        grad_scale: multiplies the gradient reaching ``step_size`` (see ``lsq_grad_scale``).

    Returns:
        ``s * round(clamp(x / s, qmin, qmax))``, same shape as ``x``.
    """
    _check_args(step_size, qmin, qmax)
    s = _scale_grad(step_size.reshape(()), grad_scale)
    v = torch.clamp(x / s, qmin, qmax)  # clamp's backward passes where qmin <= x/s <= qmax (inclusive)
    return _round_ste(v) * s


class _LSQFakeQuant(torch.autograd.Function):
    """Fused LSQ: same values and gradients as ``lsq_reference``, far fewer passes over memory.

    What is saved: a bool mask ``inside`` (qmin <= v <= qmax, 1 byte/element) and the
    per-element ``residual = dq/ds``: ``round(v) - v`` inside, ``qmin`` or ``qmax`` outside.
    Measured on a 2-core CPU this beats saving ``x`` and recomputing in backward (4.3x vs 3.5x
    over the oracle): the forward already has ``v`` and the clamped value in hand, so the extra
    work there is two in-place passes, and backward shrinks to one multiply, one sum and one
    masked multiply sharing a buffer. The alternative ``dot(g, round(c)) - dot(g*inside, v)`` is a
    little cheaper but loses ~1e-3 relative accuracy to cancellation, so the residual is formed
    element-wise and summed with torch's cascade sum.
    """

    @staticmethod
    def forward(ctx, x: Tensor, step_size: Tensor, qmin: int, qmax: int, grad_scale: float) -> Tensor:
        need_x, need_s = ctx.needs_input_grad[:2]
        ctx.grad_scale = grad_scale
        ctx.step_meta = (step_size.shape, step_size.dtype, step_size.device)
        fused = cpu_kernels.lsq_forward_train(x, step_size, qmin, qmax)   # one pass, same bits; None: not here
        if fused is not None:
            out, inside, residual = fused
            ctx.save_for_backward(inside if need_x else None, residual if need_s else None)
            return out
        s = step_size.reshape(())
        v = torch.div(x, s)  # float buffers: v and out only (v is reused for residual); keep x layout
        out = torch.clamp(v, qmin, qmax)
        inside = torch.eq(out, v)  # == (qmin <= v <= qmax); False for NaN, like clamp's backward
        out.round_()
        residual = None
        if need_s:
            # round(c) - v inside; round(c) = qmin or qmax outside, reusing v's buffer
            # (where, not a multiply by the bool mask: that would cast the mask to float, a hidden copy)
            residual = torch.where(inside, torch.sub(out, v, out=v), out, out=v)
        ctx.save_for_backward(inside if need_x else None, residual)
        return out.mul_(s)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        inside, residual = ctx.saved_tensors
        grad_x = grad_s = None
        buf = None
        if inside is not None and residual is not None:
            fused = cpu_kernels.lsq_backward(grad_out, inside, residual)   # one pass; torch still sums
            if fused is not None:
                grad_x, product = fused
                shape, dtype, device = ctx.step_meta
                grad_s = (product.sum() * ctx.grad_scale).reshape(shape).to(dtype=dtype, device=device)
                return grad_x, grad_s, None, None, None
        if residual is not None:
            buf = torch.mul(grad_out, residual)
            shape, dtype, device = ctx.step_meta
            grad_s = (buf.sum() * ctx.grad_scale).reshape(shape).to(dtype=dtype, device=device)
        if inside is not None:
            # straight-through inside the range, zero outside; reuse buf: one allocation for both
            zero = grad_out.new_zeros(())
            grad_x = torch.where(inside, grad_out, zero, out=buf) if buf is not None else torch.where(inside, grad_out, zero)
        return grad_x, grad_s, None, None, None


def lsq_fake_quant(x: Tensor, step_size: Tensor, qmin: int, qmax: int, grad_scale: float = 1.0) -> Tensor:
    """LSQ fake quantization ``s * round(clamp(x / s, qmin, qmax))``, fast path used in training.

    Same values and gradients (w.r.t. ``x`` and ``step_size``) as ``lsq_reference``, via a fused
    autograd Function. Works on CPU and CUDA, any shape, keeps ``x``'s memory format
    (e.g. channels_last). ``step_size`` is a positive 0-d or 1-element tensor (not checked for
    positivity: that would need a device sync).

    Args:
        x: any shape, float.
        step_size: 0-d or 1-element tensor; its gradient has the same shape.
        qmin, qmax: integer range (see ``int_range``).
        grad_scale: multiplies the gradient reaching ``step_size`` (see ``lsq_grad_scale``).
    """
    _check_args(step_size, qmin, qmax)
    if torch.is_grad_enabled() and (x.requires_grad or step_size.requires_grad):
        return _LSQFakeQuant.apply(x, step_size, qmin, qmax, grad_scale)
    # no autograd (evaluation, bit-width search): one pass on CPU, else four in-place passes; nothing saved
    fused = cpu_kernels.lsq_forward_eval(x, step_size, qmin, qmax)
    if fused is not None:
        return fused
    s = step_size.reshape(())
    return torch.div(x, s).clamp_(qmin, qmax).round_().mul_(s)


def _validate_bit_choices(bit_choices: Sequence[int], signed: bool) -> tuple[int, ...]:
    choices = tuple(bit_choices)
    if not choices:
        raise ValueError("bit_choices must not be empty")
    for bits in choices:
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
            raise ValueError(f"bit_choices must be ints >= 1, got {choices}")
    if len(set(choices)) != len(choices):
        raise ValueError(f"bit_choices must be unique, got {choices}")
    if signed and 1 in choices:
        # the signed 1-bit range is {-1, 0}: qmax = 0 leaves LSQ's init and gradient scale undefined
        raise ValueError(f"a signed quantizer needs bits >= 2, got bit_choices={choices}")
    return tuple(sorted(choices))


class LSQQuantizer(nn.Module):
    """One per-tensor LSQ quantizer holding one learnable step size per candidate bit-width.

    Step sizes are not shared across bit-widths (Tang et al., Sec. 3: weights are coupled, step
    sizes are not). ``bits`` selects the active one; ``None`` means pass-through. Step sizes must
    be set by calibration (``init_from_weight`` / ``init_from_activation``) or ``load_state_dict``
    before quantizing: forward never initialises lazily.

    Args:
        bit_choices: candidate bit-widths (ints >= 1, unique; >= 2 when signed).
        signed: signed range (weights, pre-activations) or unsigned (post-ReLU activations).
        grad_scaling: multiply the step gradient by LSQ's ``1 / sqrt(numel * qmax)``.
        per_sample_numel: for the gradient scale count elements per sample (``x[0].numel()``,
            LSQ's rule for activations) instead of all of ``x`` (LSQ's rule for weights).
    """

    def __init__(
        self,
        bit_choices: Sequence[int],
        signed: bool,
        grad_scaling: bool = False,
        per_sample_numel: bool = False,
    ) -> None:
        super().__init__()
        self.bit_choices: tuple[int, ...] = _validate_bit_choices(bit_choices, signed)
        self.signed = signed
        self.grad_scaling = grad_scaling
        self.per_sample_numel = per_sample_numel
        self.bits: int | None = None
        self.step_size = nn.ParameterDict(
            {str(bits): nn.Parameter(torch.tensor(1.0, dtype=torch.float32)) for bits in self.bit_choices}
        )
        self.register_buffer("initialized", torch.tensor(False))
        # Python mirror of `initialized`: reading the buffer in forward would make a GPU wait for the
        # host on every call (a device sync per quantizer, ~160 per one-shot step of ResNet-20)
        self._ready = False

    def set_bits(self, bits: int | None) -> None:
        """Select the active bit-width, or ``None`` for pass-through."""
        if bits is not None and (isinstance(bits, bool) or bits not in self.bit_choices):
            raise ValueError(f"bits={bits!r} is not one of bit_choices={self.bit_choices} (or None)")
        self.bits = None if bits is None else int(bits)

    @torch.no_grad()
    def init_from_weight(self, weight: Tensor) -> None:
        """Set every candidate's step with ``init_weight_step`` and mark the quantizer initialised."""
        for bits in self.bit_choices:
            self.step_size[str(bits)].fill_(init_weight_step(weight, bits))
        self.initialized.fill_(True)
        self._ready = True
        logger.debug("weight steps initialised: %s", self._steps_str())

    @torch.no_grad()
    def init_from_activation(self, x: Tensor) -> None:
        """Set every candidate's step with ``init_act_step`` and mark the quantizer initialised."""
        for bits in self.bit_choices:
            self.step_size[str(bits)].fill_(init_act_step(x, bits, self.signed))
        self.initialized.fill_(True)
        self._ready = True
        logger.debug("activation steps initialised: %s", self._steps_str())

    def forward(self, x: Tensor) -> Tensor:
        """Fake-quantize ``x`` (any shape) at ``self.bits``; identity when ``bits`` is None."""
        if self.bits is None:
            return x
        if not self._ready:
            self._ready = bool(self.initialized)     # set by hand, or by a path that bypassed the hooks below
        if not self._ready:
            raise RuntimeError(
                "LSQQuantizer is not initialised: call init_from_weight / init_from_activation "
                "(calibration) first, or load a state_dict"
            )
        qmin, qmax = int_range(self.bits, self.signed)
        grad_scale = 1.0
        if self.grad_scaling:
            numel = x[0].numel() if self.per_sample_numel else x.numel()
            grad_scale = lsq_grad_scale(numel, qmax)
        return lsq_fake_quant(x, self.step_size[str(self.bits)], qmin, qmax, grad_scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._ready = bool(self.initialized)         # one sync per load, not per forward

    def _steps_str(self) -> str:
        return ", ".join(f"{k}b={p.item():.4g}" for k, p in self.step_size.items())

    def extra_repr(self) -> str:
        return (
            f"bit_choices={self.bit_choices}, signed={self.signed}, bits={self.bits}, "
            f"grad_scaling={self.grad_scaling}, per_sample_numel={self.per_sample_numel}"
        )
