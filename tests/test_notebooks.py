"""Source notebooks: no outputs, the kernel JupyterLab registers, one findings cell."""
from __future__ import annotations

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
