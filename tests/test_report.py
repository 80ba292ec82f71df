"""The reader's side: tables, the rendered pages, the entry page and the README's generated block."""
from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mpq.pages.display import show_table, tidy
from mpq.pages.report import (ITEMS, amortisation_rows, break_even, build_index, held_lines, load_metrics,
                              readme_block, notebook_environments, readme_summary, reader_notebook, render_notebook)

pytestmark = pytest.mark.timeout(120)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images, self.links = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_tidy_makes_whole_floats_integers_and_drops_the_index():
    df = pd.DataFrame({"n": [68642.0, 3.0], "acc": [90.134, None], "name": ["a", "b"]}, index=[5, 7])
    out = tidy(df)
    assert str(out["n"].dtype) == "Int64" and list(out.index) == [0, 1]
    assert out["acc"].dtype == float                      # not whole numbers: stays float
    html = show_table(df).to_html()
    assert "68642" in html and "68642.0" not in html and "nan" not in html.lower()
    assert "90.13" in html and ">5<" not in html          # two decimals, no index


def _toy_notebook():
    nb = new_notebook()
    params = new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    logs = new_code_cell("train()")
    logs.outputs = [new_output("stream", name="stderr", text="epoch 1 loss 0.5 100%|#####|\n")]
    table = new_code_cell("show_table(df)")
    table.outputs = [new_output("execute_result", data={"text/html": "<table><tr><td>TABLE-1</td></tr></table>",
                                                        "text/plain": "TABLE-1"}, execution_count=3)]
    fig = new_code_cell("fig")
    fig.outputs = [new_output("display_data", data={"text/plain": "<Figure size 640x480 with 1 Axes>"})]
    found = new_code_cell("findings(...)")
    found.metadata["tags"] = ["findings"]
    found.outputs = [new_output("display_data", data={"text/markdown": "### Findings (T9)\n\n- FINDING-ONE",
                                                      "text/plain": "<IPython.core.display.Markdown object>"})]
    nb.cells = [new_markdown_cell("# Title"), params, logs, table, fig, new_markdown_cell("## Later"), found]
    nb.metadata["mpq"] = {"stage_seconds": 12.3, "device": "cpu", "cpu_capability": "AVX512", "threads": 2,
                          "torch": "2.13.0"}
    nb.metadata["papermill"] = {"output_path": "reports/09_toy.ipynb"}
    return nb


