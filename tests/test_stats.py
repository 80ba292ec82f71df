"""Verdicts with both sources of noise (mpq.studies.stats, DESIGN.md section 5), on constructed data whose answer
is known by hand."""
from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest

import mpq.studies.stats
from mpq.studies.stats import (EQUIVALENCE_MARGIN, Verdict, crossed_anova, crossed_se, family_counts, holm,
                               holm_words, interval_text, json_ready, mde_factor, p_text, mean_sd_half, paired_verdict, rows_note,
                               satterthwaite_df, t_critical, t_quantile, table_note, unpaired_se, verdict)

pytestmark = pytest.mark.timeout(30)


def test_doctests():
    assert doctest.testmod(mpq.studies.stats).failed == 0


def test_a_bound_near_zero_shows_its_side_and_p_never_prints_as_zero():
    """Issue 44: "holds +0.37 [+0.00, +0.74]" beside "inconclusive -0.36 [-0.72, +0.00]" read as if they disagreed;
    a bound that is not zero shows its side, and the word and the printed interval agree."""
    assert interval_text(0.3712, 0.0034, 0.7412) == "+0.37 [+0.003, +0.74]"
    assert interval_text(-0.3612, -0.7234, 0.0021) == "-0.36 [-0.72, +0.002]"
    assert interval_text(-0.5, -1.0, -0.00004) == "-0.50 [-1.00, -0.00004]"
    assert interval_text(0.5, 0.0, 1.0) == "+0.50 [+0.00, +1.00]"       # a bound at zero stays as it is
    v = Verdict(0.3712, (0.3712,), math.nan, 0.1876, 0.1876, None, 1)
    assert v.low > 0 and "[+0.004, +0.74]" in v.text()
    assert [p_text(p) for p in (0.0, 0.0004, 0.001, 0.0456, 1.0)] == ["< 0.001", "< 0.001", "0.001", "0.046", "1.000"]


def test_three_close_seeds_with_large_test_noise_are_inconclusive():
    """Issue 25's T6 case: the seeds agree within 0.04 points, each carries a paired SE of 0.24 on the shared
    test set. The seed spread alone would call it "lower"; with the test noise the interval holds zero. Only the
    per-seed SEs are known, so the images' part is bounded by their mean square (never below the true part)."""
    v = verdict([-0.09, -0.06, -0.10], [0.24, 0.24, 0.24], expected=1, images=10000)
    sd = float(np.std([-0.09, -0.06, -0.10], ddof=1))
    assert v.diff == pytest.approx(-0.25 / 3) and v.basis == "seed SEs"
    assert v.sd_seeds == pytest.approx(sd) and v.se_images == pytest.approx(0.24)
    assert v.se == pytest.approx(math.sqrt(sd ** 2 / 3 + 0.24 ** 2))
    # Satterthwaite: the image term (9,999 df) dominates, so the df are far above n - 1 = 2
    df = v.se ** 4 / ((sd ** 2 / 3) ** 2 / 2 + 0.24 ** 4 / 9999)
    assert v.df == pytest.approx(df) and v.df > 1000 and v.low < 0 < v.high
    assert v.half == pytest.approx(1.96 * v.se, rel=1e-3)
    assert v.word == "inconclusive"
    assert v.mde == pytest.approx(2.8017 * v.se, rel=1e-3)
    assert v.text().startswith(f"inconclusive (smallest detectable effect {v.mde:.2f} points): -0.08 [")
    assert v.text().endswith("3 seeds")
    # the seed spread alone (the old verdict) would have been clear of zero
    assert -0.25 / 3 + t_critical(3) * sd / math.sqrt(3) < 0


def test_the_t2_gap_of_issue_25_is_inconclusive_too():
    v = verdict([-0.24, -0.17, -0.16], [0.21, 0.20, 0.21], expected=1)
    assert v.word == "inconclusive" and v.half > 0.4


def _correct(images: int, right: np.ndarray) -> np.ndarray:
    return np.arange(images) < right[:, None]                     # (seeds, images): the first `right` images


def test_clearly_more_images_right_holds_or_is_reversed_by_the_expected_direction():
    """Three seeds on 2,000 images: the reference is right on the first 1,600, the arm on those and 80-100 more
    (+4 to +5 points, every other image the same)."""
    ref = _correct(2000, np.array([1600, 1600, 1600]))
    arm = _correct(2000, np.array([1680, 1690, 1700]))
    up = paired_verdict(arm, ref, expected=1)
    assert up.per_seed == pytest.approx((4.0, 4.5, 5.0)) and up.diff == pytest.approx(4.5)
    assert up.word == "holds" and up.low > 0 and up.basis == "images"
    assert up.text().startswith("holds: +4.50 [")
    assert paired_verdict(arm, ref, expected=-1).word == "reversed here"
    assert paired_verdict(arm, ref).word == "higher" and paired_verdict(ref, arm).word == "lower"
    assert paired_verdict(ref, arm, expected=-1).word == "holds"


