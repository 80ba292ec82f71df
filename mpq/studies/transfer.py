"""Transfer: one supernet trained on the main data set, adapted once to a new one (T5; claim C6).

The path a user with a small data set of their own takes: load the supernet trained on Fashion-MNIST,
give it a new classifier for the target's classes, fine-tune it once with the same one-shot procedure
(max path + random paths, scheduler and IDM as the ``oneshot`` section sets them), and then pick a
configuration for any budget with the inference-only search on the target's own held-out scoring
images: no retraining per configuration.

Protocol (the notebook ``06_transfer`` states it beside its numbers):
- nothing is frozen: every weight, BN and step size is fine-tuned; the new classifier starts from
  PyTorch's default initialisation (seeded) and keeps the package's convention of 8-bit weights and
  inputs, its step sizes initialised on one calibration batch of the target;
- every arm gets the same budget, ``transfer.epochs`` over the target's training images, with the
  recipe of its own kind (the ``fp`` section for the float model, ``oneshot`` for the quantized ones)
  and the fine-tuning learning rates and EMA decay of the ``transfer`` section (a fine-tuning run has
  50-100 steps, so the one-shot EMA's horizon of ~100 steps would keep a third or more of the model
  with its untrained classifier: measured, 66% against 83% for the raw weights on Animal-MNIST at W4A4);
- the data split of each target is seeded by the study's ``seed``; the runs' own seeds vary the
  classifier's initialisation, path sampling, augmentation and batch order.

Pieces: ``load_target`` (a named data set or an image folder, with clear errors), ``head_name`` and
``replace_head`` (a float model's classifier), ``retarget_supernet`` (a trained supernet's weights, BNs
and step sizes in a supernet built for the target's classes), ``check_input_channels``.

The experiment of notebook 06: ``transfer_setup`` (the params sections, checked), ``run_transfer`` (targets x
seeds x arms, one record per run and level, with its test predictions), and what the notebook shows of it:
``t5_table`` (T5), ``comparison_table`` (the paired differences), ``transfer_metrics`` (the JSON) and
``transfer_findings``.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from mpq.config import (BaselineConfig, DataConfig, EvalConfig, FPConfig, ModelSpec, SearchConfig, _positive, from_dict,
                        model_specs)
from mpq.data.datasets import NAMED_DATASETS, DataError, Splits, make_splits
from mpq.method.cost import bitops, bitops_level, level_bitops, phase1_budget
from mpq.method.layers import quant_layers
from mpq.method.supernet import Supernet
from mpq.models import create_model, model_entry
from mpq.search.evaluation import make_scorer, search_space, test_predictions
from mpq.search.greedy import greedy_front
from mpq.search.space import cfg_to_json
import mpq.studies.model_bits
from mpq.studies.stats import seed_verdict
from mpq.training.checkpoint import CheckpointError
from mpq.training.fp import load_fp_model, pick_device, predictions, to_device, train_fp
from mpq.training.oneshot import OneShotRun, build_supernet, load_supernet, run_meta, train_oneshot
from mpq.training.recipe import OneShotConfig

TARGETS = tuple(n for n in NAMED_DATASETS if n != "fashion_mnist") + ("folder",)
NO_FLIP = {"mnist5k", "folder"}          # digits change meaning when mirrored; a user's folder may too


@dataclass(frozen=True)
class TransferConfig:
    """The ``transfer`` section of params.yaml (notebook 06)."""

    model: str = "resnet20"            # registry name; width from the ``models`` section
    targets: tuple[str, ...] = ("animal_mnist", "mnist5k")   # named data sets, or "folder" (with ``root``)
    root: str | None = None            # the image folder (one sub-folder per class) when a target is "folder"
    seeds: tuple[int, ...] = (0, 1)    # fine-tuning seeds
    epochs: int = 2                    # fine-tuning epochs over the target's training images, every arm
    fp_lr: float = 0.05                # SGD learning rate of the float fine-tuning (FP training used 0.1)
    lr: float = 0.02                   # SGD learning rate of the quantized fine-tuning (one-shot used 0.04)
    step_lr: float = 0.0015            # Adam learning rate of the step sizes (one-shot used 0.003)
    ema_decay: float = 0.9             # per step: a horizon of ~10 of the 50-100 fine-tuning steps (one-shot: 0.99)
    train_size: int | None = None      # cap on the target's training images (None: all that remain)
    score_size: int = 500              # held-out training images of the target scoring the search
    calib_size: int = 500              # held-out training images of the target for BN recalibration
    test_fraction: float = 0.2         # targets without a test split lose this shuffled share to it
    levels: tuple[float, ...] = (4, 3)  # BitOPs levels searched on the transferred supernets
    baseline_bits: tuple[int, ...] = (3, 4)   # uniform LSQ models fine-tuned as baselines

    def __post_init__(self) -> None:
        for name in ("targets", "seeds", "levels", "baseline_bits"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _positive("transfer", epochs=self.epochs, fp_lr=self.fp_lr, lr=self.lr, step_lr=self.step_lr,
                  train_size=self.train_size, score_size=self.score_size, calib_size=self.calib_size)
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"transfer.targets: unknown {unknown}; choose from {list(TARGETS)}")
        if "folder" in self.targets and not self.root:
            raise ValueError("transfer.targets names 'folder' but transfer.root is empty; set it to a folder "
                             "holding one sub-folder of images per class")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"transfer.ema_decay must lie in (0, 1), got {self.ema_decay}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"transfer.test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"transfer.seeds must be distinct seeds, got {list(self.seeds)}")


def load_target(name: str, cfg: TransferConfig, seed: int) -> Splits:
    """The target's seeded splits: training, held-out scoring and calibration subsets, test.

    An image folder is read in grey at 28x28 (colour images are converted, any size is resized); a
    folder with fewer than two classes, no images, or a file that is not a readable image is refused
    with the problem and the fix named.
    """
    if name not in TARGETS:
        raise ValueError(f"unknown transfer target {name!r}; choose from {list(TARGETS)}")
    root = Path(cfg.root) if name == "folder" else None
    try:
        return make_splits(name, seed=seed, train_size=cfg.train_size, score_size=cfg.score_size,
                           calib_size=cfg.calib_size, test_fraction=cfg.test_fraction, root=root)
    except (OSError, SyntaxError) as exc:     # what PIL raises for an unreadable or broken image file
        if isinstance(exc, DataError) or name != "folder":
            raise
        raise DataError(f"image folder {root}: {exc}; remove or replace the file (every file with an image "
                        f"suffix must be a readable image)") from None


def head_name(model: nn.Module) -> str:
    """The classifier: the last ``nn.Linear`` of the model (quantized or not)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("the model has no linear classifier to replace")
    return names[-1]


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """``model`` (a float model, changed in place and returned) with a new classifier for ``num_classes``.

    The new layer has the old one's input width and PyTorch's default initialisation (seed it first).
    """
    name = head_name(model)
    old = model.get_submodule(name)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