def test_reader_notebook_puts_findings_first_and_drops_code_logs_and_parameters():
    nb = reader_notebook(_toy_notebook())
    sources = [c.source for c in nb.cells]
    assert sources[1] == "# Title" and "findings" in nb.cells[2].metadata.get("tags", [])
    assert not any("x = 1" == s for s in sources)
    assert all(o.get("output_type") != "stream" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "index.html" in sources[0] and "AVX512" in sources[-1]


def test_rendered_page_has_no_code_and_no_logs(tmp_path):
    path = tmp_path / "09_toy.ipynb"
    nbformat.write(_toy_notebook(), str(path))
    page = render_notebook(path)
    assert "FINDING-ONE" in page and "TABLE-1" in page
    assert "epoch 1 loss" not in page and "train()" not in page and "x = 1" not in page
    assert page.index("FINDING-ONE") < page.index("TABLE-1")


def _metrics_with_times():
    level = {"greedy": {"test_acc": 0.88}, "retrained": {"train_seconds": 30.0, "test_acc": 0.89}}
    return {"supernet": {"models": {"m": {"train_seconds": 150.0}}},
            "search": {"models": {"m": {"greedy_seconds": 20.0, "levels": {"4": level, "3": level}}}}}


def test_amortisation_counts_one_training_and_k_searches_against_k_retrainings():
    rows = amortisation_rows(_metrics_with_times())
    k1 = rows[0]
    assert k1["one-shot: training + K searches (s)"] == pytest.approx(150 + 10)
    assert k1["K retrainings (s)"] == pytest.approx(30)
    # 150 + 10 K <= 30 K from K = 7.5: the first whole K is 8
    assert break_even(rows) == {"m": 8}


def test_committed_entry_page_shows_every_item_and_no_missing_image(root):
    page_path = root / "reports" / "index.html"
    page = _parse(page_path.read_text())
    assert {item.id for item in ITEMS} <= page.ids
    assert {"held", "environment"} <= page.ids
    assert page.images, "no figure on the entry page"
    for src in page.images:
        assert (page_path.parent / src).is_file(), f"missing image {src}"
    for href in page.links:
        if not href.startswith(("http", "#")):
            assert (page_path.parent / href).exists(), f"broken link {href}"


def test_entry_page_regenerates_from_the_committed_metrics(root):
    page = _parse(build_index(root / "reports"))
    assert {item.id for item in ITEMS} <= page.ids


def test_readme_summary_matches_the_committed_metrics(root):
    """The README's generated block cannot drift from reports/metrics (regenerate: python -m mpq.pages.report --readme)."""
    reports = root / "reports"
    assert readme_block(root / "README.md") == readme_summary(load_metrics(reports), notebook_environments(reports))


def test_held_lines_cover_every_claim_measured(root):
    text = "\n".join(held_lines(load_metrics(root / "reports")))
    for claim in ("C1", "C2", "C3/C4", "C5", "C6"):
        assert f"**{claim}" in text


def test_every_committed_report_page_is_readable(root):
    for item in ITEMS:
        assert (root / "reports" / f"{item.notebook}.html").is_file()
    for page in sorted((root / "reports").glob("0*.html")):
        text = page.read_text()
        assert "Findings (" in text, page.name
        assert 'class="highlight' not in text, f"{page.name} shows code"          # highlighted code inputs
        assert 'data-mime-type="application/vnd.jupyter.std' not in text, f"{page.name} shows logs"
        assert "<img" in text, f"{page.name} shows no figure"


def test_pooled_gaps_include_seed_variance():
    from mpq.studies.replicates import pool_gaps, seed_rows

    def record(seed, diff, acc):
        return {"seed": seed, "test_acc": {"greedy 3": acc, "retrained 3": acc - diff},
                "gaps": {"3": {"no_retrain_minus_retrained": diff, "paired_se": 0.002}}}

    steady = pool_gaps([record(0, -0.010, 0.88), record(1, -0.011, 0.88), record(2, -0.009, 0.88)])[0]
    assert steady["no-retrain minus retrained (points)"] == pytest.approx(-1.0)
    assert steady["95% interval high"] < 0 and steady["verdict"].startswith("retrained is better")
    noisy = pool_gaps([record(0, -0.010, 0.88), record(1, 0.006, 0.88), record(2, -0.002, 0.88)])[0]
    assert noisy["95% interval low"] < 0 < noisy["95% interval high"]
    assert noisy["verdict"] == "no difference beyond the seed spread"
    rows = {r["row"]: r for r in seed_rows([record(0, -0.01, 0.88), record(1, -0.01, 0.90)])}
    assert rows["greedy 3"]["top-1 mean (%)"] == pytest.approx(89.0) and rows["greedy 3"]["seeds"] == 2


def test_budget_curve_rows_per_comparison_and_budget():
    from mpq.studies.replicates import ReplicateConfig, budget_points, budget_rows

    def record(seed, gap, sn2, lsq2, budget=None):
        r = {"seed": seed, "test_acc": {"supernet W2A2": sn2, "LSQ W2A2": lsq2, "supernet W6A6": 0.9},
             "gaps": {"3": {"no_retrain_minus_retrained": gap, "paired_se": 0.002}}}
        return r if budget is None else {**r, "budget": budget}

    records = [record(0, -0.010, 0.80, 0.85), record(1, -0.006, 0.82, 0.85), record(0, -0.002, 0.84, 0.85, budget=2)]
    points = budget_points(records)
    assert len(points) == 6                                  # W6A6 has no LSQ model: not a comparison
    rows = {(r["comparison"], r["budget (x)"]): r for r in budget_rows(points, epochs=3)}
    assert rows[("greedy 3 minus retrained", 1)]["mean (points)"] == pytest.approx(-0.8)
    assert rows[("greedy 3 minus retrained", 1)]["seeds"] == 2
    assert rows[("greedy 3 minus retrained", 2)]["epochs"] == 6
    assert rows[("greedy 3 minus retrained", 2)]["per seed"] == "0: -0.20"
    assert rows[("supernet W2A2 minus LSQ alone", 2)]["mean (points)"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="budgets"):
        ReplicateConfig(budgets=(1,))


def test_main_run_record_has_the_replicates_shape(root):
    from mpq.studies.replicates import main_run_record

    m = load_metrics(root / "reports")
    rec = main_run_record("resnet20", 0, m["supernet"]["models"], m["baselines"]["models"], m["search"]["models"])
    assert {"supernet W2A2", "LSQ W2A2", "greedy 3", "retrained 3"} <= set(rec["test_acc"])
    assert set(rec["gaps"]) == set(m["search"]["models"]["resnet20"]["levels"])


def test_f7_line_compares_the_main_seed_across_budgets():
    """The summary's F7 line follows the main seed from the default budget to the larger ones (the only seed run
    there) and gives the default budget's mean over seeds beside it, not the mean joined to one seed."""
    from mpq.pages.report import _per_seed

    assert _per_seed("0: -1.50 / 1: -0.12 / 2: +0.47") == {0: -1.5, 1: -0.12, 2: 0.47}
    rows = [{"comparison": "greedy 3 minus retrained", "budget (x)": 1, "epochs": 3, "seeds": 3,
             "mean (points)": -0.69, "SD over seeds": 0.24, "per seed": "0: -0.96 / 1: -0.51 / 2: -0.60"},
            {"comparison": "greedy 3 minus retrained", "budget (x)": 2, "epochs": 6, "seeds": 1,
             "mean (points)": -1.29, "SD over seeds": None, "per seed": "0: -1.29"}]
    lines = held_lines({"search": {"budget": {"model": "resnet20", "seed": 0, "rows": rows}}})
    line = next(x for x in lines if "F7" in x)
    assert "greedy 3 minus retrained -0.96 → -1.29 (mean of 3 seeds at 3 epochs -0.69)" in line


def test_f7_is_pending_without_a_budget_beyond_the_default():
    """The default profile lists no larger budget: F7's rows hold the default budget only, so neither the
    summary nor the entry page may present them as a budget curve."""
    from mpq.pages.report import _f7_numbers

    rows = [{"comparison": "greedy 3 minus retrained", "budget (x)": 1, "epochs": 3, "seeds": 3,
             "mean (points)": -0.69, "SD over seeds": 0.24, "per seed": "0: -0.96 / 1: -0.51 / 2: -0.60"}]
    m = {"search": {"budget": {"model": "resnet20", "seed": 0, "budgets": [1], "rows": rows}}}
    assert not any("F7" in line for line in held_lines(m))
    assert _f7_numbers(m) == []
    larger = {**rows[0], "budget (x)": 2, "epochs": 6, "seeds": 1, "per seed": "0: -1.29"}
    m2 = {"search": {"budget": {"model": "resnet20", "seed": 0, "budgets": [1, 2], "rows": rows + [larger]}}}
    assert any("F7" in line for line in held_lines(m2)) and _f7_numbers(m2)


def test_entry_page_says_why_f7_is_missing(root, tmp_path):
    """Built from the committed metrics with F7 cut to the default budget, the entry page keeps the F7 section and
    says which parameter and profile produce the curve."""
    reports = tmp_path / "reports"
    shutil.copytree(root / "reports", reports)
    search = json.loads((reports / "metrics" / "search.json").read_text())
    search["budget"]["rows"] = [r for r in search["budget"]["rows"] if r["budget (x)"] == 1]
    (reports / "metrics" / "search.json").write_text(json.dumps(search))
    page = build_index(reports)
    section = page[page.index("id='F7'"):page.index("id='S1'")]
    assert "replicates.budgets" in section and "profiles/large.yaml" in section and "<img" not in section
