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
them into tables with seed spreads, paired differences, verdicts, findings and figures. Every verdict comes from
``mpq.studies.stats``: T6 pairs the stored test predictions image by image over seeds (both noise sources); the
flip rate counts every weight (no sampling over images) and the distortion's calibration images are the same for
every run and not kept per image, so those two verdicts rest on the spread over seeds alone, as they say.
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
from mpq.studies.figure_text import DENSITY_CAVEAT, suptitle, wrap
from mpq.studies.stats import Verdict, family_counts, json_ready, paired_verdict, rows_note, verdict

# The paper's direction of each comparison (``expected`` of mpq.studies.stats): C2, the 2-bit candidate makes the
# other bit-widths' quantized weights oscillate (more crossings, more gradient variance, a higher flip rate, in
# every cell that keeps 2-bit weights: the scheduler freezes 2-bit for some layers some of the time, it does not
# remove it); C3/C4, the scheduler and IDM raise accuracy; C4, IDM lowers the low bit-width's distortion.
TOY_EXPECTED = 1
FLIP_EXPECTED = 1
T6_EXPECTED = {"sched": 1, "idm": 1, "both": 1}        # sched_full, this package's variant: no direction
T6_CELLS = ("sched", "idm", "both", "sched_full")       # T6's cells compared with plain, in the table's order
DISTORTION_EXPECTED = -1


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
    ``reference`` and ``coupled`` candidate sets and the verdict on ``coupled`` minus ``reference``, paired by seed
    (the same seed draws the same data and bit-widths' order for both sets; a simulation: no image noise, the
    spread over seeds is the only noise). ``TOY_EXPECTED``: more with 2-bit."""
    runs = pd.DataFrame(rows)
    lines = []
    for lr in lrs:
        for column in columns:
            a = runs[(runs.lr == lr) & (runs.candidates == reference)].set_index("seed")[column]
            b = runs[(runs.lr == lr) & (runs.candidates == coupled)].set_index("seed")[column]
            seeds = [s for s in a.index if s in b.index]
            grad = column.startswith("grad")
            v = verdict([b[s] - a[s] for s in seeds], [0.0] * len(seeds), TOY_EXPECTED,
                        unit="variance units" if grad else "crossings")
            lines.append(f"{_toy_words(column)} at lr {lr}: {reference} {a.mean():.4g} vs {coupled} {b.mean():.4g}, "
                         f"with 2-bit minus without {v.text(4 if grad else 1)}")
    return lines


def _toy_words(column: str) -> str:
    """A toy table column in words: ``crossings_w4_second_half`` -> "4-bit threshold crossings (second half)".

    >>> _toy_words("grad_var_second_half")
    'gradient variance (second half)'
    """
    half = " (second half)" if column.endswith("_second_half") else ""
    base = column.removesuffix("_second_half")
    if base.startswith("crossings_w"):
        return f"{base.removeprefix('crossings_w')}-bit threshold crossings{half}"
    return {"grad_var": "gradient variance"}.get(base, base.replace("_", " ")) + half


# --- the runs on a real model (mpq.studies.ablation): loading, tables, verdicts, figures -------------------------

def run_path(folder: str | Path, name: str, seed: int) -> Path:
    """Where a run (or a search of plain in another run's space) named ``name`` of seed ``seed`` lies: inside its
    seed's block, ``folder/seed-<seed>/<name>`` (``ablation.run_block``), or directly in ``folder`` (the pilot's
    and single runs)."""
    block = Path(folder) / f"seed-{seed}" / name
    return block if block.is_dir() else Path(folder) / name


def cell_seeds(cell: str, seeds: Sequence[int], no2bit_seeds: Sequence[int] | None = None) -> list[int]:
    """The seeds a cell ran with: every seed, except no2bit's own list where it has one (``ablation.no2bit_seeds``)."""
    return list(no2bit_seeds) if cell == "no2bit" and no2bit_seeds is not None else list(seeds)


def seeds_in(runs: Mapping[tuple[str, int], dict], cell: str, seeds: Sequence[int]) -> list[int]:
    """The seeds of ``seeds`` that ``cell`` has a run for."""
    return [s for s in seeds if (cell, s) in runs]


