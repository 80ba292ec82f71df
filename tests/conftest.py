"""Shared fixtures: the repository root and small seeded data."""
from __future__ import annotations

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


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
