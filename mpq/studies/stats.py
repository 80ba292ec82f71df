"""Verdicts with both sources of noise (DESIGN.md section 5; docs/method.md, "What a verdict needs").

Two arms compared on the same test images give, per training seed s, a paired difference d_s (points)
with a paired standard error e_s over images. The seeds share one test set, so its sampling noise does not
show in the spread of the d_s: three seeds can agree within 0.02 points while each carries 0.2 points of
test noise. A verdict's interval therefore holds both:

    d = mean_s(d_s),   SE = sqrt(SD_seeds^2 / n + SE_img^2),   interval d +- t(n-1, 0.975) * SE

with SE_img the paired standard error over images of the per-image difference averaged over the seeds
(``paired_verdict``, from per-image correctness), or, where only the per-seed e_s were kept, their mean,
which is never smaller (the standard deviation of an average is at most the average of the standard
deviations; ``verdict``). One run (n = 1) has no seed term: its interval is the paired one over images,
with the normal quantile, and its text says so.

The words: "holds" (the paper's direction, interval clear of zero), "reversed here" (the opposite
direction, clear of zero), "inconclusive (smallest detectable effect X points)" (the interval holds zero),
where X is the minimal detectable effect at 80% power and 5% two-sided, (t(0.975) + t(0.8)) * SE. Where
the paper states no direction, "higher"/"lower" replace the first two. ``holm`` adjusts a table's
p-values for its number of comparisons (about 0.05 * k come out clear of zero by chance).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np


def t_quantile(p: float, df: int | None) -> float:
    """Quantile ``p`` of Student's t with ``df`` degrees of freedom (``df=None``: the normal).

    >>> round(t_quantile(0.975, None), 3), round(t_quantile(0.975, 2), 3), round(t_quantile(0.8, 2), 3)
    (1.96, 4.303, 1.061)
    """
    from scipy.stats import norm, t

    return float(norm.ppf(p)) if df is None else float(t.ppf(p, df))


def t_critical(n: int, confidence: float = 0.95) -> float:
    """Two-sided critical value of Student's t with ``n - 1`` degrees of freedom (inf for n < 2)."""
    return t_quantile(0.5 + confidence / 2, n - 1) if n > 1 else math.inf


