"""T2 over training seeds and F7 (the training budget): the replicates' records read, pooled with the main run, and
judged (claim C6; DESIGN.md section 5).

``mpq.studies.replicates`` trains (the ``replicate`` and ``budget`` stages); this module only reads what those runs
wrote (``result.json``, ``predictions.npz``) and the main run's metrics, so the training stages do not depend on
the statistics. A *record* is one training run of one model in the replicates' shape::

    {"seed", "test_acc": {row: accuracy}, "gaps": {level: {"no_retrain_minus_retrained", "paired_se"}},
     "test_images", ["budget"], ["correct": {row: per-image correctness, (images,) bool}]}

Every record of a study scores the same test images in the same order (one data split), so where every record
keeps its per-image correctness a comparison's verdict pairs the images exactly (``paired_verdict``); otherwise it
uses the stored per-seed paired SEs (``verdict``), or, for rows whose pairing was never stored, the unpaired SE of
two accuracies (``unpaired_se``, an upper bound). Each table of verdicts comes with ``rows_note``.

Directions (``expected``, the paper's claim):

- no retraining minus retrained, per level: +1. The paper (C6) says the retraining-free configuration matches or
  beats the same configuration retrained; a difference clear of zero upwards "holds" (it beats it), clear of zero
  downwards is "reversed here" (retraining helps: the claim fails at this scale), an interval around zero is "on
  par" where the equivalence test passes (``stats.EQUIVALENCE_MARGIN``) and "inconclusive" otherwise, its
  smallest detectable effect saying what the design could have found. Fewer than 3 seeds: not judged.
- the supernet at uniform bits minus LSQ trained alone for those bits (C1, ``uniform_expected``): +1 above W2A2
  (one set of weights serves each bit-width on par with or better than LSQ trained for it alone), none at W2A2,
  where the paper's C2 expects the coupling to hurt ("higher"/"lower").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mpq.studies.stats import Verdict, mean_sd_half, paired_verdict, unpaired_se, verdict

RETRAIN_EXPECTED = 1         # C6: no-retrain minus retrained >= 0 (see the module docstring)
SAMPLING_EXPECTED = 1        # F5: the paper's greedy search finds better configurations than random or evolutionary
SAMPLERS = ("random", "evolutionary")


def uniform_expected(bits: int) -> int:
    """C1's direction for the supernet at uniform WkAk minus LSQ trained alone at k bits: +1 (on par or above)
    above 2 bits; none at W2A2, where the paper's C2 expects the coupling to hurt, so the two claims point
    different ways."""
    return 0 if bits <= 2 else 1


def main_run_record(model: str, seed: int, supernet: Mapping, baselines: Mapping, search: Mapping, *,
                    test_images: int, correct: Mapping[str, np.ndarray] | None = None) -> dict:
    """The main run of ``model`` (``reports/metrics/{supernet,baselines,search}.json``, their ``models``
    entries) in a replicate's shape, so it pools with the replicates; ``correct``: its per-image correctness by
    row name where the caller still holds the predictions (notebook 04 holds the greedy and retrained ones)."""
    acc = {f"supernet W{b}A{b}": u["test_acc"] for b, u in supernet[model]["uniform"].items()}
    acc |= {f"LSQ W{b}A{b}": r["test_acc"] for b, r in baselines[model].items()}
    gaps = {}
    for level, e in search[model]["levels"].items():
        acc[f"greedy {level}"] = e["greedy"]["test_acc"]
        acc |= {f"{m} {level}": e[m]["test_acc"] for m in SAMPLERS if m in e}
        if "retrained" in e:
            acc[f"retrained {level}"] = e["retrained"]["test_acc"]
            gaps[level] = {k: e["retrained"][k] for k in ("no_retrain_minus_retrained", "paired_se")}
    record = {"seed": seed, "model": model, "test_acc": acc, "gaps": gaps, "test_images": test_images}
    return record | ({"correct": dict(correct)} if correct else {})


def _read_run(folder: Path, missing: str) -> dict:
    """``folder/result.json`` with the per-image correctness of ``folder/predictions.npz`` (data only, no pickles)."""
    path = folder / "result.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {missing}")
    record = json.loads(path.read_text())
    preds = folder / "predictions.npz"
    if preds.is_file():
        record["correct"] = read_correct(preds)
    return record


def read_correct(path: str | Path, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per row of a predictions file (``labels`` and one array of predicted classes per row, data only, no pickles),
    its per-image correctness; with ``labels``, a file scored on other test images is refused."""
    with np.load(path, allow_pickle=False) as p:
        stored = p["labels"]
        if labels is not None and not np.array_equal(stored, np.asarray(labels)):
            raise ValueError(f"{path} holds predictions for other test images than this run's: re-run the stage "
                             "that wrote it")
        return {k: p[k] == stored for k in p.files if k != "labels"}


