"""Verdicts with both sources of noise (mpq.studies.stats, DESIGN.md section 5), on constructed data whose answer
is known by hand."""
from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest

import mpq.studies.stats
from mpq.studies.stats import (Verdict, holm, json_ready, mean_sd_half, paired_verdict, rows_note, t_critical,
                               t_quantile, table_note, unpaired_se, verdict)

pytestmark = pytest.mark.timeout(30)


def test_doctests():
    assert doctest.testmod(mpq.studies.stats).failed == 0


def test_three_close_seeds_with_large_test_noise_are_inconclusive():
    """Issue 25's T6 case: the seeds agree within 0.04 points, each carries a paired SE of 0.24 on the shared
    test set. The seed spread alone would call it "lower"; with the test noise the interval holds zero."""
    v = verdict([-0.09, -0.06, -0.10], [0.24, 0.24, 0.24], expected=1)
    sd = float(np.std([-0.09, -0.06, -0.10], ddof=1))
    assert v.diff == pytest.approx(-0.25 / 3)
    assert v.sd_seeds == pytest.approx(sd) and v.se_images == pytest.approx(0.24)
    assert v.se == pytest.approx(math.sqrt(sd ** 2 / 3 + 0.24 ** 2))
    assert v.df == 2 and v.low < 0 < v.high
    assert v.half == pytest.approx(4.303 * v.se, rel=1e-3)
    assert v.word == "inconclusive"
    assert v.mde == pytest.approx((4.303 + 1.061) * 0.24, rel=0.01)       # about 1.29 points
    assert v.text().startswith(f"inconclusive (smallest detectable effect {v.mde:.2f} points): -0.08 [")
    assert v.text().endswith("3 seeds")
    # the seed spread alone (the old verdict) would have been clear of zero
    assert -0.25 / 3 + t_critical(3) * sd / math.sqrt(3) < 0


def test_the_t2_gap_of_issue_25_is_inconclusive_too():
    v = verdict([-0.24, -0.17, -0.16], [0.21, 0.20, 0.21], expected=1)
    assert v.word == "inconclusive" and v.half > 0.85


def _correct(images: int, right: np.ndarray) -> np.ndarray:
    return np.arange(images) < right[:, None]                     # (seeds, images): the first `right` images


def test_clearly_more_images_right_holds_or_is_reversed_by_the_expected_direction():
    """Three seeds on 2,000 images: the reference is right on the first 1,600, the arm on those and 80-100 more
    (+4 to +5 points, every other image the same), so the paired SE is about 0.46 points."""
    ref = _correct(2000, np.array([1600, 1600, 1600]))
    arm = _correct(2000, np.array([1680, 1690, 1700]))
    up = paired_verdict(arm, ref, expected=1)
    assert up.per_seed == pytest.approx((4.0, 4.5, 5.0)) and up.diff == pytest.approx(4.5)
    assert up.word == "holds" and up.low > 0
    assert up.text().startswith("holds: +4.50 [")
    assert paired_verdict(arm, ref, expected=-1).word == "reversed here"
    assert paired_verdict(arm, ref).word == "higher" and paired_verdict(ref, arm).word == "lower"
    assert paired_verdict(ref, arm, expected=-1).word == "holds"


def test_paired_se_over_images_by_hand():
    a = np.array([[1, 1, 0, 1], [1, 0, 0, 1]])
    b = np.array([[1, 0, 0, 1], [0, 0, 1, 1]])
    v = paired_verdict(a, b)
    # per-image difference averaged over the seeds: (0.5, 0.5, -0.5, 0); its SD (n - 1) is sqrt(0.6875 / 3)
    se_img = 100 * math.sqrt(0.6875 / 3) / 2
    assert v.se_images == pytest.approx(se_img)
    assert v.per_seed == pytest.approx((25.0, 0.0)) and v.sd_seeds == pytest.approx(25 / math.sqrt(2))
    assert v.se == pytest.approx(math.sqrt(25 ** 2 / 2 / 2 + se_img ** 2))
    # per-seed SEs of the same data: their mean is never below the exact SE of the average (verdict's bound)
    per_seed_se = [100 * np.std(a[s] - b[s], ddof=1) / 2 for s in range(2)]
    assert verdict(v.per_seed, per_seed_se).se_images >= v.se_images
    with pytest.raises(ValueError, match="same"):
        paired_verdict(a, b[:, :3])


