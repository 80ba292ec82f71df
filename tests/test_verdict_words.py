"""DESIGN.md section 5's words where they are made (issue 42): no direction word and no "on par" on a comparison
with fewer than 3 training seeds, "on par" only from the equivalence test, every verdict with its variance
components and degrees of freedom, each claim's counts after Holm, and the entry page's tables without a
direction the paper does not state or a row counted twice. Fast: the functions that produce the words, on
constructed data and on the committed metrics, no pipeline run."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mpq.pages import claims
from mpq.pages.claims import Judged, c1_table, t6_table, toy_table
from mpq.pages.held import held_lines
from mpq.pages.metrics import load_metrics
from mpq.studies.interference import ablation_rows
from mpq.studies.stats import CLEAR_WORDS, audit_verdicts, holm_words, paired_verdict, verdict

pytestmark = pytest.mark.timeout(60)

# a direction word (or "on par") said of a one- or two-run interval, in the words' text form
UNJUDGED_WITH_WORD = re.compile(r"\b(holds|reversed here|higher|lower|on par)(: | \()[^;]*(test-image noise only|, 2 "
                                r"seeds)")


def test_fewer_than_three_seeds_get_no_word_whatever_the_effect():
    rng = np.random.default_rng(0)
    ref = rng.random((2, 500)) < 0.5
    arm = ref.copy()
    arm[:, :200] = True                                       # a huge effect, clear of zero on the images alone
    made = [verdict([9.0], [0.1], e) for e in (-1, 0, 1)] + [verdict([9.0, 9.1], [0.1, 0.1], e) for e in (-1, 0, 1)]
    made += [paired_verdict(arm[:1], ref[:1], e) for e in (-1, 0, 1)] + [paired_verdict(arm, ref, e) for e in (-1, 1)]
    made += [verdict([0.0], [0.01]), verdict([0.0, 0.0], [0.01, 0.01])]          # inside the equivalence margin
    assert all(v.clear or abs(v.diff) < 0.01 for v in made)
    assert {v.word for v in made} == {"one run, not judged", "2 runs, not judged"}
    assert all(w.endswith("not judged") for w in holm_words(made))
    found, problems = audit_verdicts([{"verdict": v.as_dict()} for v in made])
    assert found == len(made) and problems == []
    # the audit itself catches a word on one run and a verdict without its components
    stale = {**verdict([9.0], [0.1], 1).as_dict(), "word": "holds", "text": "holds: +9.00 [...]"}
    del stale["within_var"]
    assert audit_verdicts({"t": [stale]})[1] == ["t[0]: 'holds' on 1 seed", "t[0]: no within_var recorded"]


def _write_run(folder, cell, seed, correct):
    path = folder / f"{cell}-{seed}"
    path.mkdir(parents=True)
    wrong = np.where(correct, 0, 1).astype(np.int16)
    np.savez(path / "predictions.npz", labels=np.zeros(len(correct), dtype=np.int16), W2A2=wrong, lowest=wrong)
    np.savez(path / "features.npz", low=np.zeros(3), high=np.ones(3))
    (path / "result.json").write_text(json.dumps({"test_acc": {"W2A2": float(np.mean(correct))}}))


def test_t6_rows_on_two_seeds_and_repeated_metrics(tmp_path):
    """The ablation's rows on two seeds carry their interval and no word; "lowest", the same predictions as W2A2,
    is not a second comparison."""
    from mpq.studies.interference import load_runs

    for seed in (0, 1):
        _write_run(tmp_path, "plain", seed, np.arange(200) < 100)
        _write_run(tmp_path, "idm", seed, np.arange(200) < 160)            # +30 points, far clear of zero
    runs = load_runs(tmp_path, ["plain", "idm"], [0, 1])
    rows = ablation_rows(runs, ["plain", "idm"], [0, 1], ["W2A2", "lowest"])
    assert [(r["cell"], r["metric"], r.get("same as")) for r in rows] == [("plain", "W2A2", "lowest"),
                                                                         ("idm", "W2A2", "lowest")]
    assert rows[1]["verdict"]["word"] == "2 runs, not judged" and rows[1]["verdict"]["low"] > 0
    assert audit_verdicts(rows) == (1, [])
    # the entry page draws the stored rows once, and says which it left out
    v = rows[1]["verdict"]
    table = t6_table({"ablation": {"seeds": [0, 1], "t6": {"rows": [
        {"cell": "idm", "metric": "W2A2", "verdict": v}, {"cell": "idm", "metric": "lowest", "verdict": v}]}}})
    assert [r.label for r in table.rows] == ["W2A2"]
    assert "shown once, as the same comparison: IDM minus plain lowest = W2A2" in table.title
    assert table.note == "1 comparison, 1 on fewer than 3 seeds and not judged"


def test_toy_reports_every_bit_width():
    runs = [{"lr": lr, "seed": s, "candidates": c, "crossings_w4_second_half": x4, "crossings_w6_second_half": x6}
            for lr in (0.05, 0.01) for s in range(3)
            for c, x4, x6 in (("{4,6}", 10 + s, 50 + s), ("{2,4,6}", 30 + 2 * s, 20 - s))]
    table = toy_table({"interference": {"runs": runs}})
    assert [(r.group, r.label) for r in table.rows] == [("4-bit", "lr 0.05"), ("4-bit", "lr 0.01"),
                                                        ("6-bit", "lr 0.05"), ("6-bit", "lr 0.01")]
    assert [r.verdict["word"] for r in table.rows] == ["holds", "holds", "reversed here", "reversed here"]
    line = held_lines({"interference": {"runs": runs, "seeds": 3}})[0]
    assert "6-bit lr 0.01 reversed here: -32.00 [" in line


def test_c1_gives_no_direction_at_w2a2_and_no_on_par_without_the_test():
    m = {"supernet": {"test_images": 10000, "models": {"resnet20": {"uniform": {
        "4": {"test_acc": 0.9}, "2": {"test_acc": 0.8}}}}},
         "baselines": {"test_images": 10000, "models": {"resnet20": {"4": {"test_acc": 0.9}, "2": {"test_acc": 0.85}}}},
         "search": {"seeds": {"model": "resnet20", "seeds": [0, 1, 2], "rows": [
             {"row": "supernet W4A4", "per seed (%)": "90.00 / 90.10 / 89.90"},
             {"row": "LSQ W4A4", "per seed (%)": "90.00 / 90.00 / 90.00"},
             {"row": "supernet W2A2", "per seed (%)": "80.00 / 80.50 / 79.50"},
             {"row": "LSQ W2A2", "per seed (%)": "85.00 / 85.00 / 85.00"}]}}}
    rows = {r.label: r.verdict for r in c1_table(m).rows}
    assert rows["W2A2"]["expected"] == 0 and rows["W2A2"]["word"] == "lower"
    # W4A4: 0.00 points, but the unpaired bound over 10,000 images is too wide for the equivalence test
    assert rows["W4A4"]["word"] == "inconclusive" and rows["W4A4"]["p_equivalence"] > 0.05
    line = held_lines(m)[0]
    assert "\"inconclusive\" is on par" not in line and "within +-0.4 points" in line
    assert "At W2A2, where C2 expects the coupling to hurt, no direction: lower: -5.00 [" in line


def test_committed_metrics_read_under_the_rules(root):
    """The committed run's verdicts, read by the entry page: no table row on fewer than 3 seeds has a word, and no
    line of "What held" or the README's block says one of a one- or two-run interval."""
    m = load_metrics(root / "reports")
    builders = [claims.c1_table, claims.toy_table, claims.flip_table, claims.t6_table, claims.space_table,
                claims.distortion_table, claims.seeds_gap_table, claims.retrained_table, claims.f5_table,
                claims.s1_table, claims.f7_table, claims.t5_table]
    tables = [t for t in (b(m) for b in builders) if t is not None]
    rows = [r for t in tables for r in t.rows]
    assert len(rows) > 50 and any(r.verdict["n"] < 3 for r in rows)
    _, problems = audit_verdicts([r.verdict for r in rows])
    assert [p for p in problems if "recorded" not in p] == []     # the stored records predate the components
    assert all(r.verdict["word"] not in CLEAR_WORDS for r in rows if r.verdict["n"] < 3)
    text = "\n".join(held_lines(m))
    assert not UNJUDGED_WITH_WORD.search(text) and "inconclusive\" is on par" not in text
    assert not UNJUDGED_WITH_WORD.search((root / "README.md").read_text())
    # each claim's headline gives its counts after Holm over the claim's family
    assert "after Holm within the claim (" in text and "unadjusted) of " in text


def test_family_words_after_holm_by_hand():
    rows = [Judged("", f"r{i}", verdict([d - 0.385, d, d + 0.385], [0.0] * 3, 1).as_dict()) for i, d in
            enumerate((1.0, 1.0, 5.0))]                     # p 0.046, 0.046 and far below: Holm keeps the last
    words = [r.verdict["holm_word"] for r in claims.family(rows)]
    assert [r.verdict["word"] for r in rows] == ["holds"] * 3 and words == ["inconclusive", "inconclusive", "holds"]
