"""Bit-width interference in miniature (claim C2; the paper's Figure 1, docs/method.md section 4 "F1").

Two shared float weights serve every candidate bit-width, as in a weight-coupled supernet. Each step
draws one bit-width from the candidate set, quantizes the shared weights at that bit-width (fixed step
size, straight-through rounding) and takes one SGD step on a least-squares loss whose optimum lies off
every grid. Comparing candidate sets {4, 6} and {2, 4, 6} isolates what the 2-bit candidate does to the
*other* bit-widths: how often their quantized weights cross a rounding threshold, and how much the
shared gradient varies from step to step.

``coupled_toy`` runs one such training; ``rolling_variance`` smooths the gradient record. Both are
pure functions of their arguments and a seed. ``toy_example`` (F1's figure), ``toy_study``, ``toy_table`` and
``toy_verdicts`` are notebook 05's toy experiments.

The second half of the module reads the runs of ``mpq.studies.ablation`` on ResNet-20 (F2-F4, T1, T6) and turns
them into tables with seed spreads, paired differences, verdicts, findings and figures.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mpq.method.quantizer import int_range
from mpq.studies.stats import seed_verdict


@dataclass(frozen=True)
class ToyTrace:
    """What one toy run records per step: shared weights, gradients, and threshold crossings."""

    candidates: tuple[int, ...]
    weights: Tensor                     # (steps + 1, 2): float weights before each step and after the last
    grads: Tensor                       # (steps, 2): straight-through gradient of each step
    sampled: Tensor                     # (steps,): the bit-width drawn at each step
    crossings: dict[int, Tensor]        # bits -> (steps,): cumulative count of integer-level changes


def toy_step_size(bits: int, clip: float = 1.0) -> float:
    """Fixed step size that maps the signed range of ``bits`` onto about ``[-clip, clip)``.

    >>> toy_step_size(2), toy_step_size(4)
    (0.5, 0.125)
    """
    return clip / 2 ** (bits - 1)


def _levels(w: Tensor, bits: int) -> Tensor:
    qmin, qmax = int_range(bits, signed=True)
    return torch.round(w / toy_step_size(bits)).clamp(qmin, qmax)


def coupled_toy(candidates: Sequence[int], *, watch: Sequence[int] = (4, 6), steps: int = 3000, lr: float = 0.05,
                batch: int = 16, target: tuple[float, float] = (0.37, -0.61), start: tuple[float, float] = (0.0, 0.0),
                seed: int = 0) -> ToyTrace:
    """Train two shared weights with a bit-width drawn uniformly from ``candidates`` at every step.

    Loss: ``mean((x . q_b(w) - x . target)^2)`` on a fresh batch ``x ~ N(0, I_2)`` of ``batch`` points;
    ``q_b`` quantizes at ``bits`` with ``toy_step_size(bits)``; the gradient reaches ``w`` straight
    through the rounding and is zero where ``w`` is clipped. ``watch``: the bit-widths whose threshold
    crossings are counted (also for bit-widths that are not candidates: they are only measured).
    The same ``seed`` gives the same data and draws for any candidate set of the same length.
    """
    cands = tuple(sorted(candidates))
    if not cands or min(cands) < 2:
        raise ValueError(f"candidates must be bit-widths >= 2, got {candidates}")
    gen = torch.Generator().manual_seed(seed)
    w = torch.tensor(start, dtype=torch.float64)
    t = torch.tensor(target, dtype=torch.float64)
    weights, grads, sampled = [w.clone()], [], []
    crossings = {b: torch.zeros(steps, dtype=torch.long) for b in watch}
    prev = {b: _levels(w, b) for b in watch}
    count = {b: 0 for b in watch}
    for i in range(steps):
        bits = cands[int(torch.randint(len(cands), (1,), generator=gen))]
        x = torch.randn(batch, 2, generator=gen, dtype=torch.float64)
        qmin, qmax = int_range(bits, signed=True)
        s = toy_step_size(bits)
        q = _levels(w, bits) * s
        inside = ((w / s) >= qmin) & ((w / s) <= qmax)
        residual = x @ q - x @ t                                   # (batch,)
        grad = (2.0 / batch) * (x.T @ residual) * inside            # (2,): straight through round, 0 if clipped
        w = w - lr * grad
        for b in watch:
            now = _levels(w, b)
            count[b] += int((now != prev[b]).sum())
            prev[b] = now
            crossings[b][i] = count[b]
        weights.append(w.clone())
        grads.append(grad)
        sampled.append(bits)
    return ToyTrace(cands, torch.stack(weights), torch.stack(grads), torch.tensor(sampled), crossings)


def rolling_variance(values: Tensor, window: int) -> Tensor:
    """Variance over the last ``window`` steps, summed over components: ``(steps, d)`` -> ``(steps - window + 1,)``."""
    if values.ndim == 1:
        values = values[:, None]
    if not 1 < window <= values.shape[0]:
        raise ValueError(f"window must lie in (1, {values.shape[0]}], got {window}")
    windows = values.unfold(0, window, 1)                         # (steps - window + 1, d, window)
    return windows.var(dim=-1, unbiased=True).sum(dim=-1)


def summarize(trace: ToyTrace, window: int) -> dict[str, float]:
    """One run in numbers: threshold crossings per watched bit-width over the whole run and its second
    half, and the mean rolling gradient variance over the second half."""
    steps = trace.grads.shape[0]
    half = steps // 2
    out = {}
    for bits, cum in trace.crossings.items():
        out[f"crossings_w{bits}"] = int(cum[-1])
        out[f"crossings_w{bits}_second_half"] = int(cum[-1] - cum[half - 1])
    out["grad_var_second_half"] = float(rolling_variance(trace.grads[half:], window).mean())
    return out


def candidate_label(candidates: Sequence[int]) -> str:
    """A candidate set as the tables name it: ``(2, 4, 6)`` -> ``"{2,4,6}"``."""
    return "{" + ",".join(map(str, candidates)) + "}"


def toy_study(candidate_sets: Sequence[Sequence[int]], lrs: Sequence[float], seeds: int, *, steps: int,
              window: int) -> list[dict]:
    """``summarize`` of every (candidate set, learning rate, seed) run: one row each, the same seeds per set."""
    rows = []
    for lr in lrs:
        for seed in range(seeds):
            for cands in candidate_sets:
                trace = coupled_toy(cands, steps=steps, lr=lr, seed=seed)
                rows.append({"candidates": candidate_label(trace.candidates), "lr": lr, "seed": seed,
                             **summarize(trace, window)})
    return rows


def toy_example(candidate_sets: Sequence[Sequence[int]], *, steps: int, lr: float, window: int, seed: int = 0
                ) -> tuple[dict[str, ToyTrace], dict[str, Tensor]]:
    """F1 (the paper's Figure 1): one toy run per candidate set with the same ``seed``, and the rolling variance
    of its gradient over ``window`` steps; both keyed by the set's label, in the order of ``candidate_sets``."""
    traces = {}
    for cands in candidate_sets:
        trace = coupled_toy(cands, steps=steps, lr=lr, seed=seed)
        traces[candidate_label(trace.candidates)] = trace
    return traces, {label: rolling_variance(t.grads, window) for label, t in traces.items()}


TOY_COLUMNS = {"crossings_w4": "4-bit crossings", "crossings_w6": "6-bit crossings",
               "crossings_w4_second_half": "4-bit crossings, 2nd half",
               "crossings_w6_second_half": "6-bit crossings, 2nd half",
               "grad_var_second_half": "gradient variance, 2nd half"}


def toy_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """F1 in numbers: per learning rate and candidate set (first-seen order), each ``toy_study`` column as
    "mean ± SD" over seeds (gradient variance to 4 decimals, crossings to 1)."""
    cols = list(TOY_COLUMNS)
    summary = pd.DataFrame(rows).groupby(["lr", "candidates"], sort=False)[cols].agg(["mean", "std"])
    digits = {c: 4 if c.startswith("grad") else 1 for c in cols}
    return pd.DataFrame([{"lr": lr, "candidates": cands,
                          **{f"{TOY_COLUMNS[c]} (mean ± SD)": f"{row[(c, 'mean')]:.{digits[c]}f} ± "
                                                              f"{row[(c, 'std')]:.{digits[c]}f}" for c in cols}}
                         for (lr, cands), row in summary.iterrows()])


def toy_verdicts(rows: Sequence[Mapping], lrs: Sequence[float], reference: str = "{4,6}", coupled: str = "{2,4,6}",
                 columns: Sequence[str] = ("crossings_w4_second_half", "crossings_w6_second_half",
                                           "grad_var_second_half")) -> list[str]:
    """What the toy shows (claim C2), one sentence per learning rate and column: the means over seeds of the
    ``reference`` and ``coupled`` candidate sets, "more/fewer with 2-bit" only when they differ by more than the
    larger of the two seed SDs."""
    runs = pd.DataFrame(rows)
    lines = []
    for lr in lrs:
        for column in columns:
            a = runs[(runs.lr == lr) & (runs.candidates == reference)][column]
            b = runs[(runs.lr == lr) & (runs.candidates == coupled)][column]
            spread = max(a.std(ddof=1) if len(a) > 1 else 0.0, b.std(ddof=1) if len(b) > 1 else 0.0)
            verdict = ("more with 2-bit" if b.mean() - a.mean() > spread else
                       "fewer with 2-bit" if a.mean() - b.mean() > spread else "no difference beyond the seed spread")
            lines.append(f"{column} at lr {lr}: {reference} {a.mean():.4g} vs {coupled} {b.mean():.4g} ({verdict})")
    return lines


# --- the runs on a real model (mpq.studies.ablation): loading, tables, verdicts, figures -------------------------

def load_runs(folder: str | Path, cells: Sequence[str], seeds: Sequence[int]) -> dict[tuple[str, int], dict]:
    """Every ``folder/<cell>-<seed>`` run: its result (JSON), test predictions and feature sample (arrays).

    Files are read as data: JSON, and NumPy archives without pickles.
    """
    runs, missing = {}, []
    for cell in cells:
        for seed in seeds:
            path = Path(folder) / f"{cell}-{seed}"
            if not (path / "result.json").is_file():
                missing.append(path.name)
                continue
            with np.load(path / "predictions.npz", allow_pickle=False) as preds, \
                    np.load(path / "features.npz", allow_pickle=False) as feats:
                runs[(cell, seed)] = {"result": json.loads((path / "result.json").read_text()),
                                      "preds": {k: preds[k] for k in preds.files},
                                      "features": {k: feats[k] for k in feats.files}}
    if missing:
        raise FileNotFoundError(f"ablation runs missing under {folder}: {missing}; run `dvc repro ablation`")
    return runs


def ablation_rows(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int],
                  metrics: Sequence[str], reference: str = "plain") -> list[dict]:
    """T6: per cell and metric, top-1 mean and SD over seeds, and the paired difference to ``reference``.

    Per seed the difference is taken on the same test images (both runs share the seed and the data),
    with its paired standard error over images; across seeds, the mean difference, its SD, and the verdict.
    """
    rows = []
    for cell in cells:
        for metric in metrics:
            accs, diffs, ses = [], [], []
            for seed in seeds:
                run, ref = runs[(cell, seed)], runs[(reference, seed)]
                labels = run["preds"]["labels"]
                correct = (run["preds"][metric] == labels).astype(float)
                accs.append(100 * correct.mean())
                if cell != reference:
                    d = correct - (ref["preds"][metric] == labels).astype(float)
                    diffs.append(100 * d.mean())
                    ses.append(100 * d.std(ddof=1) / math.sqrt(len(d)))
            row = {"cell": cell, "metric": metric, "seeds": len(accs), "top-1 mean": float(np.mean(accs)),
                   "top-1 SD": float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan"),
                   "per seed": " / ".join(f"{a:.2f}" for a in accs)}
            if diffs:
                row.update({f"minus {reference}": float(np.mean(diffs)),
                            "diff SD over seeds": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan"),
                            "paired SE per seed": " / ".join(f"{s:.2f}" for s in ses),
                            "verdict": seed_verdict(diffs)})
            rows.append(row)
    return rows