def test_one_run_uses_the_normal_quantile_and_says_so():
    v = verdict([0.5], [0.2], expected=1)
    assert v.df is None and math.isnan(v.sd_seeds) and v.se == pytest.approx(0.2)
    assert v.half == pytest.approx(1.959964 * 0.2)
    assert v.mde == pytest.approx((1.959964 + 0.841621) * 0.2)
    assert v.word == "holds" and "one run" in v.text()
    small = verdict([0.1], [0.2], expected=-1)
    assert small.word == "inconclusive" and "one run, test-image noise only" in small.text()
    one = paired_verdict(np.array([1, 1, 0, 1]), np.array([1, 0, 0, 1]))       # one row: one run
    assert one.n == 1 and one.diff == pytest.approx(25.0)
    assert one.se_images == pytest.approx(100 * np.std([0, 1, 0, 0], ddof=1) / 2)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.06 for the last
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_table_note_counts_clear_and_holm_survivors():
    clear = verdict([1.0, 1.1, 0.9], [0.1, 0.1, 0.1], expected=1)         # p about 0.013: survives Holm for 3
    marginal = verdict([0.5], [0.24], expected=1)                          # p about 0.037: not after Holm
    zero = verdict([0.0, 0.1, -0.1], [0.2, 0.2, 0.2])
    assert marginal.word == "holds" and 0.03 < marginal.p_value < 0.05
    assert table_note([clear, marginal, zero]) == ("3 comparisons (about 0.2 clear of zero by chance at 5%): "
                                                   "2 clear of zero, 1 after Holm")
    assert table_note([]).startswith("0 comparisons")


def test_as_dict_is_strict_json():
    for v in (verdict([0.5], [0.2], expected=1), verdict([0.1, 0.2], [0.1, 0.1]), verdict([3.0, 3.0], [0.0, 0.0])):
        d = v.as_dict()
        text = json.dumps(d, allow_nan=False)
        assert json.loads(text)["word"] == v.word and d["per_seed"] == list(v.per_seed)
    one = verdict([0.5], [0.2]).as_dict()
    assert one["sd_seeds"] is None and one["df"] is None and one["n"] == 1 and one["text"].startswith("higher")
    assert json.dumps(json_ready({"a": [math.nan, 1.0, {"b": math.inf}], "c": (2, "x")}), allow_nan=False) == \
        '{"a": [null, 1.0, {"b": null}], "c": [2, "x"]}'


