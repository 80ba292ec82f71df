"""The retraining check judged and shown (notebook 04): a retrained configuration against the uniform LSQ model it
holds, over training seeds (``mpq.studies.retrain_check`` trains both arms in the search stage).

The paired verdict "configuration minus uniform" has both noise sources (``mpq.studies.stats``): "holds" if the
configuration is higher, "reversed here" if it is lower beyond the noise, "on par" where the equivalence test
passes, otherwise inconclusive with the smallest effect the seeds could have shown; fewer than 3 seeds: not judged.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import torch

from mpq.studies.stats import paired_verdict

CHECK_EXPECTED = 1      # the configuration holds the uniform model layer by layer: it should score at least as well


def judge_retrain_check(check: Mapping[str, Any] | None, labels: torch.Tensor) -> dict[str, Any] | None:
    """search.json's "retrain_check": the check (``run_retrain_check``'s, with both arms' test predictions) with
    its paired verdict over the seeds on the test images (``labels``), without the predictions; None stays None."""
    if check is None:
        return None
    truth = labels.numpy()
    correct = {arm: p.numpy() == truth for arm, p in check["preds"].items()}
    verdict = paired_verdict(correct["configuration"], correct["uniform"], expected=CHECK_EXPECTED)
    return {**{k: check[k] for k in ("model", "level", "uniform_bits", "seeds", "gbitops", "test_acc", "health")},
            "verdict": verdict.as_dict(), "seconds": check["seconds"]}


def retrain_check_table(check: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 04's table of the check: per seed, both arms' top-1 (%), their difference and each run's health."""
    rows = []
    for i, seed in enumerate(check["seeds"]):
        a, b = (100 * check["test_acc"][arm][i] for arm in ("configuration", "uniform"))
        rows.append({"seed": seed, f"level {check['level']} configuration, retrained (%)": a,
                     f"uniform W{check['uniform_bits']}A{check['uniform_bits']} LSQ (%)": b, "difference (points)": a - b,
                     "runs": ", ".join("collapsed" if h[i]["collapsed"] else "healthy"
                                       for h in (check["health"]["configuration"], check["health"]["uniform"]))})
    return pd.DataFrame(rows)


def retrain_check_finding(check: Mapping[str, Any] | None) -> str:
    """One line for notebook 04's findings: the verdict on "the retrained configuration scores at least as well
    as the uniform model it holds"."""
    if check is None:
        return "This profile runs no retraining check."
    k = check["uniform_bits"]
    return (f"{check['model']}: the level-{check['level']} configuration retrained ({check['gbitops']['configuration']:.4f} "
            f"G-BitOPs) against uniform W{k}A{k} LSQ ({check['gbitops']['uniform']:.4f} G-BitOPs), "
            f"{len(check['seeds'])} seeds each: {check['verdict']['text']}.")
