"""Command line: ``python -m mpq search ...`` finds a bit configuration for a budget, no notebook needed.

    python -m mpq search checkpoints/supernet/resnet20.pt --level 3 --out resnet20_3bit.json
    python -m mpq search checkpoints/supernet/resnet20.pt --gbitops 0.05 --evaluate --out cfg.json
    python -m mpq export models/resnet20.pt --config resnet20_3bit.json --out resnet20_3bit
    python -m mpq evaluate resnet20_3bit

``search`` loads the EMA supernet from a one-shot checkpoint (or a released one, ``models/``), runs the
inference-only greedy search (`docs/method.md`) on a scoring subset of held-out training images, optionally
recalibrates BN and measures test accuracy, and writes the configuration as JSON with its BitOPs, size and
accuracy. ``export`` writes a configuration as integer weights, a JSON description and ONNX (``mpq.deploy``);
``evaluate`` measures it as fake quantization, integer reference and in ONNX Runtime.
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


class OneLineParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown flag, a value that is not a number, a missing argument) end as every
    other mistake does: one line and exit status 2, not the usage block and a second line."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


# test images on which `evaluate` compares fake-quant and integer codes layer by layer, unless told
DEFAULT_AGREEMENT_IMAGES = 256
# where the greedy walk starts (uniform W5A5, docs/method.md section 2; `greedy_search`'s default)
START_BITS = 5
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


def _open_supernet(args: argparse.Namespace):
    """The EMA supernet of ``args.checkpoint`` (a one-shot checkpoint or a released supernet), the checkpoint's
    checked contents (its data identity is ``state["meta"]["data"]``), and a warning when it is unfinished (refused
    unless ``args.allow_unfinished``). The file is read once."""
    from mpq.training.checkpoint import load_checkpoint
    from mpq.training.oneshot import check_supernet_state, load_supernet, training_progress

    fix = "pass a one-shot supernet checkpoint (checkpoints/supernet/MODEL.pt) or a released one (models/MODEL.pt)"
    state = load_checkpoint(args.checkpoint, fix=fix)
    if "ema" not in state or "meta" not in state:
        kind = "a full-precision checkpoint (FP stage)" if "state_dict" in state else "not a one-shot checkpoint"
        raise UsageError(f"{args.checkpoint} is {kind}; pass a one-shot supernet checkpoint "
                         "(checkpoints/supernet/MODEL.pt, written by `dvc repro supernet`, or models/MODEL.pt)")
    state = check_supernet_state(state, args.checkpoint, fix=fix)        # every entry read below, checked
    epoch, epochs, finished = training_progress(state)
    identity = state["meta"]["data"]
    warning = None
    if not finished:
        unfinished = (f"checkpoint {args.checkpoint} is unfinished: it holds epoch {epoch} of {epochs} (its training "
                      "was stopped or is still running)")
        if not args.allow_unfinished:
            raise UsageError(f"{unfinished}; finish its training (the command that trains it resumes from this "
                             f"file), or pass --allow-unfinished to {args.command} it as it is")
        done = {"search": "searched", "export": "exported", "evaluate": "evaluated"}[args.command]
        warning = f"{unfinished}; {done} as it is (--allow-unfinished)"
        log.warning("warning: %s", warning)
    for flag, given, stored in (("--dataset", getattr(args, "dataset", None), identity["name"]),
                                ("--seed", getattr(args, "seed", None), identity["seed"])):
        if args.command == "search" and given is not None and given != stored:
            raise UsageError(f"{flag} {given} conflicts with the checkpoint, trained on {identity['name']!r} split "
                             f"with seed {identity['seed']}; drop {flag} (it is read from the checkpoint)")
    supernet = load_supernet(args.checkpoint, allow_unfinished=args.allow_unfinished, state=state)
    return supernet, state, warning


def _splits(args: argparse.Namespace, identity: dict):
    """The checkpoint's data splits (held-out scoring and calibration subsets, the test set)."""
    from mpq.data.datasets import splits_from_identity

    if identity["name"] == "folder" and not args.data_root:
        raise UsageError(f"checkpoint {args.checkpoint} was trained on an image folder; pass --data-root FOLDER "
                         "(the folder it was trained on: one sub-folder of images per class)")
    if identity["name"] != "folder" and args.data_root:
        raise UsageError(f"--data-root is for image folders; checkpoint {args.checkpoint} was trained on "
                         f"{identity['name']!r}; drop --data-root")
    splits = splits_from_identity(identity, test_size=args.test_size,
                                  root=Path(args.data_root) if args.data_root else None)
    _at_most("--test-size", args.test_size, len(splits.test), "test")
    _at_most("--agreement-images", getattr(args, "agreement_images", None), len(splits.test), "test")
    return splits


