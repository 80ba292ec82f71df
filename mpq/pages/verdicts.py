"""Tables of verdicts for reading: rows whose ``"verdict"`` is a stored ``Verdict.as_dict()`` (mpq.studies.stats),
flattened into the columns a reader compares, with the table's note (how many comparisons, how many clear of zero,
after Holm) as part of the caption.

Works on the plain data the studies return and the metrics JSON holds; it imports no study.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from mpq.pages.display import show_table


def verdict_columns(v: Mapping) -> dict:
    """The display columns of one stored verdict: difference, 95% interval, every seed's value, its SE and the
    images' own part of it, the interval's degrees of freedom, the smallest detectable effect, p and the word."""
    return {"difference": v["diff"], "95% low": v["low"], "95% high": v["high"],
            "per seed": " / ".join(f"{d:+.2f}" for d in v["per_seed"]), "SE": v["se"],
            "SE over images": v["se_images"], "df": v.get("df"), "smallest detectable": v["mde"], "p": v["p"],
            "verdict": v["word"]}


def verdict_frame(rows: Sequence[Mapping]) -> pd.DataFrame:
    """One row per input row: its own columns (all but ``"verdict"``), then ``verdict_columns`` where it carries a
    verdict (rows without one, e.g. the reference arm, leave them blank)."""
    return pd.DataFrame([{**{k: v for k, v in r.items() if k != "verdict"},
                          **(verdict_columns(r["verdict"]) if isinstance(r.get("verdict"), Mapping) else {})}
                         for r in rows])


def show_verdicts(rows: Sequence[Mapping], note: str, caption: str = "", **kwargs: Any) -> Any:
    """``show_table`` of ``verdict_frame(rows)`` captioned "<caption>; <note>" (``kwargs`` as for ``show_table``)."""
    return show_table(verdict_frame(rows), caption=f"{caption}; {note}" if caption else note, **kwargs)