def load_runs(folder: str | Path, cells: Sequence[str], seeds: Sequence[int],
              no2bit_seeds: Sequence[int] | None = None) -> dict[tuple[str, int], dict]:
    """Every run of ``cells`` x their seeds (``cell_seeds``) under ``folder`` (``run_path``): its result (JSON),
    test predictions and feature sample (arrays).

    Files are read as data: JSON, and NumPy archives without pickles.
    """
    runs, missing = {}, []
    for cell in cells:
        for seed in cell_seeds(cell, seeds, no2bit_seeds):
            path = run_path(folder, f"{cell}-{seed}", seed)
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


def block_records(folder: str | Path, seeds: Sequence[int]) -> dict[str, dict]:
    """Each seed's block record (``ablation.run_block``: its cells, jobs, wall seconds, CPU kind), keyed by seed;
    seeds without one (runs not made by a block) are left out."""
    out = {}
    for seed in seeds:
        path = Path(folder) / f"seed-{seed}" / "block.json"
        if path.is_file():
            out[str(seed)] = json.loads(path.read_text())
    return out


def correct_of(preds: Mapping[str, np.ndarray], metric: str) -> np.ndarray:
    """Per-image correctness of one evaluated configuration of a run. ``labels`` are those of every evaluation
    image (the test set first, then any held-out training images); a configuration evaluated on the test set
    alone has a shorter prediction array, a prefix of them."""
    pred = preds[metric]
    return pred == preds["labels"][:len(pred)]


def ablation_rows(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int],
                  metrics: Sequence[str], reference: str = "plain") -> list[dict]:
    """T6: per cell and metric, top-1 mean and SD over seeds, and the verdict on the difference to ``reference``
    (named in each judged row's ``reference``).

    Per seed the difference is taken on the same test images (both runs share the seed and the data); the
    verdict pairs every image over the seeds (``paired_verdict``: the seed spread and the test images' noise),
    in the paper's direction ``T6_EXPECTED`` (0 for a cell it makes no claim about). A metric whose predictions
    repeat an earlier metric's in this cell and in the reference, seed by seed (the same configurations: a cell
    without a scheduler has "lowest" = its uniform W2A2), is not a comparison of its own: it is left out and the
    kept row names it (``"same as"``), so no table counts one comparison twice.
    """
    rows = []
    for cell in cells:
        kept: list[tuple[dict, np.ndarray, np.ndarray]] = []
        for metric in metrics:
            correct = np.stack([correct_of(runs[(cell, s)]["preds"], metric) for s in seeds])   # (seeds, images)
            ref = np.stack([correct_of(runs[(reference, s)]["preds"], metric) for s in seeds])
            twin = next((row for row, c, r in kept if np.array_equal(c, correct) and np.array_equal(r, ref)), None)
            if twin is not None:
                twin["same as"] = ", ".join(filter(None, [twin.get("same as"), metric]))
                continue
            accs = 100 * correct.mean(1)
            row = {"cell": cell, "metric": metric, "seeds": len(accs), "top-1 mean": float(np.mean(accs)),
                   "top-1 SD": float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan"),
                   "top-1 per seed": " / ".join(f"{a:.2f}" for a in accs)}
            kept.append((row, correct, ref))
            if cell != reference:
                d = correct.astype(float) - ref                                  # (seeds, images)
                row |= {"reference": reference,
                        "paired SE per seed": " / ".join(f"{100 * x.std(ddof=1) / math.sqrt(len(x)):.2f}" for x in d),
                        "verdict": paired_verdict(correct, ref, T6_EXPECTED.get(cell, 0)).as_dict()}
            rows.append(row)
    return rows


