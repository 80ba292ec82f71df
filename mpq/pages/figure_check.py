"""Whether a figure can be read where a page shows it: text large enough on screen, nothing clipped at the figure's
edges, no text over another, every data point inside its axes.

A page shows a PNG at its own size, or narrower where the page is narrower (``img{max-width:100%}``): the entry page
is 1100 px wide less its padding, ``PAGE_WIDTH_PX`` across, and the notebook pages (1280 px with the prompts) give
a figure about as much (``mpq.studies.figure_text`` sizes the text for it)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from mpq.studies.figure_text import MIN_TEXT_PX, PAGE_WIDTH_PX

_TOLERANCE_PX = 1.0             # rounding of extents: a text touching an edge or a neighbour is not a problem


@contextmanager
def _drawn_texts() -> Iterator[list]:
    """Every Text that draws itself while the block runs (tick labels outside the view are never drawn)."""
    from matplotlib.text import Text

    drawn: list = []
    original = Text.draw

    def draw(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer)

    Text.draw = draw
    try:
        yield drawn
    finally:
        Text.draw = original


def _short(text: Any) -> str:
    s = " ".join(text.get_text().split())
    return repr(s if len(s) <= 40 else s[:37] + "...")


def _outside(points: np.ndarray, box: Any, pad: float = 0.0) -> int:
    """How many finite display points lie outside ``box`` (a Bbox) less ``pad`` pixels (a marker's radius) on every
    side, by more than the tolerance."""
    points = points[np.isfinite(points).all(axis=1)] if len(points) else points
    if not len(points):
        return 0
    t = _TOLERANCE_PX - pad
    return int(((points[:, 0] < box.x0 - t) | (points[:, 0] > box.x1 + t)
                | (points[:, 1] < box.y0 - t) | (points[:, 1] > box.y1 + t)).sum())


def _data_problems(ax: Any) -> list[str]:
    """Lines, markers (whole, their radius in) and bars of ``ax`` that reach past its edges."""
    from matplotlib.collections import PathCollection

    box, out = ax.bbox, []
    name = ax.get_title() or "an untitled axes"
    for line in ax.lines:
        if line.get_visible():
            marked = line.get_marker() not in (None, "", " ", "None", "none")
            pad = line.get_markersize() / 2 * ax.figure.dpi / 72 if marked else 0.0
            n = _outside(line.get_transform().transform(np.asarray(line.get_xydata(), float)), box, pad)
            if n:
                out.append(f"{name!r}: {n} point(s) of line {line.get_label()!r} outside the axes")
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        if isinstance(coll, PathCollection):                # scatter: one marker per offset, in data
            sizes = coll.get_sizes()
            pad = float(np.sqrt(sizes.max())) / 2 * ax.figure.dpi / 72 if len(sizes) else 0.0
            n = _outside(coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), float)), box, pad)
        else:                                               # bars, fills: their paths' vertices, in data
            n = sum(_outside(coll.get_transform().transform(p.vertices), box) for p in coll.get_paths())
        if n:
            out.append(f"{name!r}: {n} point(s) of {type(coll).__name__} {coll.get_label()!r} outside the axes")
    return out


def _inside(points: np.ndarray, box: Any) -> int:
    """How many finite display points lie inside ``box``, by more than the tolerance."""
    points = points[np.isfinite(points).all(axis=1)] if len(points) else points
    t = _TOLERANCE_PX
    return int(((points[:, 0] > box.x0 + t) & (points[:, 0] < box.x1 - t)
                & (points[:, 1] > box.y0 + t) & (points[:, 1] < box.y1 - t)).sum()) if len(points) else 0


def _along(points: np.ndarray, step: float = 2.0) -> np.ndarray:
    """Display points every ``step`` pixels along a polyline through ``points`` (a line crosses a box between its
    vertices too)."""
    points = points[np.isfinite(points).all(axis=1)]
    out = [points[:1]]
    for a, b in zip(points[:-1], points[1:]):
        n = max(1, int(np.hypot(*(b - a)) / step))
        out.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
    return np.concatenate(out) if len(points) else points


def _legend_problems(ax: Any, renderer: Any) -> list[str]:
    """A legend of ``ax`` over its lines, dots or bars (reference lines drawn across the whole axes aside)."""
    from matplotlib.collections import PathCollection

    legend = ax.get_legend()
    if legend is None or not legend.get_visible():
        return []
    box, under = legend.get_window_extent(renderer), []
    for line in ax.lines:
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), float))
        across = len(xy) == 2 and (np.ptp(xy[:, 0]) >= ax.bbox.width - 1 or np.ptp(xy[:, 1]) >= ax.bbox.height - 1)
        if line.get_visible() and not across and _inside(_along(xy) if line.get_linestyle() not in ("None", "")
                                                         else xy, box):
            under.append(f"line {line.get_label()!r}")
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible() and _inside(
                coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), float)), box):
            under.append(f"dots {coll.get_label()!r}")
    t = _TOLERANCE_PX
    bars = [p for p in ax.patches if p.get_visible() and (lambda e: min(e.x1, box.x1) - max(e.x0, box.x0) > t and
                                                          min(e.y1, box.y1) - max(e.y0, box.y0) > t)(
        p.get_window_extent(renderer))]
    if bars:
        under.append(f"{len(bars)} bar(s)")
    return [f"{ax.get_title() or 'an untitled axes'!r}: the legend covers {', '.join(under)}"] if under else []


def figure_problems(fig: Any, width_px: float = PAGE_WIDTH_PX, dpi: float | None = None) -> list[str]:
    """What keeps ``fig`` from being read when saved at ``dpi`` (by default its own) and shown at most ``width_px``
    screen pixels wide; one plain sentence per problem, none for a readable figure.

    Checks, after drawing it: every drawn text at least ``MIN_TEXT_PX`` tall on screen; no text past the figure's
    edges; no two texts overlapping (a title over a label, a suptitle over a title); every point of every line,
    marker and bar inside its axes; no legend over the lines or dots of its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    dpi = dpi or fig.dpi
    scale_px_per_pt = min(dpi, width_px / fig.get_figwidth()) / 72
    fig.set_dpi(dpi)                # drawn as it is saved: text is hinted per dpi, a line's width moves with it
    with _drawn_texts() as texts:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems: list[str] = []
    unique = list({id(t): t for t in texts}.values())
    boxes = [t.get_window_extent(renderer) for t in unique]
    for text, box in zip(unique, boxes):
        px = text.get_fontsize() * scale_px_per_pt
        if px < MIN_TEXT_PX - 0.05:
            problems.append(f"text {_short(text)} is {px:.1f} px tall on screen (at least {MIN_TEXT_PX:g})")
        if _outside(np.array([[box.x0, box.y0], [box.x1, box.y1]]), fig.bbox):
            problems.append(f"text {_short(text)} runs past the figure's edge")
    t = _TOLERANCE_PX
    for i, (a, box_a) in enumerate(zip(unique, boxes)):
        for b, box_b in zip(unique[i + 1:], boxes[i + 1:]):
            if (min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0) > t
                    and min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0) > t):
                problems.append(f"text {_short(a)} overlaps text {_short(b)}")
    for ax in fig.axes:
        problems += _data_problems(ax) + _legend_problems(ax, renderer)
    return problems
