"""What a notebook shows its reader: tables formatted for reading, figures inline, a findings cell.

The notebooks keep their logs (progress bars, per-epoch lines) in the executed ``.ipynb`` and the
terminal; the rendered pages (``mpq.pages.report``) show only what these helpers display, markdown and figures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from mpq.training.checkpoint import save_figure

FINDINGS_TAG = "findings"   # the cell tag that mpq.pages.notebook_page moves to the top of a rendered page


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with float columns that hold only whole numbers as (nullable) integers and no index."""
    out = df.reset_index(drop=True).copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_float_dtype(s):
            values = s.dropna()
            if len(values) and (values == values.round()).all() and values.abs().max() < 2 ** 53:
                out[col] = s.round().astype("Int64")
    return out


def show_table(df: pd.DataFrame, *, precision: int = 2, caption: str | None = None) -> Any:
    """A pandas Styler for ``df``: integers as integers, ``precision`` decimals, blanks for missing values,
    no index. Display it (last expression of a cell) or pass it to ``IPython.display.display``."""
    styler = tidy(df).style.hide(axis="index").format(precision=precision, na_rep="")
    if caption:
        styler = styler.set_caption(caption)
    return styler


def show_tables(tables: Mapping[str, pd.DataFrame], **kwargs: Any) -> list[Any]:
    """``show_table`` of each frame, captioned by its key, in order (``kwargs`` as for ``show_table``); show them
    with ``IPython.display.display(*show_tables(...))``."""
    return [show_table(df, caption=caption, **kwargs) for caption, df in tables.items()]


def show_figure(fig: Any, path: str | Path, **kwargs: Any) -> Any:
    """Save ``fig`` to ``path`` (PNG, atomically) and return it as an inline image, so the executed
    notebook and its HTML page show exactly the file that was written."""
    from IPython.display import Image

    save_figure(fig, path, **kwargs)
    return Image(filename=str(path))


def findings(ids: str, scale: str, lines: Sequence[str]) -> Any:
    """The findings cell of a notebook: the paper's figure/table ids, the scale (profile, data, seeds) and
    one bullet per finding, each written by the caller from its own numbers. Tag the cell ``findings``."""
    from IPython.display import Markdown

    bullets = "\n".join(f"- {line}" for line in lines)
    return Markdown(f"### Findings ({ids})\n\n*{scale}*\n\n{bullets}")


def points(x: float, digits: int = 2, signed: bool = False) -> str:
    """A fraction in [0, 1] (or a difference of two) as percentage points."""
    return f"{100 * x:+.{digits}f}" if signed else f"{100 * x:.{digits}f}"
