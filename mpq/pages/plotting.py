"""Figures shared by the notebooks (matplotlib, Agg-safe); models are named as the pages write them (ResNet-20)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
import numpy as np

from mpq.pages.metrics import display_name, seeds_text
from mpq.studies.figure_text import readable, suptitle

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str):
    """Loss and test accuracy per epoch, one line per model (``histories``: name -> History.as_dict())."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, h in histories.items():
        ax_loss.plot(h["epoch"], h["loss"], marker="o", label=display_name(name))
        ax_acc.plot(h["epoch"], [100 * a for a in h["test_acc"]], marker="o", label=display_name(name))
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
        ax.plot(h["epoch"], h["loss"], marker="o", label=display_name(name))
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
        ax.set(xlabel="uniform bits (WkAk)", ylabel="test top-1 (%)", title=display_name(name), xticks=bits)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=readable(7, fig), loc="best")
    suptitle(fig, title, 9)
    return fig


def search_front(results: Mapping, supernet: Mapping, baselines: Mapping, fp: Mapping, title: str):
    """Accuracy vs G-BitOPs per model: greedy / random / evolutionary (no retraining), retrained greedy,
    the supernet at uniform WkAk, uniform LSQ models trained alone, and full precision."""
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        levels = list(r["levels"].values())
        for method, style in (("greedy", "o-"), ("random", "x"), ("evolutionary", "^")):
            pts = sorted((e[method]["gbitops"], 100 * e[method]["test_acc"]) for e in levels)
            ax.plot(*zip(*pts), style, ms=7, label=f"{method} search, no retraining")
        re = sorted((e["greedy"]["gbitops"], 100 * e["retrained"]["test_acc"]) for e in levels if "retrained" in e)
        if re:
            ax.plot(*zip(*re), "D", mfc="none", ms=7, label="greedy config, retrained")
        uni = sorted((u["gbitops"], 100 * u["test_acc"]) for u in supernet[name]["uniform"].values())
        ax.plot(*zip(*uni), "s--", color="gray", ms=5, label="supernet, uniform WkAk")
        lsq = sorted((b["gbitops"], 100 * b["test_acc"]) for b in baselines.get(name, {}).values())
        if lsq:
            ax.plot(*zip(*lsq), "P", color="black", ms=8, label="uniform LSQ, trained alone")
        ax.axhline(100 * fp[name]["test_acc"], ls=":", color="gray", label="full precision")
        ax.set(xlabel="G-BitOPs", ylabel="test top-1 (%)", title=display_name(name))
        ax.grid(alpha=0.3)
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=readable(7, fig), loc="lower center", ncol=4,
               frameon=False)                                # below the panels, off every point
    suptitle(fig, title, 9, bottom=0.65 / fig.get_figheight())
    return fig


def interference_toy(traces: Mapping[str, object], variances: Mapping[str, object], window: int, s4: float,
                     title: str):
    """Figure 1's analogue: two shared weights under two candidate sets (``traces``: label -> ToyTrace).

    Left: the weights' path over the 4-bit rounding thresholds (dotted; ``s4`` is the 4-bit step size);
    middle: cumulative threshold crossings of the 4- and 6-bit quantized weights; right: ``variances``
    (label -> the shared gradient's rolling variance over ``window`` steps).
    """
    fig, (ax_path, ax_cross, ax_var) = plt.subplots(1, 3, figsize=(11, 3.9))      # 1320 px at 120 dpi
    every = np.concatenate([t.weights.numpy() for t in traces.values()])      # the view: every step of both paths
    pad = 0.05 * max(np.ptp(every[:, 0]), np.ptp(every[:, 1]), s4)
    xlim, ylim = ((every[:, i].min() - pad, every[:, i].max() + pad) for i in (0, 1))
    for k in range(-8, 8):                                  # the thresholds within the view
        if xlim[0] < (k + 0.5) * s4 < xlim[1]:
            ax_path.axvline((k + 0.5) * s4, color="grey", lw=0.5, ls=":")
        if ylim[0] < (k + 0.5) * s4 < ylim[1]:
            ax_path.axhline((k + 0.5) * s4, color="grey", lw=0.5, ls=":")
    for (label, trace), color in zip(traces.items(), ("tab:blue", "tab:red")):
        w = trace.weights.numpy()
        ax_path.plot(w[:, 0], w[:, 1], color=color, lw=0.6, alpha=0.8, label=label)
        for bits, ls in zip(sorted(trace.crossings), ("-", "--")):
            ax_cross.plot(trace.crossings[bits].numpy(), color=color, ls=ls, label=f"{label}: {bits}-bit")
        var = variances[label].numpy()
        ax_var.plot(range(window - 1, window - 1 + len(var)), var, color=color, lw=0.8, label=label)
    ax_path.set(xlabel="w1", ylabel="w2", title="shared weights (4-bit thresholds dotted)", xlim=xlim,
                ylim=ylim)
    ax_cross.set(xlabel="step", ylabel="cumulative crossings", title="rounding-threshold crossings")
    ax_var.set(xlabel="step", ylabel="variance", yscale="log", title=f"gradient variance ({window}-step window)")
    for ax in (ax_path, ax_cross, ax_var):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=readable(8.5, fig), loc="best")
    suptitle(fig, title, 10)
    return fig


