"""The search space of inference-only search (claim C5; docs/method.md section 2), and what every search
returns: per-layer candidates, single-layer moves, the move score ``alpha * norm(error) - norm(BitOPs saved)``,
results and their JSON form. The searches themselves sit beside it: the bidirectional greedy walk in
``mpq.search.greedy`` (one departure from docs/method.md's wording, argued in `move_scores`: by default
(``cost_norm="signed"``) the BitOPs saved are normalised by their largest magnitude, not min-max; the literal
min-max rule walks upwards on alike layers), the random and evolutionary baselines of F5 and the exhaustive
answer on toy spaces in ``mpq.search.sampling``.

Nothing here knows about models (once-for-all / nncf style): a search gets an ``evaluator`` (bit_cfg ->
error, lower is better, e.g. top-1 error of the supernet on the scoring subset) and a ``cost_fn``
(bit_cfg -> BitOPs, e.g. ``functools.partial(mpq.method.cost.bitops, table)``). An evaluator may also have a method
``around(bit_cfg)``: the greedy walk calls it with the configuration whose one-layer moves it is about to
score, so that the evaluator can score them incrementally (``mpq.search.evaluation.Scorer``). Costs must not decrease when
any bit-width grows; the reachable range is then [cost(all lowest), cost(all highest)].

A ``bit_cfg`` is a plain dict ``layer name -> (w_bits, a_bits)``; `cfg_to_json` / `cfg_from_json`
convert it to and from JSON (lists). Randomness only comes from the ``random.Random`` passed in.
"""
from __future__ import annotations

import itertools
import logging
import math
import random
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

BitCfg = dict[str, tuple[int, int]]
Evaluator = Callable[[BitCfg], float]   # ERROR of a configuration, lower is better
CostFn = Callable[[BitCfg], float]      # BitOPs of a configuration
Key = tuple[tuple[int, int], ...]        # hashable bit_cfg: (w_bits, a_bits) per layer, in space order
Move = tuple[str, str, int]              # (layer, "w" or "a", -1 one choice down / +1 one choice up)

COST_NORMS = ("signed", "minmax", "zero_anchored")


# ---------------------------------------------------------------------------------------------------
# pure helpers


