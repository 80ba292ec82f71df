"""How tall the reader's pages are, as a browser lays them out: each page in a frame 1280 px wide in headless Chromium,
its height (``scrollHeight``, CSS px) against its budget: the entry page at most 8,000 px with every fold closed, each
notebook page at most 6,000 px.

    python scripts/page_heights.py                  # renders reports/ into a temporary copy and measures it there
    python scripts/page_heights.py --pages DIR      # measures the pages already in DIR

Prints each page's height and budget; exit 1 when a page is over its budget. Needs a Chromium or Chrome binary on
PATH (``chromium``, ``chromium-browser`` or ``google-chrome``); the browser reads local files only. Committed files
under reports/ are never written: the pages are rendered into the copy.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 1280                                        # CSS px, the width the budgets are set for
BUDGETS = {"index.html": 8000}                      # px; every other page: NOTEBOOK_BUDGET
NOTEBOOK_BUDGET = 6000
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PROBE = "_page_heights.html"

# Loads each page in an iframe WIDTH px wide and writes {page: scrollHeight} into <div id="out"> once all have loaded.
PROBE_PAGE = """<!DOCTYPE html><html><body style="margin:0"><div id="out">pending</div><script>
const pages = %s, res = {};
for (const p of pages) {
  const f = document.createElement("iframe");
  f.style.width = "%dpx"; f.style.height = "800px"; f.style.border = "0";
  f.onload = () => {
    res[p] = f.contentDocument ? f.contentDocument.documentElement.scrollHeight : -1;
    if (Object.keys(res).length === pages.length) document.getElementById("out").textContent = JSON.stringify(res);
  };
  f.src = p; document.body.appendChild(f);
}
</script></body></html>"""


def browser() -> str | None:
    """The first Chromium or Chrome binary on PATH, or None."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def budget(page: str) -> int:
    return BUDGETS.get(page, NOTEBOOK_BUDGET)


def measure(folder: Path, pages: Sequence[str], binary: str, timeout: float = 60) -> dict[str, int]:
    """Height in CSS px of each page (file name in ``folder``), laid out WIDTH px wide by the headless browser
    ``binary``. One browser run for all pages; a page the browser could not read measures -1."""
    folder = Path(folder).resolve()
    missing = [p for p in pages if not (folder / p).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not in {folder}: render the pages first (python -m "
                                "mpq.pages.report --reports <folder>)")
    probe = folder / PROBE
    probe.write_text(PROBE_PAGE % (json.dumps(list(pages)), WIDTH))
    try:
        with tempfile.TemporaryDirectory() as profile:          # a fresh profile: nothing read from or left in $HOME
            command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                       f"--user-data-dir={profile}", "--virtual-time-budget=20000", f"--window-size={WIDTH + 120},900",
                       "--dump-dom", probe.as_uri()]
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    finally:
        probe.unlink()
    found = re.search(r'<div id="out">(\{.*?\})</div>', run.stdout, re.S)
    if not found:
        raise RuntimeError(f"{binary} measured no page (exit {run.returncode}); its last words: "
                           f"{run.stderr.strip()[-300:] or run.stdout.strip()[-300:]}")
    return json.loads(html.unescape(found.group(1)))


def over_budget(heights: dict[str, int]) -> dict[str, tuple[int, int]]:
    """{page: (height, budget)} of each page taller than its budget, or one that could not be measured (-1)."""
    return {p: (h, budget(p)) for p, h in heights.items() if h > budget(p) or h < 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", default=str(ROOT / "reports"), help="render the pages of this folder, in a copy")
    parser.add_argument("--pages", help="measure the pages in this folder as they are")
    args = parser.parse_args(argv)
    binary = browser()
    if binary is None:
        print(f"no browser to measure with: install Chromium (one of {', '.join(BROWSERS)} on PATH)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from mpq.pages.metrics import NOTEBOOKS
    from mpq.pages.report import write_reports

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.pages) if args.pages else Path(tmp) / "reports"
        if not args.pages:
            shutil.copytree(args.reports, folder)
            write_reports(folder)
        pages = ["index.html", *(f"{s}.html" for s in NOTEBOOKS)]
        heights = measure(folder, pages, binary)
    over = over_budget(heights)
    for page in pages:
        print(f"{page:28s} {heights[page]:6d} px  budget {budget(page):5d}" + ("  OVER" if page in over else ""))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
