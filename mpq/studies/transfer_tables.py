"""What notebook 06 shows of the transfer study (T5; claim C6): tables, the figure, the verdicts, the metrics
and the findings, all read from a ``TransferResult`` (``mpq.studies.transfer``: ``run_transfer`` trains,
``load_transfer`` reads the ``transfer`` stage's folder).

Nothing here trains: the training stage (``python -m mpq.studies.transfer``) does not import this module, so a
change to a table, the figure, a caption or how verdicts are judged re-runs only the page. Wall times (each run's
fine-tuning and search seconds, the stage's) are kept out of the stage's folder, in ``reports/stages/transfer.json``;
``load_transfer`` merges them back into the records, where T5 and the metrics show them.

Pieces: ``stage_passes`` and ``passes_note`` (the stage's compute), ``budget_table``, ``choice_table`` and
``grid_table`` (every arm's rate and the grid it was chosen from), ``fp_curves``, ``convergence_curves`` and
``convergence_table`` (is the budget enough for every arm?), ``t5_table`` (T5), ``paired_differences``,
``paired_comparisons``, ``comparison_table`` and ``comparison_note`` (the verdicts, through
``mpq.studies.stats.paired_verdict``: per seed, this method minus the other arm on the same test images, with both
the seed spread and the test-image noise), ``collapsed_runs``, ``transfer_metrics`` (the JSON),
``transfer_figure`` and ``transfer_findings``.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from mpq.config import ModelSpec
from mpq.studies.figure_text import readable, suptitle
from mpq.studies.stats import json_ready, paired_verdict, table_note
from mpq.studies.transfer import (FROM_FP, SUPERNET_ARMS, Budget, TransferConfig, TransferResult, accuracy,
                                  arm_family, lsq_arm)

T5_DISPLAY = {"top-1 mean": "top-1 mean (%)", "top-1 SD": "top-1 SD (points)",
              "fine-tune s (per run)": "fine-tuning (s, per run)", "search s": "search (s)"}


def stage_passes(result: TransferResult) -> dict[str, int]:
    """The stage's forward/backward passes of one batch, counted from its runs: the grid, the compared runs (each
    supernet run once, not once per level), the longer runs of the convergence check, and the total."""
    compared = {(r["target"], r["arm"], r["seed"]): r["passes"] for r in result.records}
    out = {"grid": sum(r["passes"] for r in result.grid), "compared runs": sum(compared.values()),
           "longer runs": sum(r["passes"] for r in result.longer)}
    return {**out, "total": sum(out.values())}


def passes_note(result: TransferResult) -> str:
    """``stage_passes`` in words: "N passes: grid g (k runs), compared runs c, longer runs l"."""
    p = stage_passes(result)
    return (f"{p['total']} passes: grid {p['grid']} ({len(result.grid)} runs), compared runs {p['compared runs']}, "
            f"longer runs {p['longer runs']}")


def budget_table(result: TransferResult) -> pd.DataFrame:
    """Per target and arm of the compared runs: its own rate, epochs, optimizer steps and passes (the passes equal
    within a target)."""
    rows = []
    for (target, arm), g in pd.DataFrame(result.records).groupby(["target", "arm"], sort=False):
        rows.append({"target": target, "arm": arm, "family": arm_family(arm), "lr": g.lr.iloc[0],
                     "epochs": int(g.epochs.iloc[0]), "optimizer steps": int(g.steps.iloc[0]),
                     "passes": int(g.passes.iloc[0]), "runs": g.seed.nunique()})
    return pd.DataFrame(rows)


def choice_table(choices: Sequence[Mapping]) -> pd.DataFrame:
    """Every arm's rate choice: per target and arm, the starting grid, the final one after widening, the chosen rate
    with its held-out top-1 (%), the widenings, and whether the choice lies inside the final grid (not at an edge)."""
    cols = ["target", "arm", "starting grid", "grid", "chosen", "heldout top-1", "widenings", "inside"]
    return pd.DataFrame([{k: (", ".join(f"{x:g}" for x in c[k]) if k.endswith("grid") else c[k]) for k in cols}
                         for c in choices], columns=cols)


def grid_table(grid: Sequence[Mapping]) -> pd.DataFrame:
    """The learning-rate grids: per target, arm and rate tried (``round``: the widening that added it, 0 for the
    starting grid), the run's compute and the held-out top-1 it was chosen by (%)."""
    cols = ["target", "arm", "lr", "round", "seed", "train images", "epochs", "steps", "passes", "heldout top-1",
            "max path heldout top-1", "losses finite", "chosen"]
    return pd.DataFrame(list(grid), columns=cols)


