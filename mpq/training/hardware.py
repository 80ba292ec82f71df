"""Placing a model on its device, with the one guard against a oneDNN bug on AVX2-only CPUs.

torch 2.13's CPU build (oneDNN 3.12) hangs for ever (2 threads) or corrupts memory (1 thread: "double
free or corruption", "corrupted size vs. prev_size", SIGBUS) in the weight gradient of a 1x1 stride-2
convolution with few input channels (the ``jit_1x1:avx2`` backward-weights kernel on a channels_last
source). Measured here under ``ONEDNN_MAX_CPU_ISA=AVX2`` (one conv, batch 32, 28x28 input, stride 2,
three forward/backward passes):

==============================  ===========================================
in -> out channels              channels_last
==============================  ===========================================
4 -> 8 (batch 16, 32, 128)      hangs (batch 64 passed)
2 -> 32, 3 -> 8, 3 -> 24        hang
other pairs with in < 6         passed
in = 6, 8, 12, 16, 20, 24       every out in {4..64} passed
==============================  ===========================================

ResNet-20 at width 0.25 has exactly the 4 -> 8 shortcut. NCHW inputs do not avoid it: the gradient of
global average pooling is an expanded tensor that oneDNN treats as channels_last, so the backward pass
runs channels_last kernels whatever layout the model and inputs have.

The guard therefore routes around oneDNN: on a CPU where oneDNN runs AVX2 (or older) kernels, every
1x1 strided conv whose input channels are not a multiple of 8 (the kernel's channel block; wider than
the failures seen, on purpose) computes as a strided subsample and a matrix product (BLAS), the same
arithmetic as the convolution. Everything else runs unchanged, in channels_last (~25% faster here).
"""
from __future__ import annotations

import os
import types

import torch
from torch import Tensor, nn

# oneDNN reads either name; values are ISA names such as AVX2, AVX512_CORE, AVX512_CORE_AMX (case-insensitive)
_ISA_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
CHANNEL_BLOCK = 8   # channel block of oneDNN's AVX2 1x1 convolution kernels


def onednn_runs_avx2(capability: str | None = None, environ: dict[str, str] | None = None) -> bool:
    """Whether oneDNN's CPU kernels are AVX2 (or older) ones here: an AVX2-only CPU, or an ISA cap.

    ``capability`` defaults to ``torch.backends.cpu.get_cpu_capability()`` ("AVX512", "AVX2", ...);
    ``environ`` to ``os.environ`` (``ONEDNN_MAX_CPU_ISA=AVX2`` makes an AVX-512 CPU run AVX2 kernels).

    >>> onednn_runs_avx2("AVX512", {}), onednn_runs_avx2("AVX2", {})
    (False, True)
    >>> onednn_runs_avx2("AVX512", {"ONEDNN_MAX_CPU_ISA": "avx2"})
    True
    """
    capability = capability if capability is not None else torch.backends.cpu.get_cpu_capability()
    environ = os.environ if environ is None else environ
    if not capability.upper().startswith("AVX512"):
        return True
    for var in _ISA_VARS:
        cap = environ.get(var, "").strip().upper()
        if cap and not cap.startswith(("AVX512", "AVX10", "ALL", "DEFAULT")):
            return True
    return False


def risky_convs(model: nn.Module) -> list[str]:
    """Names of the convs that can reach the failing AVX2 kernel (module docstring)."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
            and m.in_channels % CHANNEL_BLOCK != 0]


def conv1x1_as_matmul(conv: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A 1x1 strided conv as subsample + matrix product: ``x (N, C, H, W)`` -> ``(N, O, H', W')``.

    Same arithmetic as ``F.conv2d`` with ``padding=0, groups=1``; the products run in BLAS, not oneDNN.
    """
    sh, sw = conv.stride
    x = x[:, :, ::sh, ::sw]                                               # (N, C, H', W')
    out = torch.einsum("nchw,oc->nohw", x, weight.flatten(1))             # weight (O, C, 1, 1) -> (O, C)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _matmul_conv_forward(self: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return conv1x1_as_matmul(self, x, weight, bias)


def reroute_convs(model: nn.Module, names: list[str]) -> None:
    """Make the named 1x1 convs compute with ``conv1x1_as_matmul`` (their weights and state are unchanged).

    Works for ``nn.Conv2d`` and its subclasses (``mpq.method.layers.QConv2d``): both compute through
    ``_conv_forward``, which is overridden on these instances only (copies keep it).
    """
    modules = dict(model.named_modules())
    for name in names:
        conv = modules[name]
        if conv.padding not in ((0, 0), "valid") or conv.groups != 1 or conv.dilation != (1, 1):
            raise NotImplementedError(f"conv {name!r} ({conv}) may reach a oneDNN kernel that hangs on this CPU, "
                                      "and only padding 0, groups 1 can be rerouted; change the layer")
        conv._conv_forward = types.MethodType(_matmul_conv_forward, conv)


def place(model: nn.Module, device: torch.device | str, *, guard: bool = True) -> list[str]:
    """Move ``model`` to ``device`` in channels_last, with the AVX2 guard; return the convs it rerouted.

    ``guard=False`` exists only for the regression test that shows the bug.
    """
    model.to(device).to(memory_format=torch.channels_last)
    rerouted = []
    if guard and torch.device(device).type == "cpu" and onednn_runs_avx2():
        rerouted = risky_convs(model)
        reroute_convs(model, rerouted)
    return rerouted
