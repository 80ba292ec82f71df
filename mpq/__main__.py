"""Command line: ``python -m mpq search ...`` finds a bit configuration for a budget, no notebook needed.

    python -m mpq search checkpoints/supernet/resnet20.pt --level 3 --out resnet20_3bit.json
    python -m mpq search checkpoints/supernet/resnet20.pt --gbitops 0.05 --evaluate --out cfg.json

Loads the EMA supernet from a one-shot checkpoint, runs the inference-only greedy search (DESIGN.md
section 2) on a scoring subset of held-out training images, optionally recalibrates BN and measures test
accuracy, and writes the configuration as JSON with its BitOPs, size and accuracy.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import torch

log = logging.getLogger("mpq")


def _search(args: argparse.Namespace) -> int:
    from .checkpoint import atomic_path
    from .cost import bitops, bitops_level, level_bitops, model_size_mib, phase1_budget
    from .data import make_splits
    from .evaluation import make_scorer, recalibrated_accuracy, search_space
    from .oneshot import load_supernet
    from .search import cfg_to_json, greedy_search

    supernet = load_supernet(args.checkpoint)
    table = supernet.cost_table
    lo, hi = bitops(table, supernet.min_config()), bitops(table, supernet.max_config())
    target = args.gbitops * 1e9 if args.gbitops is not None else level_bitops(table, args.level)
    if not lo <= target <= hi:
        raise SystemExit(f"error: target {target / 1e9:.4f} G-BitOPs is outside this supernet's reachable range "
                         f"[{lo / 1e9:.4f}, {hi / 1e9:.4f}] G-BitOPs (levels {bitops_level(table, lo):.2f} to "
                         f"{bitops_level(table, hi):.2f}); pick a budget inside it")
    splits = make_splits(args.dataset, seed=args.seed, train_size=1, score_size=args.score_size,
                         calib_size=args.calib_size, test_size=args.test_size)
    scorer = make_scorer(supernet, splits.score, metric=args.metric)
    start = time.perf_counter()
    result = greedy_search(search_space(supernet), scorer, lambda c: bitops(table, c), target,
                           phase1_budget(table, target), alpha=args.alpha)
    out = {"checkpoint": args.checkpoint, "target_gbitops": target / 1e9, "gbitops": result.cost / 1e9,
           "level": bitops_level(table, result.cost), "size_mib": model_size_mib(table, result.bit_cfg),
           "score": result.error, "score_metric": args.metric, "evaluations": result.evaluations,
           "search_seconds": round(time.perf_counter() - start, 1), "bit_cfg": cfg_to_json(result.bit_cfg)}
    if args.evaluate:
        out["test_acc"] = recalibrated_accuracy(supernet, result.bit_cfg, splits.calib, splits.test)
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
    s.add_argument("--dataset", default="fashion_mnist")
    s.add_argument("--seed", type=int, default=0, help="split seed (use the training seed: the scoring subset must be held out)")
    s.add_argument("--score-size", type=int, default=2000)
    s.add_argument("--calib-size", type=int, default=1000)
    s.add_argument("--test-size", type=int, default=None)
    s.add_argument("--metric", choices=["loss", "error"], default="loss")
    s.add_argument("--alpha", type=float, default=1.5)
    s.add_argument("--evaluate", action="store_true", help="recalibrate BN and report test accuracy")
    s.add_argument("--out", default=None, help="write the configuration JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)
    return _search(args)


if __name__ == "__main__":
    sys.exit(main())
