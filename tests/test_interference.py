"""The toy of bit-width interference (mpq.interference): its mechanics and its one claim."""
from __future__ import annotations

import doctest

import pytest
import torch

import mpq.interference
from mpq.interference import coupled_toy, rolling_variance, summarize, toy_study


def test_doctests():
    assert doctest.testmod(mpq.interference).failed == 0


def test_on_grid_optimum_does_not_move():
    # target on the 6-bit grid (step 1/32) and the start there: zero residual, zero gradient, no crossing
    target = (3 / 32, -5 / 32)
    trace = coupled_toy((6,), steps=50, target=target, start=target)
    assert torch.count_nonzero(trace.grads) == 0
    assert all(int(c[-1]) == 0 for c in trace.crossings.values())


def test_straight_through_gradient_by_hand():
    # one step at a single candidate: grad = 2/B * X^T (X q - X t) where q is the quantized start
    trace = coupled_toy((4,), steps=1, batch=4, start=(0.3, -0.2), seed=3)
    gen = torch.Generator().manual_seed(3)
    torch.randint(1, (1,), generator=gen)                       # the (trivial) draw of the bit-width
    x = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    q = torch.round(torch.tensor([0.3, -0.2], dtype=torch.float64) / 0.125) * 0.125
    expected = 0.5 * x.T @ (x @ q - x @ torch.tensor([0.37, -0.61], dtype=torch.float64))
    torch.testing.assert_close(trace.grads[0], expected)


def test_rolling_variance():
    values = torch.tensor([1.0, 1.0, 3.0, 3.0])
    torch.testing.assert_close(rolling_variance(values, 2), torch.tensor([0.0, 2.0, 0.0]))
    with pytest.raises(ValueError):
        rolling_variance(values, 5)


def test_two_bit_candidate_makes_four_bit_weights_oscillate():
    """The toy's claim, on its default settings and seed 0: with 2-bit among the candidates the 4-bit
    quantized weights keep crossing thresholds in the second half of training; without it they settle."""
    plain = summarize(coupled_toy((4, 6), seed=0), window=100)
    coupled = summarize(coupled_toy((2, 4, 6), seed=0), window=100)
    assert plain["crossings_w4_second_half"] <= 5 < 100 <= coupled["crossings_w4_second_half"]
    assert coupled["grad_var_second_half"] > 10 * plain["grad_var_second_half"]
    rows = toy_study([(4, 6), (2, 4, 6)], [0.05], 2, steps=200, window=20)
    assert [(r["candidates"], r["seed"]) for r in rows] == [("{4,6}", 0), ("{2,4,6}", 0), ("{4,6}", 1), ("{2,4,6}", 1)]


# --- reading the ablation runs ---------------------------------------------------------------------------

import json

import numpy as np

from mpq.interference import ablation_rows, distortion_rows, load_runs, oscillation_rows
from mpq.stats import seed_verdict


def test_seed_verdict_needs_a_consistent_difference():
    assert seed_verdict([0.5, 0.6, 0.55]) == "higher, beyond the seed spread"
    assert seed_verdict([-0.5, -0.6, -0.55]) == "lower, beyond the seed spread"
    assert seed_verdict([0.5, -0.4, 0.2]) == "within the seed spread"
    assert seed_verdict([0.9]) == "one seed: no verdict"


def _write_run(folder, cell, seed, correct, flips):
    path = folder / f"{cell}-{seed}"
    path.mkdir(parents=True)
    labels = np.zeros(len(correct), dtype=np.int16)
    np.savez(path / "predictions.npz", labels=labels, **{"W2A2": np.where(correct, 0, 1).astype(np.int16)})
    np.savez(path / "features.npz", low=np.zeros(3), high=np.ones(3))
    (path / "result.json").write_text(json.dumps({
        "oscillation": {"progress": [0.25, 0.5, 0.75, 1.0], "flip_rate": {"4": [None, *flips]},
                        "distance": {"4": [0.2, 0.2, 0.2, 0.1]}},
        "bn_distortion": {"a": 0.2 if cell == "idm" else 0.4, "b": 0.4}}))


def test_ablation_tables_on_constructed_runs(tmp_path):
    n = 100
    for seed in (0, 1, 2):
        # plain gets images 0..79 right; idm the same plus 2 + seed more: +2, +3, +4 points, paired
        _write_run(tmp_path, "plain", seed, np.arange(n) < 80, [0.1, 0.1, 0.1])
        _write_run(tmp_path, "idm", seed, np.arange(n) < 82 + seed, [0.1, 0.05, 0.05])
    runs = load_runs(tmp_path, ["plain", "idm"], [0, 1, 2])
    rows = {r["cell"]: r for r in ablation_rows(runs, ["plain", "idm"], [0, 1, 2], ["W2A2"])}
    assert rows["plain"]["top-1 mean"] == pytest.approx(80.0) and "minus plain" not in rows["plain"]
    assert rows["idm"]["minus plain"] == pytest.approx(3.0)
    assert rows["idm"]["diff SD over seeds"] == pytest.approx(1.0)
    assert rows["idm"]["verdict"] == "higher, beyond the seed spread"
    t1 = {r["cell"]: r for r in oscillation_rows(runs, ["plain", "idm"], [0, 1, 2])}
    assert t1["plain"]["flip % (2nd half)"] == pytest.approx(10.0)       # measurements at 0.75 and 1.0
    assert t1["idm"]["flip % (2nd half)"] == pytest.approx(5.0)
    assert t1["idm"]["flip % (whole run)"] == pytest.approx(100 * 0.2 / 3)
    assert t1["idm"]["distance at end (steps)"] == pytest.approx(0.1)
    dist = {r["cell"]: r for r in distortion_rows(runs, ["plain", "idm"], [0, 1, 2])}
    assert dist["plain"]["distortion mean"] == pytest.approx(0.4) and dist["idm"]["distortion mean"] == pytest.approx(0.3)
    with pytest.raises(FileNotFoundError, match=r"\['both-0'\].*dvc repro ablation"):
        load_runs(tmp_path, ["both"], [0])
