"""The entry page's sections: every figure and table of the study beside the paper's counterpart and claim
(``ITEMS``), each with the notebook's figures, its tables for reading and its tables of verdicts drawn."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from mpq.pages.captions import figure_html
from mpq.pages.claims import (VerdictTable, c1_table, distortion_table, f5_table, f7_table, flip_table, retrained_table,
                              s1_table, seeds_gap_table, space_table, t5_table, t6_table, toy_table,
                              verdict_text)
from mpq.pages.forest import verdict_block
from mpq.pages.metrics import MODEL_NAMES, count_span, display_name, ordered_levels
from mpq.pages.tables import folded, table_html, without_verdict_columns
from mpq.pages.timing import amortisation_html
from mpq.studies.figure_text import DENSITY_CAVEAT


@dataclass
class Item:
    """One figure or table of the paper (or beyond it) on the entry page: the notebook's figures and CSV tables,
    tables built from the metrics, the tables of verdicts drawn as figures, and short notes that no table holds."""

    id: str
    paper: str
    claims: str
    here: str
    notebook: str
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    frames: Callable[[dict], list[tuple[str, pd.DataFrame]]] | None = None
    verdicts: Callable[[dict], list[VerdictTable | None]] | None = None
    notes: Callable[[dict], list[str]] | None = None
    source: tuple[str, str] | None = None       # (metrics file, stage) whose verdicts the item draws
    short: str = ""                             # its entry in the table of contents


def _f1_frames(m):
    runs = m.get("interference", {}).get("runs", [])
    rows = []
    for lr in sorted({r["lr"] for r in runs}, reverse=True):
        for cands in ("{4,6}", "{2,4,6}"):
            sel = [r for r in runs if r["lr"] == lr and r["candidates"] == cands]
            if sel:
                rows.append({"lr": lr, "candidates": cands, "seeds": len(sel),
                             "4-bit crossings, 2nd half (mean ± SD)": _mean_sd([r["crossings_w4_second_half"]
                                                                                for r in sel], 1),
                             "gradient variance, 2nd half (mean ± SD)": _mean_sd([r["grad_var_second_half"]
                                                                                  for r in sel], 4)})
    return [("F1 per learning rate and candidate set", pd.DataFrame(rows))] if rows else []


def _mean_sd(vals, digits):
    n = len(vals)
    mu = sum(vals) / n
    if n < 2:
        return f"{mu:.{digits}f}"
    sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / (n - 1))
    return f"{mu:.{digits}f} ± {sd:.{digits}f}"


def _f3_frames(m):
    rows = [{"cell": r["cell"], "seeds": r["seeds"], "distortion (%)": 100 * r["distortion mean"], "SD": 100 * r["SD"],
             "per seed (%)": " / ".join(f"{100 * float(x):.1f}" for x in r["per seed"].split(" / "))}
            for r in m.get("ablation", {}).get("distortion", [])]
    return [("Distortion at the lowest point per cell, % of the feature variance (mean, SD over seeds)",
             pd.DataFrame(rows))] if rows else []


def _f6_frames(m):
    models = m.get("search", {}).get("models", {})
    rows = [{"model": display_name(name), "target level": float(lv),
             "found level": models[name]["levels"][lv]["greedy"]["level"],
             "G-BitOPs": models[name]["levels"][lv]["greedy"]["gbitops"]}
            for name in [n for n in MODEL_NAMES if n in models] + [n for n in models if n not in MODEL_NAMES]
            for lv in ordered_levels(models[name])]
    return [("The greedy configurations: BitOPs level asked and found", pd.DataFrame(rows))] if rows else []


def _t2_notes(m):
    check = m.get("search", {}).get("retrain_check")
    if not isinstance(check, dict) or not isinstance(check.get("verdict"), dict):
        return []
    k = check["uniform_bits"]
    return [f"Retraining check: {display_name(check['model'])}'s level-{check['level']} configuration, which holds uniform "
            f"W{k}A{k} layer by layer, retrained minus uniform W{k}A{k} LSQ trained alone, {len(check['seeds'])} seeds "
            f"each (the expectation: at least as good): {verdict_text(check['verdict'])}."]


def _f5_notes(m):
    ev = m.get("search", {}).get("evaluations")
    if not ev:
        return []
    return [f"Search compute is not equal: greedy {count_span(ev['greedy'])} forward evaluations up to a level's result "
            f"(one walk of {count_span(ev['greedy walk'])} serves every level), random {count_span(ev['random'])}, evolutionary "
            f"{count_span(ev['evolutionary'])}; S1 gives random and evolutionary search the greedy walk's evaluations."]


def _per_budget_note(m):
    return ["One seed per larger budget: its interval holds the test images' noise only, not the training noise."] \
        if _has_f7(m) else []


def _has_f7(m) -> bool:
    """Whether the run trained beyond the default budget (``replicates.budgets``), which F7's curve needs."""
    return any(r["budget (x)"] > 1 for r in m.get("search", {}).get("budget", {}).get("rows", []))