def check_input_channels(supernet_or_size: Supernet | Sequence[int], images: Tensor) -> None:
    """Refuse target images whose channel count differs from what the model takes."""
    size = supernet_or_size.input_size if isinstance(supernet_or_size, Supernet) else tuple(supernet_or_size)
    if images.shape[1] != size[0]:
        raise ValueError(f"the target images have {images.shape[1]} channel(s) but the model takes {size[0]}; "
                         f"load them with {'grey' if size[0] == 1 else 'colour'} images "
                         f"(or use a model trained on {images.shape[1]}-channel data)")


@torch.no_grad()
def retarget_supernet(source: Supernet, target_model: nn.Module, calib_images: Tensor) -> Supernet:
    """A supernet for ``target_model`` (the same architecture with a new classifier) carrying every
    weight, switchable BN and step size of ``source`` except the classifier's.

    The classifier keeps the fixed 8-bit convention; its weight and input step sizes are initialised as
    ``Supernet.calibrate`` does, on ``calib_images`` (normalised float). A source of another architecture
    is refused naming the layers that do not fit.
    """
    check_input_channels(source, calib_images)
    target = Supernet(target_model, source.input_size, source.spec)
    head = head_name(target.model)
    prefix = f"model.{head}."
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(prefix)}
    try:
        result = target.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"the trained supernet does not fit the target model "
                              f"({str(exc).splitlines()[0][:300]}); use a checkpoint of the same model and width"
                              ) from None
    foreign = [k for k in result.missing_keys if not k.startswith(prefix)] + list(result.unexpected_keys)
    if foreign:
        raise CheckpointError(f"the trained supernet does not fit the target model: layers {foreign[:5]} differ; "
                              f"use a checkpoint of the same model and width")
    layer = quant_layers(target.model)[head]
    seen: dict[str, Tensor] = {}
    hook = layer.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    target.set_float()
    target.eval()
    try:
        target(calib_images)
    finally:
        hook.remove()
    layer.weight_quantizer.init_from_weight(layer.weight)
    if layer.quantize_input:
        layer.input_quantizer.signed = bool(seen["x"].min() < 0)
        layer.input_quantizer.init_from_activation(seen["x"])
    return target.train()