def fp_curves(result: TransferResult) -> list[dict]:
    """The FP fine-tuning curves on held-out images: per FP run (every seed at the budget, and the longer run), its
    held-out top-1 (%) after each epoch against the passes made by then."""
    out = []
    runs = ([dict(r, multiple=1) for r in result.records if r["arm"] == "FP"]
            + [r for r in result.longer if r["arm"] == "FP"])
    for r in runs:
        per_epoch = result.budgets[r["target"]].steps_per_epoch
        out.append({"target": r["target"], "arm": "FP", "seed": r["seed"], "multiple": r["multiple"], "lr": r["lr"],
                    "passes": [per_epoch * (i + 1) for i in range(len(r["curve"]))], "heldout top-1": r["curve"]})
    return out


def convergence_curves(result: TransferResult) -> list[dict]:
    """Every quantized arm's convergence check as a curve of two points: the held-out score its rate was chosen by
    at the budget (the same seed's compared run) and at ``curve_multiple`` budgets, against the passes (FP's whole
    curves: ``fp_curves``)."""
    out = []
    for longer in (r for r in result.longer if r["arm"] != "FP"):
        base = next(r for r in result.records if (r["target"], r["arm"], r["seed"]) ==
                    (longer["target"], longer["arm"], longer["seed"]))
        out.append({"target": longer["target"], "arm": longer["arm"], "seed": longer["seed"],
                    "multiple": longer["multiple"], "lr": longer["lr"], "passes": [base["passes"], longer["passes"]],
                    "heldout top-1": [base["selection top-1"], longer["selection top-1"]]})
    return out


def convergence_table(result: TransferResult, flat_points: float) -> pd.DataFrame:
    """Per target and arm: the held-out score its rate was chosen by (%; FP and LSQ: top-1, a supernet: the mean
    top-1 of its uniform configurations at ``baseline_bits``) at the budget and at ``curve_multiple`` budgets (same
    seed and rate), each with its optimizer steps and passes; the gain with its paired SE over the held-out images,
    and whether the curve flattened (gain under ``flat_points``)."""
    rows = []
    for longer in result.longer:
        base = next(r for r in result.records if (r["target"], r["arm"], r["seed"]) ==
                    (longer["target"], longer["arm"], longer["seed"]))
        gain = paired_verdict(longer["selection_correct"].float().numpy(), base["selection_correct"].float().numpy())
        rows.append({"target": longer["target"], "arm": longer["arm"], "seed": longer["seed"], "lr": longer["lr"],
                     "steps at budget": base["steps"], "passes at budget": base["passes"],
                     "heldout top-1 at budget": base["selection top-1"], "steps longer": longer["steps"],
                     "passes longer": longer["passes"], "heldout top-1 longer": longer["selection top-1"],
                     "gain (points)": gain.diff, "gain SE": gain.se_images, "flattened": bool(gain.diff < flat_points)})
    return pd.DataFrame(rows)