def oscillation_rows(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int],
                     after: float = 0.5) -> list[dict]:
    """T1: per cell and weight bit-width, the flip rate between measurements (mean over those after
    ``after`` of training, and over all) and the final float-to-quantized distance; mean and SD over seeds."""
    rows = []
    for cell in cells:
        record = [runs[(cell, s)]["result"]["oscillation"] for s in seeds]
        for bits in record[0]["flip_rate"]:
            late, whole, dist = [], [], []
            for rec in record:
                flips = [(p, f) for p, f in zip(rec["progress"], rec["flip_rate"][bits]) if f is not None]
                late.append(100 * np.mean([f for p, f in flips if p > after]))
                whole.append(100 * np.mean([f for _, f in flips]))
                dist.append(rec["distance"][bits][-1])
            rows.append({"cell": cell, "w bits": int(bits), "seeds": len(seeds),
                         "flip % (2nd half)": float(np.mean(late)),
                         "SD": float(np.std(late, ddof=1)) if len(late) > 1 else float("nan"),
                         "flip % (whole run)": float(np.mean(whole)),
                         "distance at end (steps)": float(np.mean(dist))})
    return rows


def distortion_rows(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int]) -> list[dict]:
    """F4 in numbers: BN-output distortion of the lowest configuration against the max path, mean over
    layers, per cell (mean and SD over seeds, and the per-seed values)."""
    rows = []
    for cell in cells:
        vals = [float(np.mean(list(runs[(cell, s)]["result"]["bn_distortion"].values()))) for s in seeds]
        rows.append({"cell": cell, "seeds": len(vals), "distortion mean": float(np.mean(vals)),
                     "SD": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"),
                     "per seed": " / ".join(f"{v:.3f}" for v in vals)})
    return rows


