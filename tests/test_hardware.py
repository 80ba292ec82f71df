"""The AVX2 guard (mpq.training.hardware): the rule on hand-made models, and the oneDNN hang it avoids.

The regression tests run in a subprocess under ``ONEDNN_MAX_CPU_ISA=AVX2``, which makes oneDNN use its
AVX2 kernels on an AVX-512 CPU too, so the failing path is exercised whatever CPU runs the suite; a
hang or a crash there ends in the subprocess timeout, not in a suite that never finishes.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from mpq.training.hardware import conv1x1_as_matmul, onednn_runs_avx2, place, risky_convs
from mpq.models import create_model
from mpq.method.supernet import Supernet


def test_onednn_isa_detection():
    assert not onednn_runs_avx2("AVX512", {})
    assert onednn_runs_avx2("AVX2", {})
    assert onednn_runs_avx2("DEFAULT", {})                            # no vector ISA at all
    assert onednn_runs_avx2("AVX512", {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert onednn_runs_avx2("AVX512", {"DNNL_MAX_CPU_ISA": "sse41"})
    assert not onednn_runs_avx2("AVX512", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"})


def test_risky_convs_are_small_strided_1x1():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 8, 1, 2)      # the failing shape
            self.b = nn.Conv2d(8, 16, 1, 2)     # channels a multiple of 8: passes
            self.c = nn.Conv2d(4, 8, 1, 1)      # stride 1: passes
            self.d = nn.Conv2d(4, 8, 3, 2)      # 3x3: passes

    assert risky_convs(Net()) == ["a"]
    # ResNet-20 at width 0.25 has the 4 -> 8 shortcut; at 0.5 (8 -> 16, 16 -> 32) it has none
    assert risky_convs(create_model("resnet20", width_mult=0.25))
    assert not risky_convs(create_model("resnet20", width_mult=0.5))


@pytest.mark.parametrize("cin, cout, stride, bias", [(4, 8, 2, False), (3, 5, 2, True), (2, 32, 3, False)])
def test_matmul_route_equals_conv(cin, cout, stride, bias):
    gen = torch.Generator().manual_seed(cin)
    conv = nn.Conv2d(cin, cout, 1, stride, bias=bias)
    x = torch.randn(5, cin, 13, 12, generator=gen).contiguous(memory_format=torch.channels_last).requires_grad_()
    ref = conv(x)
    out = conv1x1_as_matmul(conv, x, conv.weight, conv.bias)
    torch.testing.assert_close(out, ref)
    g = torch.randn(ref.shape, generator=gen)
    grads_ref = torch.autograd.grad(ref, [x, conv.weight], g)
    grads = torch.autograd.grad(out, [x, conv.weight], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


def test_place_reroutes_only_under_avx2_kernels(monkeypatch):
    x = torch.randn(2, 1, 28, 28)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        assert place(create_model("resnet20", width_mult=0.25), "cpu") == []
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert place(create_model("resnet20", width_mult=0.5), "cpu") == []
    model = create_model("resnet20", width_mult=0.25).eval()
    ref = model(x)
    assert place(model, "cpu") == ["stages.1.0.shortcut.0"]
    torch.testing.assert_close(model(x), ref)
    # a supernet of it (QConv2d layers) is rerouted too, and copies keep the route
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    assert place(sn, "cpu") == ["model.stages.1.0.shortcut.0"]
    import copy
    clone = copy.deepcopy(sn).get_submodule("model.stages.1.0.shortcut.0")
    assert clone._conv_forward.__self__ is clone
    assert place(create_model("resnet20", width_mult=0.25), "cpu", guard=False) == []


# One-shot training and FP training of ResNet-20 x0.25 through the package's own code path, batch 32
# (the repro of the bug: 4 -> 8 channels, 1x1, stride 2, channels_last, batch 32, backward).
SCRIPT = """
import sys, torch
from mpq.data.datasets import make_splits
from mpq.training.hardware import place
from mpq.models import create_model
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import build_supernet, train_oneshot
from mpq.training.fp import train_fp
import mpq.training.oneshot, mpq.training.fp

guard = sys.argv[1] == "on"
if not guard:   # the test's control: the same code with the guard switched off
    mpq.training.oneshot.place = mpq.training.fp.place = lambda model, device: place(model, device, guard=False)
torch.manual_seed(0)
splits = make_splits("fashion_mnist", seed=0, train_size=96, score_size=32, calib_size=32, test_size=32)
cfg = OneShotConfig(epochs=1, num_random_paths=1).for_model("resnet20")
sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), splits.calib, (1, 28, 28))
train_oneshot(sn, splits.train, cfg, batch_size=32, pad=2, flip=True, seed=0, device=torch.device("cpu"),
              progress=False)
train_fp(create_model("resnet20", width_mult=0.25), splits.train, splits.test, epochs=1, batch_size=32, lr=0.1,
         momentum=0.9, weight_decay=5e-4, warmup_epochs=0.0, label_smoothing=0.0, pad=2, flip=True, seed=0,
         device=torch.device("cpu"), progress=False)
print("trained")
"""


def _run_avx2(guard: str, timeout: float) -> tuple[int | None, str]:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "2"}
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, guard], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    return proc.returncode, proc.stdout + proc.stderr[-2000:]


@pytest.mark.timeout(150)
def test_guarded_training_runs_on_avx2_kernels():
    rc, out = _run_avx2("on", timeout=120)
    assert rc == 0 and "trained" in out, f"return code {rc} (None: hung): {out}"


@pytest.mark.timeout(60)
def test_control_without_guard_shows_the_bug():
    """The same run with the guard off hangs or crashes where the bug exists (it did on the machines we had).

    Skipped, not failed, where it does not show: then a newer torch/oneDNN may have fixed it, and the
    guard could be relaxed.
    """
    rc, out = _run_avx2("off", timeout=20)
    if rc == 0:
        pytest.skip("the oneDNN AVX2 bug did not show here with the guard off")
    assert rc is None or rc != 0