def t5_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """T5: one row per (target, arm, level) in the records' order: test top-1 (%) mean, SD and per-seed values
    (collapsed runs marked, counted, and kept in the mean), G-BitOPs, the rate, optimizer steps and passes of each
    run, fine-tuning and search wall time."""
    rows = []
    for (target, arm, level), group in pd.DataFrame(records).groupby(["target", "arm", "level"], sort=False):
        accs = [100 * accuracy(p, l) for p, l in zip(group.preds, group.labels)]
        collapsed = list(group.collapsed) if "collapsed" in group else [False] * len(accs)
        rows.append({"target": target, "method": arm + ("" if arm_family(arm) != "supernet" else ", no retraining"),
                     "W/A level": "32/32" if arm == "FP" else str(level), "seeds": len(accs),
                     "top-1 mean": np.mean(accs), "top-1 SD": np.std(accs, ddof=1) if len(accs) > 1 else np.nan,
                     "per seed": " / ".join(f"{a:.2f}" + (" (collapsed)" if c else "")
                                            for a, c in zip(accs, collapsed)),
                     "collapsed": int(sum(collapsed)),
                     "G-BitOPs": group.gbitops.iloc[0] if group.gbitops.iloc[0] is not None else np.nan,
                     "lr": group.lr.iloc[0] if "lr" in group else np.nan,
                     "optimizer steps": group.steps.iloc[0] if "steps" in group else np.nan,
                     "passes": group.passes.iloc[0] if "passes" in group else np.nan,
                     "fine-tune s (per run)": group["tune_seconds"].mean() if "tune_seconds" in group else np.nan,
                     "search s": group["search_seconds"].mean() if "search_seconds" in group else np.nan})
    return pd.DataFrame(rows)


def _find(records: Sequence[Mapping], target: str, seed: int, arm: str, level: float) -> Mapping:
    return next(r for r in records if (r["target"], r["seed"], r["arm"], r["level"]) == (target, seed, arm, level))


def paired_differences(records: Sequence[Mapping], target: str, seeds: Sequence[int], arm_a: str, level_a: float,
                       arm_b: str, level_b: float) -> list[float]:
    """Per seed, top-1 of ``arm_a`` at ``level_a`` minus ``arm_b`` at ``level_b`` on the same test images
    (points); T5's paired comparisons."""
    return [100 * (accuracy(a["preds"], a["labels"]) - accuracy(b["preds"], b["labels"]))
            for a, b in ((_find(records, target, s, arm_a, level_a), _find(records, target, s, arm_b, level_b))
                         for s in seeds)]


# the paper's direction of "this method minus <arm>" at equal BitOPs: above fine-tuned LSQ (+1); it states none
# for a supernet built from the FP model and trained on the target without the one-shot pre-training (0: the words
# "higher" / "lower")
EXPECTED = {"LSQ": 1, "supernet": 0}


def paired_comparisons(records: Sequence[Mapping], targets: Sequence[str], levels: Sequence[float],
                       seeds: Sequence[int], baseline_bits: Sequence[int]) -> list[dict]:
    """T5's comparisons: this method at each level minus the uniform LSQ model of that bit-width (integer levels
    with a baseline) and minus the supernet from the FP model (``FROM_FP``), paired per seed on the same test
    images.

    Each row: target, level, the other arm, the mean difference and per-seed differences (points), the number of
    collapsed runs among the two arms' runs (kept in the verdict), and ``verdict``, a ``stats.Verdict`` from the
    per-image correctness of every seed (``paired_verdict``: both the seed spread and the test-image noise).
    """
    rows = []
    for target in targets:
        for level in levels:
            pairs = [(FROM_FP, level)]
            if int(level) == level and int(level) in baseline_bits:
                pairs.insert(0, (lsq_arm(int(level)), int(level)))
            for arm_b, level_b in pairs:
                ours = [_find(records, target, s, "this method", level) for s in seeds]
                other = [_find(records, target, s, arm_b, level_b) for s in seeds]
                v = paired_verdict(np.stack([(r["preds"] == r["labels"]).numpy() for r in ours]),
                                   np.stack([(r["preds"] == r["labels"]).numpy() for r in other]),
                                   expected=EXPECTED[arm_family(arm_b)])
                rows.append({"target": target, "level": level, "this method minus": arm_b, "mean (points)": v.diff,
                             "per seed": " / ".join(f"{d:+.2f}" for d in v.per_seed),
                             "collapsed runs": sum(bool(r.get("collapsed")) for r in ours + other), "verdict": v})
    return rows


