"""The entry page's first screen (issue 44): a verdict table right under the title, one row per claim (with T6's
scheduler variant apart), its numbers those of the verdicts the held/not-held lines print, its links landing on
the page's sections."""
from __future__ import annotations

import copy
import doctest
from html.parser import HTMLParser

import pytest

from mpq.pages import forest, verdict_table
from mpq.pages.claims import CELL_NAMES, claim_families, family, interval_text, t6_table
from mpq.pages.entry import build_index
from mpq.pages.held import CLAIMS
from mpq.pages.metrics import load_metrics
from mpq.pages.verdict_table import ROWS, VARIANT, headline, verdict_table_html

pytestmark = pytest.mark.timeout(30)


class _Page(HTMLParser):
    """The first start tag after the title's end, every id, and each body row of the verdict table as its cells'
    text and the links in it."""

    def __init__(self):
        super().__init__()
        self.first_after_title, self.ids, self.rows = None, set(), []
        self._title_done = self._in_table = self._in_body = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if self._title_done and self.first_after_title is None:
            self.first_after_title = (tag, a.get("class", ""))
        if tag == "table" and "verdicts" in a.get("class", ""):
            self._in_table = True
        if self._in_table:
            if tag == "tbody":
                self._in_body = True
            elif tag == "tr" and self._in_body:
                self.rows.append({"cells": [], "links": []})
            elif tag == "td" and self._in_body:
                self.rows[-1]["cells"].append("")
            elif tag == "a" and self._in_body:
                self.rows[-1]["links"].append(a.get("href", ""))

    def handle_endtag(self, tag):
        if tag == "h1":
            self._title_done = True
        if tag == "table":
            self._in_table = self._in_body = False

    def handle_data(self, data):
        if self._in_body and self.rows and self.rows[-1]["cells"]:
            self.rows[-1]["cells"][-1] += data


def _parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    return parsed


def test_headline_rule_examples():
    assert doctest.testmod(verdict_table).failed == 0


def test_the_verdict_table_comes_first_with_one_row_per_claim_and_links_on_the_page(root, monkeypatch):
    monkeypatch.setattr(forest, "verdict_figure", lambda table: b"\x89PNG-stand-in")    # drawn: test_front_door
    page = _parse(build_index(root / "reports"))
    assert page.first_after_title == ("table", "verdicts")
    names = [row["cells"][0] for row in page.rows]
    assert names == [r.name for r in ROWS]
    assert len(page.rows) == len(CLAIMS) + 1 and {title for _, title, _ in CLAIMS} <= set(names)
    for row in page.rows:
        assert len(row["cells"]) == 6
        assert len(row["links"]) == 1 and row["links"][0].startswith("#"), row
        assert row["links"][0][1:] in page.ids, f"{row['cells'][0]} links to {row['links'][0]}, not on the page"


def test_each_row_prints_its_claims_verdict_after_holm(root):
    """The committed metrics: each row with a verdict shows a comparison of its claim's family, with that family's
    word after Holm, its interval, seeds and MDE, and no comparison of the claim that the rule prefers has a smaller
    p."""
    m = load_metrics(root / "reports")
    families = claim_families(m)
    page = _parse(f"<h1></h1>{verdict_table_html(m)}")
    assert len(page.rows) == len(ROWS)
    shown = 0
    for spec, row in zip(ROWS, page.rows):
        measured, word, seeds, mde = row["cells"][2:]
        key = "C3/C4" if spec.key == VARIANT else spec.key
        rows = [r for r in (families[key].rows if key in families else [])
                if (spec.key == VARIANT) == r.group.startswith(CELL_NAMES[VARIANT])]
        if not rows:
            assert measured == "no verdict in this run"
            continue
        shown += 1
        top = next(r for r in rows if measured.startswith(f"{r.name}: "))
        v = top.verdict
        assert measured.startswith(f"{top.name}: {interval_text(v)}")
        assert word.startswith(v["holm_word"]) and f"of {len(rows)}:" in word
        assert seeds == str(v["n"]) and mde == f"{v['mde']:.2f}"
        pool = [r for r in rows if r.verdict["judged"]]
        pool = [r for r in pool if r.verdict["expected"] != 0] or pool or rows
        assert top in pool and v["p"] == min(r.verdict["p"] for r in pool)
    assert shown >= 5


def test_the_scheduler_variant_has_its_own_row_judged_within_t6(root):
    """With sched_full in T6 (here: two of the scheduler's rows relabelled), the variant's row shows its comparisons
    alone, C3/C4's row the paper's cells alone, and both take their words after Holm over all of T6."""
    m = copy.deepcopy(load_metrics(root / "reports"))
    extra = [{**r, "cell": VARIANT} for r in m["ablation"]["t6"]["rows"] if r.get("cell") == "sched" and "verdict" in r]
    extra[-1]["reference"] = "sched"
    m["ablation"]["t6"]["rows"] += extra[:2] + extra[-1:]
    t6 = family(t6_table(m).rows)
    variant = [r for r in t6 if r.group.startswith(CELL_NAMES[VARIANT])]
    assert len(variant) == 3
    page = _parse(f"<h1></h1>{verdict_table_html(m)}")
    cells = {spec.key: row["cells"] for spec, row in zip(ROWS, page.rows)}
    assert "of 3:" in cells[VARIANT][3] and cells[VARIANT][2].startswith(CELL_NAMES[VARIANT])
    assert f"of {len(t6) - 3}:" in cells["C3/C4"][3] and CELL_NAMES[VARIANT] not in cells["C3/C4"][2]
    top = headline(variant)
    assert cells[VARIANT][3].startswith(top.verdict["holm_word"])


def test_a_claim_without_verdicts_keeps_its_row_and_says_so(root):
    m = {k: v for k, v in load_metrics(root / "reports").items() if k != "ablation"}
    page = _parse(f"<h1></h1>{verdict_table_html(m)}")
    cells = {spec.key: row["cells"] for spec, row in zip(ROWS, page.rows)}
    assert len(page.rows) == len(ROWS)
    for key in ("C2", "C3/C4", VARIANT):
        assert cells[key][2] == "no verdict in this run"
    assert cells["C1"][2] != "no verdict in this run"
