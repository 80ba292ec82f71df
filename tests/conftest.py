"""Shared fixtures: the repository root and small seeded data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mpq.data.datasets import make_splits

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_splits():
    """A few hundred Fashion-MNIST images per split (seeded)."""
    return make_splits("fashion_mnist", seed=0, train_size=256, score_size=128, calib_size=128, test_size=256)


@pytest.fixture(scope="session")
def trained(tiny_splits, tmp_path_factory):
    """A tiny ResNet-20 supernet trained for a few steps (its EMA) and its checkpoint."""
    from mpq.models import create_model
    from mpq.training.oneshot import build_supernet, run_meta, train_oneshot
    from mpq.training.recipe import OneShotConfig

    torch.manual_seed(0)
    cfg = OneShotConfig(epochs=1, num_random_paths=1).for_model("resnet20")
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28))
    path = tmp_path_factory.mktemp("ckpt") / "resnet20.pt"
    train = tiny_splits.train.subset(torch.arange(64))
    run = train_oneshot(sn, train, cfg, batch_size=32, pad=2, flip=True, seed=0, device=torch.device("cpu"),
                        checkpoint=path, progress=False, meta=run_meta("resnet20", 0.25, tiny_splits, train))
    return run.ema, path


@pytest.fixture(scope="session")
def exports(trained, tmp_path_factory) -> dict[int, Path]:
    """The tiny supernet (``trained``) exported at uniform W4A4 and W3A3 by `python -m mpq export`: bits -> folder."""
    pytest.importorskip("onnxruntime")
    from mpq.__main__ import main

    supernet, path = trained
    root = tmp_path_factory.mktemp("exports")
    folders = {}
    for bits in (4, 3):
        cfg = root / f"w{bits}a{bits}.json"
        cfg.write_text(json.dumps({"bit_cfg": {name: [bits, bits] for name in supernet.searchable}}))
        folders[bits] = root / f"w{bits}a{bits}"
        assert main(["export", str(path), "--config", str(cfg), "--out", str(folders[bits])]) == 0
    return folders


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