def comparison_table(comparisons: Sequence[Mapping]) -> pd.DataFrame:
    """``paired_comparisons`` for display: the interval and the verdict's words (its note: ``comparison_note``)."""
    return pd.DataFrame([{**{k: v for k, v in c.items() if k != "verdict"},
                          "95% interval": f"[{c['verdict'].low:+.2f}, {c['verdict'].high:+.2f}]",
                          "verdict": c["verdict"].text()} for c in comparisons])


def comparison_note(comparisons: Sequence[Mapping]) -> str:
    """The line under T5's comparisons: how many, how many clear of zero by chance, and after Holm."""
    return table_note([c["verdict"] for c in comparisons])


def collapsed_runs(records: Sequence[Mapping]) -> list[dict]:
    """The collapsed runs, once each: target, arm, seed, held-out top-1 and why."""
    runs = {(r["target"], r["arm"], r["seed"]): r for r in records if r.get("collapsed")}
    return [{"target": t, "arm": a, "seed": s, "heldout top-1": r["heldout top-1"], "why": r["collapse"]}
            for (t, a, s), r in runs.items()]


HIDDEN = ("preds", "labels", "heldout_correct", "selection_correct", "curve")   # per-image data, curves: not in
                                                                                 # the runs' JSON


def transfer_metrics(*, profile: str, seed: int, spec: ModelSpec, device: torch.device | str, transfer: TransferConfig,
                     result: TransferResult, t5: pd.DataFrame, comparisons: Sequence[Mapping],
                     convergence: pd.DataFrame, stage: Mapping | None = None) -> dict:
    """``reports/metrics/transfer.json`` (T5), strict JSON (no NaN): the run's scale and config; per target the
    budget with every arm's epochs, steps and passes (``equal passes``: the same for every arm); the stage's
    passes; every arm's rate grid (each run, in the order tried) and choice; every arm's convergence check and FP's
    curves; T5; the comparisons, each with its
    verdict (``Verdict.as_dict``), and their note (``comparison_note``); the collapsed runs; every compared run
    without its predictions (with its test top-1 as a fraction).

    ``stage``: the training stage's record (``read_stage_record("transfer")``); its CPU kind, the machine that
    trained, is the one recorded (without it: this process's). The wall times come from ``result`` (``load_transfer``
    merged them from that record)."""
    budgets = {}
    for target, b in result.budgets.items():
        arms = {r["arm"]: {"lr": r["lr"], "epochs": r["epochs"], "steps": r["steps"], "passes": r["passes"]}
                for r in result.records if r["target"] == target}
        budgets[target] = {"steps_per_epoch": b.steps_per_epoch, "passes_per_supernet_step": b.paths,
                           "supernet_epochs": b.supernet_epochs, "passes": b.passes, "arms": arms,
                           "equal_passes": len({a["passes"] for a in arms.values()}) == 1}
    return json_ready({
        "profile": profile, "seed": seed, "model": spec.name, "width_mult": spec.width_mult, "device": str(device),
        "cpu_capability": (stage or {}).get("cpu_capability") or torch.backends.cpu.get_cpu_capability(),
        "stage_seconds": round(result.seconds, 1),
        "transfer": dataclasses.asdict(transfer), "budget": budgets, "passes": stage_passes(result),
        "lr_grid": {"rows": [dict(r) for r in result.grid], "choices": [dict(c) for c in result.choices],
                    "chosen": result.lrs},
        "convergence": {"rows": convergence.to_dict(orient="records"), "fp_curves": fp_curves(result)},
        "t5": t5.to_dict(orient="records"),
        "comparisons": [{**c, "verdict": c["verdict"].as_dict()} for c in comparisons],
        "comparisons_note": comparison_note(comparisons),
        "collapsed": collapsed_runs(result.records),
        "runs": [{k: v for k, v in r.items() if k not in HIDDEN} | {"test_acc": accuracy(r["preds"], r["labels"])}
                 for r in result.records]})