def present_cells(cells: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The cells of ``wanted`` (in its order) that the study ran (``cells``)."""
    return [c for c in wanted if c in cells]


def ablation_setup(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int],
                   profile: str) -> str:
    """The scale of the ablation runs in one line (model, width, budget, seeds, test images, CPU kind), read from
    the first run; the caption of F2-F4 and T6."""
    first = runs[(cells[0], seeds[0])]["result"]
    return (f"{profile} profile, {first['model']} x{first['width_mult']}, {first['epochs']} one-shot epochs over "
            f"{first['train_images']} images, seeds {list(seeds)}, {first['test_images']} test images, "
            f"CPU kind {first['cpu_capability']}")


def run_overview(runs: Mapping[tuple[str, int], dict]) -> pd.DataFrame:
    """One row per ablation run: cell, seed, training and search seconds, layers frozen at the end, and the test
    top-1 (%) of each evaluated configuration."""
    return pd.DataFrame([{"cell": c, "seed": s, "train s": r["result"]["train_seconds"],
                          "search s": r["result"]["search_seconds"],
                          "layers frozen at end": len(r["result"]["frozen_at_end"]),
                          **{f"{m} top-1": 100 * r["result"]["test_acc"][m] for m in r["result"]["test_acc"]}}
                         for (c, s), r in runs.items()])


def late_flip_rate(run: Mapping, bits: str, after: float = 0.5) -> float:
    """Mean flip rate (%) of a run's ``bits``-bit integer weight levels over the measurements after ``after``."""
    rec = run["result"]["oscillation"]
    vals = [f for p, f in zip(rec["progress"], rec["flip_rate"][bits]) if f is not None and p > after]
    return 100 * sum(vals) / len(vals)


def flip_comparisons(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int],
                     after: float = 0.5) -> dict[str, dict]:
    """F2/T1 verdicts (claim C2): per cell with 2-bit weights (plain, sched, both) and weight bit-width, the late
    flip rate minus the no2bit run's with the same seed, in points, and its verdict over seeds; empty without a
    no2bit cell. Keys: "<cell> vs no2bit, <bits>-bit"."""
    first = runs[(cells[0], seeds[0])]["result"]
    verdicts = {}
    for cell in [c for c in ("plain", "sched", "both") if c in cells and "no2bit" in cells]:
        for bits in first["oscillation"]["flip_rate"]:
            diffs = [late_flip_rate(runs[(cell, s)], bits, after) - late_flip_rate(runs[("no2bit", s)], bits, after)
                     for s in seeds]
            verdicts[f"{cell} vs no2bit, {bits}-bit"] = {"diffs": diffs, "verdict": seed_verdict(diffs)}
            print(f"{bits}-bit flip rate in the second half, {cell} minus no2bit (same seed), points per seed: "
                  + ", ".join(f"{d:+.3f}" for d in diffs) + f": {seed_verdict(diffs)}")
    return verdicts


