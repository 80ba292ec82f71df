"""The entry page's first screen: one row per claim (C1-C6 as "What held" names them, with T6's scheduler variant
apart): what the paper says, the headline comparison measured here with its interval, its word after Holm within
the claim and the claim's tally of words, its seeds and the smallest effect it could detect, and a link to the
claim's section. Every number is read from the claims' families (``claims.claim_families``), the verdicts the
held/not-held lines print."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence

from mpq.pages.claims import CELL_NAMES, PAPER_T6, Claim, Judged, claim_families, interval_text
from mpq.pages.held import CLAIMS, TITLES

VARIANT = "sched_full"          # T6's cell for this package's scheduler variant: a row of its own, apart from C3/C4


@dataclass(frozen=True)
class ClaimRow:
    """A row of the verdict table: the claim's key (``held.CLAIMS``, or ``VARIANT``), its name, what the paper says,
    what the difference measures, and the section it links to."""

    key: str
    name: str
    paper: str
    measure: str
    section: str


_SECTIONS = {key: section for key, _, section in CLAIMS}
_PAPER = {"C1": "on par with or above LSQ trained alone at W4A4 and W3A3",
          "C2": "2-bit candidates raise the flip rate of 4-6-bit weights",
          "C3/C4": (f"over plain: scheduler {PAPER_T6['sched']:+.1f}, IDM {PAPER_T6['idm']:+.1f}, both "
                    f"{PAPER_T6['both']:+.1f} points"),
          "C5": "greedy search ahead of random and evolutionary search",
          "C6 retrained": "no retraining at least on par with retraining",
          "C6 transfer": "after fine-tuning, above LSQ fine-tuned on the target"}
ROWS = [ClaimRow(key, TITLES[key], _PAPER[key], "flip-rate points" if key == "C2" else "top-1 points",
                 _SECTIONS[key]) for key, _, _ in CLAIMS]
ROWS.insert(3, ClaimRow(VARIANT, "T6 scheduler variant", f"not in the paper: {CELL_NAMES[VARIANT]}", "top-1 points",
                        "T6"))

WORD_ORDER = ("holds", "reversed here", "higher", "lower", "on par", "inconclusive", "not judged")


def headline(rows: Sequence[Judged]) -> Judged:
    """The comparison a claim's row shows: of the comparisons with a word (3 seeds or more) in the paper's direction,
    where it states one, else of those with a word, else of all, the one with the smallest p (the first on a tie).

    >>> v = lambda p, judged=True, expected=1: {"p": p, "judged": judged, "expected": expected}
    >>> headline([Judged("", "a", v(0.01, judged=False)), Judged("", "b", v(0.5)), Judged("", "c", v(0.2))]).label
    'c'
    >>> headline([Judged("", "a", v(0.01, expected=0)), Judged("", "b", v(0.5))]).label
    'b'
    """
    judged = [r for r in rows if r.verdict.get("judged", True)]
    pool = [r for r in judged if r.verdict["expected"] != 0] or judged or list(rows)
    return min(pool, key=lambda r: 1.0 if r.verdict["p"] is None else r.verdict["p"])


def tally(rows: Sequence[Judged]) -> str:
    """The words after Holm of a claim's comparisons, most telling first: "of 8: 1 lower, 2 inconclusive, 5 not
    judged"."""
    words = ["not judged" if w.endswith("not judged") else w
             for w in (r.verdict.get("holm_word", r.verdict["word"]) for r in rows)]
    counts = [f"{words.count(w)} {'hold' if w == 'holds' else w}" for w in WORD_ORDER if w in words]
    return f"of {len(words)}: " + ", ".join(counts)


def row_comparisons(row: ClaimRow, claims: dict[str, Claim]) -> list[Judged]:
    """The comparisons of ``claims`` (``claim_families``) that a row summarises, with their words after Holm within
    their claim: T6's variant rows apart from C3/C4's."""
    variant = CELL_NAMES[VARIANT]
    if row.key == VARIANT:
        return [r for r in claims["C3/C4"].rows if r.group.startswith(variant)] if "C3/C4" in claims else []
    rows = claims[row.key].rows if row.key in claims else []
    return [r for r in rows if not r.group.startswith(variant)] if row.key == "C3/C4" else rows


def _cells(row: ClaimRow, rows: Sequence[Judged]) -> list[str]:
    link = f"<a href='#{row.section}'>{html.escape(row.name)}</a>"
    if not rows:
        return [link, html.escape(row.paper), "no verdict in this run", "", "", ""]
    top = headline(rows)
    v = top.verdict
    word = v.get("holm_word", v["word"])
    unadjusted = f" ({html.escape(v['word'])} unadjusted)" if word != v["word"] else ""
    return [link, html.escape(row.paper),
            f"{html.escape(top.name)}: <b>{interval_text(v)}</b> <span class='meta'>{row.measure}</span>",
            f"<b>{html.escape(word)}</b>{unadjusted}<br><span class='meta'>{tally(rows)}</span>",
            str(v["n"]), "" if v["mde"] is None else f"{v['mde']:.2f}"]


def verdict_table_html(m: dict) -> str:
    """The verdict table of the metrics ``m``, one row per ``ROWS`` entry (a claim this run has no verdict for says
    so), and a line saying how a row is chosen."""
    claims = claim_families(m)
    head = ("claim", "the paper says", "measured here: difference [95% interval]", "word after Holm",
            "seeds", "smallest detectable")
    body = "".join("<tr>" + "".join(f"<td class=t>{c}</td>" for c in _cells(row, row_comparisons(row, claims)))
                   + "</tr>" for row in ROWS)
    return ("<table class='verdicts' id='verdicts'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table>"
            "<p class='meta'>Each row shows one comparison of its claim: of those judged on 3 seeds or more (in the "
            "paper's direction where it states one), the one with the smallest p. Its word is after Holm's correction "
            "within the claim; the tally counts every comparison of the claim. All of them are in the claim's section "
            "and in <a href='#held'>What held and what did not</a>.</p>")
