"""A reader's page of an executed notebook: markdown and kept outputs only (no code, no logs), the findings
cell first, a link to the entry page on top and the run's machine at the end. The page loads nothing from another site:
no notebook here writes LaTeX or keeps a widget, so nbconvert's MathJax, require.js, Mermaid and widget scripts (all
fetched from a CDN) are left out of the template."""
from __future__ import annotations

import copy
from pathlib import Path

HIDDEN_TAGS = {"parameters", "injected-parameters"}
LOG_ONLY = ("application/vnd.jupyter.widget-view+json",)

# nbconvert's lab page without the blocks that fetch scripts from a CDN (MathJax for LaTeX, require.js and the widget
# manager for widgets, Mermaid for diagrams); everything else, its stylesheets inlined, as the lab template has it,
# except that a PNG output's alt text (its metadata, as mpq.pages.display.show_figure sets it) reaches the <img>.
OFFLINE_TEMPLATE = "mpq-offline.html.j2"
OFFLINE_TEMPLATE_TEXT = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
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


def reader_notebook(nb):
    """A copy of an executed notebook as the reader's page shows it: markdown and kept outputs only, the
    findings cell right after the title, a link to the entry page on top and the run's machine at the end."""
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
