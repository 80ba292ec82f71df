"""The claims' tables of verdicts, read from the metrics: each comparison (``Judged``) with its verdict in the
words of DESIGN.md section 5, one ``VerdictTable`` per table of the paper (C1, F1, F2/T1, F3/F4, T2-T4, T5, T6, F5,
S1, F7). The held/not-held lines, the entry page's figures and the README all read these, so every verdict
has one source."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from mpq.pages.metrics import MODEL_NAMES, display_name, seed_note, seeds_text
from mpq.studies import stats


def current(verdict: Mapping) -> dict:
    """A stored verdict (``Verdict.as_dict()``) with its words and derived numbers computed by today's rules
    (mpq.studies.stats): a record written under older rules (a word on one run, "inconclusive" for on par, the
    central-t MDE) reads as the statistics say now; its estimate, SE and df are the stored ones."""
    from mpq.studies.stats import Verdict

    return Verdict.from_dict(verdict).as_dict()


def verdict_rows(section) -> list[dict]:
    """The rows of a stored table of verdicts (``{"rows", "note"}``) that carry a verdict (``Verdict.as_dict()``,
    written by mpq.studies.stats; read through ``current``); none for a missing table."""
    rows = section.get("rows", []) if isinstance(section, dict) else []
    return [{**r, "verdict": current(r["verdict"])} for r in rows if isinstance(r.get("verdict"), dict)]


@dataclass(frozen=True)
class Judged:
    """One comparison of a table of verdicts: its group (a model, a cell, a comparison; "" for none), its label
    within the group, and its verdict (``Verdict.as_dict()`` of mpq.studies.stats)."""

    group: str
    label: str
    verdict: dict

    @property
    def name(self) -> str:
        return f"{self.group} {self.label}".strip()


@dataclass(frozen=True)
class VerdictTable:
    """A table of verdicts as the entry page draws it: what each row compares (unit, the paper's direction),
    its rows, and its note (how many comparisons, how many clear of zero by chance, after Holm)."""

    title: str
    rows: list[Judged]
    note: str


def _stored(section, group: Callable[[dict], str], label: Callable[[dict], str]) -> list[Judged]:
    """The rows of a stored table of verdicts (``verdict_rows``) as ``Judged``."""
    return [Judged(group(r), label(r), r["verdict"]) for r in verdict_rows(section)]


def _table_note(rows: Sequence[Judged]) -> str:
    from mpq.studies.stats import Verdict, table_note

    return table_note([Verdict.from_dict(r.verdict) for r in rows])


def family(rows: Sequence[Judged]) -> list[Judged]:
    """The comparisons of one claim (its family, DESIGN.md section 5), each verdict with its word after Holm's
    correction within the family added as ``holm_word`` (``stats.holm_words``)."""
    from mpq.studies.stats import Verdict, holm_words

    words = holm_words([Verdict.from_dict(r.verdict) for r in rows])
    return [Judged(r.group, r.label, {**r.verdict, "holm_word": w}) for r, w in zip(rows, words)]


def drop_duplicates(rows: Sequence[Judged]) -> tuple[list[Judged], list[str]]:
    """``rows`` without a row whose comparison repeats an earlier one of its group (the same per-seed differences,
    SE and df: the same configurations evaluated twice, e.g. IDM's "lowest", which is its uniform W2A2), and the
    dropped ones as "<group> <label> = <kept label>"."""
    kept: list[Judged] = []
    dropped = []
    for r in rows:
        key = (r.group, tuple(r.verdict["per_seed"]), r.verdict["se"], r.verdict["df"])
        same = next((k for k in kept if (k.group, tuple(k.verdict["per_seed"]), k.verdict["se"], k.verdict["df"]) == key),
                    None)
        if same is None:
            kept.append(r)
        else:
            dropped.append(f"{r.group} {r.label} = {same.label}".strip())
    return kept, dropped


# C1: one set of weights serves each uniform bit-width at least as well as LSQ trained for it alone (+1). At W2A2 the
# paper's C2 expects the coupling to hurt, so the two claims point different ways there: no direction (0).
C1_EXPECTED = {"4": 1, "3": 1, "2": 0}


def c1_table(m: dict) -> VerdictTable | None:
    """C1 judged: per model and uniform bit-width, the supernet minus LSQ trained alone (points), in the paper's
    direction where it states one (``C1_EXPECTED``: "on par or above" at W4A4 and W3A3, none at W2A2); "on par" only
    where the equivalence test passes (``stats.EQUIVALENCE_MARGIN``).

    Where search.json holds the "c1" section (``search_results.c1_summary``), its verdicts: each model over its
    training seeds, paired per image (a two-way analysis of the seed-by-image matrix). A run whose stages kept no
    per-image predictions (metrics written before they did) is judged from its accuracies instead: the replicated
    model (search.json's "seeds") over its training seeds, the others on their one run, each run's noise over test
    images the unpaired SE of its two accuracies (``stats.unpaired_se``, an upper bound of the paired one)."""
    from mpq.studies.stats import unpaired_se, verdict

    stored = m.get("search", {}).get("c1", {}).get("rows")
    if stored:
        rows = [Judged(display_name(r["model"]), r["bits"], r["verdict"]) for r in stored]
        return VerdictTable(f"C1: the supernet at uniform bits minus LSQ trained alone, top-1 points ({c1_scope(m)}; "
                            f"{c1_noise(m)}; the paper: on par or above at W4A4 and W3A3, no direction at W2A2)", rows, _table_note(rows))
    sn, base = m.get("supernet", {}).get("models", {}), m.get("baselines", {}).get("models", {})
    if not sn or not base:
        return None
    images = m["baselines"].get("test_images") or m["supernet"].get("test_images")
    if not images:
        return None
    seeds = m.get("search", {}).get("seeds", {})
    per_seed = {r["row"]: [float(x) / 100 for x in r["per seed (%)"].split(" / ")] for r in seeds.get("rows", [])
                if isinstance(r.get("per seed (%)"), str)}
    rows = []
    for name in [n for n in MODEL_NAMES if n in sn] + [n for n in sn if n not in MODEL_NAMES]:
        for bits in ("4", "3", "2"):
            if bits not in sn[name]["uniform"] or bits not in base.get(name, {}):
                continue
            arm, ref = f"supernet W{bits}A{bits}", f"LSQ W{bits}A{bits}"
            if name == seeds.get("model") and arm in per_seed and ref in per_seed:
                a, b = per_seed[arm], per_seed[ref]
            else:
                a, b = [sn[name]["uniform"][bits]["test_acc"]], [base[name][bits]["test_acc"]]
            v = verdict([100 * (x - y) for x, y in zip(a, b)], [unpaired_se(x, y, images) for x, y in zip(a, b)],
                        C1_EXPECTED[bits], images=images)
            rows.append(Judged(display_name(name), f"W{bits}A{bits}", v.as_dict()))
    if not rows:
        return None
    return VerdictTable(f"C1: the supernet at uniform bits minus LSQ trained alone, top-1 points ({c1_scope(m)}; "
                        "test-image noise from the two accuracies, an upper bound; the paper: on par or above at W4A4 "
                        "and W3A3, no direction at W2A2)", rows,
                        _table_note(rows))


def c1_scope(m: dict) -> str:
    stored = m.get("search", {}).get("c1", {}).get("rows")
    if stored:
        by_model = {r["model"]: r["seeds"] for r in stored}
        return "; ".join(f"{display_name(name)} over training seeds {seeds_text(seeds)}" if len(seeds) > 1 else
                         f"{display_name(name)} one run (seed {seeds[0]})" for name, seeds in by_model.items())
    seeds = m.get("search", {}).get("seeds", {})
    if seeds.get("model") in m.get("supernet", {}).get("models", {}) and seeds.get("rows"):
        return (f"{display_name(seeds['model'])} over training seeds {seeds_text(seeds['seeds'])}, the other models one run "
                "each")
    return seed_note(m)


def c1_noise(m: dict) -> str:
    rows = m.get("search", {}).get("c1", {}).get("rows") or []
    if rows and all(r["pairing"] == "per image" for r in rows):
        return "paired per test image, seed and image noise counted once each"
    return "test-image noise from the two accuracies, an upper bound"


def toy_bits(runs: Sequence[Mapping]) -> list[int]:
    """The bit-widths whose threshold crossings the toy's runs record (``crossings_w<b>_second_half``), ascending."""
    keys = {k for r in runs for k in r if re.fullmatch(r"crossings_w\d+_second_half", k)}
    return sorted(int(k[len("crossings_w"):-len("_second_half")]) for k in keys)


def toy_table(m: dict) -> VerdictTable | None:
    """F1 judged per bit-width and learning rate: threshold crossings in the second half with candidates {2,4,6}
    minus {4,6}, paired by seed (a simulation: no test images, the seeds' spread is its only noise). Every
    bit-width the runs record is reported."""
    from mpq.studies.stats import verdict

    runs = m.get("interference", {}).get("runs", [])
    rows = []
    for bits in toy_bits(runs):
        key = f"crossings_w{bits}_second_half"
        for lr in sorted({r["lr"] for r in runs}, reverse=True):
            by = {(r["candidates"], r["seed"]): r[key] for r in runs if r["lr"] == lr and key in r}
            seeds = sorted(s for c, s in by if c == "{2,4,6}" and ("{4,6}", s) in by)
            if seeds:
                v = verdict([by["{2,4,6}", s] - by["{4,6}", s] for s in seeds], [0.0] * len(seeds), 1,
                            unit="crossings")
                rows.append(Judged(f"{bits}-bit", f"lr {lr:g}", v.as_dict()))
    return VerdictTable("F1: threshold crossings in the second half per bit-width, candidates {2,4,6} minus {4,6} "
                        "(the paper: more)", rows, _table_note(rows)) if rows else None


def flip_seeds(ab: dict) -> str:
    """How many seeds F2/T1's comparisons pair: those with a no2bit run (``ablation.no2bit_seeds``), which may be
    fewer than the ablation's."""
    counts = sorted({r["verdict"]["n"] for r in verdict_rows(ab.get("flip_verdicts"))})
    n = "/".join(map(str, counts)) if counts else str(len(ab.get("seeds", [])))
    return f"{n} seeds" + (" with a no2bit run" if counts and counts[-1] < len(ab.get("seeds", [])) else "")


def flip_table(m: dict) -> VerdictTable | None:
    ab = m.get("ablation", {})
    rows = _stored(ab.get("flip_verdicts"), lambda r: r["comparison"], lambda r: f"{r['w bits']}-bit weights")
    return VerdictTable(f"F2/T1: late-training flip rate (% of weights) with 2-bit candidates minus without them, "
                        f"ResNet-20, {flip_seeds(ab)} (the spread over seeds is the only noise of a "
                        "flip rate, which counts every weight; the paper: higher)", rows,
                        _table_note(rows)) if rows else None


CELL_NAMES = {"sched": "scheduler", "idm": "IDM", "both": "scheduler and IDM",
              "sched_full": "scheduler scoring full candidates (this package's variant)", "plain": "plain"}


# Table 6 of the paper, ResNet-18 on ImageNet: top-1 gained over the plain supernet (points)
PAPER_T6 = {"sched": 0.8, "idm": 0.4, "both": 1.2}
PAPER_T6_TEXT = (f"the paper: higher, about {PAPER_T6['sched']:+.1f} for the scheduler, {PAPER_T6['idm']:+.1f} for IDM, "
                 f"{PAPER_T6['both']:+.1f} together")


def excluded_sizes(rows: Sequence[Judged]) -> str:
    """The T6 comparisons whose 95% interval ends under the paper's effect (``PAPER_T6``), so an effect that large
    is excluded at this scale, per metric: "W3A3: scheduler +0.18 < +0.8, ..."; "" when none is."""
    sizes = {f"{CELL_NAMES[c]} minus plain": size for c, size in PAPER_T6.items()}
    by_metric: dict[str, list[str]] = {}
    for r in rows:
        size = sizes.get(r.group)
        if size is not None and r.verdict["high"] < size:
            by_metric.setdefault(r.label, []).append(
                f"{r.group.removesuffix(' minus plain')} {r.verdict['high']:+.2f} < {size:+.1f}")
    return "; ".join(f"{metric}: {', '.join(parts)}" for metric, parts in by_metric.items())


def t6_table(m: dict) -> VerdictTable | None:
    """T6 judged: each cell minus its reference per metric (plain; ``sched_full`` also minus the paper's scheduler);
    a row that repeats another of its cell (the same configurations: IDM's "lowest" is its uniform W2A2) is shown
    once, and the caption says which."""
    ab = m.get("ablation", {})

    def label(r: Mapping) -> str:
        reference = r.get("reference", "plain")
        return f"{CELL_NAMES.get(r['cell'], r['cell'])} minus {CELL_NAMES.get(reference, reference)}"

    rows, dropped = drop_duplicates(_stored(ab.get("t6"), label, lambda r: r["metric"]))
    dropped += [f"{label(r)} {name} = {r['metric']}"
                for r in verdict_rows(ab.get("t6")) for name in filter(None, r.get("same as", "").split(", "))]
    same = f"; shown once, as the same comparison: {', '.join(dropped)}" if dropped else ""
    return VerdictTable(f"T6: each cell minus the plain supernet (this package's variant also minus the paper's "
                        f"scheduler), top-1 points, ResNet-20, {len(ab.get('seeds', []))} "
                        f"seeds ({PAPER_T6_TEXT}{same})", rows, _table_note(rows)) if rows else None


def space_table(m: dict) -> VerdictTable | None:
    """T6's search-space confound: each scheduler cell minus plain with both searched in that cell's final space
    (the training effect; the paper: higher), and plain in that space minus plain in its own (no direction)."""
    ab = m.get("ablation", {})
    rows = _stored(ab.get("space"), lambda r: r["comparison"], lambda r: r["metric"])
    return VerdictTable("T6's search-space confound separated: a scheduler cell against plain at a fixed search space, "
                        "and the space's own share, top-1 points", rows, _table_note(rows)) if rows else None


def distortion_table(m: dict) -> VerdictTable | None:
    ab = m.get("ablation", {})
    rows = _stored(ab.get("distortion_verdicts"), lambda r: "", lambda r: r["comparison"])
    return VerdictTable("F3/F4: BN output distortion at the lowest point (% of the feature variance), with IDM minus "
                        "without (the paper: lower)", rows, _table_note(rows)) if rows else None


def seeds_gap_table(m: dict) -> VerdictTable | None:
    pooled = m.get("search", {}).get("seeds", {})
    rows = [Judged(f"{display_name(pooled['model'])}, seeds {seeds_text(pooled['seeds'])}", f"level {g['BitOPs level']}",
                   current(g["verdict"])) for g in pooled.get("gaps", []) if isinstance(g.get("verdict"), dict)]
    return VerdictTable("T2 over training seeds: no retraining minus the same configuration retrained, top-1 points "
                        "(both noise sources; the paper: at least on par)", rows, _table_note(rows)) if rows else None


def retrained_table(m: dict) -> VerdictTable | None:
    search = m.get("search", {})
    rows = _stored(search.get("retrained"), lambda r: display_name(r["model"]), lambda r: f"level {r['BitOPs level']}")
    return VerdictTable(f"T2-T4, one run per model-level ({seed_note(m)}; test-image noise only): no retraining "
                        "minus the same configuration retrained, top-1 points (the paper: at least on par)", rows,
                        _table_note(rows)) if rows else None


def f5_table(m: dict) -> VerdictTable | None:
    search = m.get("search", {})
    rows = _stored(search.get("f5"), lambda r: display_name(r["model"]),
                   lambda r: f"{r['comparison'].replace('greedy ', '')}, level {r['BitOPs level']}")
    return VerdictTable(f"F5: greedy minus random and evolutionary search at equal BitOPs, top-1 points, one run per "
                        f"model-level ({seed_note(m)}; test-image noise only; the paper: greedy ahead)", rows,
                        _table_note(rows)) if rows else None


def s1_table(m: dict) -> VerdictTable | None:
    study = m.get("search", {}).get("search_study", {})
    rows = _stored(study, lambda r: r["setting"], lambda r: f"level {r['BitOPs level']}")
    return VerdictTable(f"S1: each search setting minus the default greedy search, top-1 points, "
                        f"{display_name(study.get('model'))}, seeds {seeds_text(study.get('seeds', []))} (equal-evaluation "
                        "random and evolutionary search: the paper, lower; other settings: no direction)", rows,
                        _table_note(rows)) if rows else None


def f7_table(m: dict) -> VerdictTable | None:
    budget = m.get("search", {}).get("budget", {})
    rows = _stored(budget, lambda r: r["comparison"],
                   lambda r: f"{r['epochs']} epochs, {r['seeds']} seed{'s' if r['seeds'] > 1 else ''}")
    return VerdictTable(f"F7: each comparison per training budget, top-1 points, {display_name(budget.get('model'))} "
                        "(no retraining minus retrained: the paper, at least on par; supernet minus LSQ alone: no "
                        "direction)", rows, _table_note(rows)) if rows else None


def t5_table(m: dict) -> VerdictTable | None:
    tr = m.get("transfer", {})
    comparisons = tr.get("comparisons") or []
    if not comparisons or not all(isinstance(c.get("verdict"), dict) for c in comparisons):
        return None
    rows = [Judged(display_name(c["target"]), f"level {c['level']} minus {c['this method minus']}",
                   current(c["verdict"])) for c in comparisons]
    seeds = tr.get("transfer", {}).get("seeds", [])
    return VerdictTable(f"T5: this method (no retraining) minus each other arm on the target, top-1 points, "
                        f"{len(seeds)} fine-tuning seeds, equal passes per arm (minus LSQ fine-tuned: the paper, "
                        "above; minus the supernet built from the FP model, no one-shot pre-training: no direction)", rows,
                        _table_note(rows))


@dataclass(frozen=True)
class Claim:
    """A claim's comparisons judged as one family (Holm within it, ``family``), in the parts its line names: e.g.
    C5's F5 at equal BitOPs and S1 at equal evaluations. The held/not-held lines and the entry page's verdict table
    both read these, so a word after Holm is computed once."""

    parts: dict[str, list[Judged]]

    @property
    def rows(self) -> list[Judged]:
        return [r for rows in self.parts.values() for r in rows]


def _judged_together(parts: dict[str, Sequence[Judged]]) -> Claim:
    words = iter(family([r for rows in parts.values() for r in rows]))
    return Claim({name: [next(words) for _ in rows] for name, rows in parts.items() if rows})


def claim_families(m: dict) -> dict[str, Claim]:
    """Each claim measured in ``m`` by its key in ``held.CLAIMS`` (a claim with no verdicts is absent): C1 from
    ``c1_table``; C2 from the ablation's flip rates (``flip_table``; F1's toy only illustrates it); C3/C4 from T6
    (this package's scheduler variant ``sched_full`` included, as T6 judges it); C5 from F5 and S1's
    equal-evaluation searches; C6 from T2 over seeds with the one-run rows of the other models, and from T5."""
    out = {}
    tables = {"C1": c1_table(m), "C2": flip_table(m), "C3/C4": t6_table(m), "C6 transfer": t5_table(m)}
    for key, table in tables.items():
        if table is not None:
            out[key] = _judged_together({key: table.rows})
    f5, s1 = f5_table(m), s1_table(m)
    equal = [r for r in (s1.rows if s1 else []) if "equal evaluations" in r.group]
    if f5 is not None or equal:
        out["C5"] = _judged_together({"F5": f5.rows if f5 else [], "S1": equal})
    seeds, one = seeds_gap_table(m), retrained_table(m)
    if seeds is not None or one is not None:
        pooled = m["search"].get("seeds", {})
        others = [r for r in (one.rows if one else []) if not (seeds and r.group == display_name(pooled["model"]))]
        out["C6 retrained"] = _judged_together({"seeds": seeds.rows if seeds else [], "one run": others})
    order = ("C1", "C2", "C3/C4", "C5", "C6 retrained", "C6 transfer")
    return {key: out[key] for key in order if key in out}


def interval_text(v: Mapping) -> str:
    """A stored verdict's difference and interval, printed as ``mpq.studies.stats.interval_text`` prints them."""
    return stats.interval_text(v["diff"], v["low"], v["high"])


def verdict_text(v: Mapping) -> str:
    """A stored verdict's line (its word, interval and seeds as the metrics hold them), its interval printed as
    ``interval_text`` prints it: a bound near zero shows its side.

    >>> verdict_text({"diff": 0.3712, "low": 0.0034, "high": 0.7412, "text": "holds: +0.37 [+0.00, +0.74], 3 seeds"})
    'holds: +0.37 [+0.003, +0.74], 3 seeds'
    """
    return v["text"].replace(f"{v['diff']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]", interval_text(v), 1)


def by_group(rows: Sequence[Judged]) -> dict[str, list[Judged]]:
    out: dict[str, list[Judged]] = {}
    for r in rows:
        out.setdefault(r.group, []).append(r)
    return out
