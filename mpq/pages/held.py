"""What held and what did not: one line per claim in the verdict words of DESIGN.md section 5, written from the
claims' tables of verdicts (``mpq.pages.claims``); the same lines open the entry page and the README's block."""
from __future__ import annotations

from typing import Mapping, Sequence

from mpq.pages.claims import (PAPER_T6_TEXT, Claim, Judged, by_group, c1_noise, c1_scope, claim_families,
                              distortion_table, excluded_sizes, family, flip_seeds, interval_text, toy_table,
                              verdict_text)
from mpq.pages.metrics import count_span, display_name, seed_note, seeds_text


def word_counts(verdicts: Sequence[Mapping]) -> str:
    """How many verdicts say each of DESIGN.md section 5's words, e.g. "0 hold, 1 reversed here, 8 inconclusive of 9";
    comparisons where the paper states no direction count "higher" and "lower" instead, and those on fewer than 3
    seeds are counted as not judged. Where the verdicts carry their family's words after Holm (``family``), those
    come first and the unadjusted count beside them where it differs."""
    from mpq.studies import stats

    expected = [v["expected"] for v in verdicts]
    before = stats.word_counts([v["word"] for v in verdicts], expected)
    after = stats.word_counts([v.get("holm_word", v["word"]) for v in verdicts], expected)
    if after == before:
        return f"{before} of {len(verdicts)}"
    return f"{after} after Holm within the claim ({before} unadjusted) of {len(verdicts)}"


def mde_span(verdicts: Sequence[Mapping]) -> str:
    """"smallest detectable effects of the inconclusive ones 0.78-16.70 points" (empty when none is inconclusive)."""
    mdes = [v["mde"] for v in verdicts if v["word"] == "inconclusive" and v["mde"] is not None]
    if not mdes:
        return ""
    lo, hi = f"{min(mdes):.2f}", f"{max(mdes):.2f}"
    unit = next(v.get("unit", "points") for v in verdicts if v["word"] == "inconclusive")
    if len(mdes) == 1:
        return f"smallest detectable effect of the inconclusive one {lo} {unit}"
    return f"smallest detectable effects of the inconclusive ones {lo if lo == hi else f'{lo}-{hi}'} {unit}"


def _after_holm(v: Mapping) -> str:
    """" (inconclusive after Holm within the claim)" where the family's correction changes the word, else ""."""
    return f" ({v['holm_word']} after Holm within the claim)" if v.get("holm_word", v["word"]) != v["word"] else ""


def verdict_summary(rows: Sequence[Judged]) -> str:
    """One comparison: its verdict's text (word, difference, interval, and the smallest detectable effect where
    inconclusive), with its word after Holm where that differs. Several: the counts of each word, the ones clear of
    zero named with their intervals, and the span of the smallest detectable effects."""
    if len(rows) <= 1:
        return verdict_text(rows[0].verdict) + _after_holm(rows[0].verdict) if rows else "no comparison"
    verdicts = [r.verdict for r in rows]
    return "; ".join([word_counts(verdicts) + _clear(rows)] + ([mde_span(verdicts)] if mde_span(verdicts) else [])
                     + ([unjudged_span(verdicts)] if unjudged_span(verdicts) else []))


def unjudged_span(verdicts: Sequence[Mapping]) -> str:
    """"differences of the ones not judged -0.78 to +0.12 points" (empty when every one is judged)."""
    diffs = [v["diff"] for v in verdicts if not v.get("judged", True)]
    if not diffs:
        return ""
    unit = next(v.get("unit", "points") for v in verdicts if not v.get("judged", True))
    if len(diffs) == 1:
        return f"difference of the one not judged {diffs[0]:+.2f} {unit}"
    return f"differences of the ones not judged {min(diffs):+.2f} to {max(diffs):+.2f} {unit}"


def _clear(rows: Sequence[Judged], most: int = 3) -> str:
    """" (<name> <word> <interval>; ...)" of the judged comparisons clear of zero (with the word after Holm where it
    differs), "" for none or more than ``most`` (the counts say how many; the entry page's figures name each)."""
    from mpq.studies.stats import CLEAR_WORDS

    clear = [f"{r.name} {r.verdict['word']} {interval_text(r.verdict)}{_after_holm(r.verdict)}" for r in rows
             if r.verdict["word"] in CLEAR_WORDS]
    return f" ({'; '.join(clear)})" if 0 < len(clear) <= most else ""


def _counts_by_group(rows: Sequence[Judged]) -> str:
    """The counts of each group (``word_counts``), then the ones clear of zero and the span of the smallest detectable
    effects over all groups."""
    spans = [x for x in (mde_span([r.verdict for r in rows]), unjudged_span([r.verdict for r in rows])) if x]
    return ("; ".join(f"{group}: {word_counts([r.verdict for r in got])}" for group, got in by_group(rows).items())
            + _clear(rows) + "".join(f"; {x}" for x in spans))


