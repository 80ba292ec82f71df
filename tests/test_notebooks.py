"""Source notebooks: no outputs, the kernel JupyterLab registers, one findings cell."""
from __future__ import annotations

import ast
import json

import nbformat
import pytest

pytestmark = pytest.mark.timeout(60)

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _notebooks(root):
    paths = sorted((root / "notebooks").glob("*.ipynb"))
    assert paths
    return paths


def test_source_notebooks_carry_no_outputs(root):
    for path in _notebooks(root):
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


def test_source_notebooks_name_the_registered_kernel(root):
    """The display name matches ipykernel's own, so JupyterLab does not mark the notebook modified on opening."""
    for path in _notebooks(root):
        assert json.loads(path.read_text())["metadata"]["kernelspec"] == KERNELSPEC, path.name


def test_bootstrap_registers_that_kernel(root):
    assert "ipykernel install --sys-prefix --name python3" in (root / "scripts/bootstrap.sh").read_text()


def test_each_notebook_has_one_findings_cell_after_its_title(root):
    for path in _notebooks(root):
        nb = nbformat.read(str(path), as_version=4)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        tagged = [c for c in nb.cells if "findings" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "findings(" in tagged[0].source, path.name


def _code_problems(source: str) -> list[str]:
    """What makes a code cell carry an experiment instead of narrating it: a function definition, a lambda or
    a loop statement (comprehensions that only shape a table for display are fine), or more than 25 lines."""
    problems = []
    lines = len(source.splitlines())
    if lines > 25:
        problems.append(f"{lines} lines")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            problems.append(f"defines a {type(node).__name__} at line {node.lineno}")
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            problems.append(f"a {type(node).__name__.lower()} loop at line {node.lineno}")
    return problems


def test_notebooks_narrate_and_the_studies_package_computes(root):
    """STYLE.md habit 9 and docs/architecture.md: one call per experiment into mpq.studies, then tables and
    figures; loops over seeds, arms or targets and helper functions belong in tested library code."""
    found = []
    for path in _notebooks(root):
        nb = nbformat.read(str(path), as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
                found += [f"{path.name} cell {i}: {p}" for p in _code_problems(cell.source)]
    assert not found, "\n".join(found)


def test_the_narration_check_sees_loops_functions_and_long_cells():
    assert _code_problems("x = [r for r in rows]\nshow(x)") == []
    assert _code_problems("for s in seeds:\n    run(s)")[0].startswith("a for loop")
    assert _code_problems("f = lambda x: x")[0].startswith("defines a Lambda")
    assert _code_problems("def f():\n    pass")[0].startswith("defines a FunctionDef")
    assert _code_problems("\n".join(["x = 1"] * 26)) == ["26 lines"]


SCAFFOLDING = ("findings cell at the end", "shows it first", "The findings (computed from the tables above)")


def _empty_headings(cells) -> list[str]:
    """Headings with nothing under them: a heading-only markdown cell followed by another heading or the end."""
    empty = []
    for i, cell in enumerate(cells):
        lines = cell.source.strip().splitlines() if cell.cell_type == "markdown" else []
        if len(lines) == 1 and lines[0].startswith("#"):
            after = cells[i + 1] if i + 1 < len(cells) else None
            if after is None or (after.cell_type == "markdown" and after.source.lstrip().startswith("#")):
                empty.append(lines[0])
    return empty


def test_reader_pages_have_no_scaffolding_or_empty_headings(root):
    """What a reader's page shows (``reader_notebook``: markdown and kept outputs) of each committed executed
    notebook: no sentence about how the page is made, and every heading has something under it."""
    from mpq.pages.metrics import NOTEBOOKS
    from mpq.pages.notebook_page import reader_notebook

    for stem in NOTEBOOKS:
        source = nbformat.read(str(root / "notebooks" / f"{stem}.ipynb"), as_version=4)
        assert not [s for s in SCAFFOLDING for c in source.cells if c.cell_type == "markdown" and s in c.source], stem
        executed = root / "reports" / f"{stem}.ipynb"
        if executed.is_file():
            assert _empty_headings(reader_notebook(nbformat.read(str(executed), as_version=4)).cells) == [], stem


def test_empty_heading_check_sees_a_heading_before_a_heading_and_at_the_end():
    md = nbformat.v4.new_markdown_cell
    cells = [md("# Title\n\ntext"), md("## Empty"), md("## Filled\n\nwords"), nbformat.v4.new_code_cell("x"),
             md("## Before code"), nbformat.v4.new_code_cell("y"), md("## Last")]
    assert _empty_headings(cells) == ["## Empty", "## Last"]


def test_reader_page_is_the_same_each_time(root):
    """The cells the reader's page adds carry fixed ids, so re-rendering an unchanged notebook changes no byte."""
    from mpq.pages.notebook_page import reader_notebook

    nb = nbformat.read(str(root / "reports" / "01_fp_train.ipynb"), as_version=4)
    first, again = reader_notebook(nb), reader_notebook(nb)
    assert [c.get("id") for c in first.cells] == [c.get("id") for c in again.cells]