def load_replicates(root: str | Path, seeds: Sequence[int]) -> list[dict]:
    """The record of each seed's folder under ``root`` (``seed-<s>``), with a clear error for a missing one."""
    return [_read_run(Path(root) / f"seed-{s}", f"run `dvc repro replicate@{s}` (or the whole pipeline)")
            for s in seeds]


def load_budget_runs(root: str | Path, budgets: Sequence[int]) -> list[dict]:
    """The record of each budget's folder (``root/x<budget>``), with a clear error for a missing one."""
    return [_read_run(Path(root) / f"x{b}", f"run `dvc repro budget@{b}` (or the whole pipeline)") for b in budgets]


def record_comparisons(record: Mapping, sampling: bool = False) -> list[tuple[str, str, str, int]]:
    """``(name, arm, reference, expected)`` of every comparison a record holds: each level's greedy configuration
    minus the same configuration retrained (C6), then each uniform bit-width's supernet minus LSQ alone (C1), and
    with ``sampling`` each level's greedy configuration minus random and minus evolutionary search (F5)."""
    out = [(f"greedy {lv} minus retrained", f"greedy {lv}", f"retrained {lv}", RETRAIN_EXPECTED)
           for lv in record["gaps"]]
    for name in record["test_acc"]:
        lsq = "LSQ" + name[len("supernet"):]
        if name.startswith("supernet W") and lsq in record["test_acc"]:
            bits = int(name[len("supernet W"):].split("A")[0])
            out.append((f"{name} minus LSQ alone", name, lsq, uniform_expected(bits)))
    if sampling:
        out += [(f"greedy {lv} minus {m}", f"greedy {lv}", f"{m} {lv}", SAMPLING_EXPECTED)
                for lv in record["gaps"] for m in SAMPLERS if f"{m} {lv}" in record["test_acc"]]
    return out


def seed_comparisons(records: Sequence[Mapping]) -> list[dict]:
    """C1, C6 and F5 over training seeds: every comparison of ``record_comparisons`` (with the samplers) that each
    record holds, judged over the records (one per seed; ``comparison_verdict``: both noise sources), with the
    per-seed values."""
    rows = []
    for what, arm, ref, expected in record_comparisons(records[0], sampling=True):
        if not all(arm in r["test_acc"] and ref in r["test_acc"] for r in records):
            continue
        v = comparison_verdict(records, arm, ref, expected)
        rows.append({"comparison": what, "seeds": len(records),
                     "per seed (seed: points)": " / ".join(f"{r['seed']}: {d:+.2f}" for r, d in zip(records, v.per_seed)),
                     "pairing": pairing(records, arm, ref), "verdict": v.as_dict()})
    return rows


def _image_se(record: Mapping, arm: str, ref: str) -> float:
    """One record's SE over images (points) of ``arm - ref``: the stored paired SE of a retraining gap, else the
    unpaired bound from the two accuracies."""
    level = arm[len("greedy "):]
    if arm.startswith("greedy ") and ref == f"retrained {level}" and level in record["gaps"]:
        return 100 * record["gaps"][level]["paired_se"]
    return unpaired_se(record["test_acc"][arm], record["test_acc"][ref], record["test_images"])


