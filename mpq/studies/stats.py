"""Verdicts with every source of noise counted once (DESIGN.md section 5; docs/method.md, "What a verdict needs").

Two arms compared on the same m test images over n training seeds give a seed-by-image matrix of paired
per-image differences ``d[s, i]`` (points: 100 x correct minus correct). It is modelled as crossed random effects,

    d[s, i] = mu + t_s + b_i + w_si,   Var t = seed_var, Var b = image_var, Var w = within_var,

and the verdict's estimate is the grand mean, whose variance is ``seed_var / n + image_var / m + within_var / (n m)``.
A two-way analysis of variance (one observation per cell) estimates it without counting anything twice
(``crossed_anova``, ``crossed_se``): with the mean squares ``MS_seed = m Var_s(mean_i d)``, ``MS_image =
n Var_i(mean_s d)`` and the residual ``MS_within``,

    SE^2 = Var_s(mean_i d[s, i]) / n + image_var / m,   image_var = max(MS_image - MS_within, 0) / n,

the first term holding the seed and seed-by-image parts, the second the images' own part (which the seeds share,
so it does not show in their spread). The interval is ``d +- t(0.975, df) SE`` with Satterthwaite's degrees of
freedom for that combination of mean squares (``satterthwaite_df``): n - 1 where the image part is 0, more where
the well-estimated image part carries weight.

Words (``Verdict.word``), for n >= ``MIN_SEEDS`` training seeds only: "holds" (the paper's direction, interval
clear of zero), "reversed here" (the opposite, clear of zero), "higher"/"lower" where the paper states no
direction, "on par" where the interval holds zero and the equivalence test (two one-sided tests at 5%, margin
``EQUIVALENCE_MARGIN`` points) passes, "inconclusive" otherwise, with the minimal detectable effect at 80% power
and 5% two-sided from the noncentral t at the interval's degrees of freedom (``mde_factor``). One run or two get
no word: "one run, not judged" with the paired interval over images, "2 runs, not judged". ``holm_words`` gives a
family's words after Holm's correction.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

MIN_SEEDS = 3                 # training seeds a verdict word needs (DESIGN.md section 5)
EQUIVALENCE_MARGIN = 0.4      # points: "on par" means within +-0.4 top-1 points (docs/method.md section 5)
ALPHA = 0.05                  # two-sided level of every interval and test
POWER = 0.8                   # the power the minimal detectable effect is stated at


def t_quantile(p: float, df: float | None) -> float:
    """Quantile ``p`` of Student's t with ``df`` degrees of freedom (``df=None``: the normal).

    >>> round(t_quantile(0.975, None), 3), round(t_quantile(0.975, 2), 3), round(t_quantile(0.8, 2), 3)
    (1.96, 4.303, 1.061)
    """
    from scipy.stats import norm, t

    return float(norm.ppf(p)) if df is None else float(t.ppf(p, df))


def t_critical(n: int, confidence: float = 0.95) -> float:
    """Two-sided critical value of Student's t with ``n - 1`` degrees of freedom (inf for n < 2)."""
    return t_quantile(0.5 + confidence / 2, n - 1) if n > 1 else math.inf


def mde_factor(df: float | None, power: float = POWER, alpha: float = ALPHA) -> float:
    """The effect, in standard errors, that a two-sided t test at ``alpha`` with ``df`` degrees of freedom detects
    with probability ``power``: the noncentrality delta with P(|T'| > t(1 - alpha/2, df)) = power for T' noncentral
    t(df, delta) (``df=None``: the normal). The central shortcut t(0.975) + t(0.8) understates it at few df.

    >>> round(mde_factor(2), 3), round(mde_factor(None), 3), round(t_quantile(0.975, 2) + t_quantile(0.8, 2), 3)
    (5.653, 2.802, 5.363)
    """
    from scipy.optimize import brentq
    from scipy.stats import nct, norm

    if not 0 < alpha < 1 or not 0 < power < 1 or (df is not None and not df > 0):
        raise ValueError(f"mde_factor needs 0 < alpha, power < 1 and df > 0, got {alpha}, {power}, {df}")
    c = t_quantile(1 - alpha / 2, df)

    def shortfall(delta: float) -> float:
        if df is None:
            return float(norm.sf(c - delta) + norm.cdf(-c - delta)) - power
        lower = float(nct.cdf(-c, df, delta))           # negligible; scipy may give nan far in the tail
        return float(nct.sf(c, df, delta)) + (lower if math.isfinite(lower) else 0.0) - power

    high = c + 1.0
    while shortfall(high) < 0:
        high *= 2
    return float(brentq(shortfall, 0.0, high, xtol=1e-10))


