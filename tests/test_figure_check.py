"""Figures that can be read at the pages' width (mpq.pages.figure_check): the check finds each kind of problem, and
each figure the pages show passes it when drawn from a small constructed input."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mpq.pages.figure_check import PAGE_WIDTH_PX, figure_problems  # noqa: E402
from mpq.studies.figure_text import min_points  # noqa: E402

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _clean(width_in=6.0):
    fig, ax = plt.subplots(figsize=(width_in, 3.5), dpi=120)
    ax.plot([0, 1, 2], [0, 1, 4], marker="o", label="line")
    ax.set(xlabel="x", ylabel="y", title="a title")
    ax.legend()
    fig.tight_layout()
    return fig, ax


def test_a_plain_figure_passes():
    fig, _ = _clean()
    assert figure_problems(fig, PAGE_WIDTH_PX) == []


def test_text_too_small_once_the_page_shrinks_the_figure():
    fig, _ = _clean(width_in=16.0)          # 1920 px at 120 dpi shown 1068 px wide: 10 pt is 9.3 px
    problems = figure_problems(fig, PAGE_WIDTH_PX)
    assert problems and all("px tall on screen" in p for p in problems)
    assert "text 'x' is 9.3 px tall on screen (at least 10)" in problems      # the 12-point title passes: 11.1 px
    assert not any("'a title'" in p for p in problems)
    assert min_points(16.0) > 10 > min_points(6.0)


def test_a_suptitle_past_the_edges_and_over_a_title():
    fig, ax = _clean()
    fig.suptitle("a suptitle far too long for the figure's width " * 3, y=0.96)    # down onto the title
    problems = figure_problems(fig, PAGE_WIDTH_PX)
    assert any("runs past the figure's edge" in p for p in problems)
    assert any("overlaps" in p and "'a title'" in p and "a suptitle" in p for p in problems)


def test_data_past_the_axes_and_markers_on_the_edge():
    fig, ax = _clean()
    ax.set_xlim(0, 1.5)                                     # the line's last point lies outside
    ax.scatter([0.0], [2.0], s=100)                         # a dot centred on the left edge: half of it outside
    problems = figure_problems(fig, PAGE_WIDTH_PX)
    assert any("line 'line' outside the axes" in p for p in problems)
    assert any("PathCollection" in p for p in problems)
    ax.set_xlim(-0.2, 2.2)
    assert figure_problems(fig, PAGE_WIDTH_PX) == []


# ------------------------------------------------------------------------------------------- the figures themselves

def test_verdict_plot_keeps_seeds_and_intervals_inside_its_axes():
    from test_front_door import _v

    from mpq.pages.claims import Judged, VerdictTable
    from mpq.pages.forest import verdict_plot

    rows = [Judged("plain minus no2bit", f"{b}-bit weights", _v([1.0, 2.0, -0.5], 0.0)) for b in (4, 5, 6)]
    rows.append(Judged("", "far off", _v([30.0, -20.0, 5.0], 0.0)))        # runs off the axis: arrows at the edge
    assert figure_problems(verdict_plot(VerdictTable("T", rows, "N")), PAGE_WIDTH_PX, dpi=100) == []
    long = "level 2.9 minus supernet from the FP model (no one-shot pre-training) and more words still"
    fig = verdict_plot(VerdictTable("T", [Judged("Animal-MNIST", long, _v([0.65, -5.0]))], "N"))
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=100) == []


def test_a_legend_over_the_line():
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot([0, 1], [0.95, 0.95], label="near the top")             # runs under the upper-left legend
    ax.plot([0, 1], [0, 0.1], label="low")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    fig.tight_layout()
    assert any("the legend covers line 'near the top'" in p for p in figure_problems(fig, PAGE_WIDTH_PX))
    ax.legend(loc="center right")
    assert figure_problems(fig, PAGE_WIDTH_PX) == []
    ax.bar([0.9], [0.6], width=0.1)                                 # a bar under the centre-right legend
    assert any("the legend covers 1 bar(s)" in p for p in figure_problems(fig, PAGE_WIDTH_PX))


# the ablation's scale as ablation_setup writes it for the default profile: the longest suptitle of F2-F4
SETUP = ("default profile, ResNet-20 x0.25, 8 one-shot epochs over 10000 images, seeds 0-8, 2000 test images "
         "(W2A2, W3A3: also 5000 held-out training images), CPU kind AVX512")
CELLS = ["plain", "idm", "sched", "no2bit"]


def _ablation_runs():
    import numpy as np
    from test_interference import _window

    def run(rate, rng):
        rec = {"progress": [0.25, 0.5, 0.75, 1.0], "flip_rate": {b: [None, rate, 1.1 * rate, 0.9 * rate] for b in "2346"}}
        dense = {"window_steps": 10, "starts": [5], "windows": {b: [_window(rate, 1, 0)] for b in "2346"}}
        return {"result": {"oscillation": rec, "oscillation_windows": dense, "distortion_sample_layer": "layer3.2.bn2",
                           "bn_distortion": {"layer3.2.bn2": 0.44, "layer1.0.bn1": 0.3}},
                "features": {"low": rng.normal(0, 1, 300), "high": rng.normal(0.2, 1.2, 300)}}

    rng = np.random.default_rng(0)
    return {(c, s): run(0.01 * (s + 1) * (k + 1), rng) for k, c in enumerate(CELLS) for s in range(9)}


def test_f2_oscillation_figure_reads_at_the_pages_width():
    from mpq.studies.interference import oscillation_figure

    fig = oscillation_figure(_ablation_runs(), CELLS, list(range(9)), f"{SETUP};\npaper: Figure 2")
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=110) == []           # the notebook saves it at 110 dpi


def test_f3_f4_density_figure_reads_at_the_pages_width():
    from mpq.studies.interference import density_figure

    fig = density_figure(_ablation_runs(), ["plain", "idm"], 0, f"{SETUP};\nseed 0; paper: Figures 3-4")
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=120) == []


def test_f1_toy_figure_shows_both_paths_whole():
    from mpq.pages.plotting import interference_toy
    from mpq.studies.interference import toy_example, toy_step_size

    traces, variances = toy_example([(4, 6), (2, 4, 6)], steps=300, lr=0.05, window=50, seed=0)
    fig = interference_toy(traces, variances, 50, toy_step_size(4),
                           "default profile, toy with two shared weights, lr 0.05, 3000 steps, seed 0; paper: Figure 1")
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=120) == []


MODELS = ["resnet20", "mobilenetv2_28", "efficientnet_lite_28"]       # the default profile's three models


def _supernet():
    return {m: {"fp_test_acc": 0.9, "uniform": {str(b): {"test_acc": 0.5 + 0.07 * b, "gbitops": 0.1 * b * b}
                                                for b in range(2, 7)}} for m in MODELS}


def test_c1_uniform_accuracy_legends_read_at_the_pages_width():
    from mpq.pages.plotting import baselines_vs_supernet

    fig = baselines_vs_supernet(_supernet(), {m: {b: {"test_acc": 0.6 + 0.05 * b} for b in (2, 3, 4)} for m in MODELS},
                                "default profile, seed 0: one supernet vs one LSQ model per bit-width (paper: Tables 2-4)")
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=120) == []


def test_f5_search_front_legend_below_the_panels_reads_at_the_pages_width():
    from mpq.pages.plotting import search_front

    def point(g, a):
        return {"gbitops": g, "test_acc": a}

    results = {m: {"levels": {str(lv): {"greedy": point(0.1 * lv * lv, 0.6 + 0.05 * lv),
                                        "random": point(0.098 * lv * lv, 0.55 + 0.05 * lv),
                                        "evolutionary": point(0.101 * lv * lv, 0.58 + 0.05 * lv),
                                        "retrained": point(0, 0.62 + 0.05 * lv)} for lv in (4, 3, 2.5)}} for m in MODELS}
    baselines = {m: {str(b): point(0.1 * b * b, 0.6 + 0.05 * b) for b in (2, 3, 4)} for m in MODELS}
    fig = search_front(results, _supernet(), baselines, {m: {"test_acc": 0.9} for m in MODELS},
                       "default profile, seed 0, Fashion-MNIST; paper: Figure 5")
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=120) == []


def test_f6_allocation_figure_reads_at_the_pages_width():
    from mpq.studies.allocation import allocation_figure

    results = {m: {"levels": {lv: {"greedy": {"bit_cfg": {f"l{i}": (2 + i % 5, 3 + i % 4) for i in range(20)}}}
                              for lv in (4, 3, 2.5)}} for m in MODELS}
    fig = allocation_figure(results, "default profile, seed 0, Fashion-MNIST; paper: Figure 6")
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=120) == []


def test_t5_transfer_figure_legends_below_the_panels():
    from test_transfer import _result

    from mpq.studies.transfer_tables import convergence_curves, fp_curves, transfer_figure

    result = _result()
    fig = transfer_figure(result.records, fp_curves(result) + convergence_curves(result), result.budgets, ["t"],
                          "default profile, ResNet-20 x0.5 from Fashion-MNIST, Animal-MNIST 120000 passes, MNIST-5k "
                          "80000 passes per arm, seeds 0-2; paper: Table 5", names={"t": "Animal-MNIST"})
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=120) == []


def test_every_verdict_plot_of_the_entry_page_reads_at_its_width(root):
    """The forest plot of each table of verdicts the committed metrics give, F1's large counts among them (its words
    and numbers ran past the right edge)."""
    from mpq.pages import sections
    from mpq.pages.forest import verdict_plot
    from mpq.pages.metrics import load_metrics

    metrics = load_metrics(root / "reports")
    drawn = 0
    for item in (i for i in sections.ITEMS if i.verdicts):
        for table in (t for t in item.verdicts(metrics) if t is not None and t.rows):
            fig = verdict_plot(table)
            assert figure_problems(fig, PAGE_WIDTH_PX, dpi=100) == [], table.title
            plt.close(fig)
            drawn += 1
    assert drawn >= 10


def test_f7_budget_figure_and_the_training_curves_read_at_the_pages_width():
    import pandas as pd

    from mpq.pages.plotting import budget_figure, supernet_curves, training_curves

    comparisons = ("greedy 3 minus retrained", "greedy 2.5 minus retrained", "supernet W2A2 minus LSQ alone",
                   "supernet W3A3 minus LSQ alone")
    points = pd.DataFrame([{"budget (x)": b, "seed": s, "comparison": c, "points": (s - 4) * 0.5 + b}
                           for c in comparisons for s in range(9) for b in (1, 2) if b == 1 or s == 0])
    fig = budget_figure(points, budgets=(2,), epochs=8, seed=0, model="resnet20", profile="default",
                        seeds=list(range(9)))
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=120) == []
    fig = budget_figure(points[points["budget (x)"] == 1], budgets=(), epochs=8, seed=0, model="resnet20",
                        profile="default", seeds=list(range(9)))      # the default budget only: one column each
    assert figure_problems(fig, PAGE_WIDTH_PX, dpi=120) == []
    histories = {m: {"epoch": [1, 2, 3], "loss": [1.0, 0.8, 0.6], "test_acc": [0.5, 0.6, 0.7]} for m in MODELS}
    for fig in (training_curves(histories, "default profile, seed 0, Fashion-MNIST"),
                supernet_curves(histories, "default profile, seed 0, Fashion-MNIST; paper: Tables 2-4")):
        assert figure_problems(fig, PAGE_WIDTH_PX, dpi=120) == []