ITEMS = [
    Item("C1", "the uniform rows of Tables 2-4 (weight coupling)", "C1",
         "one supernet per model at uniform bit-widths against uniform LSQ trained alone for each bit-width",
         "03_baselines", ["baselines_vs_supernet.png"], [], verdicts=lambda m: [c1_table(m)],
         short="supernet vs LSQ alone, uniform bits"),
    Item("F1", "Figure 1 (toy illustration of bit-width interference)", "C2",
         "two shared weights trained with candidate sets {4,6} vs {2,4,6}: threshold crossings, gradient variance",
         "05_bit_interference", ["interference_toy.png"], [], frames=_f1_frames, verdicts=lambda m: [toy_table(m)],
         short="toy interference"),
    Item("F2-T1", "Figure 2 and Table 1 (weight oscillation when 2-bit joins)", "C2",
         "flip rate of the integer weight levels at 4-6 bits in the second half of training, and their reversals in "
         "dense windows of every step, per ResNet-20 cell and seed, with and without 2-bit",
         "05_bit_interference", ["oscillation.png"], ["oscillation_t1.csv"], verdicts=lambda m: [flip_table(m)],
         source=("ablation", "bit_interference"), short="weight oscillation with 2-bit"),
    Item("F3-F4", "Figures 3-4 (low-bit BN outputs drift; IDM pulls them back)", "C4",
         "densities of BN outputs at the lowest point vs the max path, without and with IDM; distortion per cell",
         "05_bit_interference", ["bn_density.png"], [], frames=_f3_frames, verdicts=lambda m: [distortion_table(m)],
         notes=lambda m: [DENSITY_CAVEAT], source=("ablation", "bit_interference"), short="BN distortion and IDM"),
    Item("T2-T4", "Tables 2-4 (main results per model)", "C1, C5, C6",
         "per model: FP; uniform LSQ trained alone; the supernet's greedy configurations with no retraining; the "
         "same configurations retrained", "04_search", [], ["main_results.csv", "main_seeds.csv"],
         verdicts=lambda m: [seeds_gap_table(m), retrained_table(m)], notes=_t2_notes, source=("search", "search"),
         short="main results"),
    Item("T5", "Table 5 (transfer learning)", "C6",
         "the Fashion-MNIST supernet fine-tuned on Animal-MNIST and MNIST-5k, then searched without retraining",
         "06_transfer", ["transfer.png"], ["transfer_t5.csv"], verdicts=lambda m: [t5_table(m)],
         source=("transfer", "transfer"), short="transfer"),
    Item("T6", "Table 6 (ablation: scheduler and IDM)", "C3, C4",
         "2x2 scheduler x IDM on ResNet-20, with seeds, at the scheduler's own time scale; the search-space "
         "confound separated", "05_bit_interference", [], ["ablation_t6.csv"],
         verdicts=lambda m: [t6_table(m), space_table(m)], source=("ablation", "bit_interference"),
         short="scheduler x IDM ablation"),
    Item("F5", "Figure 5 (accuracy vs BitOPs)", "C5",
         "greedy vs random vs evolutionary search vs uniform precision", "04_search", ["search_front.png"], [],
         verdicts=lambda m: [f5_table(m)], notes=_f5_notes, source=("search", "search"),
         short="greedy vs random vs evolutionary"),
    Item("F6", "Figure 6 (per-layer bit allocation)", "C5", "the greedy configurations at each level",
         "04_search", ["bit_allocation.png"], [], frames=_f6_frames, short="bit allocation"),
    Item("F7", "none (beyond the paper)", "C6",
         "no-retrain minus retrained, and supernet vs LSQ alone, as the training budget of both sides grows",
         "04_search", ["budget_curve.png"], ["budget_curve.csv"], verdicts=lambda m: [f7_table(m)],
         notes=_per_budget_note, source=("search", "search"), short="training budget"),
    Item("S1", "none (checks of this study's search: equal search compute, scaled-down defaults)", "C5",
         "random and evolutionary search given the greedy walk's evaluations, and (where search_study lists them) "
         "the greedy search with more scoring images or from the W5A5 start, against the default greedy search, "
         "paired per training seed", "04_search", [], ["search_settings.csv"], verdicts=lambda m: [s1_table(m)],
         source=("search", "search"), short="search settings"),
    Item("A1", "the paper's argument, measured", "C6",
         "seconds to serve K budgets: one supernet training + K searches vs K retrainings", "04_search",
         short="one-shot vs retraining time"),
]
SUPPORTING = [("fp_curves.png", "01_fp_train", "full-precision training curves"),
              ("supernet_curves.png", "02_supernet", "one-shot training loss")]


TABLE_CAPTIONS = {"oscillation_t1.csv": "T1: flip rates per cell and weight bit-width, mean over seeds",
                  "ablation_t6.csv": "T6: top-1 (%) per cell and measure",
                  "transfer_t5.csv": "T5: top-1 (%) per target and arm",
                  "budget_curve.csv": "F7: each comparison per training budget",
                  "search_settings.csv": "S1: each search setting minus the default"}