def satterthwaite_df(terms: Sequence[tuple[float, float]]) -> float:
    """Satterthwaite's degrees of freedom of ``sum_k c_k MS_k``, given as ``(c_k MS_k, df_k)`` pairs (a term may
    be negative; ``df_k`` inf for a term known exactly): ``(sum c_k MS_k)^2 / sum (c_k MS_k)^2 / df_k``.

    >>> satterthwaite_df([(1.0, 2), (1.0, 2)])       # two equal halves of 2 df each: 4
    4.0
    >>> satterthwaite_df([(1.0, 2), (0.0, 10)])
    2.0
    """
    total = sum(x for x, _ in terms)
    den = sum(x * x / k for x, k in terms if math.isfinite(k))
    return math.inf if den == 0 else total * total / den


def crossed_anova(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-way analysis of variance of seed-by-image matrices ``d`` (..., n seeds, m images; n, m >= 2; one
    observation per cell): the grand mean and the mean squares of seeds (n - 1 df), images (m - 1 df) and the
    residual, seed-by-image (``(n - 1)(m - 1)`` df), each of shape ``d.shape[:-2]``.

    ``E[MS_seed] = m seed_var + within_var``, ``E[MS_image] = n image_var + within_var``, ``E[MS_within] =
    within_var``.
    """
    d = np.asarray(d, dtype=float)
    n, m = d.shape[-2:]
    seed_means, image_means = d.mean(-1), d.mean(-2)                            # (..., n), (..., m)
    grand = seed_means.mean(-1)
    residual = d - seed_means[..., :, None] - image_means[..., None, :] + grand[..., None, None]
    ms_within = (residual ** 2).sum((-2, -1)) / ((n - 1) * (m - 1))
    return grand, m * seed_means.var(-1, ddof=1), n * image_means.var(-1, ddof=1), ms_within


def crossed_se(d: np.ndarray) -> dict[str, np.ndarray]:
    """The grand mean of seed-by-image matrices ``d`` (..., n, m), its SE with each noise component counted once,
    Satterthwaite's df and the three components (truncated at 0), vectorised over the leading axes.

    ``SE^2 = MS_seed / (n m) + image_var / m`` with ``image_var = max(MS_image - MS_within, 0) / n``; where the
    image part is 0 the df are n - 1, else Satterthwaite's for ``(MS_seed + MS_image - MS_within) / (n m)``.
    """
    grand, ms_seed, ms_image, ms_within = crossed_anova(d)
    n, m = np.shape(d)[-2:]
    seed_term = ms_seed / (n * m)                                   # Var_s(mean_i d) / n: seed and seed-by-image
    image_var = np.maximum(ms_image - ms_within, 0.0) / n
    se2 = seed_term + image_var / m
    some = ms_image > ms_within
    den = seed_term ** 2 / (n - 1) + np.where(
        some, (ms_image / (n * m)) ** 2 / (m - 1) + (ms_within / (n * m)) ** 2 / ((n - 1) * (m - 1)), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(den > 0, se2 ** 2 / np.where(den > 0, den, 1.0), np.inf)
    return {"diff": grand, "se": np.sqrt(se2), "df": df, "se_seeds": np.sqrt(seed_term),
            "se_images": np.sqrt(image_var / m), "seed_var": np.maximum(ms_seed - ms_within, 0.0) / m,
            "image_var": image_var, "within_var": ms_within}


# what a verdict's variance components were estimated from
BASES = {"images": "a two-way analysis of the per-image differences",
         "seed SEs": "per-seed differences and per-seed paired SEs over images (the image part bounded above)",
         "census": "per-seed differences of a measure with no sampling over images (seed spread only)",
         "one run": "one run's per-image differences (test-image noise only)"}


@dataclass(frozen=True)
class Verdict:
    """A comparison "arm minus reference" in ``unit`` over ``n`` training seeds, each noise component counted once.

    ``expected``: the paper's direction (+1: the arm should be higher, -1: lower, 0: the paper states none).
    ``margin``: the equivalence margin of "on par" (nan: no equivalence claim in this unit).
    ``seed_var``, ``image_var``, ``within_var``: the variance components (``unit`` squared; ``basis`` says what
    they were estimated from, ``BASES``); ``images``: test images per seed (0 where unknown or none).
    """

    diff: float                    # mean over seeds of the per-seed paired differences
    per_seed: tuple[float, ...]    # the d_s, every run shown
    sd_seeds: float                # SD of the d_s (nan for one seed)
    se_images: float               # the images' own part of the SE, sqrt(image_var / m) (one run: its paired SE)
    se: float                      # the verdict's SE, each component once
    df: float | None               # degrees of freedom of its t (None: the normal)
    expected: int
    unit: str = "points"
    seed_var: float = math.nan
    image_var: float = math.nan
    within_var: float = math.nan
    images: int = 0
    basis: str = "seed SEs"
    margin: float = math.nan

    @classmethod
    def from_dict(cls, d: Mapping) -> "Verdict":
        """The verdict back from ``as_dict`` (None as nan), e.g. to count a stored table's verdicts. A record written
        before the components were kept reads with them unknown."""
        def num(x):
            return math.nan if x is None else float(x)

        df = d.get("df")
        return cls(diff=num(d["diff"]), per_seed=tuple(num(x) for x in d["per_seed"]), sd_seeds=num(d["sd_seeds"]),
                   se_images=num(d["se_images"]), se=num(d["se"]), df=None if df is None else float(df),
                   expected=int(d["expected"]), unit=d.get("unit", "points"), seed_var=num(d.get("seed_var")),
                   image_var=num(d.get("image_var")), within_var=num(d.get("within_var")),
                   images=int(d.get("images") or 0), basis=d.get("basis", "seed SEs"), margin=num(d.get("margin")))

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def judged(self) -> bool:
        """Whether the comparison rests on enough training seeds for a word (``MIN_SEEDS``)."""
        return self.n >= MIN_SEEDS

    @property
    def half(self) -> float:
        """Half-width of the 95% interval."""
        return t_quantile(1 - ALPHA / 2, self.df) * self.se

    @property
    def low(self) -> float:
        return self.diff - self.half

    @property
    def high(self) -> float:
        return self.diff + self.half

    @property
    def mde(self) -> float:
        """Smallest effect (``unit``) this design detects with 80% power at 5% two-sided (noncentral t)."""
        return mde_factor(self.df) * self.se

    @property
    def p_value(self) -> float:
        """Two-sided p-value of "no difference" on the interval's t."""
        from scipy.stats import norm, t

        if self.se == 0:
            return 0.0 if self.diff != 0 else 1.0
        z = abs(self.diff) / self.se
        return float(2 * (norm.sf(z) if self.df is None else t.sf(z, self.df)))

    @property
    def p_equivalence(self) -> float:
        """p-value of the equivalence test (two one-sided tests of "the difference is beyond +-margin"): the larger
        of the two one-sided p-values; nan without a margin."""
        from scipy.stats import norm, t

        if not math.isfinite(self.margin):
            return math.nan
        if self.se == 0:
            return 0.0 if abs(self.diff) < self.margin else 1.0
        sf = (lambda z: float(norm.sf(z))) if self.df is None else (lambda z: float(t.sf(z, self.df)))
        return max(sf((self.diff + self.margin) / self.se), sf((self.margin - self.diff) / self.se))

    @property
    def clear(self) -> bool:
        """Interval clear of zero (with no regard to the number of seeds)."""
        return not self.low <= 0 <= self.high

    @property
    def word(self) -> str:
        """"holds", "reversed here" ("higher", "lower" with ``expected=0``), "on par", "inconclusive"; with fewer than
        ``MIN_SEEDS`` seeds "one run, not judged" or "2 runs, not judged"."""
        return _word(self, self.clear, self.p_equivalence < ALPHA)

    def text(self, decimals: int = 2) -> str:
        """One line: the word, the difference and its interval, and the MDE where inconclusive.

        >>> Verdict(0.1, (0.1,), math.nan, 0.2, 0.2, None, 1).text()
        'one run, not judged: +0.10 [-0.29, +0.49], test-image noise only'
        >>> Verdict(0.1, (0.0, 0.1, 0.2), 0.1, 0.2, 0.2, 2.0, 1).text()
        'inconclusive (smallest detectable effect 1.13 points): +0.10 [-0.76, +0.96], 3 seeds'
        """
        return _text(self, self.word, decimals)

    def as_dict(self) -> dict:
        """For metrics JSON: every field (variance components, df and basis included) and derived number (nan as
        None, so the JSON is strict)."""
        d = {**asdict(self), "per_seed": list(self.per_seed), "n": self.n, "half": self.half, "low": self.low,
             "high": self.high, "mde": self.mde, "p": self.p_value, "p_equivalence": self.p_equivalence,
             "judged": self.judged, "word": self.word, "text": self.text()}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _word(v: Verdict, clear: bool, equivalent: bool) -> str:
    if not v.judged:
        return "one run, not judged" if v.n == 1 else f"{v.n} runs, not judged"
    if clear:
        up = v.diff > 0
        if v.expected == 0:
            return "higher" if up else "lower"
        return "holds" if up == (v.expected > 0) else "reversed here"
    return "on par" if equivalent else "inconclusive"


def bound_text(x: float, decimals: int = 2) -> str:
    """An interval's bound, signed, with ``decimals`` or, where that rounds a bound that is not zero to zero, as
    many more as show its side (up to 6), so the printed interval never seems to touch zero when it does not.

    >>> bound_text(0.0034), bound_text(-0.00004), bound_text(0.0), bound_text(0.7412)
    ('+0.003', '-0.00004', '+0.00', '+0.74')
    """
    d = decimals
    while d < 6 and x != 0 and float(f"{x:.{d}f}") == 0:
        d += 1
    text = f"{x:+.{d}f}"
    return "+" + text[1:] if x == 0 and text.startswith("-") else text


def interval_text(diff: float, low: float, high: float, decimals: int = 2) -> str:
    """A difference and its interval as every page prints them: ``decimals`` each, a bound near zero with enough
    to show its side (``bound_text``).

    >>> interval_text(0.3712, 0.0034, 0.7412)
    '+0.37 [+0.003, +0.74]'
    """
    return f"{diff:+.{decimals}f} [{bound_text(low, decimals)}, {bound_text(high, decimals)}]"


def p_text(p: float | None) -> str:
    """A p value as every page prints it: 3 decimals, under 0.001 as "< 0.001" (never "0.00"), missing empty.

    >>> p_text(0.0004), p_text(0.0123), p_text(None)
    ('< 0.001', '0.012', '')
    """
    if p is None or not math.isfinite(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _text(v: Verdict, word: str, decimals: int = 2) -> str:
    where = f"{v.n} seeds" if v.n > 1 else "test-image noise only"
    body = f"{interval_text(v.diff, v.low, v.high, decimals)}, {where}"
    if word == "inconclusive":
        return f"inconclusive (smallest detectable effect {v.mde:.{decimals}f} {v.unit}): {body}"
    if word == "on par":
        return f"on par (equivalent within +-{v.margin:g} {v.unit}): {body}"
    return f"{word}: {body}"


def _margin(unit: str, margin: float | None) -> float:
    if margin is not None:
        if not margin > 0:
            raise ValueError(f"an equivalence margin must be positive, got {margin}")
        return float(margin)
    return EQUIVALENCE_MARGIN if unit == "points" else math.nan


def verdict(diffs: Sequence[float], image_ses: Sequence[float], expected: int = 0, unit: str = "points",
            images: int | None = None, margin: float | None = None) -> Verdict:
    """A verdict from per-seed paired differences and their per-seed paired SEs over images (``unit``), where the
    per-image data were not kept; ``images``: the test images per seed, where known (their df).

    Without the per-image data the images' own part cannot be told from the seed-by-image part: each seed's SE^2
    holds both, so their mean square bounds ``image_var / m`` from above, and is used (conservative; ``basis``
    "seed SEs"). A measure with no sampling over images (a census of every weight, a simulation) passes SEs of 0:
    the seed spread alone (``basis`` "census"). One seed: the paired interval alone, not judged. ``margin``: the
    equivalence margin (default ``EQUIVALENCE_MARGIN`` for points, none for other units).
    """
    d = np.asarray(diffs, dtype=float)
    e = np.asarray(image_ses, dtype=float)
    if d.ndim != 1 or len(d) == 0 or e.shape != d.shape:
        raise ValueError(f"one paired SE per seed difference is needed, got {len(d)} differences, {e.size} SEs")
    if not (np.isfinite(d).all() and np.isfinite(e).all() and (e >= 0).all()):
        raise ValueError(f"differences and SEs must be finite (SEs >= 0), got {d.tolist()} and {e.tolist()}")
    n, m = len(d), int(images or 0)
    census = bool((e == 0).all())
    image_term = float(np.mean(e ** 2))                              # upper bound of image_var / m
    image_df = m - 1 if m > 1 else math.inf
    common = dict(per_seed=tuple(float(x) for x in d), expected=int(np.sign(expected)), unit=unit, images=m,
                  margin=_margin(unit, margin))
    if n == 1:
        return Verdict(diff=float(d[0]), sd_seeds=math.nan, se_images=math.sqrt(image_term),
                       se=math.sqrt(image_term), df=float(m - 1) if m > 1 else None,
                       image_var=image_term * m if m else math.nan, basis="census" if census else "one run", **common)
    sd2 = float(d.var(ddof=1))
    se2 = sd2 / n + image_term
    df = satterthwaite_df([(sd2 / n, n - 1), (image_term, image_df)])
    return Verdict(diff=float(d.mean()), sd_seeds=math.sqrt(sd2), se_images=math.sqrt(image_term),
                   se=math.sqrt(se2), df=float(n - 1) if se2 == 0 else min(df, 1e9), seed_var=sd2,
                   image_var=image_term * m if m else math.nan, basis="census" if census else "seed SEs", **common)


def paired_verdict(correct_arm: np.ndarray, correct_ref: np.ndarray, expected: int = 0,
                   margin: float | None = None) -> Verdict:
    """A verdict from per-image correctness, ``(seeds, images)`` each (bool or 0/1; one row per seed), by the
    two-way analysis of ``d = 100 (arm - ref)`` (``crossed_se``; one row: the paired interval over images).

    Row s of both arms must score the same images in the same order (seed s's runs of the two arms).
    """
    a = np.atleast_2d(np.asarray(correct_arm, dtype=float))
    b = np.atleast_2d(np.asarray(correct_ref, dtype=float))
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"both arms need the same (seeds, images) shape with 2+ images, got {a.shape} and {b.shape}")
    return matrix_verdict(100 * (a - b), expected, margin=margin)


def matrix_verdict(d: np.ndarray, expected: int = 0, unit: str = "points", margin: float | None = None) -> Verdict:
    """A verdict from the seed-by-image matrix ``d`` (seeds, images) of paired per-image differences in ``unit``."""
    d = np.atleast_2d(np.asarray(d, dtype=float))
    if d.ndim != 2 or d.shape[1] < 2 or not np.isfinite(d).all():
        raise ValueError(f"a (seeds, images) matrix of finite differences with 2+ images is needed, got {d.shape}")
    n, m = d.shape
    per_seed = d.mean(1)
    common = dict(per_seed=tuple(float(x) for x in per_seed), expected=int(np.sign(expected)), unit=unit, images=m,
                  margin=_margin(unit, margin))
    if n == 1:
        var = float(d[0].var(ddof=1))
        se = math.sqrt(var / m)
        return Verdict(diff=float(per_seed[0]), sd_seeds=math.nan, se_images=se, se=se, df=float(m - 1),
                       image_var=var, basis="one run", **common)
    c = {k: float(v) for k, v in crossed_se(d).items()}
    return Verdict(diff=c["diff"], sd_seeds=float(per_seed.std(ddof=1)), se_images=c["se_images"], se=c["se"],
                   df=c["df"] if math.isfinite(c["df"]) else float(n - 1), seed_var=c["seed_var"],
                   image_var=c["image_var"], within_var=c["within_var"], basis="images", **common)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (same order as given): a table of k comparisons keeps a 5% family error.

    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def holm_words(verdicts: Sequence[Verdict], alpha: float = ALPHA) -> list[str]:
    """Each verdict's word after Holm's correction within the family ``verdicts`` (a claim's comparisons): a
    direction stays where the Holm-adjusted p-value of "no difference" is under ``alpha``, "on par" where that of the
    equivalence test is; else "inconclusive". Comparisons with too few seeds are not in the family and keep their
    "not judged" word.

    >>> v = [Verdict(1.0, (1.0,) * 3, 0.0, 0.4, 0.4, 2.0, 1), Verdict(2.0, (2.0,) * 3, 0.0, 0.2, 0.2, 2.0, 1)]
    >>> [x.word for x in v], holm_words(v)
    (['inconclusive', 'holds'], ['inconclusive', 'holds'])
    """
    judged = [i for i, v in enumerate(verdicts) if v.judged]
    p = dict(zip(judged, holm([verdicts[i].p_value for i in judged])))
    equivalent = [i for i in judged if math.isfinite(verdicts[i].margin)]
    p_eq = dict(zip(equivalent, holm([verdicts[i].p_equivalence for i in equivalent])))
    return [_word(v, i in p and p[i] < alpha and v.clear, i in p_eq and p_eq[i] < alpha)
            for i, v in enumerate(verdicts)]


def word_counts(words: Sequence[str], expected: Sequence[int]) -> str:
    """"2 hold, 1 reversed here, 3 inconclusive" for a family's words; "higher"/"lower" where some judged comparison
    has no stated direction, "on par" and the not-judged ones only where present.

    >>> word_counts(["holds", "one run, not judged"], [1, 0]), word_counts(["2 runs, not judged"], [1])
    ('1 hold, 0 reversed here, 0 inconclusive, 1 not judged (fewer than 3 seeds)', '1 not judged (fewer than 3 seeds)')
    """
    parts = []
    unjudged = sum(w.endswith("not judged") for w in words)
    if unjudged < len(words):                          # some judged: every word they could say, 0 included
        if any(e for e, w in zip(expected, words) if not w.endswith("not judged")):
            parts += [f"{words.count('holds')} hold", f"{words.count('reversed here')} reversed here"]
        if not all(e for e, w in zip(expected, words) if not w.endswith("not judged")):
            parts += [f"{words.count('higher')} higher", f"{words.count('lower')} lower"]
        if "on par" in words:
            parts.append(f"{words.count('on par')} on par")
        parts.append(f"{words.count('inconclusive')} inconclusive")
    if unjudged:
        parts.append(f"{unjudged} not judged (fewer than {MIN_SEEDS} seeds)")
    return ", ".join(parts)


def family_counts(verdicts: Sequence[Verdict]) -> str:
    """A claim's headline count: its words after Holm within the family, the unadjusted count beside them where it
    differs, e.g. "1 hold, 0 reversed here, 2 inconclusive after Holm (2 hold, 1 reversed here, 0 inconclusive
    unadjusted) of 3".

    >>> v = [Verdict(1.0, (1.0,) * 3, 0.0, 0.22, 0.22, 2.0, 1), Verdict(-1.0, (-1.0,) * 3, 0.0, 0.22, 0.22, 2.0, 1)]
    >>> [round(x.p_value, 3) for x in v], family_counts(v)
    ([0.045, 0.045], '0 hold, 0 reversed here, 2 inconclusive after Holm (1 hold, 1 reversed here, 0 inconclusive \
unadjusted) of 2')
    """
    expected = [v.expected for v in verdicts]
    after, before = word_counts(holm_words(verdicts), expected), word_counts([v.word for v in verdicts], expected)
    if after == before:
        return f"{after} of {len(verdicts)}" + (" (the same unadjusted)" if len(verdicts) > 1 else "")
    return f"{after} after Holm ({before} unadjusted) of {len(verdicts)}"


def table_note(verdicts: Sequence[Verdict]) -> str:
    """The line under a table of verdicts: how many comparisons, how many clear of zero, and after Holm; comparisons
    on fewer than ``MIN_SEEDS`` seeds are counted apart (not judged).

    >>> table_note([Verdict(1.0, (1.0,) * 3, 0.0, 0.1, 0.1, 2.0, 1), Verdict(0.0, (0.0,) * 3, 0.0, 0.1, 0.1, 2.0, 1)])
    '2 comparisons (about 0.1 clear of zero by chance at 5%): 1 clear of zero, 1 after Holm'
    >>> table_note([Verdict(1.0, (1.0,), math.nan, 0.1, 0.1, None, 1)])
    '1 comparison, 1 on fewer than 3 seeds and not judged'
    """
    judged = [v for v in verdicts if v.judged]
    k, apart = len(judged), len(verdicts) - len(judged)
    unjudged = f"{apart} on fewer than {MIN_SEEDS} seeds and not judged"
    if not k and apart:
        return f"{apart} comparison{'s' if apart != 1 else ''}, {unjudged}"
    clear = sum(v.clear for v in judged)
    after = sum(p < ALPHA and v.clear for p, v in zip(holm([v.p_value for v in judged]), judged)) if k else 0
    return (f"{k} comparison{'s' if k != 1 else ''}{f' judged, {unjudged}' if apart else ''} (about {ALPHA * k:.1f} "
            f"clear of zero by chance at 5%): {clear} clear of zero, {after} after Holm")


def rows_note(rows: Sequence[Mapping]) -> str:
    """``table_note`` of a table's rows that carry a verdict (``"verdict"``: ``Verdict.as_dict()``)."""
    return table_note([Verdict.from_dict(r["verdict"]) for r in rows if isinstance(r.get("verdict"), Mapping)])


CLEAR_WORDS = ("holds", "reversed here", "higher", "lower")      # the words of an interval clear of zero
RECORDED = ("seed_var", "image_var", "within_var", "df", "basis", "images")


def audit_verdicts(obj, where: str = "") -> tuple[int, list[str]]:
    """Every stored verdict (a dict with ``per_seed``, ``word`` and ``se``) found anywhere in ``obj`` (metrics JSON),
    checked against DESIGN.md section 5's rules: no direction word ("holds", "reversed here", "higher", "lower") and
    no "on par" on fewer than ``MIN_SEEDS`` seeds, in its word or its text; its variance components, degrees of
    freedom and basis recorded. Returns how many verdicts were found and one line per problem ("" for none).

    >>> audit_verdicts({"rows": [{"verdict": verdict([1.0], [0.1]).as_dict()}]})
    (1, [])
    """
    found, problems = 0, []
    if isinstance(obj, Mapping):
        if {"per_seed", "word", "se"} <= set(obj):
            n, word, text = len(obj["per_seed"]), str(obj["word"]), str(obj.get("text", ""))
            said = [w for w in (*CLEAR_WORDS, "on par") if word == w or text.startswith(f"{w}:") or
                    text.startswith(f"{w} (")]
            if n < MIN_SEEDS and said:
                problems.append(f"{where or 'a verdict'}: '{said[0]}' on {n} seed{'s' if n != 1 else ''}")
            missing = [k for k in RECORDED if k not in obj]
            if missing:
                problems.append(f"{where or 'a verdict'}: no {', '.join(missing)} recorded")
            return 1, problems
        items = ((str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(obj))
    else:
        return 0, []
    for key, value in items:
        k, p = audit_verdicts(value, f"{where}{key}" if key.startswith("[") else f"{where}.{key}" if where else key)
        found, problems = found + k, problems + p
    return found, problems


def unpaired_se(acc_a: float, acc_b: float, images: int) -> float:
    """SE (points) of ``acc_a - acc_b`` measured on the same ``images`` test images, ignoring the pairing.

    Two models err mostly on the same images (positive covariance), so this bounds their paired SE from above;
    it stands in where the per-image predictions were not kept.

    >>> round(unpaired_se(0.9, 0.9, 10000), 3)
    0.424
    """
    return 100 * math.sqrt((acc_a * (1 - acc_a) + acc_b * (1 - acc_b)) / images)


def mean_sd_half(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean, SD (n - 1) and the half-width of the 95% t interval of ``values`` (SD nan, half inf for n < 2).

    The seed spread alone: for describing a quantity's spread, never for a comparison's verdict.
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    sd = float(v.std(ddof=1)) if n > 1 else math.nan
    return float(v.mean()), sd, t_critical(n) * sd / math.sqrt(n) if n > 1 else math.inf


def json_ready(obj):
    """``obj`` (nested dicts, lists, tuples, numbers) with every non-finite float as None and tuples as lists, so
    ``json.dumps(..., allow_nan=False)`` accepts it: metrics JSON holds no NaN token (as ``Verdict.as_dict``)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# --- power before compute: a pilot's noise, and the seeds and images a design needs (DESIGN.md section 5) --------

@dataclass(frozen=True)
class NoiseComponents:
    """The variance components of a paired comparison, in points squared, estimated from a pilot.

    The per-image difference of seed s on image i is modelled as ``D_si = mu + t_s + b_i + w_si``: ``seed_var``
    is the variance of ``t_s`` (training seeds move the whole difference), ``image_var`` that of ``b_i`` (some
    images favour one arm whatever the seed; this part does not average out over seeds), ``within_var`` that of
    ``w_si`` (an image flips with the seed). ``predicted_se`` turns them into the SE that ``paired_verdict`` will
    compute for n seeds and m images.
    """

    seed_var: float
    image_var: float
    within_var: float
    diff: float                # the pilot's mean difference (points)
    seeds: int                 # the pilot's seeds and images
    images: int

    def as_dict(self) -> dict:
        return asdict(self)


def noise_components(correct_arm: np.ndarray, correct_ref: np.ndarray) -> NoiseComponents:
    """Variance components from per-image correctness ``(seeds, images)`` of two arms (two seeds or more).

    Two-way analysis of variance of ``D = 100 (arm - ref)`` (``crossed_anova``): the residual mean square estimates
    ``within_var``, ``(MS_seed - MS_within) / m`` the seed part and ``(MS_image - MS_within) / n`` the images'
    part; negative estimates are set to 0.
    """
    a = np.atleast_2d(np.asarray(correct_arm, dtype=float))
    b = np.atleast_2d(np.asarray(correct_ref, dtype=float))
    if a.shape != b.shape or a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"both arms need the same (seeds, images) shape with 2+ seeds and 2+ images, "
                         f"got {a.shape} and {b.shape}")
    c = {k: float(v) for k, v in crossed_se(100 * (a - b)).items()}
    n, m = a.shape
    return NoiseComponents(seed_var=c["seed_var"], image_var=c["image_var"], within_var=c["within_var"],
                           diff=c["diff"], seeds=n, images=m)


def predicted_se(c: NoiseComponents, seeds: int, images: int) -> float:
    """The SE (points) ``paired_verdict`` is expected to give with ``seeds`` seeds and ``images`` images.

    Its SE^2 is ``Var_s(mean_i d) / n + image_var / m``, with ``E[Var_s(mean_i d)] = seed_var + within_var / m``,
    so ``SE^2 = seed_var / n + image_var / m + within_var / (n m)``: each component once.

    >>> round(predicted_se(NoiseComponents(0.36, 600.0, 2000.0, 0.0, 3, 10000), 4, 10000), 4)   # 0.09 + 0.06 + 0.05
    0.4472
    """
    if seeds < 1 or images < 1:
        raise ValueError(f"seeds and images must be positive, got {seeds} and {images}")
    return math.sqrt(c.seed_var / seeds + c.image_var / images + c.within_var / (seeds * images))


def design_df(c: NoiseComponents, seeds: int, images: int) -> float:
    """Satterthwaite's df the verdict is expected to have with ``seeds`` and ``images``: ``crossed_se``'s formula at
    the expected mean squares (n - 1 where the images' part is 0).

    >>> design_df(NoiseComponents(0.36, 0.0, 2000.0, 0.0, 3, 10000), 4, 10000)
    3.0
    """
    n, m = seeds, images
    ms_seed, ms_image, ms_within = m * c.seed_var + c.within_var, n * c.image_var + c.within_var, c.within_var
    if c.image_var <= 0 or m < 2:
        return float(n - 1)
    return satterthwaite_df([(ms_seed / (n * m), n - 1), (ms_image / (n * m), m - 1),
                             (-ms_within / (n * m), (n - 1) * (m - 1))])


def mde(c: NoiseComponents, seeds: int, images: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """Minimal detectable effect (points) at ``power`` and two-sided ``alpha`` with ``seeds`` (2 or more) and
    ``images``: ``mde_factor(df) * predicted_se`` at the design's df (``design_df``), as ``Verdict.mde`` computes it.

    >>> round(mde(NoiseComponents(0.36, 0.0, 2000.0, 0.0, 3, 10000), 4, 10000), 3)   # 4.256 * sqrt(0.09 + 0.05)
    1.592
    """
    if seeds < 2:
        raise ValueError("a design for a verdict needs 2 or more seeds (one run has no seed term in its interval)")
    return mde_factor(design_df(c, seeds, images), power, alpha) * predicted_se(c, seeds, images)


def required_seeds(c: NoiseComponents, target: float, images: int, max_seeds: int = 64, power: float = POWER,
                   alpha: float = ALPHA) -> int | None:
    """The fewest seeds (2 or more) whose ``mde`` with ``images`` images is at most ``target`` points; None when
    even ``max_seeds`` do not reach it (the images' own term ``image_var / m`` sets a floor no seed count lowers).

    >>> required_seeds(NoiseComponents(0.04, 1.0, 2000.0, 0.0, 3, 10000), 0.5, 30000)
    6
    """
    for n in range(2, max_seeds + 1):
        if mde(c, n, images, power, alpha) <= target:
            return n
    return None


def plan_design(components: Mapping[str, NoiseComponents], target: float, image_options: Sequence[int],
                max_seeds: int = 64, power: float = POWER, alpha: float = ALPHA) -> dict:
    """Seeds per cell and evaluation images that bring every comparison's MDE to ``target`` points or less.

    ``components``: one ``NoiseComponents`` per comparison (e.g. "sched / greedy 3"). For each image count in
    ``image_options`` the seeds needed are the largest over the comparisons; the plan takes the fewest seeds
    (training runs are the cost) and, among the image counts that need that many, the fewest images. Returns
    the plan (``seeds``, ``images``, every comparison's MDE there, and which comparison set the seeds) and the
    per-option table; ``seeds`` is None when no option reaches the target within ``max_seeds``.
    """
    if not components or not image_options:
        raise ValueError("plan_design needs at least one comparison and one image count")
    rows = []
    for m in sorted(set(int(x) for x in image_options)):
        need = {name: required_seeds(c, target, m, max_seeds, power, alpha) for name, c in components.items()}
        reachable = all(v is not None for v in need.values())
        rows.append({"images": m, "seeds": max(need.values()) if reachable else None, "per_comparison": need})
    feasible = [r for r in rows if r["seeds"] is not None]
    plan = {"target": target, "power": power, "alpha": alpha, "max_seeds": max_seeds, "options": rows,
            "seeds": None, "images": None, "mde": None, "limiting": None}
    if feasible:
        best = min(feasible, key=lambda r: (r["seeds"], r["images"]))
        mdes = {name: mde(c, best["seeds"], best["images"], power, alpha) for name, c in components.items()}
        plan |= {"seeds": best["seeds"], "images": best["images"], "mde": mdes,
                 "limiting": max(mdes, key=mdes.get)}
    return plan
