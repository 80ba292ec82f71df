"""The front door (issue 28): a short README with the two commands near the top and no run history, an entry page
that states a verdict for every claim, draws each table of verdicts, and formats its tables for reading."""
from __future__ import annotations

import copy
import html
import json
import re
import struct
from html.parser import HTMLParser

import pandas as pd
import pytest

from mpq.pages import claims, forest, held, sections, tables
from mpq.pages.claims import Judged, VerdictTable, c1_table, toy_table
from mpq.pages.entry import build_index
from mpq.pages.forest import verdict_figure
from mpq.pages.held import held_lines, mde_span, verdict_summary, word_counts
from mpq.pages.metrics import load_metrics
from mpq.pages.tables import column_decimals, format_column, reading_frame, table_html, without_verdict_columns
from mpq.studies.stats import unpaired_se, verdict

pytestmark = pytest.mark.timeout(30)

README_LINES = 150          # the "at most about 150 lines"
COMMANDS_WITHIN = 40
RUN_HISTORY = ("previous run", "this session", "commit hash")
# a verdict as section 5 words it: counts of a table's words, or one verdict's word with its difference
VERDICT = re.compile(r"\d+ hold, \d+ reversed here|\d+ inconclusive of \d+|\d+ not judged \(fewer than 3 seeds\) of \d+|"
                     r"\b(holds|reversed here|inconclusive|on par|not judged)\b[^:;]*: [+-]\d")


# --------------------------------------------------------------------------------------------------- README

def test_readme_stays_a_front_door(root):
    """At most about 150 lines, both commands (set-up and run, set-up and test) in the first 40, and no run history:
    git holds that."""
    lines = (root / "README.md").read_text().splitlines()
    assert len(lines) <= README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    top = lines[:COMMANDS_WITHIN]
    assert any("bash scripts/bootstrap.sh" in line and "dvc repro" in line for line in top), "run command not near top"
    assert any("bash scripts/bootstrap.sh" in line and "pytest" in line for line in top), "test command not near top"
    text = "\n".join(lines).lower()
    found = [w for w in RUN_HISTORY if w in text]
    assert not found, f"run history in README.md: {found}"


# --------------------------------------------------------------------------------------------- metrics

def _refuse_constant(token: str):
    raise ValueError(f"{token} is not JSON")


def test_every_committed_metrics_file_is_strict_json(root):
    """NaN, Infinity and -Infinity are Python's extensions, which other languages' parsers reject."""
    files = sorted((root / "reports" / "metrics").glob("*.json"))
    assert len(files) >= 6
    for path in files:
        json.loads(path.read_text(), parse_constant=_refuse_constant)
    with pytest.raises(ValueError, match="NaN is not JSON"):
        json.loads('{"a": NaN}', parse_constant=_refuse_constant)


# ------------------------------------------------------------------------------------------- entry page

