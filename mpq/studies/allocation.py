"""F6: the per-layer bit allocation of the greedy configurations, each model at its own search levels.

Models may search different levels (``model_bits``: MobileNetV2 at 4 and 3.5, the others at 4, 3 and 2.5),
so each row of the figure has its model's levels and blank panels where it has fewer.
"""
from __future__ import annotations

from typing import Mapping

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

from mpq.studies.figure_text import readable, suptitle  # noqa: E402


def allocation_figure(results: Mapping[str, Mapping], title: str, max_bits: int = 6,
                      names: Mapping[str, str] | None = None):
    """Weight and activation bits per searchable layer (model order) of each model's greedy configuration.

    ``results``: model -> {"levels": {level: {"greedy": {"bit_cfg": {layer: (w_bits, a_bits)}}}}}; one row per
    model, one panel per level in the model's order, titled by the model's name in ``names`` (its key where absent).
    """
    names = names or {}
    columns = max(len(r["levels"]) for r in results.values())
    fig, axes = plt.subplots(len(results), columns, figsize=(4.2 * columns, 2.6 * len(results)), squeeze=False)
    for row, (name, r) in zip(axes, results.items()):
        for ax, (level, entry) in zip(row, r["levels"].items()):
            bits = list(entry["greedy"]["bit_cfg"].values())       # [(w_bits, a_bits)] in model order
            ax.bar([k - 0.2 for k in range(len(bits))], [w for w, _ in bits], width=0.4, label="weights")
            ax.bar([k + 0.2 for k in range(len(bits))], [a for _, a in bits], width=0.4, label="activations")
            ax.set(ylim=(0, max_bits + 0.5), yticks=range(0, max_bits + 1), title=f"{names.get(name, name)}, level {level}",
                   xlabel="searchable layer (model order)", ylabel="bits")
            ax.grid(alpha=0.3, axis="y")
        for ax in row[len(r["levels"]):]:
            ax.set_axis_off()
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=readable(7, fig), loc="lower center", ncol=2,
               frameon=False)                                # below the panels, off the bars
    suptitle(fig, title, 9, bottom=0.4 / fig.get_figheight())
    return fig