def distortion_comparisons(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int]
                           ) -> dict[str, dict]:
    """F3/F4 verdicts (claim C4): BN-output distortion (mean over layers) of idm minus plain and of both minus
    sched, per seed, and the verdict over seeds; a pair is left out when one of its cells did not run."""
    first = runs[(cells[0], seeds[0])]["result"]
    verdicts = {}
    for cell, ref in (("idm", "plain"), ("both", "sched")):
        if cell in cells and ref in cells:
            diffs = [float(sum(runs[(cell, s)]["result"]["bn_distortion"].values()) -
                           sum(runs[(ref, s)]["result"]["bn_distortion"].values())) / len(first["bn_distortion"])
                     for s in seeds]
            verdicts[f"{cell} vs {ref}"] = {"diffs": diffs, "verdict": seed_verdict(diffs)}
            print(f"distortion, {cell} minus {ref} (same seed): " + ", ".join(f"{d:+.4f}" for d in diffs)
                  + f": {seed_verdict(diffs)}")
    return verdicts


def t6_rows(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int]) -> list[dict]:
    """T6 (the paper's Table 6): ``ablation_rows`` of the 2x2 cells that ran (plain, sched, idm, both), for every
    configuration the first run evaluated."""
    first = runs[(cells[0], seeds[0])]["result"]
    return ablation_rows(runs, present_cells(cells, ("plain", "sched", "idm", "both")), seeds, list(first["test_acc"]))