def transfer_figure(records: Sequence[Mapping], curves: Sequence[Mapping], budgets: Mapping[str, Budget],
                    targets: Sequence[str], title: str, names: Mapping[str, str] | None = None):
    """T5 as a figure, one column per target (titled by its name in ``names``, its key where absent). Top: test top-1 against G-BitOPs of each quantized arm (mean over
    seeds, every seed as a dot, collapsed runs as red crosses) and FP fine-tuned as a dashed line. Bottom: the
    held-out score against passes of ``curves``: FP fine-tuning's after every epoch (``fp_curves``, every seed at
    the budget and the longer run) and every other arm's at the budget and at twice it (``convergence_curves``,
    dashed), the budget dotted."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    df = pd.DataFrame(records)
    df["top1"] = [100 * accuracy(p, l) for p, l in zip(df.preds, df.labels)]
    fig, axes = plt.subplots(2, len(targets), figsize=(5.5 * len(targets), 11), squeeze=False)
    for col, target in enumerate(targets):
        ax, ax_curve = axes[0][col], axes[1][col]
        sub = df[df.target == target]
        for arm, g in sub[sub.arm != "FP"].groupby("arm", sort=False):
            means = g.groupby("level", sort=False).agg(x=("gbitops", "first"), y=("top1", "mean"))
            label = arm + (", no retraining" if arm in SUPERNET_ARMS else "")
            line, = ax.plot(means.x, means.y, marker="o", label=label)
            ok = g[~g.get("collapsed", pd.Series(False, index=g.index)).astype(bool)]
            ax.scatter(ok.gbitops, ok.top1, s=10, color=line.get_color(), alpha=0.5)
            bad = g[g.get("collapsed", pd.Series(False, index=g.index)).astype(bool)]
            if len(bad):
                ax.scatter(bad.gbitops, bad.top1, marker="x", color="red", zorder=3)
        fp = sub[sub.arm == "FP"]
        if len(fp):
            ax.axhline(fp.top1.mean(), color="grey", ls="--", lw=1, label="FP fine-tuned")
        ax.set(xlabel="G-BitOPs", ylabel="test top-1 (%)", title=(names or {}).get(target, target))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=readable(7, fig), loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        for c in (c for c in curves if c["target"] == target):
            if c.get("arm", "FP") == "FP":
                ax_curve.plot(c["passes"], c["heldout top-1"], marker=".", lw=1.5 if c["multiple"] > 1 else 0.8,
                              label=f"FP, {c['multiple']}x budget, seed {c['seed']}")
            else:
                ax_curve.plot(c["passes"], c["heldout top-1"], marker="s", ls="--", lw=1,
                              label=f"{c['arm']}: 1x and {c['multiple']}x, seed {c['seed']}")
        if target in budgets:
            ax_curve.axvline(budgets[target].passes, color="grey", ls=":", lw=1, label="the budget")
        ax_curve.set(xlabel="forward/backward passes", ylabel="held-out top-1 (%)\n(supernets: uniform configs' mean)",
                     title=f"{(names or {}).get(target, target)}: convergence")
        ax_curve.grid(alpha=0.3)
        ax_curve.legend(fontsize=readable(7, fig), loc="upper center", bbox_to_anchor=(0.5, -0.16),
                        frameon=False)                      # legends below their panels: the points fill them
    suptitle(fig, title, 9)
    return fig


def transfer_findings(result: TransferResult, tr: TransferConfig, t5: pd.DataFrame, comparisons: Sequence[Mapping],
                      convergence: pd.DataFrame) -> list[str]:
    """The findings bullets of notebook 06 (T5): the equal budgets, every arm's chosen rate and grid, whether each
    arm's held-out score flattened at twice the passes, each target's comparisons with their verdicts and the table's note, the collapsed runs, and each
    target's FP fine-tuned top-1."""
    lines = []
    for target, b in result.budgets.items():
        lines.append(f"{target}: every arm made {b.passes} forward/backward passes over the same {b.steps_per_epoch} "
                     f"batches per epoch (FP and LSQ: {b.epochs(1)} epochs, {b.steps(1)} steps; the supernets: "
                     f"{b.supernet_epochs} epochs, {b.steps(b.paths)} steps of {b.paths} passes)")
    lines.append(f"the stage made {passes_note(result)}")
    for target in result.budgets:
        choices = [c for c in result.choices if c["target"] == target]
        edge = [f"{c['arm']} after {c['widenings']} widening{'' if c['widenings'] == 1 else 's'}" for c in choices
                if not c["inside"]]
        widened = sum(c["widenings"] for c in choices)
        lines.append(f"{target}: every arm's rate chosen on held-out training images from a grid of its own (seed "
                     f"{tr.grid_seed}, {100 * tr.grid_images:.0f}% of the training images, {widened} widening"
                     f"{'' if widened == 1 else 's'} by x{tr.widen_factor:g}): "
                     + ", ".join(f"{c['arm']} {c['chosen']:g} of [{', '.join(f'{x:g}' for x in c['grid'])}]"
                                 for c in choices)
                     + (f"; at the grid's edge (at most {tr.max_widenings} widening"
                        f"{'' if tr.max_widenings == 1 else 's'} allowed): {', '.join(edge)}" if edge else
                        "; every choice inside its grid"))
    criterion = f"a gain under {tr.flat_points:g} point{'' if tr.flat_points == 1 else 's'}"
    for target in result.budgets:
        rows = convergence[convergence.target == target] if len(convergence) else convergence
        if not len(rows):
            continue
        rising = list(rows.arm[~rows.flattened.astype(bool)])
        lines.append(f"{target}: held-out score at the budget -> at {tr.curve_multiple}x the passes (seed "
                     f"{rows.seed.iloc[0]}, paired SE over the held-out images; FP and LSQ top-1, the supernets the "
                     f"mean of their uniform configurations): " + "; ".join(
                         f"{c.arm} {c['heldout top-1 at budget']:.2f}% -> {c['heldout top-1 longer']:.2f}% "
                         f"({c['gain (points)']:+.2f} ± {c['gain SE']:.2f})" for _, c in rows.iterrows())
                     + (f": still rising ({criterion} is flat) for {', '.join(rising)}: the budget is short of "
                        f"their convergence" if rising else f": every arm flattened ({criterion})"))
    for c in comparisons:
        lines.append(f"{c['target']}: this method (no retraining) minus {c['this method minus']} at level "
                     f"{c['level']}: {c['verdict'].text()} (per seed {c['per seed']}"
                     + (f"; {c['collapsed runs']} collapsed run(s) included" if c["collapsed runs"] else "") + ")")
    if comparisons:
        lines.append(f"comparisons: {comparison_note(comparisons)}")
    collapsed = collapsed_runs(result.records)
    runs = len({(r["target"], r["arm"], r["seed"]) for r in result.records})
    if collapsed:
        lines.append(f"{len(collapsed)} of {runs} runs collapsed, kept in every mean and verdict: " + "; ".join(
            f"{c['target']} {c['arm']} seed {c['seed']} ({c['why']})" for c in collapsed))
    else:
        lines.append(f"none of the {runs} runs collapsed (no non-finite loss; no held-out top-1 of a max path more "
                     f"than {tr.collapse_points:g} points under its arm's median over seeds, nor a supernet's under "
                     f"FP fine-tuned with the same seed)")
    for target in result.budgets:
        fp_row = t5[(t5.target == target) & (t5.method == "FP")]
        if len(fp_row):
            lines.append(f"{target}: the FP model fine-tuned reaches {fp_row['top-1 mean'].iloc[0]:.2f}% on the test "
                         f"images (per seed {fp_row['per seed'].iloc[0]})")
    return lines
