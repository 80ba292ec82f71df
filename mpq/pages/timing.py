"""What the run cost: each stage's wall time (the stage table of the README and the entry page's environment
table) and A1, the seconds to serve K budgets by one supernet and K searches against K retrainings."""
from __future__ import annotations

import html
import math

import pandas as pd

from mpq.pages.metrics import MODEL_NAMES, ordered_levels
from mpq.pages.tables import folded, table_html


def amortisation_rows(m: dict, ks: range = range(1, 11)) -> list[dict]:
    """A1: seconds to serve K budgets, one supernet training + K searches vs K retrainings, per model.

    Per budget, search costs the greedy front's wall time divided by its number of levels (one walk serves
    every level) and retraining the mean measured retraining time of the searched configurations."""
    rows = []
    sn = m.get("supernet", {}).get("models", {})
    for name, r in m.get("search", {}).get("models", {}).items():
        levels = ordered_levels(r)
        retrain = [r["levels"][lv]["retrained"]["train_seconds"] for lv in levels if "retrained" in r["levels"][lv]]
        if name not in sn or not retrain:
            continue
        train, search = sn[name]["train_seconds"], r["greedy_seconds"] / len(levels)
        per_retrain = sum(retrain) / len(retrain)
        for k in ks:
            rows.append({"model": name, "budgets K": k, "one-shot: training + K searches (s)": train + k * search,
                         "K retrainings (s)": k * per_retrain,
                         "ratio one-shot / retraining": (train + k * search) / (k * per_retrain)})
    return rows