def cfg_to_json(bit_cfg: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """``bit_cfg`` as JSON-ready data: ``{layer: [w_bits, a_bits]}`` (validated)."""
    return {name: list(pair) for name, pair in cfg_from_json(bit_cfg).items()}


def cfg_from_json(obj: Any, space: SearchSpace | None = None) -> BitCfg:
    """Parse ``{layer: [w_bits, a_bits]}`` (JSON lists or tuples) into a bit_cfg of int tuples.

    Raises ValueError naming the offending layer; with ``space``, also checks the allowed choices.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"a bit_cfg must be a mapping layer -> [w_bits, a_bits], got {type(obj).__name__}")
    cfg: BitCfg = {}
    for name, pair in obj.items():
        if not isinstance(name, str):
            raise ValueError(f"bit_cfg layer names must be strings, got {name!r}")
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in pair)):
            raise ValueError(f"bit_cfg[{name!r}] must be [w_bits, a_bits], two positive ints, got {pair!r}")
        cfg[name] = (int(pair[0]), int(pair[1]))
    if space is not None:
        space.validate(cfg)
    return cfg


def minmax_norm(values: Sequence[float]) -> list[float]:
    """(v - min) / (max - min); all zeros when every value is equal (no information to rank on)."""
    lo, hi = min(values), max(values)
    if hi == lo:
        return [0.0] * len(values)
    return [(v - lo) / (hi - lo) for v in values]


def signed_max_norm(values: Sequence[float]) -> list[float]:
    """v / max|v|: keeps the sign and zero (an up move's negative saving stays a penalty); zeros if all 0."""
    scale = max(abs(v) for v in values)
    if scale == 0:
        return [0.0] * len(values)
    return [v / scale for v in values]


def move_scores(errors: Sequence[float], saved: Sequence[float], alpha: float = 1.5,
                cost_norm: str = "signed", cost_before: float | None = None) -> list[float]:
    """Greedy move scores ``alpha * norm(error) - norm(BitOPs saved)``, lower is better (paper's C5).

    ``cost_norm`` picks the normalisation over the moves of one iteration:

    - ``"signed"`` (default): error min-max, saved divided by the largest |saved|, so an up move
      (saved < 0) keeps a penalty and a down move a reward.
    - ``"minmax"``: both min-max (docs/method.md's wording). With up and down moves in one set, the best
      up move scores about 0 while a down move needs ``alpha*norm(err) < norm(saved)``; when layers
      are alike, or only a sensitive layer is left to lower, no down move passes and the walk climbs
      instead of descending (tests/test_search.py::test_minmax_cost_norm_climbs).
    - ``"zero_anchored"``: the official code's arithmetic as read from its greedy search: error
      divided by the largest error, the cost term ``1 - cost_after/max(cost_after)``; needs
      ``cost_before`` (the current configuration's cost). It climbs on the same toy spaces.
    """
    if len(errors) != len(saved) or not errors:
        raise ValueError(f"need as many errors as savings, at least one: {len(errors)} vs {len(saved)}")
    if cost_norm == "signed":
        norm_err, norm_saved = minmax_norm(errors), signed_max_norm(saved)
    elif cost_norm == "minmax":
        norm_err, norm_saved = minmax_norm(errors), minmax_norm(saved)
    elif cost_norm == "zero_anchored":
        if cost_before is None:
            raise ValueError("cost_norm='zero_anchored' needs cost_before, the current configuration's cost")
        after = [cost_before - s for s in saved]
        top_cost, top_err = max(after), max(errors)
        norm_saved = [(top_cost - c) / top_cost if top_cost > 0 else 0.0 for c in after]
        norm_err = [e / top_err if top_err > 0 else 0.0 for e in errors]
    else:
        raise ValueError(f"cost_norm must be one of {COST_NORMS}, got {cost_norm!r}")
    return [alpha * e - s for e, s in zip(norm_err, norm_saved)]


def clip_bits(bits: int, choices: Sequence[int]) -> int:
    """The allowed choice nearest to ``bits`` (ties go to the higher one, the safer for accuracy)."""
    return min(choices, key=lambda c: (abs(c - bits), -c))


def _check_choices(what: str, choices: Any) -> tuple[int, ...]:
    if not isinstance(choices, (list, tuple)) or not choices:
        raise ValueError(f"{what} must be a non-empty sequence of bit-widths, got {choices!r}")
    if any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in choices):
        raise ValueError(f"{what} must hold positive ints, got {choices!r}")
    if any(a >= b for a, b in zip(choices, choices[1:])):
        raise ValueError(f"{what} must be sorted and unique (increasing), got {choices!r}")
    return tuple(int(b) for b in choices)


def _check_window(target: float, window: tuple[float, float]) -> tuple[float, float]:
    if not (isinstance(window, (tuple, list)) and len(window) == 2 and 0 < window[0] <= window[1]):
        raise ValueError(f"window must be (low, high) fractions of the target with 0 < low <= high, got {window!r}")
    _check_target(target)
    return window[0] * target, window[1] * target


def _check_target(target: float) -> None:
    if not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 0:
        raise ValueError(f"target must be a positive finite BitOPs value, got {target!r}")


# ---------------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class SearchSpace:
    """Allowed weight and activation bit-widths per searchable layer (layer order = insertion order)."""

    w_choices: Mapping[str, tuple[int, ...]]
    a_choices: Mapping[str, tuple[int, ...]]

    def __post_init__(self) -> None:
        if not self.w_choices:
            raise ValueError("a search space needs at least one layer")
        if list(self.w_choices) != list(self.a_choices):
            raise ValueError(f"w_choices and a_choices must name the same layers in the same order: "
                             f"{list(self.w_choices)} vs {list(self.a_choices)}")
        w = {n: _check_choices(f"w_choices[{n!r}]", c) for n, c in self.w_choices.items()}
        a = {n: _check_choices(f"a_choices[{n!r}]", c) for n, c in self.a_choices.items()}
        # Read-only views: the space is shared by every search of a front.
        object.__setattr__(self, "w_choices", MappingProxyType(w))
        object.__setattr__(self, "a_choices", MappingProxyType(a))

    @classmethod
    def uniform(cls, names: Iterable[str], w_choices: Sequence[int] = (2, 3, 4, 5, 6),
                a_choices: Sequence[int] = (2, 3, 4, 5, 6),
                floors: Mapping[str, int] | None = None) -> SearchSpace:
        """Every layer with the same choices; ``floors`` drop a layer's weight choices below its floor.

        docs/method.md section 2: candidates {2..6} for weights and activations, depthwise convs never
        below 3 bits (``floors={dw_name: 3}``).
        """
        names = list(names)
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate layer names in {names}")
        floors = dict(floors or {})
        unknown = sorted(set(floors) - set(names))
        if unknown:
            raise ValueError(f"floors name layers outside the space: {unknown}")
        w = tuple(w_choices)
        w_per_layer = {}
        for n in names:
            kept = tuple(b for b in w if b >= floors.get(n, 0))
            if not kept:
                raise ValueError(f"layer {n!r}: floor {floors[n]} removes every weight choice of {w}")
            w_per_layer[n] = kept
        return cls(w_per_layer, {n: tuple(a_choices) for n in names})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.w_choices)

    @property
    def size(self) -> int:
        """Number of configurations in the space."""
        return math.prod(len(self.w_choices[n]) * len(self.a_choices[n]) for n in self.names)

    @property
    def num_steps(self) -> int:
        """Total number of one-choice steps from all-lowest to all-highest (weights and activations)."""
        return sum(len(self.w_choices[n]) - 1 + len(self.a_choices[n]) - 1 for n in self.names)

    def validate(self, bit_cfg: Mapping[str, Sequence[int]]) -> BitCfg:
        """Return a clean copy of ``bit_cfg``, or raise ValueError naming the layer and its allowed values."""
        cfg = cfg_from_json(bit_cfg)
        missing = [n for n in self.names if n not in cfg]
        unknown = sorted(set(cfg) - set(self.names))
        if missing or unknown:
            raise ValueError(f"bit_cfg must cover exactly the space's layers: missing {missing}, unknown {unknown}")
        for n in self.names:
            w_bits, a_bits = cfg[n]
            if w_bits not in self.w_choices[n]:
                raise ValueError(f"layer {n!r}: w_bits {w_bits} not allowed, choices {self.w_choices[n]}")
            if a_bits not in self.a_choices[n]:
                raise ValueError(f"layer {n!r}: a_bits {a_bits} not allowed, choices {self.a_choices[n]}")
        return {n: cfg[n] for n in self.names}

    def contains(self, bit_cfg: Mapping[str, Sequence[int]]) -> bool:
        try:
            self.validate(bit_cfg)
        except ValueError:
            return False
        return True

    def key(self, bit_cfg: Mapping[str, Sequence[int]]) -> Key:
        """Hashable form of a (validated) bit_cfg: its (w_bits, a_bits) pairs in layer order."""
        cfg = self.validate(bit_cfg)
        return tuple(cfg[n] for n in self.names)

    def cfg(self, key: Key) -> BitCfg:
        """A fresh bit_cfg dict from a key (fresh, so an evaluator that edits it harms nothing)."""
        return dict(zip(self.names, key))

    def lowest_key(self) -> Key:
        return tuple((self.w_choices[n][0], self.a_choices[n][0]) for n in self.names)

    def highest_key(self) -> Key:
        return tuple((self.w_choices[n][-1], self.a_choices[n][-1]) for n in self.names)

    def start_key(self, bits: int) -> Key:
        """Uniform W{bits}A{bits}, each layer clipped into its own choices."""
        return tuple((clip_bits(bits, self.w_choices[n]), clip_bits(bits, self.a_choices[n])) for n in self.names)

    def sample_key(self, rng: random.Random) -> Key:
        """Each layer's w and a bits independently uniform over its choices."""
        return tuple((rng.choice(self.w_choices[n]), rng.choice(self.a_choices[n])) for n in self.names)

    def all_keys(self) -> Iterable[Key]:
        return itertools.product(*(itertools.product(self.w_choices[n], self.a_choices[n]) for n in self.names))