def _csv_tables(path: Path, drawn: bool = False) -> list[tuple[str, str, bool]]:
    """(caption, HTML, whether verdict columns were left out) of a CSV table for reading (``table_html``); the main
    results split per model (T2, T3, T4). ``drawn``: the page draws the table's verdicts, so their columns stay in the
    CSV only."""
    df = pd.read_csv(path)
    shown = without_verdict_columns(df) if drawn else df
    cut = shown.shape[1] < df.shape[1]
    groups = [(TABLE_CAPTIONS.get(path.name, path.name), shown)]
    if "model" in df.columns and path.name == "main_results.csv":
        ids = dict(zip(MODEL_NAMES, ("T2", "T3", "T4")))
        groups = [(f"{ids.get(n, '')} {display_name(n)}".strip(), g.drop(columns="model"))
                  for n, g in shown.groupby("model", sort=False)]
    elif path.name == "main_seeds.csv":
        groups = [("T2 over training seeds (ResNet-20's rows, pooled with the replicates)", shown)]
    return [(caption, table_html(_display_names(g)), cut) for caption, g in groups]


def _display_names(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the registry keys of its model and target columns as the pages write them (``display_name``)."""
    return df.assign(**{c: [display_name(x) if isinstance(x, str) else x for x in df[c]]
                        for c in ("model", "target") if c in df.columns})


def _f7_pending(m: dict) -> str:
    """F7 when the run trained at the default budget only: what it has, and how to get the curve."""
    if m.get("search", {}).get("budget", {}).get("rows"):
        return ("<p class='pending'>Only the default budget in this run: its seeds' comparisons (the points F7 starts "
                "from, also in T2 over training seeds and C1) are in the fold below. The curve over larger training "
                "budgets comes from the <code>budget</code> stages, which this profile does not run (one seed per "
                "budget cannot carry a verdict, and twice the budget costs about 12 minutes on two cores); "
                "<code>profiles/large.yaml</code> runs them.</p>")
    return ("<p class='pending'>Not produced by this run: the training-budget curve comes from the <code>budget</code> "
            "stages, which this profile does not run; <code>profiles/large.yaml</code> runs them.</p>")


def item_html(item: Item, m: dict, reports: Path) -> list[str]:
    """An item's section: heading and sources, its first table of verdicts drawn (``verdict_block``) that judges a
    comparison (the section's headline) and its notes in view; the notebook's figures, its tables and its other tables
    of verdicts each in a fold (``folded``) whose summary says what it holds, so the page stays short."""
    parts = [f"<h2 id='{item.id}'>{item.id}: {html.escape(item.here)}</h2>",
             f"<p class='meta'>Paper: {html.escape(item.paper)} · claims {item.claims} · notebook "
             f"<a href='{item.notebook}.html'>{item.notebook}</a></p>"]
    if item.id == "A1":
        return parts + [amortisation_html(m)]
    drawn = [t for t in (item.verdicts(m) if item.verdicts else []) if t is not None and t.rows]
    figures = item.figures
    if item.id == "F7" and not _has_f7(m):
        parts.append(_f7_pending(m))
        if drawn:           # the default budget's verdicts say what the notebook's figure of it shows
            figures = []
    if not drawn and item.source and m.get(item.source[0]):
        key, stage = item.source
        parts.append(f"<p class='pending'>No verdicts yet: reports/metrics/{key}.json was written before the verdicts "
                     f"counted the test images' noise; <code>dvc repro {stage}</code> writes it anew.</p>")
    # the headline: the first table of verdicts with a judged comparison; tables of single runs only carry no word
    # (F7 at the default budget only has no curve: its points repeat T2's and C1's seeds, so they fold too)
    head = next((t for t in drawn if any(r.verdict.get("judged") for r in t.rows)), None) \
        if item.id != "F7" or _has_f7(m) else None
    parts += [verdict_block(head)] if head else []
    if figures:
        parts.append(folded(f"The notebook's {'figure' if len(figures) == 1 else 'figures'}: {item.short or item.here}",
                            "".join(figure_html(f"figures/{fig}", fig) for fig in figures)))
    captions, tables = [], []
    for caption, frame in (item.frames(m) if item.frames else []):
        captions.append(caption)
        tables.append(f"<p><b>{html.escape(caption)}</b></p>{table_html(frame)}")
    for table in item.tables:
        if not (reports / "tables" / table).is_file():
            parts.append(f"<p class='pending'>{table} is missing: run its stage (<code>dvc repro</code>).</p>")
            continue
        for caption, body, cut in _csv_tables(reports / "tables" / table, drawn=bool(drawn)):
            captions.append(caption)
            tables.append(f"<p><b>{html.escape(caption)}</b> (<a href='tables/{table}'>{table}</a>"
                          + ("; its verdicts are drawn in this section" if cut else "") + f")</p>{body}")
    if tables:
        parts.append(folded(f"{'Table' if len(tables) == 1 else f'{len(tables)} tables'}: " + "; ".join(captions),
                            "".join(tables)))
    parts += [folded(f"Verdicts drawn: {t.title}", verdict_block(t)) for t in drawn if t is not head]
    parts += [f"<p>{html.escape(n)}</p>" for n in (item.notes(m) if item.notes else [])]
    return parts