def fresh_float_model(model: nn.Module, num_classes: int) -> nn.Module:
    """A copy of a trained float model with a new classifier (the FP fine-tuning arm's start)."""
    return replace_head(copy.deepcopy(model), num_classes)


# --- the experiment of notebook 06 (T5) ---------------------------------------------------------------------

QUANTIZED_KEYS = ("w_bit_choices", "a_bit_choices", "depthwise_min_bits", "num_random_paths", "cancel_2bit_decay",
                  "scheduler", "idm")        # what a uniform LSQ arm takes from ``OneShotConfig.baseline``
SUPERNET_ARMS = ("this method", "supernet without pre-training")
T5_DISPLAY = {"top-1 mean": "top-1 mean (%)", "top-1 SD": "top-1 SD (points)",
              "fine-tune s (per run)": "fine-tuning (s, per run)", "search s": "search (s)"}


@dataclass(frozen=True)
class TransferSetup:
    """Notebook 06's params sections, parsed and checked (T5): the model and every recipe its arms use."""

    spec: ModelSpec                 # the transferred model and its width
    transfer: TransferConfig
    data: DataConfig                # batch size, padding, flips of the fine-tuning
    fp: FPConfig                    # the float arm's recipe (with ``transfer.fp_lr``)
    oneshot: OneShotConfig          # the one-shot recipe with the model's own candidates
    tune: OneShotConfig             # the quantized arms' fine-tuning recipe
    search: SearchConfig            # the greedy search on the target's scoring images
    evaluation: EvalConfig
    input_size: Sequence[int]     # the model's (channels, height, width)
    device: torch.device


def transfer_setup(*, data: Mapping, models: Mapping, model_bits: Mapping | None, fp: Mapping, oneshot: Mapping,
                   evaluation: Mapping, baselines: Mapping, search: Mapping, transfer: Mapping,
                   device: torch.device | None = None) -> TransferSetup:
    """The params sections of notebook 06 (T5) as configs, refusing a model or baseline bit-width that
    the earlier stages do not train; ``device`` defaults to ``pick_device()``."""
    data_cfg = from_dict(DataConfig, data, "data")
    fp_cfg = from_dict(FPConfig, fp, "fp")
    cfg = from_dict(OneShotConfig, oneshot, "oneshot")
    eval_cfg = from_dict(EvalConfig, evaluation, "evaluation")
    base_cfg = from_dict(BaselineConfig, baselines, "baselines")
    search_cfg = from_dict(SearchConfig, search, "search")
    tr = from_dict(TransferConfig, transfer, "transfer")
    spec = next((s for s in model_specs(models) if s.name == tr.model), None)
    if spec is None:
        raise ValueError(f"transfer.model {tr.model!r} is not in the models section {list(models)}")
    own = mpq.studies.model_bits.model_bits(model_bits, spec.name)   # the model's own candidates, if listed
    cfg = own.oneshot(cfg)
    search_cfg = own.search(search_cfg)              # ... and its search start
    search_cfg.check_candidates(cfg.w_bit_choices, cfg.a_bit_choices)
    missing = sorted(set(tr.baseline_bits) - set(own.baseline_levels(base_cfg)))
    if missing:
        raise ValueError(f"transfer.baseline_bits {missing} have no LSQ model: notebook 03 trains {tr.model} at "
                         f"{list(own.baseline_levels(base_cfg))} (baselines.levels, model_bits); add them there or "
                         f"drop them here")
    device = device if device is not None else pick_device()
    # the quantized arms' fine-tuning recipe: the one-shot recipe with the transfer budget and learning rates
    tune = dataclasses.replace(cfg, epochs=tr.epochs, lr=tr.lr, step_lr=tr.step_lr, ema_decay=tr.ema_decay,
                               train_size=None)
    return TransferSetup(spec=spec, transfer=tr, data=data_cfg, fp=fp_cfg, oneshot=cfg, tune=tune, search=search_cfg,
                         evaluation=eval_cfg, input_size=model_entry(spec.name).input_size, device=device)