def _at_most(flag: str, given: int | None, available: int, what: str) -> None:
    """Refuse a request for more images than there are: a smaller answer would be another question's."""
    if given is not None and given > available:
        raise UsageError(f"{flag} {given}: the {what} set has {available} images; use at most {available}, or leave "
                         f"{flag} out for all of them")


def _search(args: argparse.Namespace) -> int:
    from mpq.method.cost import bitops, bitops_level, level_bitops, model_size_mib, phase1_budget
    from mpq.search.evaluation import make_scorer, recalibrated_accuracy, search_space
    from mpq.training.hardware import place
    from mpq.training.oneshot import checkpoint_candidates
    from mpq.search.space import cfg_to_json
    from mpq.search.greedy import OutOfReach, WalkStuck, greedy_reachable, greedy_search

    _check_args(args)
    supernet, state, warning = _open_supernet(args)
    identity = state["meta"]["data"]
    score_size = _subset_size(args.score_size, identity["score_size"], "--score-size", "scoring",
                              default=min(DEFAULT_SCORE_SIZE, identity["score_size"]))
    calib_size = _subset_size(args.calib_size, identity["calib_size"], "--calib-size", "calibration")
    table = supernet.cost_table
    space = search_space(supernet, checkpoint_candidates(args.checkpoint, supernet, state))   # bounded by the scheduler
    del state
    # the walk starts at uniform W5A5 and moves down: a budget above the start would get the start back
    lo, hi = greedy_reachable(space, lambda c: bitops(table, c), START_BITS)
    target = args.gbitops * 1e9 if args.gbitops is not None else level_bitops(table, args.level)
    if not lo <= target <= hi:
        narrowed = sum(len(space.w_choices[n]) < len(supernet.choices[n][0]) for n in space.names)
        why = (f"; the scheduler's last decision removed the lowest weight candidate of {narrowed} layers"
               if narrowed else "")
        raise UsageError(f"target {target / 1e9:.4f} G-BitOPs is outside this supernet's reachable range "
                         f"[{lo / 1e9:.4f}, {hi / 1e9:.4f}] G-BitOPs (levels {bitops_level(table, lo):.2f} to "
                         f"{bitops_level(table, hi):.2f}: the greedy walk starts at uniform W{START_BITS}A{START_BITS} "
                         f"and moves down{why}); pick a budget inside it")
    splits = _splits(args, identity)
    score = splits.score.subset(torch.arange(score_size))
    calib = splits.calib.subset(torch.arange(calib_size))
    place(supernet, torch.device("cpu"))      # channels_last (and the AVX2 guard), as the notebooks search
    scorer = make_scorer(supernet, score, metric=args.metric)
    start = time.perf_counter()
    try:
        result = greedy_search(space, scorer, lambda c: bitops(table, c), target,
                               phase1_budget(table, target), start_bits=START_BITS, alpha=args.alpha)
    except WalkStuck as exc:          # the scores outweigh the BitOPs saved at this alpha
        raise UsageError(f"{exc} (--alpha {args.alpha}; the default is 1.5)") from None
    except OutOfReach as exc:         # within the range, but below where this supernet's weight walk leads
        raise UsageError(f"target {target / 1e9:.4f} G-BitOPs (level {bitops_level(table, target):.2f}) is out of the "
                         f"greedy walk's reach on this supernet: its weight phase ended where activation moves reach "
                         f"down to {exc.floor / 1e9:.4f} G-BitOPs (level {bitops_level(table, exc.floor):.2f}); pick a "
                         "budget at or above that") from None
    out = {"checkpoint": args.checkpoint, "target_gbitops": target / 1e9, "gbitops": result.cost / 1e9,
           "level": bitops_level(table, result.cost), "size_mib": model_size_mib(table, result.bit_cfg),
           "score": result.error, "score_metric": args.metric, "scoring_images": len(score),
           "evaluations": result.evaluations, "search_seconds": round(time.perf_counter() - start, 1),
           "data": {k: identity[k] for k in ("name", "seed")}, "bit_cfg": cfg_to_json(result.bit_cfg)}
    if warning:
        out = {"warning": warning, **out}
    if args.evaluate:
        out["test_acc"] = recalibrated_accuracy(supernet, result.bit_cfg, calib, splits.test)
    return _report(out, args.out)


def _report(out: dict, path: str | None) -> int:
    """Print a command's result as JSON, and write it to ``path`` (atomically) when given."""
    from mpq.training.checkpoint import atomic_path

    text = json.dumps(out, indent=2)
    if path:
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n")
    print(text)
    return 0


