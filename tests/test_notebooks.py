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