@dataclass(frozen=True)
class Verdict:
    """A comparison "arm minus reference" in points, over ``n`` seeds, with both noise sources.

    ``expected``: the paper's direction (+1: the arm should be higher, -1: lower, 0: the paper states none).
    ``unit``: what the differences count ("points" of accuracy unless said otherwise).
    """

    diff: float                    # mean over seeds of the per-seed paired differences
    per_seed: tuple[float, ...]    # the d_s, every run shown
    sd_seeds: float                # SD of the d_s (nan for one seed)
    se_images: float               # paired SE over test images of the seed-averaged difference
    se: float                      # sqrt(sd_seeds^2 / n + se_images^2)
    df: int | None                 # degrees of freedom of the t quantiles (None: normal, one run)
    expected: int
    unit: str = "points"

    @classmethod
    def from_dict(cls, d: Mapping) -> "Verdict":
        """The verdict back from ``as_dict`` (None as nan), e.g. to count a stored table's verdicts."""
        def num(x):
            return math.nan if x is None else float(x)

        return cls(diff=num(d["diff"]), per_seed=tuple(num(x) for x in d["per_seed"]), sd_seeds=num(d["sd_seeds"]),
                   se_images=num(d["se_images"]), se=num(d["se"]), df=d["df"], expected=int(d["expected"]),
                   unit=d.get("unit", "points"))

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def half(self) -> float:
        """Half-width of the 95% interval."""
        return t_quantile(0.975, self.df) * self.se

    @property
    def low(self) -> float:
        return self.diff - self.half

    @property
    def high(self) -> float:
        return self.diff + self.half

    @property
    def mde(self) -> float:
        """Smallest effect (points) this design detects with 80% power at 5% two-sided."""
        return (t_quantile(0.975, self.df) + t_quantile(0.8, self.df)) * self.se

    @property
    def p_value(self) -> float:
        """Two-sided p-value of "no difference" on the same t (normal for one run)."""
        from scipy.stats import norm, t

        if self.se == 0:
            return 0.0 if self.diff != 0 else 1.0
        z = abs(self.diff) / self.se
        return float(2 * (norm.sf(z) if self.df is None else t.sf(z, self.df)))

    @property
    def word(self) -> str:
        """"holds", "reversed here" or "inconclusive" (with ``expected=0``: "higher", "lower", "inconclusive")."""
        if self.low <= 0 <= self.high:
            return "inconclusive"
        up = self.low > 0
        if self.expected == 0:
            return "higher" if up else "lower"
        return "holds" if up == (self.expected > 0) else "reversed here"

    def text(self, decimals: int = 2) -> str:
        """One line: the word, the difference and its interval, and the MDE where inconclusive.

        >>> Verdict(0.1, (0.1,), math.nan, 0.2, 0.2, None, 1).text()
        'inconclusive (smallest detectable effect 0.56 points): +0.10 [-0.29, +0.49], one run, test-image noise only'
        """
        f = f"{{:+.{decimals}f}}"
        where = (f"{self.n} seeds" if self.n > 1 else "one run, test-image noise only")
        body = f"{f.format(self.diff)} [{f.format(self.low)}, {f.format(self.high)}], {where}"
        if self.word == "inconclusive":
            return f"inconclusive (smallest detectable effect {self.mde:.{decimals}f} {self.unit}): {body}"
        return f"{self.word}: {body}"

    def as_dict(self) -> dict:
        """For metrics JSON: every field and derived number (nan as None, so the JSON is strict)."""
        d = {**asdict(self), "per_seed": list(self.per_seed), "n": self.n, "half": self.half, "low": self.low,
             "high": self.high, "mde": self.mde, "p": self.p_value, "word": self.word, "text": self.text()}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def verdict(diffs: Sequence[float], image_ses: Sequence[float], expected: int = 0, unit: str = "points") -> Verdict:
    """A verdict from per-seed paired differences and their per-seed paired SEs over images (points).

    Without the per-image data, the SE over images of the seed-averaged difference is bounded by the mean
    of the per-seed SEs, which is used (conservative). One seed: the paired interval alone. A measure with no
    sampling over images (a census of every weight, a simulation) passes SEs of 0: training noise only.
    """
    d = np.asarray(diffs, dtype=float)
    e = np.asarray(image_ses, dtype=float)
    if d.ndim != 1 or len(d) == 0 or e.shape != d.shape:
        raise ValueError(f"one paired SE per seed difference is needed, got {len(d)} differences, {e.size} SEs")
    if not (np.isfinite(d).all() and np.isfinite(e).all() and (e >= 0).all()):
        raise ValueError(f"differences and SEs must be finite (SEs >= 0), got {d.tolist()} and {e.tolist()}")
    return _combine(d, float(e.mean()), expected, unit)


def paired_verdict(correct_arm: np.ndarray, correct_ref: np.ndarray, expected: int = 0) -> Verdict:
    """A verdict from per-image correctness, ``(seeds, images)`` each (bool or 0/1; one row per seed).

    Row s of both arms must score the same images in the same order (seed s's runs of the two arms).
    """
    a = np.atleast_2d(np.asarray(correct_arm, dtype=float))
    b = np.atleast_2d(np.asarray(correct_ref, dtype=float))
    if a.shape != b.shape or a.shape[1] < 2:
        raise ValueError(f"both arms need the same (seeds, images) shape with 2+ images, got {a.shape} and {b.shape}")
    per_image = (a - b).mean(0)                                          # (images,): averaged over seeds
    se_img = 100 * float(per_image.std(ddof=1)) / math.sqrt(a.shape[1])
    return _combine(100 * (a - b).mean(1), se_img, expected)


def _combine(d: np.ndarray, se_images: float, expected: int, unit: str = "points") -> Verdict:
    n = len(d)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    se = math.sqrt((sd ** 2 / n if n > 1 else 0.0) + se_images ** 2)
    return Verdict(diff=float(d.mean()), per_seed=tuple(float(x) for x in d), sd_seeds=sd, se_images=se_images,
                   se=se, df=n - 1 if n > 1 else None, expected=int(np.sign(expected)), unit=unit)


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


def table_note(verdicts: Sequence[Verdict]) -> str:
    """The line under a table of verdicts: how many comparisons, how many clear of zero, and after Holm.

    >>> table_note([Verdict(1.0, (1.0,), math.nan, 0.1, 0.1, None, 1), Verdict(0.0, (0.0,), math.nan, 0.1, 0.1, None, 1)])
    '2 comparisons (about 0.1 clear of zero by chance at 5%): 1 clear of zero, 1 after Holm'
    """
    k = len(verdicts)
    clear = sum(v.word != "inconclusive" for v in verdicts)
    after = sum(p < 0.05 for p in holm([v.p_value for v in verdicts])) if k else 0
    return (f"{k} comparison{'s' if k != 1 else ''} (about {0.05 * k:.1f} clear of zero by chance at 5%): "
            f"{clear} clear of zero, {after} after Holm")