CONFIG_FIX = "pass the JSON that `python -m mpq search --out` wrote for this supernet"


def _read_config(path: str) -> dict:
    """The ``bit_cfg`` entry of ``path`` (the JSON ``python -m mpq search --out`` writes), read before anything is
    loaded; ``_deploy`` checks it against the supernet."""
    source = Path(path)
    if not source.is_file():
        raise UsageError(f"--config {path} not found; {CONFIG_FIX}")
    try:
        obj = json.loads(source.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path} is not JSON ({exc}); {CONFIG_FIX}") from None
    if not isinstance(obj, dict) or "bit_cfg" not in obj:
        raise UsageError(f"--config {path} has no 'bit_cfg' entry; {CONFIG_FIX}")
    return obj["bit_cfg"]


def _deploy(args: argparse.Namespace):
    """Supernet, configuration (BN recalibrated on the checkpoint's calibration subset), deployed model, splits."""
    from mpq.data.datasets import sha256_file
    from mpq.deploy.model import lower
    from mpq.search.evaluation import recalibrate

    from mpq.search.space import cfg_from_json

    given = _read_config(args.config)
    supernet, state, warning = _open_supernet(args)
    identity = state["meta"]["data"]
    try:
        cfg = supernet.validate(cfg_from_json(given))
    except ValueError as exc:
        raise UsageError(f"--config {args.config}: {exc}; {CONFIG_FIX}") from None
    splits = _splits(args, identity)
    recalibrate(supernet, cfg, splits.calib)                # as `search --evaluate` does before measuring
    meta = {"checkpoint": Path(args.checkpoint).name,
            "checkpoint_sha256": sha256_file(Path(args.checkpoint)), "data": identity,
            **{k: state["meta"][k] for k in ("model", "width_mult", "num_classes")}}
    return supernet, cfg, lower(supernet, cfg, meta=meta), splits, warning


def _require_onnx():
    from mpq.deploy import onnx_export

    try:
        onnx_export.require_onnx()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    return onnx_export


def _export(args: argparse.Namespace) -> int:
    from mpq.deploy.model import save
    from mpq.training.checkpoint import OutputError, atomic_folder, check_output

    try:
        check_output(args.out, inputs=[args.checkpoint, args.config, args.data_root], folder=True, result="model.json")
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    onnx_export = _require_onnx()
    supernet, cfg, deployed, _, warning = _deploy(args)
    model = onnx_export.to_onnx(deployed)
    graph_bitops = onnx_export.graph_bitops(model)
    if graph_bitops != supernet.bitops(cfg):
        raise RuntimeError(f"the exported graph counts {graph_bitops} BitOPs, the accounting {supernet.bitops(cfg)}")
    onnx_bytes = model.SerializeToString()
    deployed.meta.update(weight_bytes=deployed.weight_bytes(),
                         float32_weight_bytes=4 * sum(deployed.tensors[f"{op['name']}.weight"].numel()
                                                      for op in deployed.layers))
    with atomic_folder(args.out) as folder:
        save(deployed, folder, files={"model.onnx": onnx_bytes})       # model.json pins both files by sha256
    meta = deployed.meta
    out = {"out": args.out, "model": meta["model"], "gbitops": meta["gbitops"],
           "gbitops_onnx_graph": graph_bitops / 1e9,
           "size_mib": meta["size_mib"], "weight_bytes": meta["weight_bytes"],
           "float32_weight_bytes": meta["float32_weight_bytes"], "onnx_bytes": len(onnx_bytes),
           "files": ["model.json", "weights.npz", "model.onnx"]}
    if warning:
        out = {"warning": warning, **out}
    return _report(out, None)


def _test_images(args: argparse.Namespace, identity: dict, classes: int, splits=None):
    """The images to evaluate on: the checkpoint's test split, or ``--dataset`` / ``--data-root`` given."""
    from mpq.data.datasets import load_dataset

    name = args.dataset or identity["name"]
    if name == identity["name"]:
        return (splits or _splits(args, identity)).test, name
    if name == "folder" and not args.data_root:
        raise UsageError("--dataset folder needs --data-root FOLDER (one sub-folder of images per class)")
    train, test = load_dataset(name, Path(args.data_root) if args.data_root else None)
    images = test if test is not None else train
    if len(images.classes) != classes:
        raise UsageError(f"data set {name!r} has {len(images.classes)} classes, the model {classes}; "
                         "evaluate on a data set with the classes it was trained on")
    if args.test_size is not None:
        _at_most("--test-size", args.test_size, len(images), f"{name!r} test")
        images = images.subset(torch.arange(args.test_size))
    return images, name