def oscillation_rows(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int],
                     after: float = 0.5) -> list[dict]:
    """T1: per cell and weight bit-width, the flip rate between measurements (mean over those after
    ``after`` of training, and over all) and the final float-to-quantized distance; mean and SD over seeds."""
    rows = []
    for cell in cells:
        record = [runs[(cell, s)]["result"]["oscillation"] for s in seeds_in(runs, cell, seeds)]
        for bits in record[0]["flip_rate"]:
            late, whole, dist = [], [], []
            for rec in record:
                flips = [(p, f) for p, f in zip(rec["progress"], rec["flip_rate"][bits]) if f is not None]
                late.append(100 * np.mean([f for p, f in flips if p > after]))
                whole.append(100 * np.mean([f for _, f in flips]))
                dist.append(rec["distance"][bits][-1])
            rows.append({"cell": cell, "w bits": int(bits), "seeds": len(record),
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
        vals = [float(np.mean(list(runs[(cell, s)]["result"]["bn_distortion"].values())))
                for s in seeds_in(runs, cell, seeds)]
        rows.append({"cell": cell, "seeds": len(vals), "distortion mean": float(np.mean(vals)),
                     "SD": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"),
                     "per seed": " / ".join(f"{v:.3f}" for v in vals)})
    return rows


def present_cells(cells: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The cells of ``wanted`` (in its order) that the study ran (``cells``)."""
    return [c for c in wanted if c in cells]


def ablation_setup(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int],
                   profile: str) -> str:
    """The scale of the ablation runs in one line (model, width, budget, seeds, evaluation images, CPU kind), read
    from the first run; the caption of F2-F4 and T6. The configurations of ``ablation.extra_eval_configs`` are
    evaluated on held-out training images besides the test images, and the line says so."""
    first = runs[(cells[0], seeds[0])]["result"]
    held = first.get("eval_images", {})
    images = f"{first['test_images']} test images"
    if held.get("held_out_training") and held.get("configs_on_held_out"):
        images = (f"{held['test']} test images ({', '.join(held['configs_on_held_out'])}: also "
                  f"{held['held_out_training']} held-out training images)")
    return (f"{profile} profile, {first['model']} x{first['width_mult']}, {first['epochs']} one-shot epochs over "
            f"{first['train_images']} images, seeds {list(seeds)}, {images}, CPU kind {first['cpu_capability']}")


def run_overview(runs: Mapping[tuple[str, int], dict]) -> pd.DataFrame:
    """One row per ablation run: cell, seed, training and search seconds, layers frozen at the end, the test
    top-1 (%) of each evaluated configuration ("lowest": each layer's lowest current weight and activation
    candidates; "W2A2": uniform, ignoring the scheduler's last decision) and whether the run stayed healthy
    (``health.training_health``)."""
    return pd.DataFrame([{"cell": c, "seed": s, "train s": r["result"]["train_seconds"],
                          "search s": r["result"]["search_seconds"],
                          "layers frozen at end": len(r["result"]["frozen_at_end"]),
                          **{f"{m} top-1": 100 * r["result"]["test_acc"][m] for m in r["result"]["test_acc"]},
                          "run": health_word(r["result"].get("health"))}
                         for (c, s), r in runs.items()])


def health_word(health: Mapping | None) -> str:
    """"healthy", "collapsed: <why>", or "not recorded" (a run from before health was recorded)."""
    if health is None:
        return "not recorded"
    return f"collapsed: {health['why']}" if health["collapsed"] else "healthy"


def collapse_line(runs: Mapping[tuple[str, int], dict]) -> str:
    """Findings line: how many runs collapsed, and which (each is kept in every table, never dropped)."""
    bad = [f"{c}-{s} ({r['result']['health']['why']})" for (c, s), r in runs.items()
           if (r["result"].get("health") or {}).get("collapsed")]
    return (f"Runs: {len(runs)}, {len(bad)} collapsed" + (": " + "; ".join(bad) + " (kept in every table)" if bad else "")
            + ". A run collapses when a loss goes non-finite or its max path ends more than 5 points under FP on "
            "held-out images.")


def late_flip_rate(run: Mapping, bits: str, after: float = 0.5) -> float:
    """Mean flip rate (%) of a run's ``bits``-bit integer weight levels over the measurements after ``after``."""
    rec = run["result"]["oscillation"]
    vals = [f for p, f in zip(rec["progress"], rec["flip_rate"][bits]) if f is not None and p > after]
    return 100 * sum(vals) / len(vals)


def flip_comparisons(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int],
                     after: float = 0.5) -> list[dict]:
    """F2/T1 judged (claim C2): per cell with 2-bit weights (plain, sched, both) and weight bit-width, the late
    flip rate minus the no2bit run's with the same seed (points), and the verdict over seeds (``FLIP_EXPECTED``:
    higher with 2-bit). The flip rate counts every weight, so the spread over seeds is its only noise. Empty
    without a no2bit cell."""
    first = runs[(cells[0], seeds[0])]["result"]
    rows = []
    for cell in [c for c in ("plain", "sched", "both") if c in cells and "no2bit" in cells]:
        for bits in first["oscillation"]["flip_rate"]:
            diffs = [late_flip_rate(runs[(cell, s)], bits, after) - late_flip_rate(runs[("no2bit", s)], bits, after)
                     for s in seeds_in(runs, "no2bit", seeds)]
            v = verdict(diffs, [0.0] * len(diffs), FLIP_EXPECTED)
            rows.append({"comparison": f"{cell} minus no2bit", "w bits": int(bits), "verdict": v.as_dict()})
            print(f"{bits}-bit flip rate in the second half, {cell} minus no2bit (same seed), points per seed "
                  + ", ".join(f"{d:+.3f}" for d in diffs) + f": {v.text(3)}")
    return rows


def distortion_comparisons(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int]
                           ) -> list[dict]:
    """F3/F4 judged (claim C4): BN-output distortion (mean over layers, in % of the feature variance) of idm minus
    plain and of both minus sched, per seed, and the verdict over seeds (``DISTORTION_EXPECTED``: lower with IDM);
    a pair is left out when one of its cells did not run. Every run measures the same calibration images, not
    kept per image: the spread over seeds is the only noise counted."""
    first = runs[(cells[0], seeds[0])]["result"]
    rows = []
    for cell, ref in (("idm", "plain"), ("both", "sched")):
        if cell in cells and ref in cells:
            diffs = [100 * float(sum(runs[(cell, s)]["result"]["bn_distortion"].values()) -
                                 sum(runs[(ref, s)]["result"]["bn_distortion"].values())) / len(first["bn_distortion"])
                     for s in seeds]
            v = verdict(diffs, [0.0] * len(diffs), DISTORTION_EXPECTED, unit="points of relative MSE")
            rows.append({"comparison": f"{cell} minus {ref}", "verdict": v.as_dict()})
            print(f"distortion (% of the feature variance), {cell} minus {ref} (same seed): "
                  + ", ".join(f"{d:+.2f}" for d in diffs) + f": {v.text()}")
    return rows


def t6_rows(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int]) -> list[dict]:
    """T6 (the paper's Table 6): ``ablation_rows`` of the 2x2 cells that ran (plain, sched, idm, both) and of
    ``sched_full`` (this package's scheduler variant, not the paper's: scores over the full candidate list), each
    against plain, then sched_full against sched (the paper's scheduler), for every configuration the first run
    evaluated. The paper states no direction for sched_full (``T6_EXPECTED``), so its words are "higher" / "lower"."""
    first = runs[(cells[0], seeds[0])]["result"]
    metrics = list(first["test_acc"])
    rows = ablation_rows(runs, present_cells(cells, ("plain", *T6_CELLS)), seeds, metrics)
    if "sched_full" in cells and "sched" in cells:
        rows += ablation_rows(runs, ["sched_full"], seeds, metrics, reference="sched")
    return rows


RECORD_KEYS = ("test_acc", "train_seconds", "search_seconds", "frozen_at_end", "searched", "cpu_capability", "health")
# kept where a run recorded them (runs of the powered design, issue 26): evaluation images, the scheduler's design
SCHEDULE_KEYS = ("eval_images", "schedule_design", "frozen_overlap", "sched_score_candidates")


def run_records(runs: Mapping[tuple[str, int], dict]) -> dict[str, dict]:
    """What reports/metrics/ablation.json keeps of each run, keyed "<cell>-<seed>": ``RECORD_KEYS``, and where
    the run has them its evaluation images, its scheduler design and its scheduler's summary (calls, steps
    between them, persistence, overlap of consecutive frozen sets, score gaps; ``scheduler.schedule_summary``)."""
    records = {}
    for (c, s), r in runs.items():
        record = {k: r["result"].get(k) for k in RECORD_KEYS}
        record |= {k: r["result"][k] for k in SCHEDULE_KEYS if k in r["result"]}
        if "scheduler_log" in r["result"]:
            record["scheduler"] = r["result"]["scheduler_log"]["summary"]
        records[f"{c}-{s}"] = record
    return records


def space_folder(cell: str, seed: int) -> str:
    """The folder name of plain's supernet (seed ``seed``) searched in the final space of ``cell``'s run of the
    same seed (``python -m mpq.studies.ablation --run .../plain-<seed> --space-of .../<cell>-<seed>``)."""
    return f"plain-{seed}-in-{cell}-{seed}"


def load_space_runs(folder: str | Path, cells: Sequence[str], seeds: Sequence[int]) -> dict[tuple[str, int], dict]:
    """Every ``folder/plain-<seed>-in-<cell>-<seed>`` search (``space_folder``): its result and predictions."""
    runs, missing = {}, []
    for cell in cells:
        for seed in seeds:
            path = run_path(folder, space_folder(cell, seed), seed)
            if not (path / "result.json").is_file():
                missing.append(path.name)
                continue
            with np.load(path / "predictions.npz", allow_pickle=False) as preds:
                runs[(cell, seed)] = {"result": json.loads((path / "result.json").read_text()),
                                      "preds": {k: preds[k] for k in preds.files}}
    if missing:
        raise FileNotFoundError(f"plain searched in a scheduler run's space, missing under {folder}: {missing}")
    return runs


def space_comparisons(runs: Mapping[tuple[str, int], dict], space_runs: Mapping[tuple[str, int], dict],
                      cells: Sequence[str], seeds: Sequence[int], metrics: Sequence[str]) -> list[dict]:
    """T6's search-space confound separated, per scheduler cell and greedy metric: the cell minus plain searched
    in that cell's final space (the training effect at a fixed space; the paper's direction, higher), and plain
    in that space minus plain in its own (the space's share; no direction claimed). Paired image by image over
    the seeds (``paired_verdict``: the seed spread and the images' noise). Every run must have been evaluated on
    the same images (checked)."""
    rows = []
    for cell in cells:
        for metric in metrics:
            def correct(preds):
                return correct_of(preds, metric)

            for s in seeds:
                if not np.array_equal(runs[(cell, s)]["preds"]["labels"], space_runs[(cell, s)]["preds"]["labels"]):
                    raise ValueError(f"{cell}-{s} and plain searched in its space were evaluated on different images")
            arm = np.stack([correct(runs[(cell, s)]["preds"]) for s in seeds])
            fixed = np.stack([correct(space_runs[(cell, s)]["preds"]) for s in seeds])
            own = np.stack([correct(runs[("plain", s)]["preds"]) for s in seeds])
            rows.append({"comparison": f"{cell} minus plain, both searched in {cell}'s space", "metric": metric,
                         "verdict": paired_verdict(arm, fixed, T6_EXPECTED.get(cell, 0)).as_dict()})
            rows.append({"comparison": f"plain in {cell}'s space minus plain in its own", "metric": metric,
                         "verdict": paired_verdict(fixed, own, 0).as_dict()})
    return rows


def scheduler_rows(runs: Mapping[tuple[str, int], dict]) -> list[dict]:
    """Did each run's scheduler follow turbulence or rotate? One row per run whose scheduler was called: calls,
    median steps between calls and median persistence, the mean overlap of consecutive frozen sets against the
    overlap two random decisions of those sizes would have, the mean Jaccard index, the mean score gap (frozen
    minus unfrozen) on the scores the decisions used and on the full-candidate scores, and the mean agreement
    of each decision with the one the full-candidate scores would make."""
    rows = []
    for (c, s), r in runs.items():
        summary = (r["result"].get("scheduler_log") or {}).get("summary") or {}
        if not summary.get("calls"):
            continue
        between = summary["steps_between"]
        refrozen = summary["refrozen_by_full_scores"]
        rows.append({"cell": c, "seed": s, "calls": summary["calls"],
                     "median steps between calls": float(np.median(between)) if between else None,
                     "median persistence": summary["median_persistence"],
                     "mean overlap": summary["mean_overlap"], "chance overlap": summary["mean_chance_overlap"],
                     "mean Jaccard": summary["mean_jaccard"], "score gap": summary["mean_score_gap"],
                     "full-score gap": summary["mean_full_score_gap"],
                     "agrees with full scores": float(np.mean(refrozen)) if refrozen else None})
    return rows


def window_rows(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int]) -> list[dict]:
    """Dense-window oscillation (``mpq.method.oscillation``) per cell and weight bit-width: reversal, change and
    step-size-driven change rates per weight and step (%), mean over windows then over seeds (SD over seeds of
    the reversal rate), and the fraction of weights that reversed at least once in a window. Empty when the runs
    recorded no windows."""
    rows = []
    for cell in cells:
        records = [runs[(cell, s)]["result"].get("oscillation_windows") for s in seeds_in(runs, cell, seeds)]
        if any(not rec or not any(rec["windows"].values()) for rec in records):
            continue
        for bits in records[0]["windows"]:
            per_seed = {key: [100 * float(np.mean([w[key] for w in rec["windows"][bits]])) for rec in records]
                        for key in ("reversal_rate", "change_rate", "step_driven_rate", "oscillating_fraction")}
            rows.append({"cell": cell, "w bits": int(bits), "seeds": len(records),
                         "reversals % per weight-step": float(np.mean(per_seed["reversal_rate"])),
                         "SD": float(np.std(per_seed["reversal_rate"], ddof=1)) if len(records) > 1 else float("nan"),
                         "changes % per weight-step": float(np.mean(per_seed["change_rate"])),
                         "step-driven % per weight-step": float(np.mean(per_seed["step_driven_rate"])),
                         "weights oscillating % per window": float(np.mean(per_seed["oscillating_fraction"]))})
    return rows