RECORD_KEYS = ("test_acc", "train_seconds", "search_seconds", "frozen_at_end", "searched", "cpu_capability")


def run_records(runs: Mapping[tuple[str, int], dict]) -> dict[str, dict]:
    """What reports/metrics/ablation.json keeps of each run, keyed "<cell>-<seed>"."""
    return {f"{c}-{s}": {k: r["result"][k] for k in RECORD_KEYS} for (c, s), r in runs.items()}


def ablation_findings(t6: pd.DataFrame, flip_verdicts: Mapping[str, Mapping],
                      distortion_verdicts: Mapping[str, Mapping], toy_lines: Sequence[str]) -> list[str]:
    """Notebook 05's findings (claims C2-C4): T6 per cell minus plain, how many F2/T1 comparisons lie beyond the
    seed spread, the F3/F4 distortion differences, and the toy's sentences (F1)."""
    lines = []
    for cell in ("sched", "idm", "both"):
        rows = t6[t6.cell == cell]
        if len(rows):
            lines.append(f"T6 {cell} minus plain: " + "; ".join(
                f"{r.metric} {r['minus plain']:+.2f} (SD over seeds {r['diff SD over seeds']:.2f}, {r.verdict})"
                for _, r in rows.iterrows()))
    if flip_verdicts:
        beyond = [k for k, v in flip_verdicts.items() if "beyond" in v["verdict"]]
        lines.append(f"F2/T1 late flip rate with 2-bit candidates minus without (no2bit): {len(beyond)} of "
                     f"{len(flip_verdicts)} comparisons beyond the seed spread"
                     + (f" ({', '.join(beyond)})" if beyond else ""))
    for name, v in distortion_verdicts.items():
        lines.append(f"F3/F4 BN-output distortion, {name}: per seed " + ", ".join(f"{d:+.4f}" for d in v["diffs"])
                     + f" ({v['verdict']})")
    lines.append("F1 toy: " + "; ".join(toy_lines))
    return lines


def oscillation_figure(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int], title: str):
    """F2's analogue: flip rate of the integer weight levels over training, one panel per weight bit-width,
    one line per cell (mean over seeds, band: min to max)."""
    import matplotlib.pyplot as plt

    first = runs[(cells[0], seeds[0])]["result"]["oscillation"]
    bit_list = list(first["flip_rate"])
    fig, axes = plt.subplots(1, len(bit_list), figsize=(4.2 * len(bit_list), 3.6), sharey=True, squeeze=False)
    for ax, bits in zip(axes[0], bit_list):
        for cell in cells:
            recs = [runs[(cell, s)]["result"]["oscillation"] for s in seeds]
            progress = [p for p, f in zip(recs[0]["progress"], recs[0]["flip_rate"][bits]) if f is not None]
            values = np.array([[100 * f for f in r["flip_rate"][bits] if f is not None] for r in recs])
            ax.plot(progress, values.mean(0), marker=".", label=cell)
            if len(recs) > 1:
                ax.fill_between(progress, values.min(0), values.max(0), alpha=0.2)
        ax.set(xlabel="fraction of training", title=f"{bits}-bit weights", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("flip rate between measurements (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def density_figure(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seed: int, title: str):
    """F3/F4's analogue: density of one layer's BN outputs at the lowest configuration and at the max
    path (W6A6), one panel per cell (e.g. without and with IDM)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(cells), figsize=(4.6 * len(cells), 3.6), sharex=True, sharey=True, squeeze=False)
    for ax, cell in zip(axes[0], cells):
        run = runs[(cell, seed)]
        layer = run["result"]["distortion_sample_layer"]
        sns.kdeplot(x=run["features"]["high"], ax=ax, label="max path (W6A6)", fill=True, alpha=0.3)
        sns.kdeplot(x=run["features"]["low"], ax=ax, label="lowest (W2A2)", fill=True, alpha=0.3)
        distortion = run["result"]["bn_distortion"][layer]
        ax.set(xlabel=f"BN output of {layer}", title=f"{cell}: relative MSE {distortion:.3f}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