def test_verdict_refuses_what_it_cannot_judge():
    with pytest.raises(ValueError, match="one paired SE per seed"):
        verdict([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="finite"):
        verdict([0.1, math.nan], [0.1, 0.1])
    with pytest.raises(ValueError, match="finite"):
        verdict([0.1], [-0.1])


def test_no_noise_at_all_is_judged_by_the_difference_alone():
    assert verdict([0.0, 0.0], [0.0, 0.0]).word == "inconclusive"
    v = verdict([2.0, 2.0], [0.0, 0.0], expected=-1)
    assert v.word == "reversed here" and v.p_value == 0.0


def test_quantiles_and_descriptive_spread():
    assert t_quantile(0.975, None) == pytest.approx(1.959964, rel=1e-6)
    assert t_critical(3) == pytest.approx(4.302653, rel=1e-6) and t_critical(1) == math.inf
    mean, sd, half = mean_sd_half([1.0, 2.0, 3.0])
    assert (mean, sd) == pytest.approx((2.0, 1.0)) and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert mean_sd_half([1.0])[2] == math.inf


def test_a_stored_table_counts_as_the_verdicts_it_was_built_from():
    vs = [verdict([1.0, 1.1, 0.9], [0.1, 0.1, 0.1], expected=1), verdict([0.5], [0.24], expected=1),
          verdict([0.02, 0.03], [0.0, 0.0], expected=-1, unit="crossings")]
    stored = json.loads(json.dumps([{"cell": i, "verdict": v.as_dict()} for i, v in enumerate(vs)], allow_nan=False))
    assert [Verdict.from_dict(r["verdict"]) for r in stored] == vs
    assert rows_note(stored + [{"cell": "reference, no verdict"}]) == table_note(vs)
    assert vs[2].word == "inconclusive" and f"effect {vs[2].mde:.2f} crossings): +0.03 [" in vs[2].text()


def test_unpaired_se_bounds_the_paired_se_when_both_models_miss_the_same_images():
    ref = _correct(1000, np.array([850]))[0]
    arm = _correct(1000, np.array([870]))[0]                      # right on the reference's images and 20 more
    paired = paired_verdict(arm, ref).se_images
    assert unpaired_se(0.87, 0.85, 1000) == pytest.approx(100 * math.sqrt((0.87 * 0.13 + 0.85 * 0.15) / 1000))
    assert unpaired_se(0.87, 0.85, 1000) > paired


# --- power before compute: noise components from a pilot, and the design they imply --------------------------

from mpq.studies.stats import NoiseComponents, mde, noise_components, plan_design, predicted_se, required_seeds


def test_noise_components_by_hand():
    # 2 seeds x 3 images, the reference always wrong: D / 100 = [[1, 1, 0], [1, 0, 0]]
    # seed means 2/3, 1/3 (SD^2 = 1/18); image means 1, 1/2, 0 (V = 1/4); grand mean 1/2
    # residuals D - seed - image + grand: [[-1/6, 1/3, -1/6], [1/6, -1/3, 1/6]], squares sum 1/3 over 2 df
    arm = np.array([[1, 1, 0], [1, 0, 0]])
    c = noise_components(arm, np.zeros_like(arm))
    assert c.within_var == pytest.approx(1e4 / 6)                          # (1/3) / 2, in points^2
    assert c.seed_var == pytest.approx(0.0, abs=1e-9)                      # 1/18 - (1/6) / 3
    assert c.image_var == pytest.approx(1e4 * (1 / 4 - 1 / 12))           # 1/4 - (1/6) / 2
    assert (c.diff, c.seeds, c.images) == (50.0, 2, 3)
    # at the pilot's own design the prediction is paired_verdict's SE: SD^2/n + V/m = 555.6/2 + 2500/3
    assert predicted_se(c, 2, 3) == pytest.approx(math.sqrt(1e4 / 36 + 1e4 / 12))
    assert predicted_se(c, 2, 3) == pytest.approx(paired_verdict(arm, np.zeros_like(arm)).se)
    with pytest.raises(ValueError, match="2\\+ seeds"):
        noise_components(arm[:1], np.zeros_like(arm[:1]))


def test_predicted_se_reproduces_paired_verdict_on_a_simulated_pilot():
    """Seeds shift the difference, images carry their own part, and each (seed, image) flips alone: wherever no
    component is clipped at 0, the prediction at the pilot's design is the verdict's SE exactly."""
    rng = np.random.default_rng(0)
    n, m = 4, 3000
    hard = rng.random(m) < 0.3                                             # images the arm tends to get right
    ref = rng.random((n, m)) < 0.85
    arm = rng.random((n, m)) < (0.85 + 0.05 * hard + rng.normal(0, 0.01, (n, 1)))
    c = noise_components(arm, ref)
    assert c.seed_var > 0 and c.image_var > 0 and c.within_var > 0
    v = paired_verdict(arm, ref)
    assert predicted_se(c, n, m) == pytest.approx(v.se, rel=1e-9)
    assert mde(c, n, m) == pytest.approx(v.mde, rel=1e-9)
    # more seeds or more images never widen the design
    assert mde(c, 8, m) < mde(c, 4, m) and mde(c, 4, 3 * m) < mde(c, 4, m)


def test_required_seeds_and_the_plan():
    images_bound = NoiseComponents(seed_var=0.0, image_var=1e4, within_var=0.0, diff=0.0, seeds=3, images=100)
    # SE = sqrt(1e4 / m): 100 images give 10 points, beyond any seed count's reach
    assert required_seeds(images_bound, 0.5, 100) is None
    # a million images: SE 0.1, and the t quantiles ask for 4 seeds: (3.182 + 0.978) * 0.1 = 0.416, 3 give 0.536
    assert required_seeds(images_bound, 0.5, 10**6) == 4
    seeds_bound = NoiseComponents(seed_var=0.09, image_var=0.0, within_var=0.0, diff=0.0, seeds=3, images=100)
    n = required_seeds(seeds_bound, 0.5, 100)
    assert mde(seeds_bound, n, 100) <= 0.5 < mde(seeds_bound, n - 1, 100)
    plan = plan_design({"a": images_bound, "b": seeds_bound}, 0.5, [100, 10**6, 2 * 10**6])
    assert plan["seeds"] == n and plan["images"] == 10**6                  # the fewest images needing n seeds
    assert plan["options"][0]["seeds"] is None and plan["options"][0]["per_comparison"]["b"] == n
    assert plan["mde"]["b"] <= 0.5 and plan["limiting"] == "b"
    unreachable = plan_design({"a": images_bound}, 0.5, [100])
    assert unreachable["seeds"] is None and unreachable["mde"] is None
    with pytest.raises(ValueError, match="2 or more seeds"):
        mde(seeds_bound, 1, 100)