def ablation_metrics(profile: str, setup: str, cells: Sequence[str], seeds: Sequence[int],
                     runs: Mapping[tuple[str, int], dict], t6: Sequence[Mapping], t1: pd.DataFrame,
                     distortion: pd.DataFrame, flips: Sequence[Mapping], distortions: Sequence[Mapping], *,
                     space: Sequence[Mapping] = (), scheduler: Sequence[Mapping] = (),
                     windows: Sequence[Mapping] = (), blocks: Mapping[str, dict] | None = None) -> dict:
    """reports/metrics/ablation.json: the scale, every run's record, T1 and the distortion per cell, the tables of
    verdicts (T6, the search-space confound, F2/T1, F3/F4), each with its note, the scheduler's record per run and
    the dense-window oscillation per cell, and each seed's block record (``block_records``: its wall time).
    Strict JSON (no NaN)."""
    return json_ready({"profile": profile, "setup": setup, "seeds": list(seeds), "cells": list(cells),
                       "runs": run_records(runs), "blocks": dict(blocks or {}),
                       "t6": {"rows": list(t6), "note": rows_note(t6)},
                       "space": {"rows": list(space), "note": rows_note(space) if space else ""},
                       "scheduler": {"rows": list(scheduler), "summary": scheduler_line(scheduler)},
                       "windows": list(windows),
                       "t1": t1.to_dict(orient="records"), "distortion": distortion.to_dict(orient="records"),
                       "flip_verdicts": {"rows": list(flips), "note": rows_note(flips)},
                       "distortion_verdicts": {"rows": list(distortions), "note": rows_note(distortions)}})


