"""A reader's page of an executed notebook: markdown and kept outputs only (no code, no logs), the findings
cell first, a link to the entry page on top and the run's machine at the end. The page loads nothing from another site:
no notebook here writes LaTeX or keeps a widget, so nbconvert's MathJax, require.js, Mermaid and widget scripts (all
fetched from a CDN) are left out of the template. A long output folds (``fold_summary``): a table of more than
``FOLD_ROWS`` rows, and every figure of a section after its first, each in a closed ``<details>`` whose summary says
what it holds; the findings and the prose stay in view, so that no page is taller than about 6,000 px at 1280 px."""
from __future__ import annotations

import copy
import html
import re
from pathlib import Path

HIDDEN_TAGS = {"parameters", "injected-parameters"}
LOG_ONLY = ("application/vnd.jupyter.widget-view+json",)

# nbconvert's lab page without the blocks that fetch scripts from a CDN (MathJax for LaTeX, require.js and the widget
# manager for widgets, Mermaid for diagrams); everything else, its stylesheets inlined, as the lab template has it,
# except that a PNG output's alt text (its metadata, as mpq.pages.display.show_figure sets it) reaches the <img>, and
# an output marked to fold (metadata "mpq_fold", set by reader_notebook) sits in a closed <details> under its summary.
OFFLINE_TEMPLATE = "mpq-offline.html.j2"
OFFLINE_TEMPLATE_TEXT = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style>details.mpq-fold>summary{cursor:pointer;margin:.5em 0 .5em 4px;color:var(--jp-content-link-color);
font-family:var(--jp-content-font-family);font-size:var(--jp-content-font-size1)}</style>
{%- endblock extra_css -%}
{%- block output scoped -%}
{%- set fold = (output.get('metadata') or {}).get('mpq_fold') -%}
{%- if fold -%}<details class="mpq-fold"><summary>{{ fold | escape_html }}</summary>{{ super() }}</details>
{%- else -%}{{ super() }}{%- endif -%}
{%- endblock output -%}
{%- block data_png scoped -%}
{%- set alt = output | get_metadata('alt', 'image/png') -%}
{%- if alt -%}{{ super() | replace('<img src=', '<img alt="' ~ (alt | escape_html) ~ '" src=', 1) }}
{%- else -%}{{ super() }}{%- endif -%}
{%- endblock data_png -%}
"""


def _keep_output(output) -> bool:
    """Figures, tables, markdown and errors stay; logs, progress bars and bare object reprs go."""
    if output.get("output_type") == "stream":
        return False
    data = output.get("data", {})
    if any(k in data for k in LOG_ONLY):
        return False
    if set(data) == {"text/plain"}:
        text = "".join(data["text/plain"]) if isinstance(data["text/plain"], list) else data["text/plain"]
        return not text.lstrip().startswith(("<Figure", "<matplotlib", "<Axes"))
    return True


FOLD_ROWS = 5           # a table of more body rows than this folds (a short one stays in view)


def _head(text: str) -> str:
    head = re.search(r"<thead\b.*?</thead>", text, re.S | re.I)
    return head.group(0) if head else ""


def _plain(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def fold_summary(output, heading: str, figures_before: int) -> str | None:
    """The summary of ``output``'s fold on a reader's page, or None where it stays in view: a table of more than
    ``FOLD_ROWS`` body rows ("Table, 40 rows: <its caption, or its columns>"), a figure after the first of its section
    ("Figure: <its alt text>", or its place in the section ``heading``). Everything else (findings, short tables, a
    section's first figure) stays open.

    >>> fold_summary({"data": {"text/html": "<table><caption>T1 &amp; T2</caption><thead><tr><th>a</th></tr></thead>"
    ...               + "<tr><td>1</td></tr>" * 9 + "</table>"}}, "F2", 0)
    'Table, 9 rows: T1 & T2'
    >>> fold_summary({"data": {"image/png": "..."}, "metadata": {}}, "F5 and F6", 1)
    'Figure 2 of the section "F5 and F6"'
    """
    data = output.get("data", {})
    if "image/png" in data:
        if not figures_before:
            return None
        meta = output.get("metadata") or {}
        alt = (meta.get("image/png") or {}).get("alt") or meta.get("alt")
        return f"Figure: {alt}" if alt else f'Figure {figures_before + 1} of the section "{heading}"'
    text = data.get("text/html", "")
    text = "".join(text) if isinstance(text, list) else text
    head = _head(text)
    rows = text.lower().count("<tr") - head.lower().count("<tr")
    if "<table" not in text or rows <= FOLD_ROWS:
        return None
    caption = re.search(r"<caption\b[^>]*>(.*?)</caption>", text, re.S | re.I)
    columns = [c for c in (_plain(c) for c in re.findall(r"<th\b[^>]*>(.*?)</th>", head, re.S | re.I)) if c]
    return f"Table, {rows} rows: " + (_plain(caption.group(1)) if caption else "columns " + ", ".join(columns))


def _mark_folds(cells) -> None:
    """Mark each output that folds (``fold_summary``) with its summary (output metadata ``mpq_fold``); a markdown cell
    that opens with a heading starts a section."""
    heading, figures = "", 0
    for cell in cells:
        if cell.cell_type == "markdown":
            first = cell.source.lstrip().split("\n", 1)[0]
            if first.startswith("#"):
                heading, figures = first.lstrip("#").strip(), 0
            continue
        for output in cell.get("outputs", []):
            summary = fold_summary(output, heading, figures)
            figures += "image/png" in output.get("data", {})
            if summary:
                output.setdefault("metadata", {})["mpq_fold"] = summary


def reader_notebook(nb):
    """A copy of an executed notebook as the reader's page shows it: markdown and kept outputs only, the
    findings cell right after the title, a link to the entry page on top and the run's machine at the end; long
    outputs marked to fold (``fold_summary``)."""
    import nbformat

    nb = copy.deepcopy(nb)
    body, found = [], []
    for cell in nb.cells:
        tags = set(cell.metadata.get("tags", []))
        if tags & HIDDEN_TAGS:
            continue
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if _keep_output(o)]
            if not cell.outputs:
                continue
        (found if "findings" in tags else body).append(cell)
    at = 1 if body and body[0].cell_type == "markdown" else 0
    body[at:at] = found
    stem = Path(nb.metadata.get("papermill", {}).get("output_path", "notebook.ipynb")).name
    nav = nbformat.v4.new_markdown_cell(f"[Study overview](index.html) · executed notebook with code and logs: "
                                        f"[{stem}]({stem})", id="reader-nav")     # fixed ids: the same page each time
    env = nb.metadata.get("mpq")
    tail = [nbformat.v4.new_markdown_cell(f"*Run: {environment_sentence(env)}.*", id="reader-run")] if env else []
    nb.cells = [nav, *body, *tail]
    _mark_folds(nb.cells)
    return nb


def render_notebook(path: str | Path) -> str:
    """HTML of an executed notebook for reading (no code, no logs, no scripts from another site)."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(path), as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            extra_loaders=[DictLoader({OFFLINE_TEMPLATE: OFFLINE_TEMPLATE_TEXT})],
                            template_file=OFFLINE_TEMPLATE)
    body, _ = exporter.from_notebook_node(reader_notebook(nb))
    return body


def environment_sentence(env: dict) -> str:
    return (f"{env['stage_seconds']:.0f} s wall time on {env['device']}, CPU kind {env['cpu_capability']}, "
            f"{env['threads']} threads, torch {env['torch']}")
