"""A table of verdicts drawn for the entry page: per comparison each seed's difference, the mean and its 95%
interval against zero, coloured by the verdict's word, the numbers beside it (a forest plot, embedded PNG)."""
from __future__ import annotations

import base64
import html
import textwrap
from typing import Sequence

from mpq.pages.claims import Judged, VerdictTable, by_group, interval_text
from mpq.studies.figure_text import text_width


WORD_COLOURS = {"holds": "#1b7f3b", "reversed here": "#c0392b", "higher": "#1f5fa8", "lower": "#b8620b",
                "on par": "#6a3d9a", "inconclusive": "#707070"}     # a comparison not judged: #333333
PLOT_MIN_IN = 2.5               # the narrowest the plot itself gets, beside the labels and the words
MARKER_IN = 5 / 72              # the largest marker's radius (the arrows, 8 pt wide) and a point to spare
RIGHT_PT = 10.5                 # the words and numbers beside the plot
FIGURE_WIDTH_IN = 10.6          # at 100 dpi the page (1100 px wide) shows it at its own size: 11 pt text stays 11 pt


def _x_limit(rows: Sequence[Judged]) -> float:
    """Half the width of the x axis: room for every mean, and for the interval and seeds of every row of typical
    width; a row whose interval is more than three times the median half-width runs off the edge (arrows, its
    seeds at the edge), its numbers stay beside it."""
    halves = sorted(r.verdict["high"] - r.verdict["diff"] for r in rows)
    typical = 3 * halves[len(halves) // 2]
    ends = [abs(r.verdict["diff"]) for r in rows]
    ends += [abs(x) for r in rows if r.verdict["high"] - r.verdict["diff"] <= typical
             for x in (r.verdict["low"], r.verdict["high"], *r.verdict["per_seed"])]
    return 1.08 * max(max(ends), 1e-3)


def verdict_figure(table: VerdictTable) -> bytes:
    """``verdict_plot`` of ``table`` as a PNG at 100 dpi."""
    import io

    buf = io.BytesIO()
    verdict_plot(table).savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def verdict_plot(table: VerdictTable):
    """A table of verdicts drawn (a matplotlib Figure): one row per comparison (under a bold header per group), each seed's difference
    as an open dot, the mean as a diamond and its 95% interval as a bar, coloured by the verdict's word, against a
    line at zero; on the right the word, the difference, the interval and, where inconclusive, the smallest
    detectable effect (MDE). 11-point text at 100 dpi, as wide as the entry page shows it."""
    from matplotlib.figure import Figure

    groups = by_group(table.rows)
    entries: list[tuple[str, Judged | None]] = []
    if all(len(rows) == 1 for rows in groups.values()):          # no header for groups of one
        entries = [(", ".join(x for x in (r.group, r.label) if x), r) for r in table.rows]
    else:
        for group, rows in groups.items():
            entries += ([(group, None)] if group else []) + [(r.label, r) for r in rows]
    right = ["" if r is None else f"{r.verdict['word']}  {interval_text(r.verdict)}"
             + (f"  MDE {r.verdict['mde']:.2f}" if r.verdict["word"] == "inconclusive" else "") for _, r in entries]
    n, width = len(entries), FIGURE_WIDTH_IN
    right_in = 0.3 + max(text_width(t, RIGHT_PT) for t in right)          # measured: digits are wider than letters
    # a label longer than the room left beside the plot (at least PLOT_MIN_IN wide) and the right-hand text wraps;
    # every row then gets the height of the tallest label
    chars = max(20, int((width - right_in - PLOT_MIN_IN - 0.25) / 0.095))
    entries = [(textwrap.fill(label, chars), r) for label, r in entries]
    lines = max(label.count("\n") + 1 for label, _ in entries)
    height = 0.8 + 0.27 * n * (1 + 0.7 * (lines - 1))
    # margins from the longest labels as drawn (11 pt, group headers bold), so no layout pass is needed
    left = 0.25 + max(text_width(line, 11, "normal" if r else "bold") for label, r in entries
                      for line in label.split("\n"))
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((left / width, 0.55 / height, 1 - (left + right_in) / width, 1 - 0.65 / height))
    lim = _x_limit(table.rows)
    ys = list(range(n - 1, -1, -1))
    for y, (_, r) in zip(ys, entries):
        if r is None:
            continue
        v = r.verdict
        colour = WORD_COLOURS.get(v["word"], "#333333")
        ax.plot([max(v["low"], -lim), min(v["high"], lim)], [y, y], color=colour, lw=3, solid_capstyle="butt")
        if v["low"] < -lim:
            ax.plot(-lim, y, "<", color=colour, ms=8)
        if v["high"] > lim:
            ax.plot(lim, y, ">", color=colour, ms=8)
        seeds = [min(max(d, -lim), lim) for d in v["per_seed"]]
        ax.scatter(seeds, [y + 0.25] * len(seeds), s=30, facecolors="white", edgecolors=colour, linewidths=1.3,
                   zorder=3)
        ax.plot(min(max(v["diff"], -lim), lim), y, "D", color=colour, ms=7, zorder=4)
    ax.axvline(0, color="black", lw=1)
    half_in = (width - left - right_in) / 2            # the plot's half-width: the markers clamped at +-lim fit inside
    ax.set_xlim(-lim * half_in / (half_in - MARKER_IN), lim * half_in / (half_in - MARKER_IN))
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_yticks(ys, [label for label, _ in entries], fontsize=11)
    ax.tick_params(axis="x", labelsize=11)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(table.rows[0].verdict.get("unit", "points"), fontsize=11, labelpad=2)
    ax.grid(axis="x", alpha=0.3)
    for y, tick, (_, r), text in zip(ys, ax.get_yticklabels(), entries, right):
        if r is None:
            tick.set_fontweight("bold")
        else:
            ax.annotate(text, (1, y), xycoords=("axes fraction", "data"), xytext=(8, 0), textcoords="offset points",
                        va="center", fontsize=RIGHT_PT, color=WORD_COLOURS.get(r.verdict["word"], "#333333"))
    return fig


def _png_img(png: bytes, alt: str) -> str:
    return f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}' alt='{html.escape(alt)}'>"


def verdict_block(table: VerdictTable) -> str:
    """A table of verdicts on the entry page: its figure, captioned with what it compares and its note."""
    unit = table.rows[0].verdict.get("unit", "points") if table.rows else "points"
    alt = (f"Forest plot, one row per comparison, of {table.title}: the difference in {unit} with its 95% interval "
           "against a line at zero, each seed's value as a dot, and the verdict beside each row.")
    return (f"<figure>{_png_img(verdict_figure(table), alt)}<figcaption>{html.escape(table.title)}; "
            f"{html.escape(table.note)}. Look for bars clear of zero: open dots are seeds (or the one run), diamond and "
            "bar the mean and its 95% interval (both noise sources); MDE: the smallest effect detectable (80% power, "
            "5% two-sided).</figcaption></figure>")
