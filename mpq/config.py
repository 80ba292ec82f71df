"""Configuration: one frozen dataclass per ``params.yaml`` section, validated when built.

Notebooks receive each section as a plain dict (papermill parameters) and build the dataclass in the
cell after ``parameters``, so a key that ``params.yaml`` and the notebook disagree on fails at once.
Every number from the paper is a named field with the paper's (official code's) value as default.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")

# the top-level keys of params.yaml (and of every profile): a key outside them is a typo, refused when read
SECTIONS = ("profile", "seed", "data", "models", "model_bits", "fp", "oneshot", "evaluation", "baselines", "search",
            "retrain_check", "replicates", "search_study", "interference", "ablation", "transfer", "benchmark")


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def matches_type(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's annotation (int, float, bool, str, ``X | None``, ``tuple[X, ...]``).

    Strict where YAML is loose: ``"3"`` is not an int, ``true`` is not an int, ``3`` is a float.
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, (list, tuple)) and all(matches_type(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True   # other annotations are checked by the dataclass itself


def from_dict(cls: type[T], values: Mapping[str, Any], section: str) -> T:
    """Build dataclass ``cls`` from ``values``; unknown or missing keys, or values of the wrong type,
    raise a ValueError naming the key and what it accepts."""
    if not isinstance(values, Mapping):
        raise ValueError(f"params section {section!r} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    missing = sorted(n for n, f in fields.items() if n not in values
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if unknown or missing:
        raise ValueError(f"params section {section!r}: unknown keys {unknown}, missing keys {missing}; "
                         f"expected keys {sorted(fields)} (keep params.yaml and the notebook in agreement)")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if not matches_type(value, hints[key]):
            raise ValueError(f"params {section}.{key}: expected {_type_name(hints[key])}, got "
                             f"{type(value).__name__} {value!r}")
        if not all_finite(value):     # YAML's .nan and .inf are floats; no setting means either
            raise ValueError(f"params {section}.{key}: expected finite numbers, got {value!r}; write a number")
    return cls(**values)


def all_finite(value: Any) -> bool:
    """Whether every float in ``value`` (a number, or a list of them) is finite; other values pass."""
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Refuse ``key = value`` unless ``ok``, with a message naming the key, the value and what is allowed.

    >>> require(False, "fp.lr", -0.1, "a finite number > 0")
    Traceback (most recent call last):
    ...
    ValueError: fp.lr must be a finite number > 0, got -0.1
    """
    if not ok:
        raise ValueError(f"{key} must be {allowed}, got {value!r}")


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (an int, or a float that is neither nan nor infinite)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def in_unit(value: float, *, low_open: bool = False, high_open: bool = False) -> bool:
    """Whether ``value`` lies in [0, 1], with either end open: probabilities, fractions, decays."""
    return finite(value) and (0 < value if low_open else 0 <= value) and (value < 1 if high_open else value <= 1)


def distinct(values: Sequence[Any]) -> bool:
    return len(set(values)) == len(values)