def test_two_way_decomposition_by_hand():
    """3 seeds x 3 images, the reference always wrong: d / 100 = [[1, 0, 0], [1, 1, 0], [1, 0, 1]].
    Seed means 1/3, 2/3, 2/3 (grand 5/9): MS_seed = 3 x 1/27 = 1/9. Image means 1, 1/3, 1/3: MS_image = 3 x 4/27
    = 4/9. Total SS 20/9 minus 2/9 and 8/9 leaves 10/9 on 4 df: MS_within = 5/18. So image_var = (4/9 - 5/18) / 3
    = 1/18, seed_var = max(1/9 - 5/18, 0) / 3 = 0, and SE^2 = MS_seed / 9 + image_var / 3 = 1/81 + 1/54 = 5/162.
    Satterthwaite: (5/162)^2 / ((1/81)^2 / 2 + (4/81)^2 / 2 + (5/162)^2 / 4) = 100/161."""
    arm = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1]])
    v = paired_verdict(arm, np.zeros_like(arm))
    assert v.diff == pytest.approx(500 / 9)
    assert v.within_var == pytest.approx(1e4 * 5 / 18) and v.image_var == pytest.approx(1e4 / 18)
    assert v.seed_var == 0.0
    assert v.se == pytest.approx(100 * math.sqrt(5 / 162)) and v.df == pytest.approx(100 / 161)
    assert v.se_images == pytest.approx(100 * math.sqrt(1 / 54))
    grand, ms_seed, ms_image, ms_within = crossed_anova(arm[None].astype(float))     # vectorised: a leading axis
    assert (grand[0], ms_seed[0], ms_image[0], ms_within[0]) == pytest.approx((5 / 9, 1 / 9, 4 / 9, 5 / 18))
    # the old rule added the seed-averaged SE over images on top of the seed spread: the seed-by-image part twice
    old = math.sqrt(np.var(v.per_seed, ddof=1) / 3 + np.var(arm.mean(0) * 100, ddof=1) / 3)
    assert old > v.se
    # no image part (image means spread no more than the residual): SE from the seed means alone, n - 1 df
    flat = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
    w = paired_verdict(flat, np.zeros_like(flat))
    assert w.image_var == 0.0 and w.df == 2.0
    assert w.se == pytest.approx(np.std(w.per_seed, ddof=1) / math.sqrt(3))
    with pytest.raises(ValueError, match="same"):
        paired_verdict(arm, arm[:, :2])


def test_satterthwaite_df_by_hand():
    assert satterthwaite_df([(2.0, 4), (1.0, 9)]) == pytest.approx(9 / (4 / 4 + 1 / 9))          # 8.1
    assert satterthwaite_df([(1.0, 3), (0.5, math.inf)]) == pytest.approx(2.25 / (1 / 3))         # 6.75
    assert satterthwaite_df([(3.0, 2), (-1.0, 6)]) == pytest.approx(4 / (9 / 2 + 1 / 6))


def test_noncentral_mde_detects_its_effect_with_80_percent_power():
    """At 2 df a true effect of mde_factor(2) standard errors is found clear of zero 80% of the time (simulated
    t statistics: a normal over the root of a chi-square on 2 df); the central shortcut falls short."""
    from scipy.stats import t

    rng = np.random.default_rng(1)
    crit = t.ppf(0.975, 2)
    z, chi = rng.normal(size=200_000), rng.chisquare(2, 200_000)

    def power(delta):
        return float((np.abs((z + delta) / np.sqrt(chi / 2)) > crit).mean())

    assert mde_factor(2) == pytest.approx(5.6535, abs=1e-3)
    assert power(mde_factor(2)) == pytest.approx(0.80, abs=0.005)
    assert power(t_quantile(0.975, 2) + t_quantile(0.8, 2)) < 0.78
    assert mde_factor(None) == pytest.approx(1.959964 + 0.841621, abs=1e-4)       # the normal: z + z (+ a tail)
    assert mde_factor(3) > mde_factor(9) > mde_factor(None)