def break_even(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        if r["ratio one-shot / retraining"] <= 1 and r["model"] not in out:
            out[r["model"]] = r["budgets K"]
    return out


STAGES = [("fp_train", "01_fp_train", "FP checkpoints every other stage starts from"),
          ("supernet", "02_supernet", "the supernets; C1's uniform rows"),
          ("baselines", "03_baselines", "uniform LSQ models trained alone (T2-T4 rows)"),
          ("replicate@<seed>", None, "ResNet-20's T2 rows again for each extra training seed"),
          ("model_replicate@<model>-<seed>", None,
           "MobileNetV2's and EfficientNet-Lite's C1, C6 and F5 rows again for each extra training seed"),
          ("budget@<factor>", None, "ResNet-20's T2 rows with every training's epochs multiplied (F7)"),
          ("search_study", None, "the search settings and equal-compute search baselines on ResNet-20 (S1)"),
          ("search", "04_search", "T2-T4, T2 with seeds, F5, F6, F7, S1, A1's times"),
          ("ablation@<seed>", None, "the ResNet-20 interference runs behind F2/T1, F3/F4, T6, one block per seed"),
          ("bit_interference", "05_bit_interference", "F1, F2/T1, F3/F4, T6"),
          ("transfer", "06_transfer", "T5"),
          ("<stage>_page", None, "notebooks 01-04 and 06 as pages, from the stages' results (all of them)"),
          ("report", None, "the HTML pages and reports/index.html (seconds)")]


def stage_times(m: dict, envs: dict) -> dict:
    """Wall seconds per stage of the committed run: notebook stages from their executed notebooks, the
    matrix stages summed over their runs (training + search + retraining)."""
    out = {}
    for stage, nb, _ in STAGES:         # a compute stage's record; else (a run before the split) its notebook's time
        if stage in envs:
            out[stage] = envs[stage]["stage_seconds"]
        elif nb and nb in envs:
            out[stage] = envs[nb]["stage_seconds"]
    pages = [envs[nb]["stage_seconds"] for stage, nb, _ in STAGES if nb and nb in envs and stage in envs]
    if pages:                           # the notebooks that only present: their compute stage has its own record
        out["<stage>_page"] = sum(pages)
    blocks = m.get("ablation", {}).get("blocks", {})
    ab = m.get("ablation", {}).get("runs", {})
    if blocks:                  # a block's wall time: its runs overlap (ablation.jobs at a time)
        out["ablation@<seed>"] = sum(b["seconds"] for b in blocks.values())
    elif ab:
        out["ablation@<seed>"] = sum(r.get("train_seconds", 0) + r.get("search_seconds", 0) for r in ab.values())
    reps = m.get("search", {}).get("seeds", {}).get("replicate_seconds", {})
    if reps:
        out["replicate@<seed>"] = sum(sum(v.values()) for v in reps.values())
    others = m.get("search", {}).get("model_seeds", {}).get("replicate_seconds", {})
    if others:
        out["model_replicate@<model>-<seed>"] = sum(sum(v.values()) for v in others.values())
    budget = m.get("search", {}).get("budget", {}).get("seconds", {})
    if budget:
        out["budget@<factor>"] = sum(sum(v.values()) for v in budget.values())
    study = m.get("search", {}).get("search_study", {})
    if study.get("stage_seconds"):
        out["search_study"] = study["stage_seconds"]
    return out


def stage_kinds(m: dict, envs: dict) -> dict:
    """The CPU kind (``torch.backends.cpu.get_cpu_capability()``) each stage of ``stage_times`` ran on, where its
    record names one: a compute stage's or its notebook's record, the page notebooks' records together, the
    ablation's runs together ("AVX2/AVX512" where a stage's parts ran on both)."""
    out = {}
    for stage, nb, _ in STAGES:
        env = envs.get(stage) or (envs.get(nb) if nb else None)
        if env and env.get("cpu_capability"):
            out[stage] = env["cpu_capability"]
    pages = {envs[nb].get("cpu_capability") for stage, nb, _ in STAGES if nb and nb in envs and stage in envs}
    if pages - {None}:
        out["<stage>_page"] = "/".join(sorted(pages - {None}))
    runs = {r.get("cpu_capability") for r in m.get("ablation", {}).get("runs", {}).values()} - {None}
    if runs:
        out["ablation@<seed>"] = "/".join(sorted(runs))
    return out


def stage_rows(m: dict, envs: dict) -> list[dict]:
    """Each stage's row of the README's stage table and the entry page's environment table, in STAGES' order: the
    stage, what it regenerates, its wall seconds (``stage_times``) and CPU kind (``stage_kinds``), and the device,
    threads and torch version its record names (empty where none does). Both tables print these rows and their
    sum, so they agree."""
    times, kinds = stage_times(m, envs), stage_kinds(m, envs)
    rows = []
    for stage, nb, what in STAGES:
        if stage in times:
            env = envs.get(stage) or (envs.get(nb) if nb else None) or {}
            rows.append({"stage": stage, "what": what, "seconds": times[stage], "kind": kinds.get(stage, ""),
                         "device": env.get("device", ""), "threads": env.get("threads", ""),
                         "torch": env.get("torch", "")})
    return rows


def amortisation_html(m: dict) -> str:
    rows = amortisation_rows(m)
    if not rows:
        return "<p class='pending'>Not available: the search stage recorded no retraining times.</p>"
    df = pd.DataFrame(rows)
    wide = df.pivot(index="budgets K", columns="model", values="ratio one-shot / retraining").reset_index()
    wide.columns = ["budgets K"] + [f"{MODEL_NAMES.get(c, c)}: one-shot / retraining time" for c in wide.columns[1:]]
    even = break_even(rows)
    sentence = "; ".join(f"{MODEL_NAMES.get(n, n)} from K = {k}" for n, k in even.items()) or "at no K up to 10"
    beyond = []
    for n in {r["model"] for r in rows} - set(even):
        first = next(r for r in rows if r["model"] == n and r["budgets K"] == 1)
        train_s = m["supernet"]["models"][n]["train_seconds"]
        search_s = first["one-shot: training + K searches (s)"] - train_s
        retrain_s = first["K retrainings (s)"]
        beyond.append(f"{MODEL_NAMES.get(n, n)} from K = {math.ceil(train_s / (retrain_s - search_s))}"
                      if retrain_s > search_s else f"{MODEL_NAMES.get(n, n)} never, as one search here takes "
                                                   "longer than one retraining")
    if beyond:
        sentence += " (extrapolated with the same per-budget times: " + "; ".join(sorted(beyond)) + ")"
    sn = m["supernet"]["models"]
    detail = "; ".join(
        f"{MODEL_NAMES.get(n, n)}: training {sn[n]['train_seconds']:.0f} s, one search "
        f"{r['greedy_seconds'] / len(ordered_levels(r)):.0f} s, one retraining "
        f"{[x for x in rows if x['model'] == n][0]['K retrainings (s)']:.0f} s"
        for n, r in m["search"]["models"].items() if n in sn and any(x["model"] == n for x in rows))
    return (f"<p>Measured on this run ({detail}). The one-shot route is cheaper in wall time {sentence}. "
            "Accuracies of the two routes are in T2-T4 above. Here one-shot training runs 4 paths per step for as "
            "many epochs as one retraining, so it costs several retrainings; the paper trains its supernet 150 "
            "epochs against 90 per retraining, which counted in epochs alone breaks even at K = 2.</p>"
            + folded("Table: one-shot over retraining time for K = 1 to 10 budgets, per model", table_html(wide)))


def environment_html(m: dict, envs: dict) -> str:
    """The entry page's table of stages: the README's stage rows (``stage_rows``) with their device, threads and torch
    version, the throughput benchmark's machine, and their total."""
    stages = stage_rows(m, envs)
    rows = [f"<tr><td>{html.escape(r['stage'])}</td><td>{r['seconds'] / 60:.1f}</td><td>{html.escape(str(r['device']))}"
            f"</td><td>{html.escape(r['kind'])}</td><td>{r['threads']}</td><td>{html.escape(str(r['torch']))}</td></tr>"
            for r in stages]
    th = m.get("throughput")
    if th:
        rows.append(f"<tr><td>throughput benchmark</td><td></td><td>cpu</td><td>{th.get('cpu_capability')}</td>"
                    f"<td>{th.get('threads', '')}</td><td></td></tr>")
    kinds = sorted({k for r in stages for k in r["kind"].split("/") if k})
    mixed = (f" ({' and '.join(kinds)} CPUs: compare a stage only with the same kind's)" if len(kinds) > 1 else "")
    return (f"<p class='meta'>All stages together: {stage_total_minutes(stages)} minutes{mixed}.</p>"
            + folded("Table: each stage's wall time, device, CPU kind, threads and torch version",
                     "<table><tr><th>stage</th><th>minutes</th><th>device</th><th>CPU kind</th><th>threads</th>"
                     "<th>torch</th></tr>" + "".join(rows) + "</table>"))


def stage_total_minutes(rows: list[dict]) -> str:
    """The total of ``stage_rows`` as both tables print it: whole minutes."""
    return f"{sum(r['seconds'] for r in rows) / 60:.0f}"