# the claims as "What held and what did not" names them: (key, title, the entry page's section)
CLAIMS = (("C1", "C1 weight coupling", "C1"), ("C2", "C2 bit-width interference", "F2-T1"),
          ("C3/C4", "C3/C4 scheduler and IDM", "T6"), ("C5", "C5 inference-only greedy search", "F5"),
          ("C6 retrained", "C6 no retraining vs retrained", "T2-T4"), ("C6 transfer", "C6 transfer", "T5"))
TITLES = {key: title for key, title, _ in CLAIMS}


def _c1_line(m: dict, claim: Claim | None) -> str | None:
    from mpq.studies.stats import EQUIVALENCE_MARGIN

    if claim is None:
        return None
    rows = claim.rows
    main = [r for r in rows if r.label != "W2A2"]
    low = [r for r in rows if r.label == "W2A2"]
    parts = ([f"at W4A4 and W3A3 (the paper: on par or above): {verdict_summary(main)}"] if main else []) \
        + ([f"{'At' if main else 'at'} W2A2, where C2 expects the coupling to hurt, no direction: "
            f"{verdict_summary(low)}"] if low else [])
    return (f"**{TITLES['C1']}** (the supernet at uniform bits minus LSQ trained alone at those bits, top-1 "
            "points; \"holds\" means the supernet is ahead, \"on par\" that the equivalence test passed within "
            f"+-{EQUIVALENCE_MARGIN:g} points; {c1_scope(m)}; {c1_noise(m)}; words after Holm over the claim's "
            "comparisons): " + ". ".join(parts) + ".")


def _c2_line(m: dict, flips: Claim | None) -> str | None:
    toy = toy_table(m)
    if flips is None and (toy is None or m.get("ablation")):
        return None                       # the ablation's verdicts are the claim's; the toy only illustrates it
    sentences = []
    if flips:
        sentences.append(f"On ResNet-20 ({flip_seeds(m['ablation'])}), the late-training flip rate of "
                         "4/5/6-bit weights with 2-bit candidates minus without them, per cell, points of flip rate "
                         f"(the paper: higher; words after Holm over these comparisons): "
                         f"{verdict_summary(flips.rows)}")
    if toy:
        rows = family(toy.rows)
        sentences.append(f"In the toy of F1 ({m['interference'].get('seeds')} seeds per learning rate, a simulation), "
                         "threshold crossings in the second half with candidates {2,4,6} minus {4,6}, per bit-width "
                         "(words after Holm over the toy's comparisons): "
                         + "; ".join(f"{r.name} {verdict_text(r.verdict)}{_after_holm(r.verdict)}" for r in rows))
    return f"**{TITLES['C2']}**: " + ". ".join(sentences) + "."


def _c34_line(m: dict, t6: Claim | None) -> str | None:
    if t6 is None:
        return None
    metrics = ", ".join(dict.fromkeys(r.label for r in t6.rows))
    line = (f"**{TITLES['C3/C4']}** (T6, ResNet-20, {len(m['ablation']['seeds'])} seeds: each cell minus the plain "
            f"supernet at {metrics}, top-1 points; {PAPER_T6_TEXT}; words after Holm over T6's comparisons): "
            f"{_counts_by_group(t6.rows)}")
    excluded = excluded_sizes(t6.rows)
    if excluded:
        line += (". Upper ends of the 95% intervals under the paper's effect, so an effect that large is excluded "
                 f"here: {excluded}")
    space = [r for r in m["ablation"].get("space", {}).get("rows", []) if "both searched in" in r["comparison"]]
    if space:
        line += (". The training effect at a fixed search space (a scheduler cell minus plain searched in that cell's "
                 "final space): " + "; ".join(f"{r['comparison'].split(',')[0]} at {r['metric']} {verdict_text(r['verdict'])}"
                                               for r in space))
    dist = distortion_table(m)
    if dist:
        line += (". IDM's pull on the BN outputs (F3/F4, distortion in % of the feature variance, the paper: lower): "
                 + "; ".join(f"{r.label} {verdict_text(r.verdict)}" for r in dist.rows))
    scheduler = m["ablation"].get("scheduler", {}).get("summary")
    if scheduler and scheduler != "No run had a scheduler.":
        line += ". " + scheduler.rstrip(".")
    return line + "."