def scheduler_line(rows: Sequence[Mapping]) -> str:
    """Did the scheduler follow turbulence or rotate? One sentence over ``scheduler_rows``: calls, the median
    decision's persistence, and consecutive frozen sets' overlap against chance (above chance: it kept turbulent
    layers frozen; at or below: it rotated). With ``sched_full`` (this package's variant: scores over the full
    candidate list) among the runs, one sentence for the paper's scheduler cells and one for sched_full."""
    paper = [r for r in rows if r.get("cell") != "sched_full"]
    full = [r for r in rows if r.get("cell") == "sched_full"]
    if not full or not paper:
        return _scheduler_sentence(rows)
    return (f"{_scheduler_sentence(paper)} With scores over the full candidate list (sched_full, this package's "
            f"variant): {_scheduler_sentence(full)}")


def _scheduler_sentence(rows: Sequence[Mapping]) -> str:
    """``scheduler_line`` for the rows of one cell (or of every cell where all score alike)."""
    paired = [r for r in rows if r["mean overlap"] is not None and r["chance overlap"] is not None]
    if not rows:
        return "No run had a scheduler."
    if not paired:                  # one call per run: no consecutive frozen sets to compare
        return f"Scheduler, {len(rows)} runs: one call each, so no consecutive decisions to compare."
    overlap = float(np.mean([r["mean overlap"] for r in paired]))
    chance = float(np.mean([r["chance overlap"] for r in paired]))
    persistence = float(np.median([r["median persistence"] for r in rows]))
    agree = [r["agrees with full scores"] for r in rows if r["agrees with full scores"] is not None]
    kind = ("kept the same layers frozen more often than chance: it followed persistent turbulence"
            if overlap > 1.5 * chance else
            "shared fewer layers between consecutive frozen sets than chance: it rotated, freezing different "
            "layers at each call" if overlap < chance else
            "shared about as many layers between consecutive frozen sets as chance would")
    line = (f"Scheduler, {len(rows)} runs: {np.mean([r['calls'] for r in rows]):.0f} calls per run, median decision "
            f"lasting {persistence:.0f} optimizer steps; consecutive frozen sets shared {overlap:.2f} layers on "
            f"average against {chance:.2f} by chance, so it {kind}")
    if agree:
        line += (f" (a decision agreed with the one the full-candidate scores would make {100 * np.mean(agree):.0f}% "
                 "of the time, Jaccard)")
    return line + "."