def rows_note(rows: Sequence[Mapping]) -> str:
    """``table_note`` of a table's rows that carry a verdict (``"verdict"``: ``Verdict.as_dict()``)."""
    return table_note([Verdict.from_dict(r["verdict"]) for r in rows if isinstance(r.get("verdict"), Mapping)])


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

    Two-way analysis of variance of ``D = 100 (arm - ref)``: the residual mean square (after removing seed and
    image means) estimates ``within_var``; the spread of the seed means, ``SD^2 = seed_var + within_var / m``;
    that of the image means, ``V = image_var + within_var / n``; negative estimates are set to 0.
    """
    a = np.atleast_2d(np.asarray(correct_arm, dtype=float))
    b = np.atleast_2d(np.asarray(correct_ref, dtype=float))
    if a.shape != b.shape or a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"both arms need the same (seeds, images) shape with 2+ seeds and 2+ images, "
                         f"got {a.shape} and {b.shape}")
    d = 100 * (a - b)                                                 # (seeds, images), points
    n, m = d.shape
    seed_means, image_means = d.mean(1), d.mean(0)
    residual = d - seed_means[:, None] - image_means[None, :] + d.mean()
    within = float((residual ** 2).sum() / ((n - 1) * (m - 1)))
    seed = max(float(seed_means.var(ddof=1)) - within / m, 0.0)
    image = max(float(image_means.var(ddof=1)) - within / n, 0.0)
    return NoiseComponents(seed_var=seed, image_var=image, within_var=within, diff=float(d.mean()), seeds=n, images=m)


def predicted_se(c: NoiseComponents, seeds: int, images: int) -> float:
    """The SE (points) ``paired_verdict`` is expected to give with ``seeds`` seeds and ``images`` images.

    Its SE is ``sqrt(SD^2 / n + V / m)``, with ``E[SD^2] = seed_var + within_var / m`` and
    ``E[V] = image_var + within_var / n``, so ``SE^2 = seed_var / n + image_var / m + 2 within_var / (n m)``.

    >>> predicted_se(NoiseComponents(0.36, 600.0, 2000.0, 0.0, 3, 10000), 4, 10000)   # 0.09 + 0.06 + 0.1
    0.5
    """
    if seeds < 1 or images < 1:
        raise ValueError(f"seeds and images must be positive, got {seeds} and {images}")
    return math.sqrt(c.seed_var / seeds + c.image_var / images + 2 * c.within_var / (seeds * images))


def mde(c: NoiseComponents, seeds: int, images: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """Minimal detectable effect (points) at ``power`` and two-sided ``alpha`` with ``seeds`` (2 or more) and
    ``images``: ``(t(1 - alpha/2, n-1) + t(power, n-1)) * predicted_se``, as ``Verdict.mde`` computes it.

    >>> round(mde(NoiseComponents(0.36, 600.0, 2000.0, 0.0, 3, 10000), 4, 10000), 3)   # (3.182 + 0.978) * 0.5
    2.08
    """
    if seeds < 2:
        raise ValueError("a design for a verdict needs 2 or more seeds (one run has no seed term in its interval)")
    df = seeds - 1
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * predicted_se(c, seeds, images)


def required_seeds(c: NoiseComponents, target: float, images: int, max_seeds: int = 64, power: float = 0.8,
                   alpha: float = 0.05) -> int | None:
    """The fewest seeds (2 or more) whose ``mde`` with ``images`` images is at most ``target`` points; None when
    even ``max_seeds`` do not reach it (the images' own term ``image_var / m`` sets a floor no seed count lowers).

    >>> required_seeds(NoiseComponents(0.04, 1.0, 2000.0, 0.0, 3, 10000), 0.5, 30000)
    8
    """
    for n in range(2, max_seeds + 1):
        if mde(c, n, images, power, alpha) <= target:
            return n
    return None


def plan_design(components: Mapping[str, NoiseComponents], target: float, image_options: Sequence[int],
                max_seeds: int = 64, power: float = 0.8, alpha: float = 0.05) -> dict:
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