def comparison_verdict(records: Sequence[Mapping], arm: str, ref: str, expected: int) -> Verdict:
    """``arm`` minus ``ref`` over ``records`` (one per training seed): paired over images exactly where every record
    keeps both rows' per-image correctness, else from the per-record SEs over images (``_image_se``)."""
    if all(arm in r.get("correct", {}) and ref in r.get("correct", {}) for r in records):
        return paired_verdict(np.stack([r["correct"][arm] for r in records]),
                              np.stack([r["correct"][ref] for r in records]), expected)
    return verdict([100 * (r["test_acc"][arm] - r["test_acc"][ref]) for r in records],
                   [_image_se(r, arm, ref) for r in records], expected)


def pairing(records: Sequence[Mapping], arm: str, ref: str) -> str:
    exact = all(arm in r.get("correct", {}) and ref in r.get("correct", {}) for r in records)
    return "per image" if exact else "per-seed SEs (an upper bound)"


def budget_points(records: Sequence[Mapping]) -> list[dict]:
    """F7's points: per record (the main run and seed replicates at budget 1, the budget runs) and comparison,
    in points, with that run's SE over images."""
    points = []
    for r in records:
        for what, arm, ref, expected in record_comparisons(r):
            v = comparison_verdict([r], arm, ref, expected)
            points.append({"budget (x)": int(r.get("budget", 1)), "seed": r["seed"], "comparison": what,
                           "points": v.diff, "SE over images": v.se_images})
    return points


def budget_rows(records: Sequence[Mapping], epochs: int) -> list[dict]:
    """F7's table: per comparison and training budget, the verdict over the seeds run at that budget (one seed
    beyond the default budget: its paired interval alone) and the per-seed values by seed (``epochs``: the
    default budget's)."""
    groups: dict[int, list[Mapping]] = {}
    for r in records:
        groups.setdefault(int(r.get("budget", 1)), []).append(r)
    rows = []
    for budget, group in groups.items():
        for what, arm, ref, expected in record_comparisons(group[0]):
            if not all(arm in r["test_acc"] and ref in r["test_acc"] for r in group):
                continue
            v = comparison_verdict(group, arm, ref, expected)
            rows.append({"comparison": what, "budget (x)": budget, "epochs": budget * epochs, "seeds": len(group),
                         "per seed (seed: points)": " / ".join(f"{r['seed']}: {d:+.2f}"
                                                               for r, d in zip(group, v.per_seed)),
                         "pairing": pairing(group, arm, ref), "verdict": v.as_dict()})
    return sorted(rows, key=lambda r: (r["comparison"], r["budget (x)"]))


def seed_rows(records: Sequence[Mapping]) -> list[dict]:
    """Per T2 row (every accuracy the records share): mean, SD over seeds and per-seed values, in %. A description
    of each row's spread, not a comparison (those are ``pool_gaps``)."""
    names = [k for k in records[0]["test_acc"] if all(k in r["test_acc"] for r in records)]
    rows = []
    for name in names:
        vals = [100 * r["test_acc"][name] for r in records]
        mean, sd, _ = mean_sd_half(vals)
        rows.append({"row": name, "seeds": len(vals), "top-1 mean (%)": mean, "SD over seeds (points)": sd,
                     "per seed (%)": " / ".join(f"{v:.2f}" for v in vals)})
    return rows


def pool_gaps(records: Sequence[Mapping]) -> list[dict]:
    """T2 with seeds: per level, no-retrain minus retrained over the records (points), judged with both noise
    sources: the spread over seeds and the test images' (``expected`` +1, see the module docstring)."""
    levels = [lv for lv in records[0]["gaps"] if all(lv in r["gaps"] for r in records)]
    rows = []
    for level in levels:
        arm, ref = f"greedy {level}", f"retrained {level}"
        v = comparison_verdict(records, arm, ref, RETRAIN_EXPECTED)
        rows.append({"BitOPs level": level, "seeds": v.n,
                     "paired SE per seed": " / ".join(f"{100 * r['gaps'][level]['paired_se']:.2f}" for r in records),
                     "pairing": pairing(records, arm, ref), "verdict": v.as_dict()})
    return rows
