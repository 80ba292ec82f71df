"""Figures shared by the notebooks (matplotlib, Agg-safe)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str):
    """Loss and test accuracy per epoch, one line per model (``histories``: name -> History.as_dict())."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, h in histories.items():
        ax_loss.plot(h["epoch"], h["loss"], marker="o", label=name)
        ax_acc.plot(h["epoch"], [100 * a for a in h["test_acc"]], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="test top-1 (%)", title="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
