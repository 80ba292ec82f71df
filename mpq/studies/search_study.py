"""What the greedy search's settings change in what it finds: scoring images and starting point, with seeds.

The default profile scores greedy moves on ``search.score_size`` held-out training images and starts the walk
at uniform W``search.start_bits``A``search.start_bits``; the design asks for more scoring images and a W5A5
start, which cost search time on two cores. This study measures the trade on the supernets of one model
(``replicates.model``) for every training seed (the main run's, ``checkpoints/supernet/<model>.pt``, and the
replicates', ``checkpoints/replicates/seed-<s>/supernet.pt``): on each supernet, the greedy front at
``search.levels`` with the default settings and with each alternative of ``search_study`` (another scoring-set
size, another start, one change at a time). Every configuration found is recalibrated and tested; per
(alternative, level) the test accuracy minus the default's on the same supernet and test images with its paired
SE, and the search's wall time. Notebook 04 pools them over seeds and judges them
(``mpq.studies.search_results.study_rows``); this module only searches, so its stage does not depend on the
statistics.

With ``equal_compute``, the main seed's supernet is also searched by random and evolutionary search given as
many evaluations per level as the default greedy walk spent up to that level's result (the F5 baselines of
notebook 04 get 40 and 48), so that F5's comparison can be read at equal search compute as well.

With no alternative listed (the default profile lists none; ``profiles/large.yaml`` does), only the main
seed's supernet is searched: the equal-compute rows need nothing else.

Command line (the DVC stage ``search_study``)::

    python -m mpq.studies.search_study --out checkpoints/search_study

It writes ``result.json`` (the runs) and ``predictions.npz`` (the test labels and every search's predicted class
per test image, keyed by ``pred_key``), so that the notebook pairs the settings over seeds and images at once.
The folder appears whole or not at all (written beside its place and renamed).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from mpq.training.checkpoint import check_output, run_command, write_json
from mpq.config import DataConfig, EvalConfig, SearchConfig, distinct, from_dict, load_params, model_specs
from mpq.method.cost import bitops, bitops_level, level_bitops, phase1_budget
from mpq.data.datasets import make_splits
from mpq.search.evaluation import make_scorer, paired_difference, search_space, test_predictions
from mpq.training.hardware import place
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import checkpoint_candidates, load_supernet
from mpq.studies.replicates import ReplicateConfig
from mpq.search.space import cfg_to_json
from mpq.search.sampling import evolutionary_search, random_search
from mpq.search.greedy import greedy_front
from mpq.training.fp import pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchStudyConfig:
    """``search_study`` in params.yaml: the alternatives to the default search settings, one change each."""

    score_sizes: tuple[int, ...] = (512,)     # scoring images (the default: search.score_size)
    start_bits: tuple[int, ...] = (5,)        # uniform start (the default: search.start_bits)
    equal_compute: bool = True                # random and evolutionary search with the greedy walk's evaluations

    def __post_init__(self) -> None:
        object.__setattr__(self, "score_sizes", tuple(self.score_sizes))
        object.__setattr__(self, "start_bits", tuple(self.start_bits))
        for name in ("score_sizes", "start_bits"):
            values = getattr(self, name)
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values) or not distinct(values):
                raise ValueError(f"search_study.{name} must hold distinct positive ints, got {list(values)}")


def variants(search_cfg: SearchConfig, study: SearchStudyConfig) -> list[tuple[str, int, int]]:
    """``(name, score_size, start_bits)``: the default first, then one change at a time."""
    default = ("default", search_cfg.score_size, search_cfg.start_bits)
    out = [default]
    out += [(f"{n} scoring images", n, search_cfg.start_bits) for n in study.score_sizes if n != search_cfg.score_size]
    out += [(f"start W{b}A{b}", search_cfg.score_size, b) for b in study.start_bits if b != search_cfg.start_bits]
    return out


def supernet_paths(params: Mapping) -> list[tuple[int, Path]]:
    """``(training seed, one-shot checkpoint)`` of the studied model: the main run's, then the replicates'."""
    rep = from_dict(ReplicateConfig, params["replicates"], "replicates")
    paths = [(int(params["seed"]), Path("checkpoints/supernet") / f"{rep.model}.pt")]
    paths += [(s, Path("checkpoints/replicates") / f"seed-{s}" / "supernet.pt") for s in rep.seeds]
    for seed, path in paths:
        if not path.is_file():
            stage = "supernet" if seed == params["seed"] else f"replicate@{seed}"
            raise FileNotFoundError(f"{path} is missing: run `dvc repro {stage}` first")
    return paths


def studied_supernets(params: Mapping, search_cfg: SearchConfig, study: SearchStudyConfig) -> list[tuple[int, Path]]:
    """``supernet_paths``, cut to the main seed's where ``study`` lists no alternative: the equal-compute rows
    need nothing else."""
    paths = supernet_paths(params)
    return paths if len(variants(search_cfg, study)) > 1 else paths[:1]


def run_study(params: Mapping, out: str | Path) -> dict:
    """Search every supernet with every variant; write ``out/result.json`` and return the result."""
    rep = from_dict(ReplicateConfig, params["replicates"], "replicates")
    data_cfg = from_dict(DataConfig, params["data"], "data")
    eval_cfg = from_dict(EvalConfig, params["evaluation"], "evaluation")
    search_cfg = from_dict(SearchConfig, params["search"], "search")
    study = from_dict(SearchStudyConfig, params["search_study"], "search_study")
    cfg = from_dict(OneShotConfig, params["oneshot"], "oneshot")
    spec = next((s for s in model_specs(params["models"]) if s.name == rep.model), None)
    if spec is None:
        raise ValueError(f"replicates.model {rep.model!r} is not in the models section {list(params['models'])}")
    out = Path(out)
    work = out.with_name(f".{out.name}.partial")
    work.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    splits = make_splits(data_cfg.dataset, seed=params["seed"], train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    labels = splits.test.labels
    runs, kept = [], {}
    stage_start = time.perf_counter()
    for seed, path in studied_supernets(params, search_cfg, study):
        ema = load_supernet(path, model=spec.name, width_mult=spec.width_mult, spec=cfg.supernet_spec(),
                            data=splits.identity)
        place(ema, device)
        space = search_space(ema, checkpoint_candidates(path, ema))
        table = ema.cost_table
        targets = [level_bitops(table, level) for level in search_cfg.levels]
        preds: dict[str, dict[str, torch.Tensor]] = {}
        for name, score_size, start in variants(search_cfg, study):
            if score_size > len(splits.score):
                raise ValueError(f"search_study asks for {score_size} scoring images; data.score_size holds "
                                 f"{len(splits.score)}: raise data.score_size or lower search_study.score_sizes")
            scorer = make_scorer(ema, splits.score.subset(torch.arange(score_size)), metric=search_cfg.metric)
            start_time = time.perf_counter()
            front = greedy_front(space, scorer, lambda c: bitops(table, c), targets,
                                 [phase1_budget(table, t, a_bits=start) for t in targets],
                                 start_bits=start, alpha=search_cfg.alpha)
            seconds = time.perf_counter() - start_time
            preds[name] = {}
            for level, res in zip(search_cfg.levels, front):
                preds[name][str(level)] = test_predictions(ema, res.bit_cfg, splits.calib, splits.test,
                                                           batch_size=eval_cfg.batch_size)
                acc = float((preds[name][str(level)] == labels).float().mean())
                row = {"seed": seed, "variant": name, "score_size": score_size, "start_bits": start,
                       "level": str(level), "test_acc": acc, "found_level": bitops_level(table, res.cost),
                       "gbitops": res.cost / 1e9, "evaluations": max(r.evaluations for r in front),
                       "search_seconds": round(seconds, 2), "bit_cfg": cfg_to_json(res.bit_cfg)}
                if name != "default":
                    diff, se = paired_difference(preds[name][str(level)], preds["default"][str(level)], labels)
                    row |= {"minus_default": diff, "paired_se": se}
                runs.append(row)
            log.info("seed %d, %s: %.1f s, %d evaluations, test %s", seed, name, seconds,
                     max(r.evaluations for r in front),
                     " / ".join(f"{100 * r['test_acc']:.2f}" for r in runs[-len(front):]))
            if name == "default" and study.equal_compute and seed == params["seed"]:
                runs += _equal_compute(ema, space, scorer, table, front, search_cfg, splits, eval_cfg, seed, preds)
        kept |= {pred_key(seed, name, level): p for name, per_level in preds.items() for level, p in per_level.items()}
    result = {"model": spec.name, "width_mult": spec.width_mult, "levels": [str(lv) for lv in search_cfg.levels],
              "variants": [list(v) for v in variants(search_cfg, study)]
              + ([[name, search_cfg.score_size, search_cfg.start_bits] for name in EQUAL_COMPUTE]
                 if study.equal_compute else []), "device": str(device),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "test_images": len(labels), "stage_seconds": round(time.perf_counter() - stage_start, 1), "runs": runs}
    np.savez(work / "predictions.npz", labels=labels.numpy().astype(np.int16),
             **{k: p.cpu().numpy().astype(np.int16) for k, p in kept.items()})
    write_json(result, work / "result.json")
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return result


EQUAL_COMPUTE = ("random search, equal evaluations", "evolutionary search, equal evaluations")


def pred_key(seed: int, variant: str, level) -> str:
    """The key of one search's test predictions in the stage's ``predictions.npz``: training seed, search setting
    and BitOPs level."""
    return f"seed {seed} | {variant} | level {level}"


def _equal_compute(ema, space, scorer, table, front, search_cfg: SearchConfig, splits, eval_cfg: EvalConfig,
                   seed: int, preds: dict) -> list[dict]:
    """Random and evolutionary search at each level with the default greedy walk's evaluations up to that
    level's result; the evolution keeps ``search.evo_mutation_prob`` and grows its population with the budget."""
    rows = []
    labels = splits.test.labels
    rng = random.Random(seed)
    for name in EQUAL_COMPUTE:
        preds[name] = {}
        for level, res in zip(search_cfg.levels, front):
            budget = res.evaluations
            start_time = time.perf_counter()
            if name.startswith("random"):
                found = random_search(space, scorer, lambda c: bitops(table, c), res.target, num_samples=budget, rng=rng)
            else:
                population = max(search_cfg.evo_population, budget // 40)
                found = evolutionary_search(space, scorer, lambda c: bitops(table, c), res.target, population=population,
                                            generations=max(0, (budget - population) // population),
                                            mutation_prob=search_cfg.evo_mutation_prob, rng=rng)
            seconds = time.perf_counter() - start_time
            preds[name][str(level)] = test_predictions(ema, found.bit_cfg, splits.calib, splits.test,
                                                       batch_size=eval_cfg.batch_size)
            diff, se = paired_difference(preds[name][str(level)], preds["default"][str(level)], labels)
            rows.append({"seed": seed, "variant": name, "score_size": search_cfg.score_size,
                         "start_bits": search_cfg.start_bits, "level": str(level),
                         "test_acc": float((preds[name][str(level)] == labels).float().mean()),
                         "found_level": bitops_level(table, found.cost), "gbitops": found.cost / 1e9,
                         "evaluations": found.evaluations, "greedy_evaluations": budget,
                         "search_seconds": round(seconds, 2), "bit_cfg": cfg_to_json(found.bit_cfg),
                         "minus_default": diff, "paired_se": se})
            log.info("seed %d, %s, level %s: %d evaluations (greedy %d), %.1f s, test %.2f%%", seed, name, level,
                     found.evaluations, budget, seconds, 100 * rows[-1]["test_acc"])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.search_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (replaced when the study completes)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_command(lambda: _run(args), "mpq.studies.search_study", sys.argv[1:] if argv is None else argv,
                       resumes=False)        # searches only: its output appears when the study completes


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    check_output(args.out, folder=True, inputs=[args.params, "checkpoints/supernet", "checkpoints/replicates"])
    result = run_study(params, args.out)
    for run in (r for r in result["runs"] if "minus_default" in r):    # judged in notebook 04 (search_results)
        log.info("seed %d, %s, level %s: %+.2f points against the default", run["seed"], run["variant"], run["level"],
                 100 * run["minus_default"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
