"""Command line: ``python -m mpq search ...`` finds a bit configuration for a budget, no notebook needed.

    python -m mpq search checkpoints/supernet/resnet20.pt --level 3 --out resnet20_3bit.json
    python -m mpq search checkpoints/supernet/resnet20.pt --gbitops 0.05 --evaluate --out cfg.json

Loads the EMA supernet from a one-shot checkpoint, runs the inference-only greedy search
(`docs/method.md`) on a scoring subset of held-out training images, optionally recalibrates BN and measures test
accuracy, and writes the configuration as JSON with its BitOPs, size and accuracy.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch

log = logging.getLogger("mpq")


class UsageError(ValueError):
    """A mistake on the command line: printed as one line, exit status 2, no traceback (``run_command``)."""


# the default profile's `search.score_size`; the whole 2,000-image subset is 15.6x the work per evaluation
DEFAULT_SCORE_SIZE = 128


def _subset_size(given: int | None, stored: int, flag: str, what: str, default: int | None = None) -> int:
    """The checkpoint's subset size (or ``default``), or a smaller prefix of it; a larger one would reach training images."""
    if given is None:
        return stored if default is None else default
    if not 0 < given <= stored:
        raise UsageError(f"{flag} {given}: the checkpoint's {what} subset has {stored} held-out images; "
                         f"use at most {stored} (a larger subset would include images the supernet trained on)")
    return given


