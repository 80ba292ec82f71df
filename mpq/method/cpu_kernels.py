"""One-pass CPU kernels for the LSQ quantizer's forward, built with the system C compiler on first use.

Written with torch ops, the quantizer's forward makes seven passes over memory (divide, clamp, compare,
round, subtract, select, multiply; ``quantizer._LSQFakeQuant``) and its backward three, and on a 2-core CPU
these passes are memory-bound. Over a channels_last 128x8x32x32 activation (AVX-512, 2 threads, medians of 5
interleaved rounds) the forward took 1.87 ms with torch ops and 0.15 ms as one loop; forward and backward
3.99 ms against 1.57 ms (the backward's sum stays torch's, below). This module compiles those loops from the
C source below with ``cc -O3 -march=native -fopenmp`` into a temporary folder once per process (about 0.1 s),
loads them with ``ctypes`` and removes the file. The OpenMP runtime they link is the one torch has already
loaded (same library name), so they share torch's threads and its thread count.

The kernels compute every element exactly as the torch ops do, in the same float32 operations in the
same order: ``v = x / s``, ``c = clamp(v, qmin, qmax)`` (NaN passes through), ``round`` half to even
(``nearbyintf``), ``c * s``. ``-ffp-contract=off`` keeps the compiler from fusing a multiply into an
add, and no fast-math flag is used, so the results are equal bit for bit to the torch path (the tests
check this on random tensors and on the edge cases: half-points, range ends, infinities, NaN).

Where no C compiler works (or ``MPQ_CPU_KERNELS=0`` is set), ``load()`` returns None and the quantizer
keeps its torch ops: same values, slower.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

_SOURCE = r"""
#include <math.h>
#include <stdint.h>

#define PARALLEL_FROM 32768   /* elements: below this, waking a second thread costs more than it saves */

/* LSQ forward for training: out = s * round(clamp(x / s)), and what backward needs:
   inside = (qmin <= x / s <= qmax), residual = d out / d s = round(c) - v inside, round(c) outside. */
void lsq_forward_train(const float *restrict x, float *restrict out, uint8_t *restrict inside,
                       float *restrict residual, int64_t n, float s, float qmin, float qmax) {
    #pragma omp parallel for schedule(static) if (n >= PARALLEL_FROM)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / s;
        float c = v < qmin ? qmin : (v > qmax ? qmax : v);   /* NaN stays NaN, as in torch.clamp */
        uint8_t in = c == v;                                    /* False for NaN, as torch.eq */
        float r = nearbyintf(c);                                /* half to even, as torch.round */
        inside[i] = in;
        residual[i] = in ? r - v : r;
        out[i] = r * s;
    }
}

/* LSQ backward, element-wise half: grad_x = grad_out inside the range, 0 outside; product = grad_out * residual
   (summed by torch afterwards into the step size's gradient, so the sum is torch's to the last bit). */
void lsq_backward(const float *restrict grad_out, const uint8_t *restrict inside, const float *restrict residual,
                  float *restrict grad_x, float *restrict product, int64_t n) {
    #pragma omp parallel for schedule(static) if (n >= PARALLEL_FROM)
    for (int64_t i = 0; i < n; i++) {
        float g = grad_out[i];
        product[i] = g * residual[i];
        grad_x[i] = inside[i] ? g : 0.0f;
    }
}

/* LSQ forward without autograd (evaluation, search): out = s * round(clamp(x / s)). */
void lsq_forward_eval(const float *restrict x, float *restrict out, int64_t n, float s, float qmin, float qmax) {
    #pragma omp parallel for schedule(static) if (n >= PARALLEL_FROM)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / s;
        float c = v < qmin ? qmin : (v > qmax ? qmax : v);
        out[i] = nearbyintf(c) * s;
    }
}
"""

_FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC")
_ENV_SWITCH = "MPQ_CPU_KERNELS"        # "0" turns the kernels off (the quantizer then uses torch ops)


def _compile(workdir: Path) -> Path:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    source, library = workdir / "lsq_kernels.c", workdir / "lsq_kernels.so"
    source.write_text(_SOURCE)
    subprocess.run([compiler, *_FLAGS, str(source), "-o", str(library)], check=True, capture_output=True, timeout=120)
    return library


@functools.cache
def load() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be built here (logged once) or are switched off.

    Cached for the life of the process: the compiled code depends only on the source above and this CPU.
    """
    if os.environ.get(_ENV_SWITCH, "1") == "0":
        logger.info("%s=0: the LSQ quantizer uses torch ops on CPU", _ENV_SWITCH)
        return None
    if platform.machine().lower() not in ("x86_64", "amd64"):
        logger.info("fused CPU kernels are built for x86-64 only; the LSQ quantizer uses torch ops")
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="mpq-kernels-") as tmp:
            library = ctypes.CDLL(str(_compile(Path(tmp))))     # the mapping outlives the deleted file
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", b"") or b""
        logger.warning("could not build the fused CPU kernels (%s %s); the LSQ quantizer uses torch ops (same "
                       "values, slower)", err, detail.decode(errors="replace")[:500])
        return None
    pointers = [ctypes.c_void_p] * 4
    library.lsq_forward_train.argtypes = [*pointers, ctypes.c_int64, ctypes.c_float, ctypes.c_float, ctypes.c_float]
    library.lsq_forward_train.restype = None
    library.lsq_backward.argtypes = [*pointers, ctypes.c_void_p, ctypes.c_int64]
    library.lsq_backward.restype = None
    library.lsq_forward_eval.argtypes = [*pointers[:2], ctypes.c_int64, ctypes.c_float, ctypes.c_float, ctypes.c_float]
    library.lsq_forward_eval.restype = None
    return library