def _evaluate(args: argparse.Namespace) -> int:
    from mpq.deploy import evaluate
    from mpq.deploy.model import load
    from mpq.training.checkpoint import check_output

    for flag, value in (("--test-size", args.test_size), ("--agreement-images", args.agreement_images)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} {value}: must be a positive number of images")
    if args.out:
        try:
            check_output(args.out, inputs=[args.source, args.config, args.data_root])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    onnx_export = _require_onnx()
    source = args.checkpoint = Path(args.source)          # the messages about the data name it
    fake_quant, splits, warning = None, None, None
    if not source.exists():
        raise UsageError(f"{source} not found; pass a folder written by `python -m mpq export`, or a checkpoint "
                         "with --config")
    if source.is_dir():
        if args.config:
            raise UsageError(f"{source} is an exported model, which holds its configuration; drop --config")
        deployed = load(source)
        onnx_file = source / "model.onnx"
        if not onnx_file.is_file():
            raise UsageError(f"{source} holds no model.onnx; export it again with `python -m mpq export`")
        session = onnx_export.session(onnx_file)
    else:
        if not args.config:
            raise UsageError(f"{source} is a checkpoint: pass --config CFG.json (a configuration searched on it), "
                             "or pass a folder written by `python -m mpq export`")
        supernet, cfg, deployed, splits, warning = _deploy(args)
        fake_quant = supernet
        session = onnx_export.session(onnx_export.to_onnx(deployed))
    meta = deployed.meta
    test, name = _test_images(args, meta["data"], meta["num_classes"], splits)
    logits = evaluate.logits(deployed, test, fake_quant=fake_quant, onnx_session=session)
    out = {"source": args.source, "model": meta["model"], "dataset": name, "test_images": len(test),
           "gbitops": meta["gbitops"], "size_mib": meta["size_mib"], **evaluate.accuracies(logits, test.labels),
           "onnx_logits_equal_integer": bool(torch.equal(logits["onnx"], logits["integer"]))}
    if fake_quant is not None:
        _at_most("--agreement-images", args.agreement_images, len(test), "test")
        pixels = test.images[:args.agreement_images or min(DEFAULT_AGREEMENT_IMAGES, len(test))]
        layers = evaluate.code_agreement(deployed, fake_quant.export(cfg), pixels)
        out["code_agreement"] = {"images": len(pixels),
                                 "max_share_differing": max(v["differ"] for v in layers.values() if v["codes"]),
                                 "max_level_difference": max(v["max_diff"] for v in layers.values()),
                                 "layers": layers}
    if warning:
        out = {"warning": warning, **out}
    return _report(out, args.out)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m mpq", description=__doc__.splitlines()[0])
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
    e = sub.add_parser("export", help="a searched configuration as integer weights, a JSON description and ONNX")
    e.add_argument("checkpoint", help="one-shot checkpoint or released supernet (models/MODEL.pt)")
    e.add_argument("--config", required=True, help="the configuration JSON (`python -m mpq search --out`)")
    e.add_argument("--out", required=True, help="output folder: model.json, weights.npz, model.onnx (replaced whole)")
    v = sub.add_parser("evaluate", help="accuracy of a configuration as fake quantization, integer reference and "
                                        "ONNX Runtime")
    v.add_argument("source", help="a folder written by `export`, or a checkpoint with --config")
    v.add_argument("--config", default=None, help="with a checkpoint: the configuration JSON")
    v.add_argument("--agreement-images", type=int, default=None,
                   help=f"test images on which fake-quant and integer codes are compared layer by layer (default "
                        f"{DEFAULT_AGREEMENT_IMAGES}, or all where the test set has fewer)")
    for p in (e, v):
        p.add_argument("--allow-unfinished", action="store_true",
                       help="use a checkpoint whose training has not finished")
        p.add_argument("--data-root", default=None,
                       help="the image folder of a checkpoint trained on data set 'folder'")
    v.add_argument("--dataset", default=None, help="evaluate on this named data set's test images (default: the "
                                                   "checkpoint's test split)")
    e.set_defaults(test_size=None)
    v.add_argument("--test-size", type=int, default=None, help="cap on test images (default: all)")
    v.add_argument("--out", default=None, help="write the result JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    from mpq.training.checkpoint import run_command

    # a command writes nothing until it completes, so an interrupted one simply starts over
    body = {"search": _search, "export": _export, "evaluate": _evaluate}[args.command]
    return run_command(lambda: body(args), "mpq", sys.argv[1:] if argv is None else argv, resumes=False)


if __name__ == "__main__":
    sys.exit(main())