def _words(rows: Sequence[Mapping]) -> str:
    """The rows' words after Holm over the rows (one claim's family), the unadjusted count beside them."""
    return family_counts([Verdict.from_dict(r["verdict"]) for r in rows])


def ablation_findings(t6: Sequence[Mapping], flips: Sequence[Mapping], distortions: Sequence[Mapping],
                      toy_lines: Sequence[str], runs: Mapping[tuple[str, int], dict] | None = None, *,
                      space: Sequence[Mapping] = (), scheduler: Sequence[Mapping] = ()) -> list[str]:
    """Notebook 05's findings (claims C2-C4): T6's verdicts per cell minus plain, the F2/T1 verdicts counted (and
    those clear of zero named), the F3/F4 verdicts with every seed's value and what its densities cannot show, each table's note, and the toy's
    sentences (F1)."""
    lines = []
    judged = [r for r in t6 if "verdict" in r]
    for cell, ref in dict.fromkeys((r["cell"], r.get("reference", "plain")) for r in judged):
        said = ("the paper: higher" if cell in T6_EXPECTED else
                "this package's scheduler variant, scores over the full candidate list; the paper has no such cell")
        lines.append(f"T6 {cell} minus {ref} ({said}): " + "; ".join(
            f"{r['metric']} {r['verdict']['text']}" for r in judged
            if r["cell"] == cell and r.get("reference", "plain") == ref))
    if judged:
        lines.append(f"T6: {rows_note(judged)}.")
    for r in space:
        lines.append(f"T6 confound, {r['comparison']} ({r['metric']}): {r['verdict']['text']}")
    if scheduler:
        lines.append(scheduler_line(scheduler))
    if flips:
        clear = [f"{r['comparison']}, {r['w bits']}-bit: {r['verdict']['word']}" for r in flips
                 if Verdict.from_dict(r["verdict"]).clear and Verdict.from_dict(r["verdict"]).judged]
        lines.append("F2/T1 late flip rate with 2-bit candidates minus without (no2bit), per cell and weight "
                     f"bit-width (the paper: higher with 2-bit; the spread over seeds is the only noise): {_words(flips)}"
                     + (f" ({'; '.join(clear)})" if clear else "") + f"; {rows_note(flips)}.")
    for r in distortions:
        lines.append(f"F3/F4 BN-output distortion (% of the feature variance), {r['comparison']} (the paper: lower "
                     f"with IDM): {r['verdict']['text']} (per seed "
                     + " / ".join(f"{d:+.2f}" for d in r["verdict"]["per_seed"]) + ")")
    if distortions:
        lines.append(f"F3/F4: {rows_note(distortions)}; the calibration images' own noise is not counted (the "
                     "same images for every run, not kept per image).")
        lines.append(DENSITY_CAVEAT)
    lines.append("F1 toy: " + "; ".join(toy_lines))
    if runs is not None:
        lines.append(collapse_line(runs))
    lines.append("T6's \"lowest\" is each layer's lowest current weight and activation candidates (the scheduler's "
                 "last decision applied, the supernet's own space: W3A3 on a frozen ResNet layer); its uniform "
                 "\"W2A2\" ignores that decision and is shown beside it only.")
    return lines