@dataclass(frozen=True)
class SearchStep:
    """One configuration on a search's trajectory; ``move`` is the greedy move that reached it."""

    bit_cfg: BitCfg
    cost: float
    error: float
    phase: int                    # greedy: 0 start, 1 weights, 2 activations; evolution: generation
    move: Move | None = None


@dataclass(frozen=True)
class SearchResult:
    """The configuration a search returns for one target, and what finding it cost.

    ``evaluations`` counts real evaluator calls (cached configurations not counted) and ``seconds``
    the wall-clock time, both from the start of the search call up to this result; in a
    `greedy_front` they include the shared weight walk and earlier branches, so a front's total is
    the maximum over its results.
    """

    target: float
    bit_cfg: BitCfg
    cost: float
    error: float
    evaluations: int
    seconds: float
    trajectory: tuple[SearchStep, ...] = ()
    method: str = ""


def result_to_json(result: SearchResult) -> dict[str, Any]:
    """A `SearchResult` as JSON-ready data (bit configurations as lists)."""
    return {
        "method": result.method, "target": result.target, "bit_cfg": cfg_to_json(result.bit_cfg),
        "cost": result.cost, "error": result.error, "evaluations": result.evaluations,
        "seconds": result.seconds,
        "trajectory": [{"bit_cfg": cfg_to_json(s.bit_cfg), "cost": s.cost, "error": s.error, "phase": s.phase,
                        "move": None if s.move is None else list(s.move)} for s in result.trajectory],
    }


