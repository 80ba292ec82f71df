"""What a notebook shows its reader: tables formatted for reading, figures inline, a findings cell.

The notebooks keep their logs (progress bars, per-epoch lines) in the executed ``.ipynb`` and the
terminal; the rendered pages (``mpq.pages.report``) show only what these helpers display, markdown and figures.
The studies return plain data and write models and image sets by their registry keys; these helpers are where
they become the reader's words: display names (``ResNet-20``) in tables, captions and findings, yes/no for
booleans, seed lists as ``0-8``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from mpq.pages.metrics import DATASET_NAMES, MODEL_NAMES, display_name, seeds_text
from mpq.pages.tables import format_column
from mpq.training.checkpoint import save_figure

FINDINGS_TAG = "findings"   # the cell tag that mpq.pages.notebook_page moves to the top of a rendered page


# a registry key as a word of its own: not inside a path, a file name or a longer name (checkpoints/resnet20.pt)
_REGISTRY_KEY = re.compile(r"(?<![\w./-])(%s)(?![\w/-]|\.\w)" % "|".join(
    sorted(map(re.escape, {**MODEL_NAMES, **DATASET_NAMES}), key=len, reverse=True)))
_INT_LIST = re.compile(r"\[(\d+(?:, \d+)*)\]")     # a Python list of whole numbers as repr writes it


def reader_text(text: str) -> str:
    """``text`` (a caption or a finding a study wrote) with the registry keys of models and image sets as display
    names and Python lists of whole numbers (seeds) written out.

    >>> reader_text("resnet20: seeds [0, 1, 2, 3, 4, 5, 6, 7, 8]; animal_mnist from checkpoints/resnet20.pt")
    'ResNet-20: seeds 0-8; Animal-MNIST from checkpoints/resnet20.pt'
    """
    text = _REGISTRY_KEY.sub(lambda m: display_name(m.group(1)), text)
    return _INT_LIST.sub(lambda m: seeds_text([int(x) for x in m.group(1).split(", ")]), text)


def _is_bool_column(s: pd.Series) -> bool:
    values = s.dropna()
    return pd.api.types.is_bool_dtype(s) or (len(values) > 0 and all(isinstance(v, bool) for v in values))


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """A copy as a reader's table: float columns that hold only whole numbers as (nullable) integers, booleans as
    "yes"/"no" (every boolean column here answers a question: chosen, flattened, losses finite), registry keys of
    models and image sets as display names, and no index."""
    out = df.reset_index(drop=True).copy()
    for col in out.columns:
        s = out[col]
        if _is_bool_column(s):
            out[col] = s.map(lambda v: v if pd.isna(v) else "yes" if v else "no")
        elif pd.api.types.is_float_dtype(s):
            values = s.dropna()
            if len(values) and (values == values.round()).all() and values.abs().max() < 2 ** 53:
                out[col] = s.round().astype("Int64")
        elif pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            out[col] = s.map(lambda v: display_name(v) if isinstance(v, str) else v)
    return out


def show_table(df: pd.DataFrame, *, precision: int | None = None, caption: str | None = None) -> Any:
    """A pandas Styler for ``df``: integers as integers, each column with the decimals the entry page gives it
    (``mpq.pages.tables.format_column``: 2 for points and percentages, p as "< 0.001"; ``precision`` only for
    tables of small rates that need more), blanks for missing values, no index. Display it (last expression of a
    cell) or pass it to ``IPython.display.display``."""
    shown = tidy(df)
    shown = pd.DataFrame({col: format_column(str(col), shown[col].tolist(), precision) for col in shown.columns})
    styler = shown.style.hide(axis="index")
    if caption:
        styler = styler.set_caption(reader_text(caption))
    return styler


def show_tables(tables: Mapping[str, pd.DataFrame], **kwargs: Any) -> list[Any]:
    """``show_table`` of each frame, captioned by its key, in order (``kwargs`` as for ``show_table``); show them
    with ``IPython.display.display(*show_tables(...))``."""
    return [show_table(df, caption=caption, **kwargs) for caption, df in tables.items()]


def figure_alt(fig: Any) -> str:
    """Alt text for a figure, read from what it draws: each titled panel as "<title>: <y> against <x>", then the
    figure's title (its scale and the paper's counterpart), whitespace folded.

    e.g. "Figure with 2 panels. ResNet-20: test top-1 (%) against G-BitOPs. MobileNetV2-28: test top-1 (%) against
    G-BitOPs. default profile, seed 0, Fashion-MNIST; paper: Figure 5".
    """
    panels = [ax for ax in fig.axes if ax.axison]
    parts = [f"Figure with {'one panel' if len(panels) == 1 else f'{len(panels)} panels'}"]
    for ax in panels:
        what = " against ".join(t for t in (ax.get_ylabel(), ax.get_xlabel()) if t)
        if ax.get_title():
            parts.append(f"{ax.get_title()}: {what}" if what else ax.get_title())
    if fig.get_suptitle():
        parts.append(fig.get_suptitle())
    return " ".join(". ".join(parts).split())


def show_figure(fig: Any, path: str | Path, alt: str | None = None, **kwargs: Any) -> Any:
    """Save ``fig`` to ``path`` (PNG, atomically) and return it as an inline image, so the executed
    notebook and its HTML page show exactly the file that was written; ``alt`` (by default ``figure_alt``) is the
    image's alt text on the page (the output's ``image/png`` metadata, which ``mpq.pages.notebook_page`` writes)."""
    from IPython.display import Image

    save_figure(fig, path, **kwargs)
    return Image(filename=str(path), alt=alt or figure_alt(fig))


def findings(ids: str, scale: str, lines: Sequence[str]) -> Any:
    """The findings cell of a notebook: the paper's figure/table ids, the scale (profile, data, seeds) and
    one bullet per finding, each written by the caller from its own numbers. Tag the cell ``findings``."""
    from IPython.display import Markdown

    bullets = "\n".join(f"- {reader_text(line)}" for line in lines)
    return Markdown(f"### Findings ({ids})\n\n*{reader_text(scale)}*\n\n{bullets}")


def points(x: float, digits: int = 2, signed: bool = False) -> str:
    """A fraction in [0, 1] (or a difference of two) as percentage points."""
    return f"{100 * x:+.{digits}f}" if signed else f"{100 * x:.{digits}f}"