def test_equivalence_by_two_one_sided_tests():
    """"on par" only where both one-sided tests reject at 5%, i.e. the 90% interval lies inside +-margin."""
    from scipy.stats import t

    near = Verdict(0.1, (0.0, 0.1, 0.2), 0.1, 0.0, 0.1, 10.0, 1, margin=0.4)
    assert near.p_equivalence == pytest.approx(t.sf(3.0, 10))                    # (0.4 - 0.1) / 0.1 = 3 SEs
    assert near.word == "on par" and near.text().startswith("on par (equivalent within +-0.4 points): +0.10 [")
    tight = Verdict(0.1, (0.0, 0.1, 0.2), 0.1, 0.0, 0.1, 10.0, 1, margin=0.2)   # 1 SE from the margin
    assert tight.p_equivalence == pytest.approx(t.sf(1.0, 10)) and tight.word == "inconclusive"
    edge = 0.1 + t.ppf(0.95, 10) * 0.1                                           # 90% interval's end on the margin
    assert Verdict(0.1, (0.1,) * 3, 0.1, 0.0, 0.1, 10.0, 1, margin=edge * 1.001).word == "on par"
    assert Verdict(0.1, (0.1,) * 3, 0.1, 0.0, 0.1, 10.0, 1, margin=edge * 0.999).word == "inconclusive"
    # no margin (a unit other than points): never on par; a default margin for points
    assert Verdict(0.1, (0.1,) * 3, 0.1, 0.0, 0.1, 10.0, 1).word == "inconclusive"
    assert verdict([0.0, 0.05, -0.05], [0.02] * 3).margin == EQUIVALENCE_MARGIN == 0.4
    assert verdict([0.0, 0.05, -0.05], [0.02] * 3).word == "on par"
    assert math.isnan(verdict([0.0, 0.05, -0.05], [0.0] * 3, unit="crossings").margin)
    with pytest.raises(ValueError, match="margin"):
        verdict([0.0, 0.1, 0.2], [0.1] * 3, margin=0.0)


@pytest.mark.timeout(20)
def test_interval_covers_at_the_nominal_rate_at_3_and_9_seeds():
    """Simulated experiments with known components (points^2): seed 0.09, image 25, seed-by-image 400, 300 images,
    true difference 0. The 95% interval of crossed_se (the verdict's code path, vectorised over 4,000 experiments
    per setting) covers 0 in 95% +- 2 points of them at 3 and at 9 seeds, and the components come back on
    average. The old rule (seed-averaged image SE on top of the seed spread, t on n - 1 df) covers far more."""
    from scipy.stats import t

    rng = np.random.default_rng(42)
    reps, m = 4000, 300
    for n in (3, 9):
        d = (rng.normal(0, 0.3, (reps, n, 1)) + rng.normal(0, 5.0, (reps, 1, m))
             + rng.normal(0, 20.0, (reps, n, m)))                                    # (experiments, seeds, images)
        c = crossed_se(d)
        coverage = float((np.abs(c["diff"]) <= t.ppf(0.975, c["df"]) * c["se"]).mean())
        assert 0.93 <= coverage <= 0.97, (n, coverage)
        assert c["image_var"].mean() == pytest.approx(25.0, rel=0.1)
        assert c["within_var"].mean() == pytest.approx(400.0, rel=0.01)
        old = np.sqrt(d.mean(2).var(1, ddof=1) / n + d.mean(1).var(1, ddof=1) / m)
        assert float((np.abs(c["diff"]) <= t.ppf(0.975, n - 1) * old).mean()) > 0.98
    one = verdict([0.5], [0.1])
    assert one.word == "one run, not judged" and crossed_se(np.zeros((2, 3, 4)))["se"].shape == (2,)


def test_one_run_gets_its_paired_interval_and_no_word():
    v = verdict([0.5], [0.2], expected=1)
    assert v.df is None and math.isnan(v.sd_seeds) and v.se == pytest.approx(0.2)
    assert v.half == pytest.approx(1.959964 * 0.2)
    assert v.word == "one run, not judged" and not v.judged and v.clear
    assert v.text() == "one run, not judged: +0.50 [+0.11, +0.89], test-image noise only"
    assert verdict([0.5, 0.6], [0.1, 0.1], expected=1).word == "2 runs, not judged"
    one = paired_verdict(np.array([1, 1, 0, 1]), np.array([1, 0, 0, 1]))       # one row: one run
    assert one.n == 1 and one.diff == pytest.approx(25.0) and one.df == 3.0 and one.basis == "one run"
    assert one.se_images == pytest.approx(100 * np.std([0, 1, 0, 0], ddof=1) / 2)
    assert one.image_var == pytest.approx(1e4 * np.var([0, 1, 0, 0], ddof=1))


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.06 for the last
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_table_note_counts_clear_and_holm_survivors():
    clear = verdict([1.0, 1.1, 0.9], [0.1, 0.1, 0.1], expected=1)         # p far under 0.01: survives Holm for 3
    marginal = verdict([0.5, 0.5, 0.5], [0.24] * 3, expected=1)            # p about 0.037: not after Holm
    zero = verdict([0.0, 0.1, -0.1], [0.2, 0.2, 0.2])
    one = verdict([5.0], [0.1], expected=1)                                # one run: counted apart
    assert marginal.word == "holds" and 0.03 < marginal.p_value < 0.05
    assert table_note([clear, marginal, zero]) == ("3 comparisons (about 0.2 clear of zero by chance at 5%): "
                                                   "2 clear of zero, 1 after Holm")
    assert table_note([clear, marginal, zero, one]) == (
        "3 comparisons judged, 1 on fewer than 3 seeds and not judged (about 0.2 clear of zero by chance at 5%): "
        "2 clear of zero, 1 after Holm")
    assert table_note([]).startswith("0 comparisons")
    # the family's words after Holm, with the unadjusted count beside them; the one run stays out of the family
    # (zero's equivalence test, p about 0.03, does not survive Holm over the family's three either)
    assert 0.02 < zero.p_equivalence < 0.04
    assert holm_words([clear, marginal, zero, one]) == ["holds", "inconclusive", "inconclusive", "one run, not judged"]
    assert [v.word for v in (clear, marginal, zero)] == ["holds", "holds", "on par"]
    assert family_counts([clear, marginal, zero, one]) == (
        "1 hold, 0 reversed here, 0 higher, 0 lower, 2 inconclusive, 1 not judged (fewer than 3 seeds) after Holm "
        "(2 hold, 0 reversed here, 0 higher, 0 lower, 1 on par, 0 inconclusive, 1 not judged (fewer than 3 seeds) "
        "unadjusted) of 4")