class _Sections(HTMLParser):
    """The text of each <li> of the "What held" list, the table of contents' links, and every <img> and <ul>."""

    def __init__(self):
        super().__init__()
        self.held, self.contents, self.images, self.lists = [], [], [], 0
        self._in_held = self._in_nav = self._li = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "ul":
            self.lists += 1
            self._in_held = a.get("class") == "held"
        if tag == "nav":
            self._in_nav = True
        if tag == "a" and self._in_nav:
            self.contents.append(a.get("href", ""))
        if tag == "li" and self._in_held:
            self.held.append("")
            self._li = True
        if tag == "img":
            self.images.append(a.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "nav":
            self._in_nav = False
        if tag == "ul":
            self._in_held = False
        if tag == "li":
            self._li = False

    def handle_data(self, data):
        if self._li and self._in_held:
            self.held[-1] += data


def _page(reports, monkeypatch) -> str:
    """The entry page with a one-pixel stand-in for each verdict figure (the figures are tested on their own)."""
    monkeypatch.setattr(forest, "verdict_figure", lambda table: b"\x89PNG-stand-in")
    return build_index(reports)


def _claims_have_words(held: list[str]) -> None:
    """Each claim C1-C6 opens at least one line ("C3/C4 ..." opens both), and each such line holds a verdict word of
    section 5 or says that its verdict is pending."""
    for claim in ("C1", "C2", "C3", "C4", "C5", "C6"):
        lines = [line for line in held if claim in re.match(r"\s*(C\d(/C\d)?)", line).group(1).split("/")]
        assert lines, f"no line for {claim}"
        for line in lines:
            assert VERDICT.search(line) or "no verdict yet" in line, f"{claim} has no verdict word: {line[:120]}"


def test_entry_page_states_a_verdict_for_every_claim_and_has_contents(root, monkeypatch):
    page = _page(root / "reports", monkeypatch)
    parsed = _Sections()
    parsed.feed(page)
    _claims_have_words(parsed.held)
    assert {"#held", "#environment"} <= set(parsed.contents)
    assert {f"#{item.id}" for item in sections.ITEMS} <= set(parsed.contents)
    assert "&lt;NA&gt;" not in page and "<NA>" not in page and ">nan<" not in page.lower()


def _new_format(m: dict) -> dict:
    """The committed metrics with search.json and transfer.json in the form the current studies write (stored
    verdict dicts, T5 comparisons with their note, the retraining check), built from the committed numbers."""
    from mpq.studies.search_results import search_evaluations

    m = copy.deepcopy(m)
    s, n = m["search"], m["search"]["test_images"]

    def per(text):
        return [float(x.split(":")[-1]) for x in text.split(" / ")]

    if "retrained" in s:                                 # search.json already in the current form
        s = None
    retrained, f5 = [], []
    for name, r in (s["models"] if s else {}).items():
        for lv, e in r["levels"].items():
            g = e["greedy"]["test_acc"]
            if "retrained" in e:
                v = verdict([100 * e["retrained"]["no_retrain_minus_retrained"]], [100 * e["retrained"]["paired_se"]], 1)
                retrained.append({"model": name, "BitOPs level": lv, "no retraining (%)": 100 * g,
                                  "retrained (%)": 100 * e["retrained"]["test_acc"], "verdict": v.as_dict()})
            for other in ("random", "evolutionary"):
                o = e[other]["test_acc"]
                f5.append({"model": name, "BitOPs level": lv, "comparison": f"greedy minus {other}",
                           "verdict": verdict([100 * (g - o)], [unpaired_se(g, o, n)], 1).as_dict()})
    if s is None:
        return _new_transfer(m)
    s["retrained"] = {"rows": retrained, "note": "NOTE-T2"}
    s["f5"] = {"rows": f5, "note": "NOTE-F5"}
    s["evaluations"] = search_evaluations(s["models"])
    for gap in s["seeds"]["gaps"]:
        gap["verdict"] = verdict(per(gap["per seed"]), [float(x) for x in gap["paired SE per seed"].split(" / ")],
                                 1).as_dict()
    s["seeds"]["note"] = "NOTE-SEEDS"
    for row in s["budget"]["rows"]:
        d = per(row["per seed"])
        row["verdict"] = verdict(d, [0.25] * len(d), 1 if "retrained" in row["comparison"] else 0).as_dict()
    s["budget"]["note"] = "NOTE-F7"
    for row in s["search_study"]["rows"]:
        d = per(row["per seed"])
        row["verdict"] = verdict(d, [float(x) for x in row["paired SE per seed"].split(" / ")], -1).as_dict()
    s["search_study"]["note"] = "NOTE-S1"
    s["retrain_check"] = {"model": "mobilenetv2_28", "level": 3.5, "uniform_bits": 3, "seeds": [0, 1, 2],
                          "verdict": verdict([-0.2, 0.1, 0.3], [0.3] * 3, 1).as_dict()}
    return _new_transfer(m)


def _new_transfer(m: dict) -> dict:
    """``m`` with transfer.json's comparisons as stored verdict dicts (unless they already are)."""
    def per(text):
        return [float(x.split(":")[-1]) for x in text.split(" / ")]

    t = m["transfer"]
    if "comparisons_note" in t:
        return m
    for c in t["comparisons"]:
        d = per(c["per seed"])
        c["verdict"] = verdict(d, [0.5] * len(d), 1 if "LSQ" in c["this method minus"] else 0).as_dict()
    t["comparisons_note"] = "NOTE-T5"
    return m


@pytest.fixture
def new_reports(root, tmp_path):
    """A copy of reports/ whose search.json and transfer.json have the current form (``_new_format``)."""
    import json
    import shutil

    reports = tmp_path / "reports"
    shutil.copytree(root / "reports" / "metrics", reports / "metrics")
    shutil.copytree(root / "reports" / "tables", reports / "tables")
    m = _new_format(load_metrics(root / "reports"))
    for key in ("search", "transfer"):
        (reports / "metrics" / f"{key}.json").write_text(json.dumps(m[key]))
    return reports


def test_entry_page_draws_every_table_of_verdicts_and_repeats_none_in_bullets(new_reports, monkeypatch):
    """With the current metrics every claim has its words (no "no verdict yet"), each table of verdicts is a figure
    with its note, and no list but "What held" remains (the bullets that repeated the tables are gone)."""
    page = _page(new_reports, monkeypatch)
    parsed = _Sections()
    parsed.feed(page)
    _claims_have_words(parsed.held)
    assert not any("no verdict yet" in line for line in parsed.held)
    assert parsed.lists == 1
    drawn = [src for src in parsed.images if src.startswith("data:image/png;base64,")]
    assert len(drawn) == 12        # C1, F1, F2/T1, F3/F4, T2 with seeds, T2-T4 one run, T5, T6, T6's space, F5, F7, S1
    m = load_metrics(new_reports)
    s = m["search"]
    # each table's note, counted again from its verdicts under today's rules (not the stored note)
    from mpq.studies.stats import rows_note

    for rows in (s["retrained"]["rows"], s["f5"]["rows"], s["seeds"]["gaps"], s["budget"]["rows"],
                 s["search_study"]["rows"], m["transfer"]["comparisons"]):
        note = rows_note(rows)
        assert page.count(html.escape(note, quote=True)) >= 1, note
    f7 = page[page.index("id='F7'"):page.index("id='S1'")]
    assert "Only the default budget" in f7 and "<code>budget</code> stages" in f7 and "figures/budget_curve.png" not in f7
    assert "data:image/png" in f7 and "Not produced" not in f7
    assert "Retraining check: MobileNetV2-28&#x27;s level-3.5 configuration" in page
    assert "&lt;NA&gt;" not in page and ">nan<" not in page.lower()


def test_stale_metrics_keep_their_pending_lines(root):
    """search.json and transfer.json written before the verdicts (strings, not verdict dicts): their claims say "no
    verdict yet" and which stage writes them anew, instead of disappearing."""
    m = load_metrics(root / "reports")
    m["search"] = {"seeds": {"gaps": [{"verdict": "within the seed spread"}]}, "models": {}}
    m["transfer"] = {"comparisons": [{"verdict": "higher, beyond the seed spread"}]}
    lines = held_lines(m)
    for title, stage in (("C5 inference-only greedy search", "search"), ("C6 no retraining vs retrained", "search"),
                         ("C6 transfer", "transfer")):
        line = next(x for x in lines if x.startswith(f"**{title}**"))
        assert "no verdict yet" in line and f"`dvc repro {stage}`" in line


def test_held_lines_are_one_per_claim_in_order(new_reports):
    lines = held_lines(load_metrics(new_reports))
    assert [x.split("**")[1] for x in lines] == [title for _, title, _ in held.CLAIMS]


# ---------------------------------------------------------------------------------------------- C1 and F1

def test_c1_one_run_uses_the_unpaired_test_image_se_and_says_one_run():
    """One run per model and only accuracies kept: the interval is the unpaired SE of the two accuracies over the
    test images (t on the images' df), shown as one run and not judged; the direction is "on par or above" at
    W3A3, none at W2A2."""
    m = {"supernet": {"seed": 0, "test_images": 10000, "models": {"resnet20": {"uniform": {"3": {"test_acc": 0.90}}}}},
         "baselines": {"test_images": 10000, "models": {"resnet20": {"3": {"test_acc": 0.88}}}}}
    table = c1_table(m)
    (row,) = table.rows
    se = unpaired_se(0.90, 0.88, 10000)           # 100 * sqrt((0.9 * 0.1 + 0.88 * 0.12) / 10000) = 0.4423 points
    assert se == pytest.approx(0.4423, abs=1e-4)
    assert row.verdict["diff"] == pytest.approx(2.0) and row.verdict["se"] == pytest.approx(se)
    assert row.verdict["low"] == pytest.approx(2.0 - 1.960201 * se, abs=1e-5) and row.verdict["df"] == 9999
    assert row.verdict["word"] == "one run, not judged" and row.verdict["expected"] == 1
    assert row.verdict["text"].startswith("one run, not judged: +2.00 [")
    assert row.verdict["text"].endswith("test-image noise only")
    assert row.group == "ResNet-20" and row.label == "W3A3"
    m["supernet"]["models"]["resnet20"]["uniform"]["2"] = {"test_acc": 0.80}
    m["baselines"]["models"]["resnet20"]["2"] = {"test_acc": 0.82}
    assert [r.verdict["expected"] for r in c1_table(m).rows] == [1, 0]      # C2 expects W2A2 to suffer: no direction


def test_c1_pools_the_replicated_model_over_its_seeds():
    m = {"supernet": {"test_images": 10000, "models": {"resnet20": {"uniform": {"4": {"test_acc": 0.8977}}}}},
         "baselines": {"test_images": 10000, "models": {"resnet20": {"4": {"test_acc": 0.8998}}}},
         "search": {"seeds": {"model": "resnet20", "seeds": [0, 1, 2], "rows": [
             {"row": "supernet W4A4", "per seed (%)": "89.77 / 89.64 / 89.75"},
             {"row": "LSQ W4A4", "per seed (%)": "89.98 / 90.02 / 89.94"}]}}}
    v = c1_table(m).rows[0].verdict
    assert v["n"] == 3 and v["per_seed"] == pytest.approx([-0.21, -0.38, -0.19])
    line = held_lines(m)[0]
    assert line.startswith("**C1 weight coupling**") and "ResNet-20 over training seeds 0, 1, 2" in line


def test_toy_verdict_pairs_the_candidate_sets_by_seed():
    runs = [{"lr": 0.05, "seed": s, "candidates": c, "crossings_w4_second_half": x}
            for s, (a, b) in enumerate(((0, 490), (0, 480), (2, 532))) for c, x in (("{4,6}", a), ("{2,4,6}", b))]
    v = toy_table({"interference": {"runs": runs}}).rows[0].verdict
    assert v["per_seed"] == [490, 480, 530] and v["se_images"] == 0 and v["word"] == "holds"
    assert v["unit"] == "crossings"


# --------------------------------------------------------------------------------------- verdict summaries

def _v(diffs, se=0.2, expected=1):
    return verdict(diffs, [se] * len(diffs), expected).as_dict()


def test_word_counts_and_mde_span_in_section_5_words():
    vs = [_v([1.0, 1.1, 0.9], 0.0), _v([-1.0, -1.1, -0.9], 0.0), _v([0.1, -0.1, 0.0], 0.3), _v([0.3, -0.2, 0.1], 0.0, 0)]
    assert [v["word"] for v in vs] == ["holds", "reversed here", "inconclusive", "inconclusive"]
    assert word_counts(vs) == "1 hold, 1 reversed here, 0 higher, 0 lower, 2 inconclusive of 4"
    assert word_counts(vs[:3]) == "1 hold, 1 reversed here, 1 inconclusive of 3"
    lo, hi = sorted(f"{v['mde']:.2f}" for v in vs[2:])
    assert mde_span(vs) == f"smallest detectable effects of the inconclusive ones {lo}-{hi} points"
    assert mde_span(vs[:1]) == ""


def test_verdict_summary_names_the_comparisons_clear_of_zero():
    one = [Judged("ResNet-20", "level 3", _v([-1.0]))]
    assert verdict_summary(one) == one[0].verdict["text"] and one[0].verdict["word"] == "one run, not judged"
    rows = [Judged("ResNet-20", "level 3", _v([-1.0, -1.1, -0.9], 0.0)),
            Judged("ResNet-20", "level 4", _v([0.1, 0.3, -0.1], 0.3)), Judged("MobileNetV2", "level 4", _v([2.0]))]
    text = verdict_summary(rows)
    assert text.startswith("0 hold, 1 reversed here, 1 inconclusive, 1 not judged (fewer than 3 seeds) of 3 "
                           "(ResNet-20 level 3 reversed here -1.00 [")
    assert text.endswith(f"smallest detectable effect of the inconclusive one {rows[1].verdict['mde']:.2f} points; "
                         "difference of the one not judged +2.00 points")
    # within a claim's family the headline gives the words after Holm, the unadjusted count beside them
    near = [Judged("", f"row {i}", _v([0.615, 1.0, 1.385], 0.0)) for i in range(2)]   # t 4.5 on 2 df: p 0.046
    assert [r.verdict["word"] for r in near] == ["holds", "holds"]
    assert verdict_summary(claims.family(near)).startswith(
        "0 hold, 0 reversed here, 2 inconclusive after Holm within the claim (2 hold, 0 reversed here, 0 inconclusive "
        "unadjusted) of 2 (row 0 holds +1.00 [")


def test_verdict_figure_is_a_png_as_wide_as_the_page():
    rows = [Judged("plain minus no2bit", f"{b}-bit weights", _v([1.0, 2.0, -0.5], 0.0)) for b in (4, 5, 6)]
    rows.append(Judged("", "far off", _v([30.0, -20.0, 5.0], 0.0)))        # runs off the axis: arrows, numbers kept
    png = verdict_figure(VerdictTable("T", rows, "N"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width == round(100 * forest.FIGURE_WIDTH_IN) and 100 < height < 300


def test_verdict_figure_wraps_a_label_too_long_for_the_room_beside_the_plot():
    long = "level 2.9 minus supernet from the FP model (no one-shot pre-training) and more words still"
    png = verdict_figure(VerdictTable("T", [Judged("animal_mnist", long, _v([0.65, -5.0]))], "N"))  # 2 runs: words
    width, height = struct.unpack(">II", png[16:24])
    assert width == round(100 * forest.FIGURE_WIDTH_IN)
    short = verdict_figure(VerdictTable("T", [Judged("animal_mnist", "level 3", _v([0.65, -5.0]))], "N"))
    assert height > struct.unpack(">II", short[16:24])[1]            # taller: the label runs over two lines or more


# ------------------------------------------------------------------------------------------------ tables

def test_column_decimals_by_what_a_column_holds():
    assert [column_decimals(c) for c in ("top-1 (%)", "difference", "p", "G-BitOPs", "size (MiB)", "training (s)",
                                         "fine-tune s (per run)", "search (s, whole walk)", "BitOPs level", "lr")] \
        == [2, 2, 3, 4, 4, 1, 1, 1, None, None]


def test_format_column_gives_one_number_of_decimals_and_empty_cells():
    assert format_column("top-1 (%)", [90.1349, None, 88.0, float("nan"), pd.NA]) == ["90.13", "", "88.00", "", ""]
    assert format_column("seeds", [3.0, 2.0, None]) == ["3", "2", ""]                      # whole numbers
    assert format_column("BitOPs level", [4.0, 3.5, None]) == ["4", "3.5", ""]             # labels as written
    assert format_column("p", [0.0004, 0.5, 1.0]) == ["< 0.001", "0.500", "1.000"]
    assert format_column("difference", [-0.001, 0.5]) == ["0.00", "0.50"]                   # no "-0.00"
    assert format_column("verdict", ["holds", None]) == ["holds", ""]


def test_reading_frame_drops_empty_columns_and_table_html_has_no_na():
    df = pd.DataFrame({"method": ["FP", "LSQ"], "BitOPs level": [None, 3.0], "empty": [None, float("nan")],
                       "top-1 (%)": [90.13, 89.1], "training epochs": pd.array([pd.NA, 3], dtype="Int64")})
    frame = reading_frame(df)
    assert list(frame.columns) == ["method", "BitOPs level", "top-1 (%)", "training epochs"]
    assert frame.to_dict(orient="list") == {"method": ["FP", "LSQ"], "BitOPs level": ["", "3"],
                                            "top-1 (%)": ["90.13", "89.10"], "training epochs": ["", "3"]}
    html = table_html(df)
    assert "NA" not in html and "nan" not in html.lower() and "<td class=t>FP</td>" in html


def test_verdict_columns_left_out_are_the_ones_verdict_frame_adds():
    """The entry page draws a table's verdicts and leaves their columns to the CSV: the same columns that
    mpq.pages.verdicts adds (two code paths, one list)."""
    from mpq.pages.verdicts import verdict_columns, verdict_frame

    assert tuple(verdict_columns(_v([1.0, 2.0]))) == tables.VERDICT_COLUMNS
    frame = verdict_frame([{"cell": "plain", "top-1": 88.0}, {"cell": "idm", "top-1": 89.1, "verdict": _v([1.0, 1.2])}])
    assert list(without_verdict_columns(frame).columns) == ["cell", "top-1"]
    t5 = pd.DataFrame({"method": ["FP"], "per seed": ["89.75 / 89.80"]})          # not a table of verdicts: kept whole
    assert without_verdict_columns(t5) is t5


def test_flip_seeds_counts_the_seeds_with_a_no2bit_run():
    row = {"comparison": "plain minus no2bit", "w bits": 4, "verdict": _v([1.0, 2.0, -0.5], 0.0)}
    assert claims.flip_seeds({"seeds": [0, 1, 2, 3], "flip_verdicts": {"rows": [row], "note": ""}}) == \
        "3 seeds with a no2bit run"
    assert claims.flip_seeds({"seeds": [0, 1, 2], "flip_verdicts": {"rows": [row], "note": ""}}) == "3 seeds"
    assert claims.flip_seeds({"seeds": [0, 1]}) == "2 seeds"


def test_excluded_sizes_name_the_intervals_that_end_under_the_papers_effect():
    def judged(cell, metric, high):
        return Judged(f"{claims.CELL_NAMES[cell]} minus plain", metric, {"high": high})
    rows = [judged("sched", "W3A3", 0.18), judged("idm", "W3A3", 0.5), judged("both", "W3A3", 0.15),
            judged("both", "greedy 3", 1.27), judged("sched", "greedy 2.5", 0.79)]
    assert claims.excluded_sizes(rows) == ("W3A3: scheduler +0.18 < +0.8, scheduler and IDM +0.15 < +1.2; "
                                           "greedy 2.5: scheduler +0.79 < +0.8")
    assert claims.excluded_sizes(rows[1:2]) == ""


def test_long_lists_of_numbers_wrap_and_short_ones_stay_on_one_line():
    df = pd.DataFrame({"short": ["1.00 / 2.00"], "long": [" / ".join(f"{k}.00" for k in range(9))]})
    html = table_html(df)
    assert "<td>1.00 / 2.00</td>" in html and "<td class=t>0.00 / 1.00" in html
