"""Data-parallel one-shot training: 2 CPU processes (gloo) against one process on the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mpq.training.checkpoint import load_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ARGS = ["--model", "resnet20", "--width-mult", "0.25", "--params", "profiles/tiny.yaml", "--train-images", "128",
        "--epochs", "1", "--fp-checkpoint", "none"]


def _launch(root, tmp_path, nproc: int) -> list[dict]:
    out = tmp_path / f"n{nproc}"
    cmd = [sys.executable, "-m", "mpq.training.distributed", *ARGS, "--out", str(out / "ckpt.pt"), "--dump-state", str(out / "state")]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *cmd[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [load_checkpoint(out / f"state.rank{r}.pt") for r in range(nproc)]


def test_two_processes_match_one(root, tmp_path):
    single, = _launch(root, tmp_path, 1)
    rank0, rank1 = _launch(root, tmp_path, 2)
    a, b, ref = rank0["supernet"], rank1["supernet"], single["supernet"]
    # replicas hold identical weights (gradients averaged every step, BN statistics every epoch)
    for k in a:
        if torch.is_tensor(a[k]):
            assert torch.equal(a[k], b[k]), k
    # and stay close to one process on the same global batch: only BN batch statistics differ
    # (each process normalises its half of the batch)
    w = "model.stages.1.0.conv1.weight"
    rel = (a[w] - ref[w]).norm() / (ref[w] - 0).norm()
    assert rel < 0.05, f"relative weight difference {rel:.4f}"
    loss2, loss1 = rank0["history"]["loss"][-1], single["history"]["loss"][-1]
    assert abs(loss2 - loss1) < 0.1 * abs(loss1), (loss1, loss2)
