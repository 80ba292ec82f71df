"""Notebooks 02 and 03's tables and findings (claim C1, the uniform rows of Tables 2-4), from the supernet and
baselines stages' results (``mpq.studies.supernets.load_supernets``, ``load_baselines``).

Presentation only: the training stages do not import this module, so editing it trains nothing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import pandas as pd


def cost_summary(cost: pd.DataFrame) -> pd.DataFrame:
    """Notebook 02's cost table in one row per model, from the per-layer table at uniform W4A4 (``cost_rows``,
    written to ``reports/tables/supernet_cost.csv``): the searchable and fixed layers, MACs, BitOPs, the fixed
    layers' share of them and the costliest searchable layer's."""
    rows = []
    for model, g in cost.groupby("model", sort=False):
        fixed = g.fixed.astype(bool)
        total = int(g.bitops.sum())
        top = g[~fixed].sort_values("bitops", ascending=False, kind="stable").iloc[0]
        rows.append({"model": model, "searchable layers": int((~fixed).sum()), "fixed layers (8x8)": int(fixed.sum()),
                     "MACs (M)": g.macs.sum() / 1e6, "G-BitOPs": total / 1e9,
                     "fixed layers' share (%)": 100 * g.bitops[fixed].sum() / total,
                     "costliest searchable layer": top["name"],
                     "its share (%)": 100 * top.bitops / total})
    return pd.DataFrame(rows)


def supernet_table(results: Mapping[str, Mapping]) -> pd.DataFrame:
    """Notebook 02's table: per model, FP and uniform WkAk top-1 (%) (the lowest uniform row ignores the
    scheduler's last decision), the supernet's own lowest point, training time, layers frozen at the end, health."""
    return pd.DataFrame([{"model": name, "FP (%)": 100 * r["fp_test_acc"],
                          **{f"W{b}A{b} (%)": 100 * u["test_acc"] for b, u in r["uniform"].items()},
                          "own lowest point (%)": 100 * r["lowest"]["test_acc"],
                          "training (s)": r["train_seconds"],
                          "layers frozen at the end": len(r["frozen_at_end"]),
                          "run": "collapsed" if r["health"]["collapsed"] else "healthy"}
                         for name, r in results.items()])


def supernet_findings(results: Mapping[str, Mapping]) -> list[str]:
    """Notebook 02's findings (claim C1): per model its uniform accuracies from one training and the gaps to FP."""
    lines = []
    for name, r in results.items():
        u = {int(b): 100 * v["test_acc"] for b, v in r["uniform"].items()}
        lines.append(f"{name}: one supernet, trained once ({r['epochs']} epochs over {r['train_images']} images, "
                     f"{r['train_seconds']:.0f} s), gives "
                     + ", ".join(f"W{b}A{b} {a:.2f}%" for b, a in sorted(u.items()))
                     + f" with no retraining; FP {100 * r['fp_test_acc']:.2f}%, so "
                     + " and ".join(f"W{b}A{b} is {r[f'gap_w{b}a{b}_points']:.2f}" for b in (4, 2)
                                    if f"gap_w{b}a{b}_points" in r)
                     + " points under FP" + ("" if 2 in r["w_bit_choices"] else
                                              f" (candidates {min(r['w_bit_choices'])}..{max(r['w_bit_choices'])}: "
                                              "model_bits)"))
    for name, r in results.items():
        low, health = r["lowest"], r["health"]
        lines.append(f"{name}: its own lowest point (each layer at the lowest of its candidates after the scheduler's "
                     f"last decision, {low['layers_above_floor']} layers above the uniform floor) scores "
                     f"{100 * low['test_acc']:.2f}% at {low['gbitops']:.4f} G-BitOPs; the uniform lowest row above "
                     "ignores that decision and is shown beside it only.")
        lines.append(f"{name}: training " + ("collapsed: " + health["why"] if health["collapsed"] else
                     f"stayed healthy (finite losses; max path {100 * health['max_path_heldout_acc']:.2f}% on "
                     f"{health['heldout_images']} held-out images, FP {100 * health['fp_heldout_acc']:.2f}%)"))
    return lines


def baseline_comparison(results: Mapping[str, Mapping[int, Mapping]], supernet: Mapping[str, Mapping]
                        ) -> pd.DataFrame:
    """Notebook 03's table: per model and bit-width, FP, LSQ alone, the supernet at the same uniform WkAk
    (``supernet``: the ``models`` of reports/metrics/supernet.json, levels as strings) and their difference."""
    rows = []
    for name, per_bits in results.items():
        s = supernet.get(name, {})
        for bits, r in per_bits.items():
            sn = s.get("uniform", {}).get(str(bits), {}).get("test_acc")
            rows.append({"model": name, "bits (W = A)": bits, "FP (%)": 100 * s["fp_test_acc"] if s else None,
                         "LSQ alone (%)": 100 * r["test_acc"], "supernet (%)": 100 * sn if sn is not None else None,
                         "supernet minus LSQ (points)": 100 * (sn - r["test_acc"]) if sn is not None else None,
                         "G-BitOPs": r["gbitops"], "size (MiB)": r["size_mib"], "LSQ training (s)": r["train_seconds"]})
    return pd.DataFrame(rows)


def baseline_findings(compare: pd.DataFrame, epochs: int, train_images: int) -> list[str]:
    """Notebook 03's findings: per model the LSQ accuracies and the supernet's difference to them, and the
    baselines' budget (``epochs`` over ``train_images``)."""
    lines = []
    for name, g in compare.groupby("model", sort=False):
        lines.append(f"{name}: LSQ trained alone " + ", ".join(f"W{b}A{b} {a:.2f}%" for b, a in
                                                                 zip(g["bits (W = A)"], g["LSQ alone (%)"]))
                     + "; the supernet minus LSQ alone: " + ", ".join(
                         f"{d:+.2f} at W{b}A{b}" for b, d in zip(g["bits (W = A)"], g["supernet minus LSQ (points)"])
                         if pd.notna(d)) + " points")
    lines.append(f"Each baseline trains {epochs} epochs over {train_images} images with the supernet's "
                 "recipe on the max path only; the supernet is one model for every row.")
    return lines


def read_supernet_models(path: str | Path = "reports/metrics/supernet.json") -> dict[str, dict]:
    """The per-model results that notebook 02 wrote (``models`` of its metrics; uniform levels as strings)."""
    return json.loads(Path(path).read_text())["models"]
