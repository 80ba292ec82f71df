"""Run a parameterised notebook for a DVC stage: papermill with parameters from ``params.yaml``.

``python -m mpq.pages.pipeline notebooks/01_fp_train.ipynb`` injects, for every name in the notebook's
``parameters`` cell, the top-level section of the same name from ``params.yaml`` (a missing section is an
error), executes it with the repository root as working directory, and writes ``reports/<name>.ipynb``
atomically, with the run's wall time and machine in its metadata (``metadata.mpq``). The reader's HTML
page is rendered from it by the ``report`` stage (``mpq.pages.report``), so that presentation changes do not
re-run experiments.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

from mpq.training.checkpoint import atomic_path, run_command
from mpq.config import load_params

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


def run_environment(seconds: float) -> dict:
    """Wall time and machine of a notebook run, recorded in the executed notebook's metadata."""
    import torch

    cuda = torch.cuda.is_available()
    return {"stage_seconds": round(seconds, 1), "torch": torch.__version__, "python": platform.python_version(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "device": torch.cuda.get_device_name(0) if cuda else "cpu"}


def run_notebook(notebook: str | Path, params_file: str | Path = "params.yaml", reports: str | Path = "reports",
                 root: str | Path = ".") -> Path:
    """Execute ``notebook`` with parameters from ``params_file``; return the executed notebook's path."""
    import nbformat
    import papermill

    root = Path(root).resolve()
    notebook = root / notebook
    params = select_parameters(notebook, load_params(root / params_file))
    out_nb = root / reports / f"{notebook.stem}.ipynb"
    os.environ.setdefault("TQDM_MININTERVAL", "15")  # keep executed notebooks small: a bar update every 15 s
    start = time.perf_counter()
    with atomic_path(out_nb) as tmp_nb:
        papermill.execute_notebook(str(notebook), str(tmp_nb), parameters=params, cwd=str(root),
                                   kernel_name="python3", progress_bar=False, log_output=False)
        executed = nbformat.read(tmp_nb, as_version=4)
        relative_paths(executed, notebook.relative_to(root), out_nb.relative_to(root))
        executed.metadata["mpq"] = run_environment(time.perf_counter() - start)
        nbformat.write(executed, tmp_nb)
    log.info("wrote %s", out_nb)
    return out_nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # a notebook's training resumes from its checkpoints when the same command runs again
    return run_command(lambda: _run(args), "mpq.pages.pipeline", sys.argv[1:] if argv is None else argv,
                       checkpoints=["checkpoints"])


# what a notebook raises for a mistake in its inputs, not in the code: reported as one line
USER_ERROR_NAMES = ("ValueError", "DataError", "CheckpointError", "OutputError", "TrainingDiverged",
                    "FileNotFoundError")


def _run(args: argparse.Namespace) -> int:
    from papermill.exceptions import PapermillExecutionError

    try:
        run_notebook(args.notebook, args.params, args.reports)
    except PapermillExecutionError as exc:       # the kernel's exception, by name and message
        if exc.ename in ("KeyboardInterrupt", "TrainingInterrupted"):
            raise KeyboardInterrupt(exc.evalue) from None
        if exc.ename in USER_ERROR_NAMES:
            raise ValueError(f"{args.notebook}, cell {exc.exec_count}: {exc.ename}: {exc.evalue}") from None
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