def _c5_line(m: dict, claim: Claim | None) -> str | None:
    search = m.get("search", {})
    if claim is None:
        return None
    parts = []
    f5_rows, equal = claim.parts.get("F5", []), claim.parts.get("S1", [])
    if f5_rows:
        by_method = [Judged(f"greedy {r.label.split(', ')[0]}", f"{r.group} {r.label.split(', ')[1]}", r.verdict)
                     for r in f5_rows]
        parts.append(f"F5, greedy minus random and evolutionary search at equal BitOPs, one run per model-level "
                     f"({seed_note(m)}; test-image noise only), top-1 points (the paper: greedy ahead; words after "
                     "Holm over the claim's comparisons): "
                     + _counts_by_group(by_method))
        ev = search.get("evaluations")
        if ev:
            parts.append(f"Search compute is not equal: greedy {count_span(ev['greedy'])} forward evaluations up to a "
                         f"level's result (one walk of {count_span(ev['greedy walk'])} serves every level), random "
                         f"{count_span(ev['random'])}, evolutionary {count_span(ev['evolutionary'])}")
    if equal:
        study = search["search_study"]
        parts.append(f"Given as many evaluations as the greedy walk (S1, {display_name(study['model'])}, seeds "
                     f"{seeds_text(study['seeds'])}), minus greedy (the paper: lower): "
                     + _counts_by_group([Judged(r.group.split(" search")[0], r.label, r.verdict) for r in equal]))
    return f"**{TITLES['C5']}**: " + ". ".join(parts) + "."


def _c6_retrained_line(m: dict, claim: Claim | None) -> str | None:
    if claim is None:
        return None
    pooled = m["search"].get("seeds", {})
    parts = []
    pooled_rows, others = claim.parts.get("seeds", []), claim.parts.get("one run", [])
    if pooled_rows:
        parts.append(f"{display_name(pooled['model'])} over training seeds {seeds_text(pooled['seeds'])} (both noise "
                     f"sources): {verdict_summary(pooled_rows)}")
    if others:
        models = list(dict.fromkeys(r.group for r in others))
        parts.append(f"{' and '.join(models)}, one run per level ({seed_note(m)}; test-image noise only): "
                     f"{verdict_summary(others)}")
    from mpq.studies.stats import EQUIVALENCE_MARGIN

    return (f"**{TITLES['C6 retrained']}** (no retraining minus the same configuration retrained, top-1 points; the "
            "paper: at least on par, so \"holds\" means no retraining is ahead and \"on par\" that the equivalence "
            f"test passed within +-{EQUIVALENCE_MARGIN:g} points; words after Holm over the claim's comparisons): "
            + "; ".join(parts) + ".")


def _c6_transfer_line(m: dict, claim: Claim | None) -> str | None:
    if claim is None:
        return None
    tr = m["transfer"]
    rows = claim.rows
    lsq = [r for r in rows if "LSQ" in r.label]
    other = [r for r in rows if "LSQ" not in r.label]
    parts = ([f"minus LSQ fine-tuned on the target (the paper: above): {verdict_summary(lsq)}"] if lsq else []) + \
        ([f"minus the supernet built from the FP model with no one-shot pre-training (no direction): {verdict_summary(other)}"]
         if other else [])
    return (f"**{TITLES['C6 transfer']}** (T5, {len(tr.get('transfer', {}).get('seeds', []))} fine-tuning seeds, equal "
            f"passes per arm, top-1 points of this method with no retraining; words after Holm over T5's "
            "comparisons): " + "; ".join(parts) + ".")


def held_lines(m: dict) -> list[str]:
    """What held and what did not: one line per claim (C6 has two: retraining and transfer), each with section 5's
    verdict words, written from the metrics alone; the same lines open the entry page and the README's block. A
    claim with several comparisons gives the count of each word, the comparisons clear of zero with their
    intervals and the span of the smallest detectable effects; one comparison gives its verdict's text. A claim
    whose metrics predate the verdicts says so (``pending_line``)."""
    builders = {"C1": _c1_line, "C2": _c2_line, "C3/C4": _c34_line, "C5": _c5_line,
                "C6 retrained": _c6_retrained_line, "C6 transfer": _c6_transfer_line}
    claims = claim_families(m)
    lines = []
    for key, _, _ in CLAIMS:
        line = builders[key](m, claims.get(key)) or pending_line(m, key)
        if line:
            lines.append(line)
    return lines


# claims whose verdicts come from one metrics file: claim -> (metrics file, the stage that writes it)
VERDICT_SOURCES = {"C2": ("ablation", "bit_interference"), "C3/C4": ("ablation", "bit_interference"),
                   "C5": ("search", "search"), "C6 retrained": ("search", "search"),
                   "C6 transfer": ("transfer", "transfer")}


def pending_line(m: dict, claim: str) -> str | None:
    """The line of a claim whose metrics file exists but holds no verdict in the current form (written before
    verdicts counted the test images' noise, DESIGN.md section 5): the page says so instead of dropping it."""
    if claim not in VERDICT_SOURCES or not m.get(VERDICT_SOURCES[claim][0]):
        return None
    key, stage = VERDICT_SOURCES[claim]
    return (f"**{TITLES[claim]}**: no verdict yet: reports/metrics/{key}.json was written before the verdicts counted "
            f"the test images' noise; `dvc repro {stage}` writes it anew.")