def _window_reversal(run: Mapping, bits: str) -> float | None:
    """Mean reversal rate (% per weight and step) over a run's dense windows at ``bits``, None without windows."""
    windows = ((run["result"].get("oscillation_windows") or {}).get("windows") or {}).get(bits)
    return 100 * float(np.mean([w["reversal_rate"] for w in windows])) if windows else None


def oscillation_figure(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seeds: Sequence[int], title: str):
    """F2's analogue as the comparison it makes: per weight bit-width and cell, the flip rate of the integer weight
    levels in the second half of training (left; between measurements every ``ablation.monitor_every``) and the
    reversal rate in the dense windows (right; every step, at a fixed step size), one dot per seed and a bar at
    the mean over seeds. The cells with 2-bit weights sit beside no2bit, the run without them."""
    import matplotlib.pyplot as plt

    first = runs[(cells[0], seeds[0])]["result"]
    bit_list = list(first["oscillation"]["flip_rate"])
    dense = any(_window_reversal(r, bit_list[0]) is not None for r in runs.values())
    panels = [("flip rate, 2nd half, between measurements (%)", lambda r, b: late_flip_rate(r, b))]
    if dense:
        panels.append(("reversals per weight and step, dense windows (%)", _window_reversal))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    width = 0.8 / len(cells)
    for ax, (label, value) in zip(axes[0], panels):
        for k, cell in enumerate(cells):
            for i, bits in enumerate(bit_list):
                vals = [v for v in (value(runs[(cell, s)], bits) for s in seeds_in(runs, cell, seeds)) if v is not None]
                if not vals:
                    continue
                x = i - 0.4 + width * (k + 0.5)
                ax.scatter([x] * len(vals), vals, s=14, color=colors[k % len(colors)], alpha=0.7,
                           label=cell if i == 0 else None)
                ax.hlines(np.mean(vals), x - width * 0.4, x + width * 0.4, color=colors[k % len(colors)], lw=2)
        ax.set_xticks(range(len(bit_list)), [f"{b}-bit weights" for b in bit_list], fontsize=10)
        ax.set_ylabel(wrap(label, 2.6, 10), fontsize=10)       # two lines within the axes' height
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=10, title="cell (dots: seeds, bar: mean)", title_fontsize=10, ncol=len(cells),
                      loc="lower left", bbox_to_anchor=(0, 1.01), frameon=False)       # above the dots, not on them
    suptitle(fig, title, 10, dpi=110)
    return fig