def _check_args(args: argparse.Namespace) -> None:
    """Refuse impossible arguments before anything is loaded: sizes, the budget, alpha, the output location."""
    from mpq.training.checkpoint import check_output

    for flag, value in (("--score-size", args.score_size), ("--calib-size", args.calib_size),
                        ("--test-size", args.test_size)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} {value}: must be a positive number of images; leave it out for the default "
                             f"({'the whole test set' if flag == '--test-size' else 'the checkpoint subset'})")
    for flag, value in (("--level", args.level), ("--gbitops", args.gbitops)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"{flag} {value}: must be a finite number > 0 (e.g. {flag} 3)")
    if not (math.isfinite(args.alpha) and args.alpha >= 0):
        raise UsageError(f"--alpha {args.alpha}: must be a finite number >= 0 (default 1.5)")
    if args.out:
        try:
            check_output(args.out, inputs=[args.checkpoint, args.data_root])
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def _search(args: argparse.Namespace) -> int:
    from mpq.training.checkpoint import atomic_path, load_checkpoint
    from mpq.method.cost import bitops, bitops_level, level_bitops, model_size_mib, phase1_budget
    from mpq.data.datasets import splits_from_identity
    from mpq.search.evaluation import make_scorer, recalibrated_accuracy, search_space
    from mpq.training.hardware import place
    from mpq.training.oneshot import checkpoint_candidates, checkpoint_meta, load_supernet, training_progress
    from mpq.search.space import cfg_to_json
    from mpq.search.greedy import greedy_search

    _check_args(args)
    state = load_checkpoint(args.checkpoint, fix="pass a one-shot supernet checkpoint (checkpoints/supernet/MODEL.pt)")
    if "ema" not in state or "meta" not in state:
        kind = "a full-precision checkpoint (FP stage)" if "state_dict" in state else "not a one-shot checkpoint"
        raise UsageError(f"{args.checkpoint} is {kind}; pass a one-shot supernet checkpoint "
                         "(checkpoints/supernet/MODEL.pt, written by `dvc repro supernet`)")
    epoch, epochs, finished = training_progress(state)
    del state
    warning = None
    if not finished:
        unfinished = (f"checkpoint {args.checkpoint} is unfinished: it holds epoch {epoch} of {epochs} (its training "
                      "was stopped or is still running)")
        if not args.allow_unfinished:
            raise UsageError(f"{unfinished}; finish its training (the command that trains it resumes from this "
                             "file), or pass --allow-unfinished to search it as it is")
        warning = f"{unfinished}; searched as it is (--allow-unfinished)"
        log.warning("warning: %s", warning)
    meta = checkpoint_meta(args.checkpoint)
    identity = meta.get("data")
    if not identity:
        raise UsageError(f"checkpoint {args.checkpoint} records no data identity (an older format); "
                         "re-train it (`dvc repro supernet`)")
    for flag, given, stored in (("--dataset", args.dataset, identity["name"]), ("--seed", args.seed, identity["seed"])):
        if given is not None and given != stored:
            raise UsageError(f"{flag} {given} conflicts with the checkpoint, trained on {identity['name']!r} split "
                             f"with seed {identity['seed']}; drop {flag} (it is read from the checkpoint)")
    score_size = _subset_size(args.score_size, identity["score_size"], "--score-size", "scoring",
                              default=min(DEFAULT_SCORE_SIZE, identity["score_size"]))
    calib_size = _subset_size(args.calib_size, identity["calib_size"], "--calib-size", "calibration")
    supernet = load_supernet(args.checkpoint, allow_unfinished=args.allow_unfinished)
    table = supernet.cost_table
    space = search_space(supernet, checkpoint_candidates(args.checkpoint, supernet))   # bounded by the scheduler
    lo, hi = bitops(table, space.cfg(space.lowest_key())), bitops(table, space.cfg(space.highest_key()))
    target = args.gbitops * 1e9 if args.gbitops is not None else level_bitops(table, args.level)
    if not lo <= target <= hi:
        narrowed = sum(len(space.w_choices[n]) < len(supernet.choices[n][0]) for n in space.names)
        why = (f"; the scheduler's last decision removed the lowest weight candidate of {narrowed} layers"
               if narrowed else "")
        raise UsageError(f"target {target / 1e9:.4f} G-BitOPs is outside this supernet's reachable range "
                         f"[{lo / 1e9:.4f}, {hi / 1e9:.4f}] G-BitOPs (levels {bitops_level(table, lo):.2f} to "
                         f"{bitops_level(table, hi):.2f}{why}); pick a budget inside it")
    if identity["name"] == "folder" and not args.data_root:
        raise UsageError(f"checkpoint {args.checkpoint} was trained on an image folder; pass --data-root FOLDER "
                         "(the folder it was trained on: one sub-folder of images per class)")
    if identity["name"] != "folder" and args.data_root:
        raise UsageError(f"--data-root is for image folders; checkpoint {args.checkpoint} was trained on "
                         f"{identity['name']!r}; drop --data-root")
    splits = splits_from_identity(identity, test_size=args.test_size,
                                  root=Path(args.data_root) if args.data_root else None)
    score = splits.score.subset(torch.arange(score_size))
    calib = splits.calib.subset(torch.arange(calib_size))
    place(supernet, torch.device("cpu"))      # channels_last (and the AVX2 guard), as the notebooks search
    scorer = make_scorer(supernet, score, metric=args.metric)
    start = time.perf_counter()
    result = greedy_search(space, scorer, lambda c: bitops(table, c), target,
                           phase1_budget(table, target), alpha=args.alpha)
    out = {"checkpoint": args.checkpoint, "target_gbitops": target / 1e9, "gbitops": result.cost / 1e9,
           "level": bitops_level(table, result.cost), "size_mib": model_size_mib(table, result.bit_cfg),
           "score": result.error, "score_metric": args.metric, "scoring_images": len(score),
           "evaluations": result.evaluations, "search_seconds": round(time.perf_counter() - start, 1),
           "data": {k: identity[k] for k in ("name", "seed")}, "bit_cfg": cfg_to_json(result.bit_cfg)}
    if warning:
        out = {"warning": warning, **out}
    if args.evaluate:
        out["test_acc"] = recalibrated_accuracy(supernet, result.bit_cfg, calib, splits.test)
    text = json.dumps(out, indent=2)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("search", help="greedy search for a BitOPs budget on a trained supernet")
    s.add_argument("checkpoint", help="one-shot checkpoint (checkpoints/supernet/MODEL.pt)")
    budget = s.add_mutually_exclusive_group(required=True)
    budget.add_argument("--level", type=float, help="budget as the BitOPs of uniform k-bit (e.g. 3 or 2.5)")
    budget.add_argument("--gbitops", type=float, help="budget in G-BitOPs")
    s.add_argument("--dataset", default=None, help="read from the checkpoint; given, it must agree")
    s.add_argument("--seed", type=int, default=None, help="split seed; read from the checkpoint; given, it must agree")
    s.add_argument("--score-size", type=int, default=None,
                   help=f"scoring images: a prefix of the checkpoint's held-out scoring subset (default "
                        f"{DEFAULT_SCORE_SIZE}, as the default profile's search; at most the whole subset)")
    s.add_argument("--calib-size", type=int, default=None,
                   help="BN calibration images: the checkpoint's calibration subset, or a prefix of it")
    s.add_argument("--test-size", type=int, default=None, help="cap on test images (default: the whole test set)")
    s.add_argument("--data-root", default=None,
                   help="the image folder a checkpoint of data set 'folder' was trained on (e.g. by notebook 06)")
    s.add_argument("--metric", choices=["loss", "error"], default="loss")
    s.add_argument("--alpha", type=float, default=1.5)
    s.add_argument("--evaluate", action="store_true", help="recalibrate BN and report test accuracy")
    s.add_argument("--out", default=None, help="write the configuration JSON here (checked before the search: not the "
                                              "checkpoint, not a folder, writable)")
    s.add_argument("--allow-unfinished", action="store_true",
                   help="search a checkpoint whose training has not finished (refused otherwise); the output says so")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    from mpq.training.checkpoint import run_command

    # a search writes nothing until it completes, so an interrupted one simply starts over
    return run_command(lambda: _search(args), "mpq", sys.argv[1:] if argv is None else argv, resumes=False)


if __name__ == "__main__":
    sys.exit(main())
