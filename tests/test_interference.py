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