def baselines_vs_supernet(supernet: Mapping[str, Mapping], baselines: Mapping[str, Mapping[int, Mapping]], title: str):
    """Notebook 03's figure (uniform rows of Tables 2-4): ``uniform_accuracy`` of the supernets of the models that
    have baselines, with each LSQ model trained alone as a cross.

    ``supernet``: model -> {"fp_test_acc", "uniform": {bits: {"test_acc"}}} (reports/metrics/supernet.json);
    ``baselines``: model -> bits -> {"test_acc", ...} (notebook 03's results).
    """
    return uniform_accuracy({k: v for k, v in supernet.items() if k in baselines}, title,
                            baselines={m: {b: r["test_acc"] for b, r in v.items()} for m, v in baselines.items()})


def budget_figure(points, *, budgets: Sequence[int], epochs: int, seed: int, model: str, profile: str,
                  seeds: Sequence[int]):
    """F7 (beyond the paper): the gaps as the training budget grows. Left: no-retrain minus retrained per level;
    right: the supernet's uniform points minus LSQ trained alone.

    ``points``: a DataFrame with columns "budget (x)", seed, comparison, points (one row per seed, budget and
    comparison; ``mpq.studies.replicates.budget_points``). Small dots are single seeds; with larger ``budgets``
    each line follows ``seed`` across them against the epochs (``epochs``: the default budget's), without
    them one column per comparison; the diamonds give the default budget's mean ± SD over ``seeds``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, kind in zip(axes, ("minus retrained", "minus LSQ alone")):
        part = points[points.comparison.str.endswith(kind)]
        names = [what.replace(" " + kind, "") for what in dict.fromkeys(part.comparison)]
        for i, (what, g) in enumerate(part.groupby("comparison", sort=False)):
            base = g[g["budget (x)"] == 1].points                   # mean +- SD over the seeds at the default budget
            if not budgets:         # the default budget only: one column per comparison, its seeds and their mean
                ax.scatter([i] * len(g), g.points, s=14, alpha=0.6, color=f"C{i}", label=names[i])
                ax.errorbar([i + 0.2], [base.mean()], yerr=[base.std()], fmt="D", ms=4, color=f"C{i}", capsize=3)
                continue
            ax.scatter(g["budget (x)"] * epochs, g.points, s=14, alpha=0.4, color=f"C{i}")      # every seed
            main = g[g.seed == seed].sort_values("budget (x)")          # the line: the one seed every budget ran
            ax.plot(main["budget (x)"] * epochs, main.points, marker="o", color=f"C{i}", label=names[i])
            ax.errorbar([epochs - 0.15 * (i + 1)], [base.mean()], yerr=[base.std()], fmt="D", ms=4, color=f"C{i}",
                        capsize=3)
        ax.axhline(0, color="grey", lw=0.8)
        if budgets:
            ax.set_xlabel("training epochs (supernet and its comparison alike)")
        else:
            ax.set_xticks(range(len(names)), names)
            ax.set_xlim(-0.5, len(names) - 0.3)
            ax.set_xlabel(f"the default budget: {epochs} epochs for both sides")
        ax.set_ylabel(f"{kind.split()[-1] if kind.endswith('retrained') else 'supernet'} gap (points)")
        ax.set_title(("no retraining " if kind.endswith("retrained") else "supernet ") + kind)
        ax.legend(fontsize=readable(8, fig), loc="best")
    larger = (f"lines follow seed {seed} (the only seed at " + ", ".join(str(b * epochs) for b in budgets)
              + " epochs)" if budgets else "no larger budget in this profile")
    suptitle(fig, f"F7 ({display_name(model)}, {profile} profile): {larger}; dots: seeds {seeds_text(seeds)}; "
                  f"diamonds: their mean ± SD at {epochs} epochs", 10)
    return fig
