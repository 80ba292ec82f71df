"""Text of the figures sized for the pages that show them: a page shows a PNG at its own size, or narrower where the
page is narrower (``img{max-width:100%}``), so a figure ``w`` inches wide saved at ``dpi`` shows ``s``-point text
``s / 72 * min(dpi, PAGE_WIDTH_PX / w)`` screen pixels tall. ``mpq.pages.figure_check`` checks the result."""
from __future__ import annotations

from typing import Any

PAGE_WIDTH_PX = 1068            # the entry page's column (1100 px less 1em of padding each side); notebook pages: more
MIN_TEXT_PX = 10.0              # the smallest text a reader of the pages is asked to read

# What F3/F4's density figure can and cannot show, said once for notebook 05's findings and the entry page
DENSITY_CAVEAT = ("F3/F4's densities cannot show the paper's drift: BN recalibration standardises each channel at the "
                  "lowest point and the max path alike, so both are centred and scaled the same. The distortion lies "
                  "in which value each position takes, which the relative MSE (distortion, % of the feature variance) "
                  "and its verdict measure; no distortion before recalibration was kept.")


def min_points(width_in: float, dpi: float = 120, width_px: float = PAGE_WIDTH_PX, px: float = MIN_TEXT_PX + 0.5
               ) -> float:
    """The smallest font size (points) that shows ``px`` screen pixels tall in a figure ``width_in`` inches wide,
    saved at ``dpi`` and shown at most ``width_px`` wide (half a pixel to spare by default)."""
    return px * 72 / min(dpi, width_px / width_in)


def readable(fontsize: float, fig: Any, dpi: float = 120) -> float:
    """``fontsize``, or larger where ``fig`` is shown scaled down so far that it would be under ``MIN_TEXT_PX``."""
    return round(max(fontsize, min_points(fig.get_figwidth(), dpi)), 1)


def text_width(text: str, fontsize: float, weight: str = "normal") -> float:
    """How wide (inches) one line of ``text`` is at ``fontsize`` points in the default font, as the PNG renderer
    draws it at 100 and at 120 dpi (hinting makes the width depend on the dpi), the wider of the two."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(size=fontsize, weight=weight)
    return max(RendererAgg(1, 1, dpi).get_text_width_height_descent(text, prop, ismath=False)[0] / dpi
               for dpi in (100, 120))


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """``text`` with each of its lines broken between words so that none is wider than ``width_in`` inches at
    ``fontsize`` points (widths measured in the default font)."""
    def width(s: str) -> float:
        return text_width(s, fontsize)

    out = []
    for line in text.split("\n"):
        current = ""
        for word in line.split(" "):
            trial = f"{current} {word}" if current else word
            if current and width(trial) > width_in:
                out.append(current)
                current = word
            else:
                current = trial
        out.append(current)
    return "\n".join(out)


def suptitle(fig: Any, text: str, fontsize: float = 10, dpi: float = 120, bottom: float = 0.0) -> None:
    """``text`` as ``fig``'s title, wrapped to its width less a margin and at least ``MIN_TEXT_PX`` tall on the page,
    then the axes laid out below it (``tight_layout`` leaves room for the title) and above ``bottom`` (a fraction of
    the height kept for a legend of the whole figure)."""
    size = readable(fontsize, fig, dpi)
    fig.suptitle(wrap(text, fig.get_figwidth() - 0.3, size), fontsize=size)
    fig.tight_layout(rect=(0, bottom, 1, 1))