def accuracy(preds: Tensor, labels: Tensor) -> float:
    """Top-1 as a fraction: the share of ``preds`` equal to ``labels``."""
    return float((preds == labels).float().mean())


def search_and_test(run: OneShotRun, splits: Splits, levels: Sequence[float], search_cfg: SearchConfig,
                    batch_size: int) -> tuple[dict[float, dict], float]:
    """Greedy no-retraining configurations of a fine-tuned supernet at each BitOPs level (T5), with their
    test predictions; returns ``{level: {preds, gbitops, level, bit_cfg}}`` and the search's wall time."""
    ema, table = run.ema, run.ema.cost_table
    score_set = splits.score.subset(torch.arange(min(search_cfg.score_size, len(splits.score))))
    targets = [level_bitops(table, level) for level in levels]
    start = time.perf_counter()
    front = greedy_front(search_space(ema, run.candidates()), make_scorer(ema, score_set, metric=search_cfg.metric),
                         lambda c: bitops(table, c), targets,
                         [phase1_budget(table, t, a_bits=search_cfg.start_bits) for t in targets],
                         start_bits=search_cfg.start_bits, alpha=search_cfg.alpha)
    seconds = time.perf_counter() - start
    out = {}
    for level, res in zip(levels, front):
        preds = test_predictions(ema, res.bit_cfg, splits.calib, splits.test, batch_size=batch_size)
        out[level] = {"preds": preds, "gbitops": res.cost / 1e9, "level": bitops_level(table, res.cost),
                      "bit_cfg": cfg_to_json(res.bit_cfg)}
    return out, seconds


def run_record(target: str, seed: int, arm: str, level: float, preds: Tensor, labels: Tensor, gbitops: float | None,
               seconds: float, **extra: Any) -> dict:
    """One run's record at one level (a row of ``run_transfer``'s result; ``extra`` keys come last)."""
    return {"target": target, "seed": seed, "arm": arm, "level": level, "preds": preds, "labels": labels,
            "gbitops": gbitops, "tune_seconds": seconds, **extra}


def seed_runs(setup: TransferSetup, target: str, splits: Splits, s: int, fp_source: nn.Module, calib_x: Tensor,
              kw: Mapping[str, Any], checkpoints: str = "checkpoints") -> list[dict]:
    """Every arm of one target and fine-tuning seed ``s``, in T5's order: FP, each uniform LSQ model, this
    method and the supernet without pre-training (searched at each ``transfer.levels``).

    Each arm re-seeds torch's global generator with ``s`` before it builds its model; ``kw`` carries the
    training keywords (batch size, padding, flips, device, progress).
    """
    spec, tr, cfg, tune = setup.spec, setup.transfer, setup.oneshot, setup.tune
    classes = len(splits.train.classes)
    records = []

    def add(arm, level, preds, gbitops, seconds, **extra):
        records.append(run_record(target, s, arm, level, preds, splits.test.labels, gbitops, seconds, **extra))

    # FP fine-tuned
    torch.manual_seed(s)
    model = fresh_float_model(fp_source, classes)
    history = train_fp(model, splits.train, splits.test, epochs=tr.epochs, lr=tr.fp_lr, momentum=setup.fp.momentum,
                       weight_decay=setup.fp.weight_decay, warmup_epochs=setup.fp.warmup_epochs,
                       label_smoothing=setup.fp.label_smoothing, seed=s, **kw)
    add("FP", 32, predictions(model, splits.test), None, sum(history.seconds))
    # uniform LSQ models fine-tuned
    for bits in tr.baseline_bits:
        source = load_supernet(f"{checkpoints}/baselines/{spec.name}_w{bits}a{bits}.pt", model=spec.name,
                               width_mult=spec.width_mult)
        torch.manual_seed(s)
        net = retarget_supernet(source, create_model(spec.name, num_classes=classes, width_mult=spec.width_mult),
                                calib_x)
        run = train_oneshot(net, splits.train, dataclasses.replace(tune, **{
            k: v for k, v in dataclasses.asdict(cfg.baseline(bits)).items() if k in QUANTIZED_KEYS}),
            seed=s, checkpoint=None, **kw)
        bit_cfg = run.ema.uniform_config(bits)
        add(f"LSQ W{bits}A{bits}", bits, test_predictions(run.ema, bit_cfg, splits.calib, splits.test),
            bitops(run.ema.cost_table, bit_cfg) / 1e9, run.seconds)
    # the one-shot supernet transferred, and a supernet trained on the target from the FP model
    for arm in SUPERNET_ARMS:
        torch.manual_seed(s)
        target_model = create_model(spec.name, num_classes=classes, width_mult=spec.width_mult)
        if arm == "this method":
            source = load_supernet(f"{checkpoints}/supernet/{spec.name}.pt", model=spec.name,
                                   width_mult=spec.width_mult, spec=cfg.supernet_spec())
            net = retarget_supernet(source, target_model, calib_x)
        else:       # ``target_model`` is still built (and draws from the generator) as the transferred arm's is
            float_model = fresh_float_model(fp_source, classes)
            net = build_supernet(float_model, tune.supernet_spec(), splits.calib, setup.input_size)
        tag = "transferred" if arm == "this method" else "from-fp"
        run = train_oneshot(net, splits.train, tune, seed=s,
                            checkpoint=f"{checkpoints}/transfer/{spec.name}_{target}_{tag}_seed{s}.pt",
                            meta=run_meta(spec.name, spec.width_mult, splits, splits.train, arm=arm), **kw)
        found, search_seconds = search_and_test(run, splits, tr.levels, setup.search, setup.evaluation.batch_size)
        for level, f in found.items():
            add(arm, level, f["preds"], f["gbitops"], run.seconds, search_seconds=round(search_seconds, 1),
                found_level=f["level"], bit_cfg=f["bit_cfg"])
    return records