def density_figure(runs: Mapping[tuple[str, int], dict], cells: Sequence[str], seed: int, title: str):
    """F3/F4's analogue: density of one layer's BN outputs at the lowest configuration and at the max
    path (W6A6), one panel per cell (e.g. without and with IDM), for one seed and one layer; each panel's title
    names them and gives that layer's relative MSE beside the run's mean over layers (the table and verdicts
    below cover every layer and seed)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(cells), figsize=(4.6 * len(cells), 4.4), sharex=True, sharey=True, squeeze=False)
    for ax, cell in zip(axes[0], cells):
        run = runs[(cell, seed)]
        layer = run["result"]["distortion_sample_layer"]
        sns.kdeplot(x=run["features"]["high"], ax=ax, label="max path (W6A6)", fill=True, alpha=0.3)
        sns.kdeplot(x=run["features"]["low"], ax=ax, label="lowest point", fill=True, alpha=0.3)
        distortion = run["result"]["bn_distortion"][layer]
        ax.set_xlabel(f"BN output of {layer}", fontsize=10)
        ax.set_title(f"{cell}, seed {seed}, layer {layer}: relative MSE {100 * distortion:.2f}%\n"
                     f"(mean over layers: {100 * np.mean(list(run['result']['bn_distortion'].values())):.2f}%)",
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=10)
    suptitle(fig, title, 10)
    return fig
