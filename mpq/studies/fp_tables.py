"""Notebook 01's table and findings, from the FP stage's results (``mpq.studies.fp_models.load_fp_run``).

Presentation only: the FP stage does not import this module, so editing it trains nothing.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd


def fp_table(metrics: Mapping[str, Mapping]) -> pd.DataFrame:
    """Notebook 01's results table: one row per model (test top-1 in %, size, budget, wall time)."""
    return pd.DataFrame([{"model": n, "test top-1 (%)": 100 * m["test_acc"], "parameters": m["params"],
                          "width": m["width_mult"], "epochs": m["epochs"], "training images": m["train_images"],
                          "training (s)": m["train_seconds"], "training images/s": m["train_img_per_s"]}
                         for n, m in metrics.items()])


def fp_findings(metrics: Mapping[str, Mapping]) -> list[str]:
    """One findings line per model: the FP starting points of the paper's Tables 2-4."""
    return [f"{n} (width {m['width_mult']}, {m['params']:,} parameters): {100 * m['test_acc']:.2f}% top-1 after "
            f"{m['epochs']} epochs, {m['train_seconds']:.0f} s of training ({m['train_img_per_s']:.0f} images/s)"
            for n, m in metrics.items()]