def _positive(section: str, **values: float | int | None) -> None:
    for name, value in values.items():
        if value is not None:
            require(finite(value) and value > 0, f"{section}.{name}", value,
                    "a finite number > 0" if isinstance(value, float) else "a positive integer")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion_mnist"
    train_size: int | None = None      # cap on training images (None: all that remain after score/calib)
    score_size: int = 2000             # held-out *training* images that score search moves
    calib_size: int = 1000             # held-out training images for BN recalibration
    test_size: int | None = None       # cap on test images (None: the whole test set)
    batch_size: int = 128
    pad: int = 2                       # random-crop padding (pixels)
    flip: bool = True                  # random horizontal flip (off for digits)

    def __post_init__(self) -> None:
        for name in ("train_size", "test_size"):      # null means all images; zero is no spelling of it
            value = getattr(self, name)
            require(value is None or value > 0, f"data.{name}", value, "a positive number of images, or null for all")
        _positive("data", score_size=self.score_size, calib_size=self.calib_size, batch_size=self.batch_size)
        if self.pad < 0:
            raise ValueError(f"data.pad must be >= 0, got {self.pad!r}")
        from mpq.data.datasets import NAMED_DATASETS

        if self.dataset not in NAMED_DATASETS:
            raise ValueError(f"data.dataset: unknown data set {self.dataset!r}; choose one of {list(NAMED_DATASETS)}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    width_mult: float = 1.0

    def __post_init__(self) -> None:
        _positive(f"models.{self.name}", width_mult=self.width_mult)


def model_specs(models: Mapping[str, Mapping[str, Any]]) -> list[ModelSpec]:
    """``models:`` section, ``name -> {width_mult: ...}``, as a list of specs (registry names checked)."""
    from mpq.models import list_models

    if not isinstance(models, Mapping):
        raise ValueError(f"params section 'models' must map model names to settings, got {type(models).__name__}")
    specs = []
    for name, values in models.items():
        if name not in list_models():
            raise ValueError(f"models: unknown model {name!r}; registered: {', '.join(list_models())}")
        if not isinstance(values, Mapping):
            raise ValueError(f"models.{name} must be a mapping of its settings (e.g. {{width_mult: 0.5}}), got "
                             f"{values!r}")
        specs.append(from_dict(ModelSpec, {"name": name, **values}, f"models.{name}"))
    if not specs:
        raise ValueError("models: the section lists no model")
    return specs


@dataclass(frozen=True)
class FPConfig:
    """Full-precision training (the starting point of every quantized model)."""

    epochs: int = 5
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        _positive("fp", epochs=self.epochs, lr=self.lr)
        require(in_unit(self.momentum, high_open=True), "fp.momentum", self.momentum, "in [0, 1)")
        require(finite(self.weight_decay) and self.weight_decay >= 0, "fp.weight_decay", self.weight_decay,
                "a finite number >= 0")
        require(finite(self.warmup_epochs) and 0 <= self.warmup_epochs <= self.epochs, "fp.warmup_epochs",
                self.warmup_epochs, f"in [0, fp.epochs] = [0, {self.epochs}] (warm-up is part of training)")
        require(in_unit(self.label_smoothing, high_open=True), "fp.label_smoothing", self.label_smoothing, "in [0, 1)")


# top-level entries that are single values; every other section is a mapping of settings
SCALAR_SECTIONS = ("profile", "seed")
# sections whose every entry is itself a mapping of settings: ``name -> {setting: value}``
NAMED_SECTIONS = ("models", "model_bits")


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _refuse_duplicates(node: yaml.Node, path: str | Path, where: str = "") -> None:
    """Refuse a key given twice in one mapping (YAML would keep the last silently), with both lines."""
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicates(item, path, where)
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name is not None and name in seen:
            inside = f" in {where}" if where else " at the top level"
            raise ValueError(f"{path}, line {_line(key)}: key {name!r} given twice{inside} (first on line "
                             f"{seen[name]}); YAML would keep only the last: remove one")
        if name is not None:
            seen[name] = _line(key)
        _refuse_duplicates(value, path, f"{where}.{name}" if where and name else (name or where))


def _refuse_empty_sections(root: yaml.Node, path: str | Path) -> None:
    """Refuse a section (or a ``models`` / ``model_bits`` entry) that is not a mapping of settings: ``fp:`` with
    nothing under it is null, and ``models: {resnet20: null}`` gave a TypeError deep inside the study."""
    def what(node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return "empty (null)"
        return "a list" if isinstance(node, yaml.SequenceNode) else f"the value {node.value!r}"

    for key, value in root.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name in SCALAR_SECTIONS or name not in SECTIONS:
            continue
        if not isinstance(value, yaml.MappingNode):
            raise ValueError(f"{path}, line {_line(key)}: section {name!r} is {what(value)}; a section is a mapping "
                             "of settings: indent its keys under it (or write {} for none)")
        if name in NAMED_SECTIONS:
            for entry, settings in value.value:
                if not isinstance(settings, yaml.MappingNode):
                    raise ValueError(f"{path}, line {_line(entry)}: {name}.{entry.value} is {what(settings)}; give "
                                     f"its settings as a mapping, e.g. {entry.value}: {{width_mult: 0.5}}"
                                     if name == "models" else
                                     f"{path}, line {_line(entry)}: {name}.{entry.value} is {what(settings)}; give "
                                     f"its settings as a mapping, e.g. {entry.value}: {{min_bits: 3}}")


def load_params(path: str | Path) -> dict[str, Any]:
    """The params file as a dict of sections, read strictly: a YAML syntax error, a key given twice in one mapping,
    or a section that is not a mapping of settings is one ValueError naming the file and the line. Its top level is
    checked (``check_params``), each section where read."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file (not UTF-8); pass the YAML params file") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if not isinstance(root, yaml.MappingNode):
            raise ValueError(f"{path} must hold a mapping of sections (profile, seed, data, ...)")
        _refuse_duplicates(root, path)
        _refuse_empty_sections(root, path)
        params = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or exc).split())
        raise ValueError(f"{path}{where}: not valid YAML ({problem}); fix the syntax there") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(exc).split())}); fix the syntax") from None
    finally:
        loader.dispose()
    check_params(params, path)
    return params


def check_params(params: Mapping[str, Any], path: str | Path = "params.yaml") -> None:
    """Refuse what no single section can see: an unknown top-level key (a typo would be ignored), a main
    ``seed`` that is not an int, and the main seed listed again in ``replicates.seeds`` (T2 pools the main run
    with the replicates, so it would count twice in the interval)."""
    unknown = sorted(set(params) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {unknown}; the sections are {list(SECTIONS)} "
                         "(fix the spelling or remove them)")
    seed = params.get("seed")
    if "seed" in params and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"params seed: expected int, got {type(seed).__name__} {seed!r}")
    replicates = params.get("replicates")
    if isinstance(replicates, Mapping) and isinstance(replicates.get("seeds"), list) and seed in replicates["seeds"]:
        raise ValueError(f"params replicates.seeds {replicates['seeds']} lists the main run's seed {seed} (top-level "
                         "`seed`); the main run is pooled with the replicates already, so it would count twice: "
                         "list only the other seeds")


@dataclass(frozen=True)
class EvalConfig:
    """How trained models are evaluated: uniform levels, and BN recalibration on the calibration subset."""

    levels: tuple[int, ...] = (2, 3, 4, 5, 6)
    batch_size: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        _positive("evaluation", batch_size=self.batch_size)
        require(bool(self.levels) and distinct(self.levels), "evaluation.levels", list(self.levels),
                "a non-empty list of distinct bit-widths")

    def check_candidates(self, w_bit_choices: tuple[int, ...], a_bit_choices: tuple[int, ...]) -> None:
        """Refuse uniform levels that are not candidates of the supernet (call beside ``from_dict``)."""
        common = sorted(set(w_bit_choices) & set(a_bit_choices))
        outside = [level for level in self.levels if level not in common]
        if outside:
            raise ValueError(f"evaluation.levels {outside} are not candidates of the supernet; choose from {common} "
                             "(oneshot.w_bit_choices and a_bit_choices)")


@dataclass(frozen=True)
class BaselineConfig:
    """Uniform fixed-precision LSQ baselines (WkAk), trained with the one-shot recipe and epoch budget."""

    levels: tuple[int, ...] = (2, 3, 4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        require(bool(self.levels) and min(self.levels) >= 2 and distinct(self.levels), "baselines.levels",
                list(self.levels), "a non-empty list of distinct bit-widths >= 2")


@dataclass(frozen=True)
class SearchConfig:
    """Inference-only search (DESIGN.md section 2, "Greedy search") and its baselines."""

    levels: tuple[float, ...] = (4, 3, 2.5)   # targets, as BitOPs levels (uniform k-bit equivalents)
    score_size: int = 256                      # scoring images used (a prefix of the held-out scoring subset)
    metric: str = "loss"                       # "loss" (cross-entropy) or "error" (top-1 error)
    alpha: float = 1.5                         # weight of the normalised score against BitOPs saved
    start_bits: int = 5                        # the walk starts from uniform W5A5
    random_samples: int = 40                   # random search: configurations evaluated per target
    evo_population: int = 12
    evo_generations: int = 3
    evo_mutation_prob: float = 0.1
    retrain: bool = True                       # retrain the greedy configurations (the two-stage comparison)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        _positive("search", score_size=self.score_size, alpha=self.alpha, random_samples=self.random_samples,
                  evo_population=self.evo_population, evo_generations=self.evo_generations)
        if self.metric not in ("loss", "error"):
            raise ValueError(f"search.metric must be 'loss' or 'error', got {self.metric!r}")
        require(bool(self.levels) and min(self.levels) >= 1 and distinct(self.levels), "search.levels",
                list(self.levels), "a non-empty list of distinct BitOPs levels >= 1")
        require(in_unit(self.evo_mutation_prob), "search.evo_mutation_prob", self.evo_mutation_prob,
                "a probability in [0, 1]")

    def check_candidates(self, w_bit_choices: tuple[int, ...], a_bit_choices: tuple[int, ...]) -> None:
        """Refuse levels and a start the supernet's candidates cannot reach (call beside ``from_dict``)."""
        lo, hi = max(min(w_bit_choices), min(a_bit_choices)), min(max(w_bit_choices), max(a_bit_choices))
        outside = [level for level in self.levels if not lo <= level <= hi]
        if outside:
            raise ValueError(f"search.levels {outside} lie outside the candidates' range [{lo}, {hi}] "
                             f"(oneshot.w_bit_choices {list(w_bit_choices)}, a_bit_choices {list(a_bit_choices)})")
        if self.start_bits not in w_bit_choices or self.start_bits not in a_bit_choices:
            raise ValueError(f"search.start_bits {self.start_bits} is not a candidate; choose one of "
                             f"{sorted(set(w_bit_choices) & set(a_bit_choices))}")
        if self.start_bits < max(self.levels):
            raise ValueError(f"search.start_bits {self.start_bits} is below the highest search.levels "
                             f"{max(self.levels)}; the walk starts there and goes down")


@dataclass(frozen=True)
class InterferenceConfig:
    """The bit-width interference study (notebook 05): the toy of Figure 1 (``mpq.studies.interference``)."""

    toy_steps: int = 3000              # SGD steps per toy run
    toy_lrs: tuple[float, ...] = (0.05, 0.01)   # learning rates; the first is the figure's
    toy_seeds: int = 3                 # seeds per candidate set and learning rate
    toy_window: int = 100              # steps per gradient-variance window

    def __post_init__(self) -> None:
        object.__setattr__(self, "toy_lrs", tuple(self.toy_lrs))
        _positive("interference", toy_steps=self.toy_steps, toy_seeds=self.toy_seeds)
        require(bool(self.toy_lrs) and all(finite(r) and r > 0 for r in self.toy_lrs), "interference.toy_lrs",
                list(self.toy_lrs), "a non-empty list of finite learning rates > 0")
        if not 1 < self.toy_window <= self.toy_steps // 2:
            raise ValueError(f"interference.toy_window must lie in (1, interference.toy_steps / 2] with toy_steps "
                             f"{self.toy_steps}, got {self.toy_window}")


ABLATION_CELLS = ("plain", "sched", "idm", "both", "no2bit", "sched_full")
SCHEDULER_CELLS = ("sched", "both", "sched_full")     # the cells that train with the bit-width scheduler


@dataclass(frozen=True)
class PilotConfig:
    """The ablation's pilot (``python -m mpq.studies.ablation_pilot``; docs/method.md, "Designing the ablation"):
    a few seeds of the T6 cells at the full run's length, whose seed spread and test-image noise set the seeds
    and evaluation images of the full run before it starts (DESIGN.md section 5, "Power before compute")."""

    seeds: tuple[int, ...] = (100, 101, 102)        # pilot training seeds (2 or more)
    cells: tuple[str, ...] = ("plain", "sched", "idm", "both", "sched_full")   # plain and the cells compared with it
    metrics: tuple[str, ...] = ("greedy 3", "W3A3")  # evaluated configurations whose contrasts are planned
    target_mde: float = 0.5                          # points: every contrast's minimal detectable effect at most this
    image_options: tuple[int, ...] = (10000, 20000, 31000)   # evaluation images considered (test + held-out training)
    max_seeds: int = 30                              # seeds per cell beyond which a design counts as out of reach
    score_options: tuple[int, ...] = (128, 512)      # scoring images of the greedy levels considered (ablation.score_size)

    def __post_init__(self) -> None:
        for name in ("seeds", "cells", "metrics", "image_options", "score_options"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        require(len(self.seeds) >= 2 and distinct(self.seeds), "ablation.pilot.seeds", list(self.seeds),
                "2 or more distinct seeds (one seed has no spread to measure)")
        require("plain" in self.cells and len(self.cells) >= 2 and distinct(self.cells)
                and set(self.cells) <= set(ABLATION_CELLS) - {"no2bit"}, "ablation.pilot.cells", list(self.cells),
                "distinct T6 cells (plain, sched, idm, both, sched_full), plain and at least one other")
        require(bool(self.metrics) and distinct(self.metrics), "ablation.pilot.metrics", list(self.metrics),
                "a non-empty list of distinct evaluated configurations (e.g. 'greedy 3', 'W3A3')")
        require(finite(self.target_mde) and self.target_mde > 0, "ablation.pilot.target_mde", self.target_mde,
                "a finite number of points > 0")
        require(bool(self.image_options) and distinct(self.image_options) and min(self.image_options) > 1,
                "ablation.pilot.image_options", list(self.image_options),
                "a non-empty list of distinct image counts > 1")
        require(self.max_seeds >= 2, "ablation.pilot.max_seeds", self.max_seeds, "an integer >= 2")
        require(bool(self.score_options) and distinct(self.score_options)
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in self.score_options),
                "ablation.pilot.score_options", list(self.score_options),
                "a non-empty list of distinct scoring-image counts >= 1 (ablation.score_size's candidates)")


@dataclass(frozen=True)
class AblationConfig:
    """The interference experiments on a real model (``mpq.studies.ablation``, notebook 05: F2-F4, T1, T6).

    One run per (cell, seed): cells "plain", "sched", "idm", "both" are the 2x2 of T6 (scheduler off/on
    x IDM off/on); "no2bit" trains without the 2-bit weight candidate for F2/T1; "sched_full" is this package's
    variant of the scheduler, not the paper's: layer scores over the full candidate list
    (``oneshot.sched_score_candidates`` "full"), so a decision can persist. Every other setting
    comes from the ``oneshot`` section; ``train_size`` overrides its images per epoch, ``epochs`` its epochs,
    ``batch_size`` the images per step (``data.batch_size``), ``lr`` and ``step_lr`` its two learning rates (a
    smaller batch takes smaller rates) and ``sched_min_steps`` its scheduler spacing (null: the profile's
    value), so that the ablation's scheduler acts
    on its own time scale (each decision outlasting the EMA horizon, ``min_sched_calls`` calls or more: a run
    whose schedule gives fewer is refused before training).
    """

    model: str = "resnet20"            # registry name; its width comes from the ``models`` section
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds (sampling, augmentation, order); data split: ``seed``
    cells: tuple[str, ...] = ABLATION_CELLS
    train_size: int = 10000            # images per one-shot epoch in these runs
    levels: tuple[float, ...] = (3, 2.5)   # greedy no-retraining targets (BitOPs levels) per run
    score_size: int = 128              # held-out scoring images the greedy levels are searched on (<= data.score_size)
    monitor_every: float = 0.05        # oscillation measurements, as a fraction of training
    monitor_bits: tuple[int, ...] = (4, 5, 6)
    feature_images: int = 256          # calibration images whose BN outputs measure distortion (F3/F4)
    epochs: int | None = None          # one-shot epochs per run (null: oneshot.epochs)
    batch_size: int | None = None      # images per optimizer step in these runs (null: data.batch_size)
    sched_min_steps: int | None = None  # fewest optimizer steps between scheduler calls (null: oneshot.sched_min_steps)
    lr: float | None = None            # SGD rate of weights, BN and biases in these runs (null: oneshot.lr)
    step_lr: float | None = None       # Adam rate of the step sizes in these runs (null: oneshot.step_lr)
    min_sched_calls: int = 10          # a run whose scheduler would be called fewer times is refused
    windows: int = 4                   # dense oscillation windows per run (mpq.method.oscillation; 0: none)
    window_steps: int = 20             # optimizer steps per window, every one measured
    extra_eval_images: int = 0         # held-out training images (beyond data.train_size) joining the test images
    extra_eval_configs: tuple[str, ...] = ()   # the evaluated configurations that see them (the others: test only)
    space_cells: tuple[str, ...] = ()  # scheduler cells whose final space plain's supernet is searched in too
    no2bit_seeds: tuple[int, ...] | None = None   # the seeds the no2bit cell runs with (null: every seed)
    jobs: int = 1                      # runs of one seed trained at a time, each with its share of the threads
    keep_supernets: bool = True        # keep each run's supernet once its block is done (false: its results only)
    pilot: PilotConfig | None = None   # the pilot that designs the full run (null: none)

    def __post_init__(self) -> None:
        for name in ("seeds", "cells", "levels", "monitor_bits", "extra_eval_configs", "space_cells"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _positive("ablation", train_size=self.train_size, score_size=self.score_size,
                  feature_images=self.feature_images, epochs=self.epochs,
                  batch_size=self.batch_size, sched_min_steps=self.sched_min_steps,
                  min_sched_calls=self.min_sched_calls, window_steps=self.window_steps)
        for name in ("lr", "step_lr"):
            value = getattr(self, name)
            require(value is None or (finite(value) and value > 0), f"ablation.{name}", value,
                    "a finite number > 0, or null (the oneshot section's rate)")
        require(self.windows >= 0, "ablation.windows", self.windows, "an integer >= 0 (0: no dense windows)")
        require(self.extra_eval_images >= 0, "ablation.extra_eval_images", self.extra_eval_images,
                "an integer >= 0 (held-out training images added to the test images)")
        require(distinct(self.extra_eval_configs) and (self.extra_eval_images > 0 or not self.extra_eval_configs),
                "ablation.extra_eval_configs", list(self.extra_eval_configs),
                "distinct configuration names (e.g. 'greedy 3', 'W3A3'), and empty while extra_eval_images is 0")
        if isinstance(self.pilot, Mapping):
            try:
                object.__setattr__(self, "pilot", from_dict(PilotConfig, self.pilot, "ablation.pilot"))
            except ValueError as exc:       # name the whole value too: the message must say what was given
                raise ValueError(f"{exc} (ablation.pilot was {dict(self.pilot)!r})") from None
        require(self.pilot is None or isinstance(self.pilot, PilotConfig), "ablation.pilot", self.pilot,
                "a mapping of the pilot's settings (seeds, cells, metrics, target_mde, image_options, max_seeds), "
                "or null")
        unknown = sorted(set(self.cells) - set(ABLATION_CELLS))
        if unknown or not self.cells:
            raise ValueError(f"ablation.cells: unknown cells {unknown} in {list(self.cells)}; choose from "
                             f"{list(ABLATION_CELLS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"ablation.seeds must be distinct seeds, got {list(self.seeds)}")
        if self.no2bit_seeds is not None:
            object.__setattr__(self, "no2bit_seeds", tuple(self.no2bit_seeds))
            require("no2bit" in self.cells and bool(self.no2bit_seeds) and distinct(self.no2bit_seeds)
                    and set(self.no2bit_seeds) <= set(self.seeds), "ablation.no2bit_seeds", list(self.no2bit_seeds),
                    "distinct seeds of ablation.seeds, with no2bit among the cells; null for every seed")
        require(isinstance(self.jobs, int) and self.jobs >= 1, "ablation.jobs", self.jobs,
                "an integer >= 1 (runs trained at a time; 2 on 2 cores: one thread each)")
        scheduled = [c for c in self.cells if c in SCHEDULER_CELLS]
        require(distinct(self.space_cells) and set(self.space_cells) <= set(scheduled)
                and (not self.space_cells or "plain" in self.cells), "ablation.space_cells", list(self.space_cells),
                f"distinct scheduler cells of ablation.cells ({scheduled}), with plain among the cells; [] for none")
        if not 0.0 < self.monitor_every <= 1.0:
            raise ValueError(f"ablation.monitor_every must lie in (0, 1], got {self.monitor_every!r}")
        require(bool(self.levels) and min(self.levels) >= 1 and distinct(self.levels), "ablation.levels",
                list(self.levels), "a non-empty list of distinct BitOPs levels >= 1")
        require(bool(self.monitor_bits) and distinct(self.monitor_bits), "ablation.monitor_bits",
                list(self.monitor_bits), "a non-empty list of distinct bit-widths")