def test_as_dict_is_strict_json():
    arm = np.random.default_rng(0).random((3, 50)) < 0.8
    for v in (verdict([0.5], [0.2], expected=1), verdict([0.1, 0.2], [0.1, 0.1]), verdict([3.0, 3.0], [0.0, 0.0]),
              paired_verdict(arm, arm[::-1], expected=1)):
        d = v.as_dict()
        text = json.dumps(d, allow_nan=False)
        assert json.loads(text)["word"] == v.word and d["per_seed"] == list(v.per_seed)
        # every verdict records its variance components, degrees of freedom and what they came from
        assert {"seed_var", "image_var", "within_var", "df", "basis", "images", "judged", "p_equivalence"} <= set(d)
    one = verdict([0.5], [0.2]).as_dict()
    assert one["sd_seeds"] is None and one["df"] is None and one["n"] == 1
    assert one["text"].startswith("one run, not judged") and one["judged"] is False
    full = paired_verdict(arm, arm[::-1]).as_dict()
    assert full["basis"] == "images" and full["images"] == 50 and full["within_var"] > 0 and full["df"] > 0
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
    assert verdict([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], unit="crossings").word == "inconclusive"
    assert verdict([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]).word == "on par"          # exactly 0 points: within the margin
    v = verdict([2.0, 2.0, 2.0], [0.0, 0.0, 0.0], expected=-1)
    assert v.word == "reversed here" and v.p_value == 0.0


def test_quantiles_and_descriptive_spread():
    assert t_quantile(0.975, None) == pytest.approx(1.959964, rel=1e-6)
    assert t_critical(3) == pytest.approx(4.302653, rel=1e-6) and t_critical(1) == math.inf
    mean, sd, half = mean_sd_half([1.0, 2.0, 3.0])
    assert (mean, sd) == pytest.approx((2.0, 1.0)) and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert mean_sd_half([1.0])[2] == math.inf


def test_a_stored_table_counts_as_the_verdicts_it_was_built_from():
    vs = [verdict([1.0, 1.1, 0.9], [0.1, 0.1, 0.1], expected=1), verdict([0.5], [0.24], expected=1),
          verdict([0.02, 0.03, 0.05], [0.0, 0.0, 0.0], expected=-1, unit="crossings")]
    stored = json.loads(json.dumps([{"cell": i, "verdict": v.as_dict()} for i, v in enumerate(vs)], allow_nan=False))
    assert [Verdict.from_dict(r["verdict"]) for r in stored] == vs
    assert rows_note(stored + [{"cell": "reference, no verdict"}]) == table_note(vs)
    assert vs[2].word == "inconclusive" and f"effect {vs[2].mde:.2f} crossings): +0.03 [" in vs[2].text()
    # a record written before the components were kept still reads (they are unknown)
    old = {k: v for k, v in vs[0].as_dict().items() if k not in ("seed_var", "image_var", "within_var", "basis")}
    assert math.isnan(Verdict.from_dict(old).seed_var) and Verdict.from_dict(old).word == vs[0].word


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
    # at the pilot's own design the prediction is paired_verdict's SE: MS_seed / (n m) + image_var / m
    assert predicted_se(c, 2, 3) == pytest.approx(math.sqrt(1e4 / 36 + 1e4 / 18))
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
    # a million images: SE 0.1 on the images' million df, so 2 seeds suffice: about 2.80 * 0.1
    assert required_seeds(images_bound, 0.5, 10**6) == 2
    assert mde(images_bound, 2, 10**6) == pytest.approx(0.2802, abs=1e-3)
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
