"""The ablation's search-noise study: scoring slices, the split of a greedy level's spread into the search's
and the training's parts, and the MDE projected from them."""
from __future__ import annotations

import math

import pytest
import torch

from mpq.data.datasets import ImageSet
from mpq.studies.search_noise import parse_designs, projected_mde, scoring_slice, summarize
from mpq.studies.stats import NoiseComponents, mde, mde_factor, t_quantile


def test_parse_designs_reads_size_slice_items_and_refuses_the_rest():
    assert parse_designs("128:0,512:2") == [(128, 0), (512, 2)]
    with pytest.raises(ValueError, match="not size:slice"):
        parse_designs("128")
    with pytest.raises(ValueError, match="positive"):
        parse_designs("0:1")


def test_scoring_slices_of_one_size_are_disjoint_and_too_large_ones_refused():
    score = ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10), ("c",))
    a, b = scoring_slice(score, 4, 0), scoring_slice(score, 4, 1)
    assert a.labels.tolist() == [0, 1, 2, 3] and b.labels.tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="needs 12 scoring images.*hold 10"):
        scoring_slice(score, 4, 2)


def _record(values_by_size):
    return {"searches": [{"size": size, "test_acc": {"greedy 3": v / 100}}
                         for size, values in values_by_size.items() for v in values]}


def test_summarize_splits_the_spread_into_search_and_training_parts():
    records = [_record({128: [88.0, 89.0], 512: [88.5]}), _record({128: [87.0, 88.0], 512: [88.0]})]
    s = summarize(records, "greedy 3")
    assert s[128]["runs"] == 2 and s[128]["slices_per_run"] == 2
    assert s[128]["search_sd"] == pytest.approx(math.sqrt(0.5))          # var of (88, 89) and of (87, 88)
    assert s[128]["run_sd"] == pytest.approx(math.sqrt(0.5))             # means 88.5 and 87.5
    assert s[128]["training_var"] == pytest.approx(0.5 - 0.5 / 2)
    assert s[512]["search_sd"] is None and s[512]["training_var"] is None   # one slice each: no search part


def test_projected_mde_adds_both_cells_search_and_training_parts():
    n = 9
    se = math.sqrt(2 * (0.01 + 0.1) / n)
    assert projected_mde(0.01, 0.1, n) == pytest.approx(mde_factor(n - 1) * se)       # the noncentral t, n - 1 df
    assert projected_mde(0.01, 0.1, n) > (t_quantile(0.975, n - 1) + t_quantile(0.8, n - 1)) * se
    # the images' parts: the design's Satterthwaite df, as a verdict would state it
    with_images = NoiseComponents(0.22, 500.0, 2 * 900.0, 0.0, n, 10000)
    assert projected_mde(0.01, 0.1, n, 500.0, 900.0, 10000) == pytest.approx(mde(with_images, n, 10000))
    assert projected_mde(0.01, 0.02, n) < projected_mde(0.01, 0.1, n)      # less search noise, smaller MDE
    with pytest.raises(ValueError, match="2 or more seeds"):
        projected_mde(0.01, 0.1, 1)