def result_from_json(obj: Mapping[str, Any]) -> SearchResult:
    """Inverse of `result_to_json` (validates every bit configuration)."""
    steps = tuple(SearchStep(cfg_from_json(s["bit_cfg"]), float(s["cost"]), float(s["error"]), int(s["phase"]),
                             None if s["move"] is None else (str(s["move"][0]), str(s["move"][1]), int(s["move"][2])))
                  for s in obj["trajectory"])
    return SearchResult(float(obj["target"]), cfg_from_json(obj["bit_cfg"]), float(obj["cost"]),
                        float(obj["error"]), int(obj["evaluations"]), float(obj["seconds"]), steps,
                        str(obj["method"]))


class _Memo:
    """Per-call caches of errors and costs by configuration key, counting real evaluator calls."""

    def __init__(self, space: SearchSpace, evaluator: Evaluator, cost_fn: CostFn) -> None:
        self.space, self.evaluator, self.cost_fn = space, evaluator, cost_fn
        self.errors: dict[Key, float] = {}
        self.costs: dict[Key, float] = {}
        self.calls = 0
        self.started = time.perf_counter()

    def error(self, key: Key) -> float:
        if key not in self.errors:
            value = float(self.evaluator(self.space.cfg(key)))
            self.calls += 1
            if not math.isfinite(value):
                raise ValueError(f"evaluator returned {value} for {self.space.cfg(key)}; errors must be finite")
            self.errors[key] = value
        return self.errors[key]

    def cost(self, key: Key, cache: bool = True) -> float:
        if key in self.costs:
            return self.costs[key]
        value = float(self.cost_fn(self.space.cfg(key)))
        if not math.isfinite(value):
            raise ValueError(f"cost_fn returned {value} for {self.space.cfg(key)}; costs must be finite")
        if cache:
            self.costs[key] = value
        return value

    def step(self, key: Key, phase: int, move: Move | None = None) -> SearchStep:
        return SearchStep(self.space.cfg(key), self.cost(key), self.error(key), phase, move)

    def result(self, target: float, key: Key, trajectory: Sequence[SearchStep], method: str) -> SearchResult:
        return SearchResult(target, self.space.cfg(key), self.cost(key), self.error(key), self.calls,
                            time.perf_counter() - self.started, tuple(trajectory), method)

    def reachable(self) -> tuple[float, float]:
        return self.cost(self.space.lowest_key()), self.cost(self.space.highest_key())
