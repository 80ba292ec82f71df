"""Tables for reading: each column with its decimals, missing values empty, words left and numbers right; and the fold
(``folded``) that keeps a long part of a page closed until the reader opens it."""
from __future__ import annotations

import html
import math
import re
from typing import Sequence

import numpy as np
import pandas as pd

from mpq.studies.stats import p_text


LABEL_COLUMNS = {"BitOPs level", "level", "target level", "W/A level", "w bits", "budget (x)", "lr"}


def column_decimals(name: str) -> int | None:
    """Decimals of a table column, from its name: None for labels written as they are (levels, bit-widths, rates),
    3 for p-values, 4 for G-BitOPs and MiB, 1 for seconds, 2 for the rest (points, percentages, ratios).

    >>> [column_decimals(c) for c in ("top-1 (%)", "p", "G-BitOPs", "training (s)", "search s", "BitOPs level")]
    [2, 3, 4, 1, 1, None]
    """
    if name in LABEL_COLUMNS:
        return None
    if name == "p":
        return 3
    if name == "df":
        return 1
    if "G-BitOPs" in name or "MiB" in name:
        return 4
    if re.search(r"\bs\b", name) or "seconds" in name:
        return 1
    return 2


def _missing(x) -> bool:
    if x is None or x is pd.NA:
        return True
    if isinstance(x, str):
        return not x.strip()
    return isinstance(x, float) and math.isnan(x)


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def format_column(name: str, values: Sequence, decimals: int | None = None) -> list[str]:
    """A column's cells as text: missing values empty (never NaN or <NA>), numbers with the column's decimals
    (``column_decimals``, or ``decimals`` where given for a column of numbers; whole numbers only: integers; p as
    ``mpq.studies.stats.p_text``: "< 0.001"), text as it is.

    >>> format_column("top-1 (%)", [90.134, None, 88.0])
    ['90.13', '', '88.00']
    >>> format_column("seeds", [3.0, float("nan")]), format_column("BitOPs level", [3.5, 4.0])
    (['3', ''], ['3.5', '4'])
    """
    decimals = column_decimals(name) if decimals is None or column_decimals(name) in (None, 3) else decimals
    numbers = [float(v) for v in values if _is_number(v) and not _missing(v)]
    whole = bool(numbers) and all(v.is_integer() for v in numbers) and name != "p"

    def cell(v) -> str:
        if _missing(v):
            return ""
        if not _is_number(v):
            return str(v)
        v = float(v)
        if decimals is None:
            return f"{v:g}"
        if whole:
            return f"{v:.0f}"
        if name == "p":
            return p_text(v)
        text = f"{v:.{decimals}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    return [cell(v) for v in values]


def reading_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as the text a reader sees: columns with no value dropped, every column formatted (``format_column``),
    no index."""
    keep = [c for c in df.columns if not all(_missing(v) for v in df[c].tolist())]
    return pd.DataFrame({c: format_column(str(c), df[c].tolist()) for c in keep}, columns=keep)


LIST_ON_ONE_LINE = 5


def table_html(df: pd.DataFrame) -> str:
    """An HTML table of ``reading_frame(df)``: columns of words aligned left and free to wrap, numbers (and short
    lists of numbers such as "89.75 / 89.80") right and on one line; lists of more than ``LIST_ON_ONE_LINE`` numbers
    (one per seed) wrap too, so that a table stays within the page."""
    text = reading_frame(df)
    words = {c: any(re.search(r"[A-Za-z]", v) or v.count(" / ") >= LIST_ON_ONE_LINE for v in text[c])
             for c in text.columns}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in text.columns)
    body = "".join("<tr>" + "".join(f"<td{' class=t' if words[c] else ''}>{html.escape(v)}</td>"
                                    for c, v in zip(text.columns, row)) + "</tr>"
                   for row in text.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# the columns ``mpq.pages.verdicts.verdict_columns`` adds to a table of verdicts: the entry page draws them instead
VERDICT_COLUMNS = ("difference", "95% low", "95% high", "per seed", "SE", "SE over images", "df", "smallest detectable",
                   "p", "verdict")


def without_verdict_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A table of verdicts (``verdict_frame``'s CSV) less the columns its figure draws; other tables as they are."""
    if not {"smallest detectable", "verdict"} <= set(df.columns):
        return df
    return df.drop(columns=[c for c in VERDICT_COLUMNS if c in df.columns])


def folded(summary: str, body: str) -> str:
    """``body`` in a closed ``<details>`` block whose ``<summary>`` (plain text, escaped here) says what is inside: the
    page stays short and the reader opens what they want to read.

    >>> folded("T1 <flip rates>", "<table></table>")
    '<details><summary>T1 &lt;flip rates&gt;</summary><table></table></details>'
    """
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"
