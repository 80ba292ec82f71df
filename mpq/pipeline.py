"""Run a parameterised notebook for a DVC stage: papermill with parameters from ``params.yaml``, then HTML.

``python -m mpq.pipeline notebooks/01_fp_train.ipynb`` injects, for every name in the notebook's
``parameters`` cell, the top-level section of the same name from ``params.yaml`` (a missing section is an
error), executes it with the repository root as working directory, and writes
``reports/<name>.ipynb`` and ``reports/<name>.html`` atomically.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .checkpoint import atomic_path
from .config import load_params

log = logging.getLogger(__name__)


def notebook_parameters(notebook: str | Path) -> list[str]:
    """Names declared in the notebook's cell tagged ``parameters``."""
    import papermill

    return list(papermill.inspect_notebook(str(notebook)).keys())


def select_parameters(notebook: str | Path, params: dict) -> dict:
    names = notebook_parameters(notebook)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"{notebook}: parameters {missing} have no section in params.yaml; add them "
                         "(params.yaml, the parameters cell and dvc.yaml's params: must agree)")
    return {n: params[n] for n in names}


def relative_paths(nb, notebook: Path, output: Path) -> None:
    """Record repository-relative paths in papermill's metadata: committed reports name no machine paths."""
    meta = nb.metadata.get("papermill", {})
    meta["input_path"], meta["output_path"] = str(notebook), str(output)


def run_notebook(notebook: str | Path, params_file: str | Path = "params.yaml", reports: str | Path = "reports",
                 root: str | Path = ".") -> Path:
    """Execute ``notebook`` with parameters from ``params_file``; return the executed notebook's path."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    root = Path(root).resolve()
    notebook = root / notebook
    params = select_parameters(notebook, load_params(root / params_file))
    out_nb = root / reports / f"{notebook.stem}.ipynb"
    out_html = out_nb.with_suffix(".html")
    os.environ.setdefault("TQDM_MININTERVAL", "15")  # keep executed notebooks small: a bar update every 15 s
    with atomic_path(out_nb) as tmp_nb:
        papermill.execute_notebook(str(notebook), str(tmp_nb), parameters=params, cwd=str(root),
                                   kernel_name="python3", progress_bar=False, log_output=False)
        executed = nbformat.read(tmp_nb, as_version=4)
        relative_paths(executed, notebook.relative_to(root), out_nb.relative_to(root))
        nbformat.write(executed, tmp_nb)
        body, _ = HTMLExporter().from_notebook_node(executed)
        with atomic_path(out_html) as tmp_html:
            tmp_html.write_text(body)
    log.info("wrote %s and %s", out_nb, out_html)
    return out_nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_notebook(args.notebook, args.params, args.reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
