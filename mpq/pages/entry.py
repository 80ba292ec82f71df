"""The entry page, ``reports/index.html``: the verdict table under the title (``mpq.pages.verdict_table``), a
table of contents, what held and what did not, every section of the study (``mpq.pages.sections``), the
supporting figures, the environment and each stage's wall time. Headings, the verdict table and each section's
headline verdicts stay in view; the long parts fold into ``<details>`` (``mpq.pages.tables.folded``), so that the page
stays under 8,000 px at 1280 px wide with every fold closed."""
from __future__ import annotations

import html
from pathlib import Path

from mpq.pages.captions import figure_html
from mpq.pages.held import CLAIMS, held_lines
from mpq.pages.metrics import NOTEBOOKS, load_metrics, notebook_environments
from mpq.pages.sections import ITEMS, SUPPORTING, item_html
from mpq.pages.tables import folded
from mpq.pages.timing import environment_html
from mpq.pages.verdict_table import verdict_table_html


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f4f4f4}td{white-space:nowrap}td.t{white-space:normal}td.t,td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}
figure{margin:.8em 0}figcaption{font-size:.85em;color:#444}
nav ol{columns:3;column-gap:2.5em;font-size:.9em;margin:.4em 0}.held li{margin:.4em 0}
.meta{color:#555;font-size:.9em}table.verdicts{width:100%}table.verdicts th{text-align:left}
table.verdicts td{vertical-align:top}.pending{background:#fff6e0;padding:.6em;border-left:4px solid #e0a000}
details{margin:.5em 0}summary{cursor:pointer;color:#1f5fa8}details[open]>summary{margin-bottom:.4em}"""


def _contents(m: dict) -> str:
    entries = [("held", "What held and what did not")] + [(i.id, f"{i.id}: {i.short or i.here}") for i in ITEMS] \
        + [("supporting", "Supporting figures"), ("environment", "Environment and wall times")]
    return ("<nav id='contents'><b>Contents</b><ol>"
            + "".join(f"<li><a href='#{a}'>{html.escape(t)}</a></li>" for a, t in entries) + "</ol></nav>")


def _held_html(m: dict) -> str:
    from mpq.studies.stats import EQUIVALENCE_MARGIN

    anchors = {title: anchor for _, title, anchor in CLAIMS}
    items = []
    for line in held_lines(m):
        anchor = next((a for t, a in anchors.items() if line.startswith(f"**{t}")), None)
        items.append(f"<li>{_md_inline(line)}" + (f" <a href='#{anchor}'>→ {anchor}</a>" if anchor else "") + "</li>")
    return ("<h2 id='held'>What held and what did not</h2><p class='meta'>One line per claim, in the words of "
            "<a href='../docs/method.md'>docs/method.md</a>, section 5: <b>holds</b> (the paper's direction, 95% "
            "interval clear of zero), <b>reversed here</b> (the opposite, clear of zero), <b>on par</b> (the "
            f"equivalence test passes within +-{EQUIVALENCE_MARGIN:g} points), <b>inconclusive</b> (neither; with the "
            "smallest effect the design could detect, 80% power, 5% two-sided); <b>higher</b> or <b>lower</b> where "
            "the paper states no direction; <b>not judged</b> on fewer than 3 training seeds (the difference and its "
            "interval shown, no word). Each claim's counts are after Holm's correction over its comparisons, the "
            "unadjusted count beside them. Every interval holds the test images' noise, and the training seeds' "
            "spread where there are seeds.</p>"
            + folded("One line per claim: its words counted after Holm, the comparisons clear of zero with their "
                     "intervals, the smallest detectable effects", f"<ul class='held'>{''.join(items)}</ul>"))


def build_index(reports: str | Path) -> str:
    reports = Path(reports)
    m = load_metrics(reports)
    envs = notebook_environments(reports)
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>mpq-study: the study at a glance</title>",
             f"<style>{CSS}</style></head><body>",
             "<h1>Retraining-free mixed-precision quantization, reproduced small</h1>",
             verdict_table_html(m),
             "<p>A re-implementation, at laptop-CPU scale, of Tang et al., <i>Retraining-free Model Quantization via "
             "One-Shot Weight-Coupling Learning</i> (CVPR 2024). Every number and figure on this page comes from the "
             "committed run of <code>dvc repro</code>; the method and the claims C1-C6 are described in "
             "<a href='../docs/method.md'>docs/method.md</a>.</p>",
             "<p class='meta'>Pages: " + " · ".join(f"<a href='{s}.html'>{s}</a>" for s in NOTEBOOKS
                                                    if (reports / f"{s}.html").exists() or s in envs) + "</p>",
             _contents(m), _held_html(m)]
    for item in ITEMS:
        parts += item_html(item, m, reports)
    parts.append("<h2 id='supporting'>Supporting figures</h2>")
    for fig, nb, what in SUPPORTING:
        parts.append(f"<p>{html.escape(what[:1].upper() + what[1:])}, from <a href='{nb}.html'>{nb}</a>:</p>"
                     + folded(f"Figure: {what}", figure_html(f"figures/{fig}", fig)))
    parts.append("<h2 id='environment'>Environment and wall times</h2>" + environment_html(m, envs))
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_inline(text: str) -> str:
    """``**x**`` to <b>x</b> and ```x``` to <code>x</code>, everything escaped."""
    pieces = html.escape(text).split("**")
    bold = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(pieces))
    code = bold.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(code))
