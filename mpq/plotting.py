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


def supernet_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str):
    """Max-path training loss per epoch of each supernet."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, h in histories.items():
        ax.plot(h["epoch"], h["loss"], marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="max-path loss (W6A6)", title="one-shot training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def uniform_accuracy(results: Mapping[str, Mapping], title: str, baselines: Mapping[str, Mapping] | None = None):
    """Test top-1 of each supernet at uniform WkAk, with the FP accuracy as a dashed line.

    ``results``: model -> {"fp_test_acc", "uniform": {bits: {"test_acc"}}}; ``baselines`` (optional):
    model -> {bits: test_acc} of separately trained uniform LSQ models, drawn as crosses.
    """
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        bits = sorted(int(b) for b in r["uniform"])
        ax.plot(bits, [100 * r["uniform"][b if b in r["uniform"] else str(b)]["test_acc"] for b in bits],
                marker="o", label="one-shot supernet (EMA)")
        ax.axhline(100 * r["fp_test_acc"], ls="--", color="gray", label="full precision")
        if baselines and name in baselines:
            bb = sorted(int(b) for b in baselines[name])
            ax.plot(bb, [100 * baselines[name][b if b in baselines[name] else str(b)] for b in bb], "x", ms=9,
                    mew=2, label="uniform LSQ, trained alone")
        ax.set(xlabel="uniform bits (WkAk)", ylabel="test top-1 (%)", title=name, xticks=bits)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
