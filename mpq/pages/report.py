"""The reader's side of the study: HTML pages of the executed notebooks and the entry page.

``python -m mpq.pages.report`` (the final DVC stage ``report``) reads what the experiment stages wrote
(``reports/*.ipynb``, ``reports/metrics/*.json``, ``reports/tables/*.csv``, ``reports/figures/*.png``) and
writes, atomically:

- ``reports/<notebook>.html`` for each executed notebook (``mpq.pages.notebook_page``): no input cells, no logs or
  progress bars (stream outputs), the cell tagged ``findings`` first, tables and figures inline (long tables and a
  section's later figures folded), no script fetched
  from another site (the pages need neither MathJax nor require.js);
- ``reports/index.html`` (``mpq.pages.entry``): under the title a verdict table, one row per claim
  (``mpq.pages.verdict_table``); a table of contents; what held and what did not, one line per claim in the verdict
  words of DESIGN.md section 5 (``mpq.pages.held``); both read the claims' tables of verdicts and their families in
  ``mpq.pages.claims``; every figure and table of the study beside the paper's counterpart and claim
  (``mpq.pages.sections``), its tables formatted for reading (``mpq.pages.tables``) and each table of verdicts
  drawn as per-seed dots with the interval against zero (``mpq.pages.forest``); the headings, the verdict table and
  each section's headline verdicts in view, the long parts (tables, the notebooks' figures, further verdicts, the
  lines per claim) in ``<details>`` folds; the amortisation table A1, the
  environment and each stage's wall time (``mpq.pages.timing``).

``python -m mpq.pages.report --readme`` rewrites the generated summary block of ``README.md`` from the metrics
(``mpq.pages.readme``; a test checks that the committed block matches them). Nothing here trains or evaluates a
model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpq.pages.entry import build_index
from mpq.pages.metrics import NOTEBOOKS, load_metrics, notebook_environments
from mpq.pages.notebook_page import render_notebook
from mpq.pages.readme import update_readme
from mpq.training.checkpoint import atomic_path


def write_reports(reports: str | Path = "reports") -> list[Path]:
    reports = Path(reports)
    written = []
    for stem in NOTEBOOKS:
        src = reports / f"{stem}.ipynb"
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing: run its stage first (`dvc repro`)")
        with atomic_path(reports / f"{stem}.html") as tmp:
            tmp.write_text(render_notebook(src))
        written.append(reports / f"{stem}.html")
    with atomic_path(reports / "index.html") as tmp:
        tmp.write_text(build_index(reports))
    written.append(reports / "index.html")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--readme", nargs="?", const="README.md", default=None,
                        help="only rewrite the generated summary block of this README from the metrics")
    args = parser.parse_args(argv)
    if args.readme:
        changed = update_readme(args.readme, load_metrics(args.reports), notebook_environments(args.reports))
        print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
        return 0
    for path in write_reports(args.reports):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
