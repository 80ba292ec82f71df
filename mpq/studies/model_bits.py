"""Per-model bit-width settings: a model's own candidate floor and search levels (``model_bits`` section).

The shared candidates (``oneshot.w_bit_choices`` and ``a_bit_choices``, 2..6) suit ResNet-20. MobileNet-style
nets lose 5.5-6.9 points at W2A2 even when trained alone for that bit-width, at every width from 0.5 to 1.0
(README, "MBConv regime"), outside the 2-5 point regime DESIGN.md section 3 asks for; at W3A3 they lose
1.4-2.4. EQ-Net keeps such nets at 3 bits and above, and so does a model listed here (the official MobileNetV2
config trains 2..6, with depthwise convs at 3 and above: docs/method.md section 7 lists the difference):

    model_bits:
      mobilenetv2_28: {min_bits: 3, search_levels: [4, 3.5]}

``min_bits`` removes the lower weight and activation candidates from that model's supernet; its uniform
evaluation levels and LSQ baselines keep the shared ones at or above the floor; ``search_levels`` replaces
``search.levels`` (levels under the floor are out of reach: level 2.5 lies below uniform W3A3), and
``start_bits`` the walk's start where the shared one lies too low for them. A model not listed uses the shared
settings unchanged. What the bit-width scheduler takes from a frozen layer is a fact of the model's family, kept
in its registry entry (``mpq.models``, ``shared_candidates``; ``oneshot.sched_freeze_activations`` overrides it).

Notebooks 02-04 (and 06 for its model) read this section, and so does ``mpq.studies.seed_study`` (a model's main-table
rows over extra seeds, outside ``dvc repro``), and so do the replicates of ``replicates.other_models``
(``model_params``); the single-model DVC studies (``replicates.model``'s replicates, ``search_study``,
``ablation``) train the shared candidates, so their model must not be listed (``check_shared``).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from mpq.config import BaselineConfig, EvalConfig, SearchConfig, from_dict
from mpq.training.recipe import OneShotConfig


@dataclass(frozen=True)
class ModelBits:
    """One model's departures from the shared bit-width settings."""

    min_bits: int = 2                                # lowest weight and activation candidate
    search_levels: tuple[float, ...] | None = None   # None: the shared search.levels at or above min_bits
    start_bits: int | None = None                    # the greedy walk's uniform start; None: search.start_bits

    def __post_init__(self) -> None:
        if self.search_levels is not None:
            object.__setattr__(self, "search_levels", tuple(self.search_levels))
            if not self.search_levels:
                raise ValueError("model_bits: search_levels must list at least one level (or be null), got []")
        if self.min_bits < 2:
            raise ValueError(f"model_bits: min_bits must be >= 2, got {self.min_bits}")

    def oneshot(self, cfg: OneShotConfig) -> OneShotConfig:
        """``cfg`` with the candidates under ``min_bits`` removed (the model's supernet and its baselines)."""
        w = tuple(b for b in cfg.w_bit_choices if b >= self.min_bits)
        a = tuple(b for b in cfg.a_bit_choices if b >= self.min_bits)
        if not w or not a:
            raise ValueError(f"model_bits: min_bits {self.min_bits} leaves no candidate of oneshot.w_bit_choices "
                             f"{list(cfg.w_bit_choices)} or a_bit_choices {list(cfg.a_bit_choices)}; lower it")
        return dataclasses.replace(cfg, w_bit_choices=w, a_bit_choices=a)

    def evaluation(self, cfg: EvalConfig) -> EvalConfig:
        """Uniform evaluation levels at or above the floor."""
        return dataclasses.replace(cfg, levels=tuple(b for b in cfg.levels if b >= self.min_bits))

    def baseline_levels(self, cfg: BaselineConfig) -> tuple[int, ...]:
        """The LSQ baselines' bit-widths at or above the floor (possibly none)."""
        return tuple(b for b in cfg.levels if b >= self.min_bits)

    def search(self, cfg: SearchConfig) -> SearchConfig:
        """``cfg`` with this model's levels (``search_levels``, or the shared ones at or above the floor) and start."""
        levels = self.search_levels or tuple(lv for lv in cfg.levels if lv >= self.min_bits)
        if not levels:
            raise ValueError(f"model_bits: every search.levels {list(cfg.levels)} lies under min_bits "
                             f"{self.min_bits}; give the model its own search_levels")
        return dataclasses.replace(cfg, levels=levels, start_bits=self.start_bits or cfg.start_bits)


def model_bits(section: Mapping[str, Any] | None, name: str) -> ModelBits:
    """The ``model_bits`` entry of model ``name`` (the shared settings if it has none); entries are checked."""
    from mpq.models import list_models

    section = section or {}
    if not isinstance(section, Mapping):
        raise ValueError(f"params section 'model_bits' must map model names to settings, got {type(section).__name__}")
    unknown = sorted(set(section) - set(list_models()))
    if unknown:
        raise ValueError(f"model_bits: unknown models {unknown}; registered: {', '.join(list_models())}")
    if name not in section:
        return ModelBits()
    return from_dict(ModelBits, section[name], f"model_bits.{name}")


def check_shared(section: Mapping[str, Any] | None, names: Sequence[str], where: str) -> None:
    """Refuse a single-model study (``where``) whose model has its own bit-widths in ``model_bits``."""
    for name in names:
        if model_bits(section, name) != ModelBits():
            raise ValueError(f"{where}: model {name!r} has its own entry in model_bits, but that study trains "
                             "the shared candidates (oneshot.w_bit_choices, a_bit_choices); choose a model not "
                             "listed in model_bits")


def model_params(params: Mapping[str, Any], model: str) -> dict[str, Any]:
    """``params`` with ``model`` as the replicated model (``replicates.model``, and out of ``other_models``) and its
    ``model_bits`` written into the shared sections (candidates, uniform evaluation levels, LSQ baselines, search
    levels and start): how ``replicates.run_replicate`` trains an other model and ``seed_study`` any model."""
    if model not in params["models"]:
        raise ValueError(f"model {model!r} is not in the models section {list(params['models'])}")
    own = model_bits(params.get("model_bits"), model)
    cfg = own.oneshot(from_dict(OneShotConfig, params["oneshot"], "oneshot"))
    search = own.search(from_dict(SearchConfig, params["search"], "search"))
    search.check_candidates(cfg.w_bit_choices, cfg.a_bit_choices)
    out = copy.deepcopy(dict(params))
    others = [m for m in out["replicates"].get("other_models", []) if m != model]     # the model is now the replicated one
    out["replicates"] = {**out["replicates"], "model": model} | ({"other_models": others}
                                                                if "other_models" in out["replicates"] else {})
    out["oneshot"] |= {"w_bit_choices": list(cfg.w_bit_choices), "a_bit_choices": list(cfg.a_bit_choices)}
    out["evaluation"] |= {"levels": list(own.evaluation(from_dict(EvalConfig, params["evaluation"], "evaluation")).levels)}
    out["baselines"] |= {"levels": list(own.baseline_levels(from_dict(BaselineConfig, params["baselines"], "baselines")))}
    out["search"] |= {"levels": list(search.levels), "start_bits": search.start_bits}
    return out