def run_transfer(setup: TransferSetup, seed: int, *, checkpoints: str = "checkpoints",
                 progress: bool = False) -> tuple[list[dict], float]:
    """T5's runs: for each target (split seeded by ``seed``) and fine-tuning seed, every arm of ``seed_runs``.

    Reads the FP model, the uniform LSQ models and the one-shot supernet under ``checkpoints`` (notebooks
    01-03) and writes the supernet arms' fine-tuning checkpoints to ``checkpoints/transfer`` (a finished one
    is resumed, not retrained). Returns one record per (target, seed, arm, level), test predictions and
    labels included, and the wall time of the runs.
    """
    spec, tr = setup.spec, setup.transfer
    fp_source = load_fp_model(f"{checkpoints}/fp/{spec.name}.pt", spec.name, spec.width_mult)
    stage_start = time.perf_counter()
    records = []          # one per (target, seed, arm, level): predictions kept for the paired tests
    Path(f"{checkpoints}/transfer").mkdir(parents=True, exist_ok=True)
    for target in tr.targets:
        splits = load_target(target, tr, seed)
        classes = len(splits.train.classes)
        flip = setup.data.flip and target not in NO_FLIP
        calib_x = to_device(splits.calib.images[:256], splits.calib.labels[:256], torch.device("cpu"))[0]
        print(f"{target}: {classes} classes, train {len(splits.train)}, score {len(splits.score)}, "
              f"calib {len(splits.calib)}, test {len(splits.test)}, flip {flip}")
        kw = dict(batch_size=setup.data.batch_size, pad=setup.data.pad, flip=flip, device=setup.device,
                  progress=progress)
        for s in tr.seeds:
            done = seed_runs(setup, target, splits, s, fp_source, calib_x, kw, checkpoints)
            records.extend(done)
            print(f"{target} seed {s}: " + ", ".join(
                f"{r['arm']}@{r['level']} {100 * accuracy(r['preds'], r['labels']):.2f}" for r in done))
    return records, time.perf_counter() - stage_start


