"""Replicates of the main results with other training seeds, for the verdicts of T2 (claim C6).

The main stages (notebooks 02-04) train every model once, with ``seed``. A replicate repeats, for one
model and one other training seed, everything that model's T2 rows need, with exactly the same recipe and data
split (the study's ``seed``; the same FP checkpoint). The models: ``replicates.model`` (ResNet-20 by default; its
replicates also feed the search study and F7's budget runs) and each of ``replicates.other_models`` (MobileNetV2
and EfficientNet-Lite by default), whose comparisons behind C1 (the uniform supernet against LSQ alone) and C6
(no retraining against retrained, at each searched level) get the same seeds; an other model trains with its own
bit-widths (``model_bits``, through ``model_bits.model_params``), as its main run does. A replicate holds:

- the one-shot supernet (``oneshot``), evaluated at the uniform levels of ``evaluation.levels``;
- uniform LSQ models trained alone at ``baselines.levels``;
- the greedy no-retraining configuration at each of ``search.levels``, searched on the held-out scoring
  images within the scheduler's last decision;
- random and evolutionary search on the same supernet at each level (``search.random_samples``,
  ``search.evo_*``; one ``random.Random(seed)`` for both, as the search stage), so that F5's greedy-against-random
  and evolutionary comparisons have the replicates' seeds too;
- the same configurations retrained with the baselines' recipe, and per level the paired difference
  no-retrain minus retrained on the same test images.

The supernet's checkpoint stays in the folder (``supernet.pt``, for ``mpq.studies.search_study``); the other weights
are deleted once measured.

Only the training seed differs (model initialisation of new parts, batch order, random paths), so the
spread over replicates is training noise; pooled with the main run (seed ``seed``) by
``mpq.studies.replicate_tables``, notebook 04 judges each level's gap with both noise sources. This module only
trains: nothing here reads the statistics, so the training stages do not depend on them.

The training-budget curve (F7, beyond the paper) reuses the same run with every training budget multiplied
(``replicates.budgets``): the supernet's epochs, and with them the LSQ baselines' and the retrainings' (one
recipe), so both sides of each comparison grow alike; at the main run's seed, so each budget pairs with the
main run.

Command line (one DVC matrix stage per seed, and per budget)::

    python -m mpq.studies.replicates --seed 1 --out checkpoints/replicates/seed-1
    python -m mpq.studies.replicates --model mobilenetv2_28 --seed 1 --out checkpoints/model_replicates/mobilenetv2_28/seed-1
    python -m mpq.studies.replicates --budget 2 --out checkpoints/budget/x2

The folder appears whole or not at all (written beside its place and renamed); trainings resume.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from mpq.training.checkpoint import check_output, run_command, write_json
from mpq.config import BaselineConfig, DataConfig, EvalConfig, SearchConfig, from_dict, load_params, model_specs
from mpq.method.cost import bitops, bitops_level, level_bitops, phase1_budget
from mpq.data.datasets import make_splits
from mpq.search.evaluation import make_scorer, paired_difference, search_space, test_predictions
from mpq.models import model_entry
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import build_supernet, run_meta, train_oneshot, training_subset
from mpq.search.space import cfg_to_json
from mpq.search.greedy import greedy_front
from mpq.search.sampling import evolutionary_search, random_search
from mpq.studies.health import COLLAPSE_MARGIN, training_health
from mpq.studies.model_bits import model_bits, model_params
from mpq.training.fp import evaluate, load_fp_model, pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicateConfig:
    """``replicates`` in params.yaml: which models' main results are repeated, with which training seeds,
    and at which multiples of the training budget (F7).

    The main run's seed (``seed``) is not listed: it comes from the main stages and is pooled with these, so
    ``seeds`` of two give each model three. ``model`` is the one whose replicates also feed the search study and
    the budget runs; ``other_models`` get the same seeds for their C1 and C6 comparisons (one DVC stage per model
    and seed, ``model_replicate``). ``budgets``: factors (ints >= 2) on every training's epochs; each runs once, at
    the main run's seed, for ``model``.
    """

    model: str = "resnet20"
    seeds: tuple[int, ...] = (1, 2)
    budgets: tuple[int, ...] = (2,)
    other_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "budgets", tuple(self.budgets))
        object.__setattr__(self, "other_models", tuple(self.other_models))
        if len(set(self.other_models)) != len(self.other_models) or self.model in self.other_models:
            raise ValueError(f"replicates.other_models must be distinct models other than replicates.model "
                             f"{self.model!r}, got {list(self.other_models)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"replicates.seeds must be distinct, got {list(self.seeds)}")
        if len(set(self.budgets)) != len(self.budgets) or any(
                isinstance(b, bool) or not isinstance(b, int) or b < 2 for b in self.budgets):
            raise ValueError(f"replicates.budgets must be distinct ints >= 2 (factors on the epochs), "
                             f"got {list(self.budgets)}")


def run_replicate(params: Mapping, seed: int, out: str | Path, budget: int = 1, model: str | None = None) -> dict:
    """Train, search and retrain one seed of ``model`` (None: ``replicates.model``; otherwise one of
    ``replicates.other_models``, trained with its own ``model_bits``) with ``budget`` x every training's epochs;
    write ``out/`` (result.json, predictions.npz) and return the result."""
    rep = from_dict(ReplicateConfig, params["replicates"], "replicates")
    if model is not None and model != rep.model:
        if model not in rep.other_models:
            raise ValueError(f"model {model!r} is neither replicates.model {rep.model!r} nor one of "
                             f"replicates.other_models {list(rep.other_models)}")
        if budget != 1:
            raise ValueError(f"budget runs train replicates.model {rep.model!r} only, not {model!r}")
        # the LSQ baselines at or above the model's floor, possibly none (a floor above every baselines.levels)
        base_levels = model_bits(params.get("model_bits"), model).baseline_levels(
            from_dict(BaselineConfig, params["baselines"], "baselines"))
        params = model_params(params, model)       # its own candidates, levels and start; replicates.model = model
        rep = from_dict(ReplicateConfig, params["replicates"], "replicates")
    else:
        base_levels = from_dict(BaselineConfig, params["baselines"], "baselines").levels
    data_cfg = from_dict(DataConfig, params["data"], "data")
    eval_cfg = from_dict(EvalConfig, params["evaluation"], "evaluation")
    search_cfg = from_dict(SearchConfig, params["search"], "search")
    spec = next((s for s in model_specs(params["models"]) if s.name == rep.model), None)
    if spec is None:
        raise ValueError(f"replicates.model {rep.model!r} is not in the models section {list(params['models'])}")
    cfg = from_dict(OneShotConfig, params["oneshot"], "oneshot").for_model(spec.name)
    cfg = replace(cfg, epochs=cfg.epochs * budget)      # baselines and retraining inherit the epochs
    out = Path(out)
    work = out.with_name(f".{out.name}.partial")
    work.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    splits = make_splits(data_cfg.dataset, seed=params["seed"], train_size=data_cfg.train_size,
                         score_size=data_cfg.score_size, calib_size=data_cfg.calib_size, test_size=data_cfg.test_size)
    train = training_subset(splits.train, cfg.train_size)
    classes, input_size = len(splits.train.classes), model_entry(spec.name).input_size
    fp_path = f"checkpoints/fp/{spec.name}.pt"
    labels = splits.test.labels
    preds, seconds, health = {}, {}, {}
    fp_heldout = evaluate(load_fp_model(fp_path, spec.name, spec.width_mult, classes), splits.score)

    def fit(name: str, recipe: OneShotConfig, **build) -> object:
        torch.manual_seed(seed)
        model = build_supernet(load_fp_model(fp_path, spec.name, spec.width_mult, classes), recipe.supernet_spec(),
                               splits.calib, input_size, **build)
        run = train_oneshot(model, train, recipe, batch_size=data_cfg.batch_size, pad=data_cfg.pad, flip=data_cfg.flip,
                            seed=seed, device=device, checkpoint=work / f"{name}.pt",
                            meta=run_meta(spec.name, spec.width_mult, splits, train), keep_weights=False)
        seconds[name] = round(run.seconds, 1)
        health[name] = training_health(run.history.loss, run.ema, splits.calib, splits.score, fp_heldout,
                                       margin=None if recipe.num_random_paths == 0 else COLLAPSE_MARGIN)
        return run

    def predict(name: str, supernet, bit_cfg) -> None:
        preds[name] = test_predictions(supernet, bit_cfg, splits.calib, splits.test, batch_size=eval_cfg.batch_size)

    run = fit("supernet", cfg)
    ema, table = run.ema, run.ema.cost_table
    for bits in eval_cfg.levels:
        predict(f"supernet W{bits}A{bits}", ema, ema.uniform_config(bits))
    predict("supernet lowest", ema, ema.min_config(run.candidates()))     # its own space: the decision applied
    score_set = splits.score.subset(torch.arange(min(search_cfg.score_size, len(splits.score))))
    targets = [level_bitops(table, level) for level in search_cfg.levels]
    space, scorer = search_space(ema, run.candidates()), make_scorer(ema, score_set, metric=search_cfg.metric)
    start = time.perf_counter()
    front = greedy_front(space, scorer, lambda c: bitops(table, c), targets,
                         [phase1_budget(table, t, a_bits=search_cfg.start_bits) for t in targets],
                         start_bits=search_cfg.start_bits, alpha=search_cfg.alpha)
    seconds["search"] = round(time.perf_counter() - start, 1)
    searched = {}
    for level, res in zip(search_cfg.levels, front):
        predict(f"greedy {level}", ema, res.bit_cfg)
        searched[str(level)] = {"level": bitops_level(table, res.cost), "gbitops": res.cost / 1e9,
                                "evaluations": res.evaluations, "bit_cfg": cfg_to_json(res.bit_cfg)}
    # F5's baselines on this seed's supernet: one generator over the levels, in order, as the search stage
    rng, start = random.Random(seed), time.perf_counter()
    sampled = {}
    for level, target in zip(search_cfg.levels, targets):
        rnd = random_search(space, scorer, lambda c: bitops(table, c), target, num_samples=search_cfg.random_samples,
                            rng=rng)
        evo = evolutionary_search(space, scorer, lambda c: bitops(table, c), target,
                                  population=search_cfg.evo_population, generations=search_cfg.evo_generations,
                                  mutation_prob=search_cfg.evo_mutation_prob, rng=rng)
        for method, res in (("random", rnd), ("evolutionary", evo)):
            predict(f"{method} {level}", ema, res.bit_cfg)
            sampled[f"{method} {level}"] = {"level": bitops_level(table, res.cost), "gbitops": res.cost / 1e9,
                                            "evaluations": res.evaluations, "bit_cfg": cfg_to_json(res.bit_cfg)}
    seconds["sampling"] = round(time.perf_counter() - start, 1)
    for bits in base_levels:
        lsq = fit(f"lsq_w{bits}a{bits}", cfg.baseline(bits))
        predict(f"LSQ W{bits}A{bits}", lsq.ema, lsq.ema.uniform_config(bits))
    fixed = cfg.fixed_config()
    gaps = {}
    for level, res in zip(search_cfg.levels, front):
        choices = {k: ((w,), (a,)) for k, (w, a) in res.bit_cfg.items()}
        retrained = fit(f"retrained_level{level}", fixed, layer_choices=choices)
        predict(f"retrained {level}", retrained.ema, res.bit_cfg)
        diff, se = paired_difference(preds[f"greedy {level}"], preds[f"retrained {level}"], labels)
        gaps[str(level)] = {"no_retrain_minus_retrained": diff, "paired_se": se}
    for name in list(seconds):      # the other weights are not needed once measured; the supernet is searched
        if name != "supernet":      # again by mpq.studies.search_study
            (work / f"{name}.pt").unlink(missing_ok=True)
    result = {"seed": seed, "budget": budget, "epochs": cfg.epochs, "split_seed": params["seed"], "model": spec.name,
              "width_mult": spec.width_mult,
              "train_images": len(train), "test_images": len(labels), "device": str(device),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "seconds": seconds,
              "test_acc": {k: float((p == labels).float().mean()) for k, p in preds.items()},
              "searched": searched, "sampled": sampled, "gaps": gaps, "frozen_at_end": run.frozen, "health": health}
    np.savez(work / "predictions.npz", labels=labels.numpy().astype(np.int16),
             **{k: p.cpu().numpy().astype(np.int16) for k, p in preds.items()})
    write_json(result, work / "result.json")
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.studies.replicates", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None,
                        help="training seed of this replicate (default with --budget: the main run's `seed`)")
    parser.add_argument("--budget", type=int, default=1, help="factor on every training's epochs (F7; default 1)")
    parser.add_argument("--model", default=None,
                        help="one of replicates.other_models (default: replicates.model)")
    parser.add_argument("--out", required=True, help="output folder (replaced when the run completes)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    return run_command(lambda: _run(args), "mpq.studies.replicates", sys.argv[1:] if argv is None else argv,
                       checkpoints=[out.with_name(f".{out.name}.partial")])


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    rep = from_dict(ReplicateConfig, params["replicates"], "replicates")
    check_output(args.out, folder=True, inputs=[args.params, "checkpoints/fp"])
    if args.model is not None and args.model != rep.model and args.model not in rep.other_models:
        print(f"error: model {args.model!r} is neither replicates.model {rep.model!r} nor in replicates.other_models "
              f"{list(rep.other_models)} of {args.params}", file=sys.stderr)
        return 2
    if args.budget != 1 and args.model not in (None, rep.model):
        print(f"error: a budget run trains replicates.model {rep.model!r}; leave out --model", file=sys.stderr)
        return 2
    if args.budget == 1:
        if args.seed not in rep.seeds:
            print(f"error: seed {args.seed} is not in replicates.seeds {list(rep.seeds)} of {args.params}",
                  file=sys.stderr)
            return 2
    else:
        if args.budget not in rep.budgets:
            print(f"error: budget {args.budget} is not in replicates.budgets {list(rep.budgets)} of {args.params}",
                  file=sys.stderr)
            return 2
        if args.seed not in (None, params["seed"]):
            print(f"error: a budget run trains at the main run's seed ({params['seed']}), not {args.seed}; "
                  "leave out --seed", file=sys.stderr)
            return 2
        args.seed = params["seed"]
    result = run_replicate(params, args.seed, args.out, budget=args.budget, model=args.model)
    log.info("%s seed %d, budget x%d: %s", result["model"], args.seed, args.budget,
             {k: round(100 * v, 2) for k, v in result["test_acc"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