def _dense(x: Tensor) -> bool:
    """Whether ``x``'s elements fill one block of memory without gaps (contiguous or channels_last)."""
    return x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))


def _same_order(a: tuple[int, ...], b: tuple[int, ...], shape: torch.Size) -> bool:
    """Whether two dense stridings of ``shape`` put the elements in the same memory order (size-1
    dimensions may carry any stride: they do not move an element)."""
    return all(sa == sb for sa, sb, n in zip(a, b, shape) if n != 1)


@functools.lru_cache(maxsize=1024)
def _torch_strides(shape: torch.Size, stride: tuple[int, ...], train: bool) -> tuple[tuple[int, ...], ...] | None:
    """The strides torch's ops give the quantizer's outputs for an input of this shape and striding.

    Training: (out, inside, residual), as ``_LSQFakeQuant.forward`` makes them; evaluation: (out,). The
    kernels write into tensors with these same strides, so everything downstream (a depthwise conv picks its
    output layout from its weight's strides) sees what the torch path would give. None where an output's
    memory order differs from the input's, so the kernels cannot write it element for element.
    """
    x = torch.empty_strided(shape, stride)
    s = torch.ones(())
    if train:
        v = torch.div(x, s)
        out = torch.clamp(v, 0, 1)
        made = (out.stride(), torch.eq(out, v).stride(), v.stride())
    else:
        made = (torch.div(x, s).stride(),)
    return made if all(_same_order(stride, m, shape) for m in made) else None


def _usable(x: Tensor, step_size: Tensor) -> bool:
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and step_size.device.type == "cpu"
        and step_size.dtype == torch.float32 and x.numel() > 0 and _dense(x) and load() is not None
    )


def lsq_forward_train(x: Tensor, step_size: Tensor, qmin: int, qmax: int) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(out, inside, residual)`` of the quantizer's training forward in one pass, or None where the kernels
    do not apply (not a dense float32 CPU tensor, or no kernels here): the caller then uses torch ops.

    ``out = s * round(clamp(x / s, qmin, qmax))``; ``inside`` (bool) marks ``qmin <= x / s <= qmax``;
    ``residual`` is ``round(c) - x / s`` inside and ``round(c)`` outside (LSQ's step-size gradient per element).
    """
    if not _usable(x, step_size):
        return None
    strides = _torch_strides(x.shape, x.stride(), True)
    if strides is None:
        return None
    out = torch.empty_strided(x.shape, strides[0])
    inside = torch.empty_strided(x.shape, strides[1], dtype=torch.bool)
    residual = torch.empty_strided(x.shape, strides[2])
    load().lsq_forward_train(x.data_ptr(), out.data_ptr(), inside.data_ptr(), residual.data_ptr(), x.numel(),
                             step_size.item(), qmin, qmax)
    return out, inside, residual


def lsq_forward_eval(x: Tensor, step_size: Tensor, qmin: int, qmax: int) -> Tensor | None:
    """``s * round(clamp(x / s, qmin, qmax))`` in one pass without autograd, or None where the kernels do not
    apply (the caller then uses torch ops)."""
    if not _usable(x, step_size):
        return None
    strides = _torch_strides(x.shape, x.stride(), False)
    if strides is None:
        return None
    out = torch.empty_strided(x.shape, strides[0])
    load().lsq_forward_eval(x.data_ptr(), out.data_ptr(), x.numel(), step_size.item(), qmin, qmax)
    return out


def lsq_backward(grad_out: Tensor, inside: Tensor, residual: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(grad_x, product)`` in one pass: ``grad_out`` where ``inside``, else 0; and ``grad_out * residual``,
    which the caller sums into the step size's gradient. None where the kernels do not apply (the caller then
    uses torch ops). Both outputs take the strides torch's ``mul(grad_out, residual)`` would give them."""
    if not (grad_out.device.type == "cpu" and grad_out.dtype == torch.float32 and residual.dtype == torch.float32
            and _dense(grad_out) and load() is not None):
        return None
    shape = grad_out.shape
    stride = _mul_strides(shape, grad_out.stride(), residual.stride())
    if stride is None or not (_same_order(grad_out.stride(), inside.stride(), shape)
                              and _same_order(grad_out.stride(), residual.stride(), shape)):
        return None
    grad_x, product = torch.empty_strided(shape, stride), torch.empty_strided(shape, stride)
    load().lsq_backward(grad_out.data_ptr(), inside.data_ptr(), residual.data_ptr(), grad_x.data_ptr(),
                        product.data_ptr(), grad_out.numel())
    return grad_x, product


@functools.lru_cache(maxsize=1024)
def _mul_strides(shape: torch.Size, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The strides of torch's ``mul`` of two tensors of this shape and these stridings, or None where they do not
    keep the first one's memory order."""
    made = torch.mul(torch.empty_strided(shape, a), torch.empty_strided(shape, b)).stride()
    return made if _same_order(a, made, shape) else None