def t5_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """T5: one row per (target, arm, level) in the records' order: top-1 (%) mean, SD and per-seed values,
    G-BitOPs, fine-tuning and search wall time."""
    rows = []
    for (target, arm, level), group in pd.DataFrame(records).groupby(["target", "arm", "level"], sort=False):
        accs = [100 * accuracy(p, l) for p, l in zip(group.preds, group.labels)]
        rows.append({"target": target, "method": arm + ("" if arm in ("FP",) or arm.startswith("LSQ") else
                                                        ", no retraining"),
                     "W/A level": "32/32" if arm == "FP" else str(level), "seeds": len(accs),
                     "top-1 mean": np.mean(accs), "top-1 SD": np.std(accs, ddof=1) if len(accs) > 1 else np.nan,
                     "per seed": " / ".join(f"{a:.2f}" for a in accs),
                     "G-BitOPs": group.gbitops.iloc[0] if group.gbitops.iloc[0] is not None else np.nan,
                     "fine-tune s (per run)": group.tune_seconds.mean(),
                     "search s": group["search_seconds"].mean() if "search_seconds" in group else np.nan})
    return pd.DataFrame(rows)


def paired_differences(records: Sequence[Mapping], target: str, seeds: Sequence[int], arm_a: str, level_a: float,
                       arm_b: str, level_b: float) -> list[float]:
    """Per seed, top-1 of ``arm_a`` at ``level_a`` minus ``arm_b`` at ``level_b`` on the same test images
    (points); T5's paired comparisons."""
    diffs = []
    for s in seeds:
        a = next(r for r in records if (r["target"], r["seed"], r["arm"], r["level"]) == (target, s, arm_a, level_a))
        b = next(r for r in records if (r["target"], r["seed"], r["arm"], r["level"]) == (target, s, arm_b, level_b))
        diffs.append(100 * (accuracy(a["preds"], a["labels"]) - accuracy(b["preds"], b["labels"])))
    return diffs


def comparison_table(records: Sequence[Mapping], targets: Sequence[str], levels: Sequence[float],
                     seeds: Sequence[int], baseline_bits: Sequence[int]) -> pd.DataFrame:
    """T5's paired comparisons: this method at each level minus the uniform LSQ model of that bit-width
    (integer levels with a baseline) and minus the supernet without pre-training, with the seed verdict."""
    comparisons = []
    for target in targets:
        for level in levels:
            pairs = [("supernet without pre-training", level)]
            if int(level) == level and int(level) in baseline_bits:
                pairs.insert(0, (f"LSQ W{int(level)}A{int(level)}", int(level)))
            for arm_b, level_b in pairs:
                diffs = paired_differences(records, target, seeds, "this method", level, arm_b, level_b)
                comparisons.append({"target": target, "level": level, "this method minus": arm_b,
                                    "mean (points)": float(np.mean(diffs)),
                                    "per seed": " / ".join(f"{d:+.2f}" for d in diffs), "verdict": seed_verdict(diffs)})
    return pd.DataFrame(comparisons)


def transfer_metrics(*, profile: str, seed: int, spec: ModelSpec, device: torch.device | str, stage_seconds: float,
                     transfer: TransferConfig, t5: pd.DataFrame, comparisons: pd.DataFrame,
                     records: Sequence[Mapping]) -> dict:
    """``reports/metrics/transfer.json`` (T5): the run's scale, the config, both tables and every run without
    its predictions (with its test top-1 as a fraction)."""
    return {"profile": profile, "seed": seed, "model": spec.name, "width_mult": spec.width_mult,
            "device": str(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "stage_seconds": round(stage_seconds, 1), "transfer": dataclasses.asdict(transfer),
            "t5": t5.to_dict(orient="records"), "comparisons": comparisons.to_dict(orient="records"),
            "runs": [{k: v for k, v in r.items() if k not in ("preds", "labels")} | {
                "test_acc": accuracy(r["preds"], r["labels"])} for r in records]}


def transfer_findings(comparisons: pd.DataFrame, t5: pd.DataFrame, targets: Sequence[str]) -> list[str]:
    """The findings bullets of notebook 06 (T5): each target's paired differences, then its FP fine-tuned top-1."""
    lines = []
    for target, g in comparisons.groupby("target", sort=False):
        lines.append(f"{target}: this method (no retraining) minus " + "; ".join(
            f"{c['this method minus']} at level {c.level}: {c['mean (points)']:+.2f} points (per seed {c['per seed']}, "
            f"{c.verdict})" for _, c in g.iterrows()))
    for target in targets:
        fp_row = t5[(t5.target == target) & (t5.method == "FP")]
        if len(fp_row):
            lines.append(f"{target}: the FP model fine-tuned reaches {fp_row['top-1 mean'].iloc[0]:.2f}%")
    return lines
