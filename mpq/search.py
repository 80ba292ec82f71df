"""Inference-only search over per-layer bit configurations under a BitOPs budget.

docs/method.md section 2, "Greedy search" (claim C5 of Tang et al., CVPR 2024): a
bidirectional greedy walk that first moves weight bits (phase 1, down to a weight budget) and then
activation bits (phase 2, down to the target), scoring every single-layer one-step move as
``alpha * norm(error) - norm(BitOPs saved)``. One weight walk serves a whole list of targets
(`greedy_front`). One departure from docs/method.md's wording, argued in `move_scores`: by default
(``cost_norm="signed"``) the BitOPs saved are normalised by their largest magnitude, not min-max; the
literal min-max rule walks upwards on alike layers. The baselines of the paper's comparison (F5) are
here too: random search inside a BitOPs window and an evolutionary search; `brute_force` is the exact
answer on toy spaces.

Nothing here knows about models (once-for-all / nncf style): a search gets an ``evaluator`` (bit_cfg ->
error, lower is better, e.g. top-1 error of the supernet on the scoring subset) and a ``cost_fn``
(bit_cfg -> BitOPs, e.g. ``functools.partial(mpq.cost.bitops, table)``). An evaluator may also have a method
``around(bit_cfg)``: the greedy walk calls it with the configuration whose one-layer moves it is about to
score, so that the evaluator can score them incrementally (``mpq.evaluation.Scorer``). Costs must not decrease when
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


# ---------------------------------------------------------------------------------------------------
# greedy search (paper's C5)


def _lowest_in(space: SearchSpace, key: Key, dim: int) -> Key:
    """``key`` with every layer's weight (dim 0) or activation (dim 1) bits at its lowest choice."""
    choices = space.w_choices if dim == 0 else space.a_choices
    return tuple((choices[n][0], a) if dim == 0 else (w, choices[n][0]) for n, (w, a) in zip(space.names, key))


def _walk_error(phase: str, stuck: bool, cost: float, iterations: int, budget: str, cost_norm: str) -> RuntimeError:
    why = "is stuck (every neighbouring configuration already visited)" if stuck else "hit its iteration cap"
    fix = "lower alpha" if cost_norm == "signed" else "use cost_norm='signed' or lower alpha"
    return RuntimeError(f"greedy {phase} walk {why} at {cost:.6g} BitOPs after {iterations} iterations, "
                        f"above {budget}: the scores keep choosing up moves; {fix}")


def _greedy_move(memo: _Memo, key: Key, visited: set[Key], dim: int, alpha: float,
                 cost_norm: str) -> tuple[Key, Move] | None:
    """The best unvisited single-layer one-step move in dimension ``dim`` (0 weights, 1 activations)."""
    space = memo.space
    choices = space.w_choices if dim == 0 else space.a_choices
    moves: list[tuple[Key, Move]] = []
    for i, name in enumerate(space.names):
        pos = choices[name].index(key[i][dim])
        for step in (-1, 1):
            if not 0 <= pos + step < len(choices[name]):
                continue
            pair = list(key[i])
            pair[dim] = choices[name][pos + step]
            cand = key[:i] + (tuple(pair),) + key[i + 1:]
            # Never return to a configuration of this walk: an up move followed by the down move
            # that undoes it would otherwise cycle for ever.
            if cand not in visited:
                moves.append((cand, (name, "wa"[dim], step)))
    if not moves:
        return None
    here = memo.cost(key)
    around = getattr(memo.evaluator, "around", None)     # optional: an evaluator that scores moves incrementally
    if around is not None and any(cand not in memo.errors for cand, _ in moves):
        around(space.cfg(key))
    errors = [memo.error(cand) for cand, _ in moves]
    saved = [here - memo.cost(cand) for cand, _ in moves]
    scores = move_scores(errors, saved, alpha, cost_norm, cost_before=here)
    # Ties go to the first move in layer order (down before up): deterministic.
    best = min(range(len(moves)), key=lambda i: (scores[i], i))
    logger.debug("move %s: evaluator score %.5g, saved %.4g, move score %.4f (of %d moves)", moves[best][1],
                 errors[best], saved[best], scores[best], len(moves))
    return moves[best]


STALL_PATIENCE = 2      # moves per layer without a new cheapest configuration before a floored phase 1 ends


def greedy_front(space: SearchSpace, evaluator: Evaluator, cost_fn: CostFn, targets: Sequence[float],
                 phase1_budgets: Sequence[float], *, start_bits: int = 5, alpha: float = 1.5,
                 cost_norm: str = "signed") -> list[SearchResult]:
    """Greedy search for several BitOPs targets sharing one weight walk (paper's C5, docs/method.md section 2).

    From uniform W{start_bits}A{start_bits}, phase 1 moves weight bits only, one layer one choice
    down or up per iteration, the move with the lowest `move_scores` score, never revisiting a
    configuration. It descends through the phase-1 budgets in decreasing order; the first time its
    cost is within a target's phase-1 budget, a phase-2 walk (activation bits only) branches from
    there down to that target. Evaluations are cached across the whole front, and each target gets
    exactly the result `greedy_search` would give it alone. Results come in the order of ``targets``.

    A phase-1 budget below what weight moves can reach (every weight at its lowest choice) ends phase 1 at
    the cheapest configuration the walk reaches (see ``STALL_PATIENCE``). Raises ValueError when a target lies outside the reachable BitOPs range, or when a target
    is below what activation moves can reach from its phase-1 end point; RuntimeError when a walk gets
    stuck or exceeds
    4 x `SearchSpace.num_steps` iterations.
    """
    if len(targets) != len(phase1_budgets) or not targets:
        raise ValueError(f"need one phase-1 budget per target and at least one target: "
                         f"{len(targets)} targets, {len(phase1_budgets)} budgets")
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a non-negative number, got {alpha}")
    if cost_norm not in COST_NORMS:
        raise ValueError(f"cost_norm must be one of {COST_NORMS}, got {cost_norm!r}")
    for value in (*targets, *phase1_budgets):
        _check_target(value)
    memo = _Memo(space, evaluator, cost_fn)
    lo, hi = memo.reachable()
    for target in targets:
        if not lo <= target <= hi:
            raise ValueError(f"target {target:.6g} BitOPs outside the reachable range [{lo:.6g}, {hi:.6g}] "
                             "(every layer at its lowest / highest choices); pick a target in that range "
                             "or widen the bit choices")
    start = space.start_key(start_bits)
    # A budget below what weight moves can reach (every weight at its lowest choice: the "floor") happens
    # in a narrowed space, e.g. when the scheduler's last decision keeps some layers above 2 bits. Such a
    # target's phase 1 walks towards the floor and ends at the cheapest configuration it reaches, either at
    # the floor or when it has gone STALL_PATIENCE x (number of layers) moves without a new cheapest one: a
    # greedy walk near the floor can wander among up moves until its cap (seen on our supernets).
    weight_floor = memo.cost(_lowest_in(space, start, dim=0))
    floored = {i for i, budget in enumerate(phase1_budgets) if budget < weight_floor}
    if floored:
        logger.info("phase-1 budgets %s below the weight floor %.6g: phase 1 ends at the cheapest configuration "
                    "it reaches", [f"{phase1_budgets[i]:.6g}" for i in sorted(floored)], weight_floor)
        phase1_budgets = [max(budget, weight_floor) for budget in phase1_budgets]
    cap, patience = 4 * space.num_steps, STALL_PATIENCE * len(space.names)

    # Decreasing phase-1 budgets: the single weight walk meets them in this order (stable for ties).
    pending = sorted(range(len(targets)), key=lambda i: -phase1_budgets[i])
    results: list[SearchResult | None] = [None] * len(targets)
    key, visited, iterations = start, {start}, 0
    trajectory = [memo.step(start, phase=0)]
    best, since_best = 0, 0                # index in the trajectory of the cheapest configuration so far
    while True:
        while pending and memo.cost(key) <= phase1_budgets[pending[0]]:
            i = pending.pop(0)
            logger.info("target %.6g: weight phase done at %.6g BitOPs after %d moves; activation phase",
                        targets[i], memo.cost(key), iterations)
            results[i] = _activation_branch(memo, key, set(visited), iterations, trajectory, targets[i],
                                            alpha, cost_norm, cap)
        if not pending:
            break
        found = _greedy_move(memo, key, visited, 0, alpha, cost_norm)
        iterations += 1
        if pending[0] in floored and (found is None or iterations > cap or since_best >= patience):
            end = trajectory[best].bit_cfg
            end_key = space.key(end)
            for i in [j for j in pending if j in floored]:
                pending.remove(i)
                logger.info("target %.6g: weight phase ends at its cheapest configuration, %.6g BitOPs (floor "
                            "%.6g), after %d moves; activation phase", targets[i], memo.cost(end_key), weight_floor,
                            iterations)
                results[i] = _activation_branch(memo, end_key, set(visited), iterations, trajectory[:best + 1],
                                                targets[i], alpha, cost_norm, cap)
            continue
        if found is None or iterations > cap:
            raise _walk_error("weight", found is None, memo.cost(key), iterations,
                              f"phase1_budget {phase1_budgets[pending[0]]:.6g}", cost_norm)
        key = found[0]
        visited.add(key)
        trajectory.append(memo.step(key, phase=1, move=found[1]))
        if memo.cost(key) < trajectory[best].cost:
            best, since_best = len(trajectory) - 1, 0
        else:
            since_best += 1
    return [r for r in results if r is not None]


def _activation_branch(memo: _Memo, key: Key, visited: set[Key], iterations: int,
                       prefix: Sequence[SearchStep], target: float, alpha: float, cost_norm: str,
                       cap: int) -> SearchResult:
    """Phase 2 of the greedy search: activation moves from ``key`` until the cost is within ``target``."""
    floor = memo.cost(_lowest_in(memo.space, key, dim=1))
    if target < floor:
        raise ValueError(f"target {target:.6g} is below {floor:.6g}, the smallest BitOPs that activation moves "
                         f"reach from the weight phase's end {memo.space.cfg(key)}; lower that target's phase1_budget")
    trajectory = list(prefix)
    while memo.cost(key) > target:
        found = _greedy_move(memo, key, visited, 1, alpha, cost_norm)
        iterations += 1
        if found is None or iterations > cap:
            raise _walk_error("activation", found is None, memo.cost(key), iterations, f"target {target:.6g}",
                              cost_norm)
        key = found[0]
        visited.add(key)
        trajectory.append(memo.step(key, phase=2, move=found[1]))
    result = memo.result(target, key, trajectory, "greedy")
    logger.info("greedy target %.6g: cost %.6g, score %.5g, %d evaluations so far", target, result.cost,
                result.error, result.evaluations)
    return result


def greedy_search(space: SearchSpace, evaluator: Evaluator, cost_fn: CostFn, target: float,
                  phase1_budget: float, *, start_bits: int = 5, alpha: float = 1.5,
                  cost_norm: str = "signed") -> SearchResult:
    """Bidirectional greedy search for one BitOPs target (paper's C5); see `greedy_front`.

    ``phase1_budget`` is the weight phase's budget (docs/method.md: 0.95 x BitOPs of uniform weights at the
    target's level with A5, `mpq.cost.phase1_budget`). The result's cost is at most ``target``.
    """
    return greedy_front(space, evaluator, cost_fn, [target], [phase1_budget], start_bits=start_bits,
                        alpha=alpha, cost_norm=cost_norm)[0]


# ---------------------------------------------------------------------------------------------------
# baselines: random, evolutionary, exhaustive


def _repair_into_window(space: SearchSpace, key: Key, rng: random.Random, cost: Callable[[Key], float],
                        lo: float, hi: float, max_moves: int) -> Key | None:
    """Random single-step moves (one layer, w or a, one choice down while too costly, up while too
    cheap) until the cost lies in [lo, hi]; None when ``max_moves`` moves do not get there."""
    names = space.names
    pairs = list(key)
    for _ in range(max_moves):
        c = cost(tuple(pairs))
        if lo <= c <= hi:
            return tuple(pairs)
        down = c > hi
        moves = []
        for i, n in enumerate(names):
            for dim, choices in ((0, space.w_choices[n]), (1, space.a_choices[n])):
                j = choices.index(pairs[i][dim]) + (-1 if down else 1)
                if 0 <= j < len(choices):
                    moves.append((i, dim, choices[j]))
        if not moves:
            return None
        i, dim, bits = rng.choice(moves)
        pairs[i] = (bits, pairs[i][1]) if dim == 0 else (pairs[i][0], bits)
    return None


def _sample_in_window(memo: _Memo, rng: random.Random, lo: float, hi: float, count: int, max_draws: int,
                      seen: set[Key]) -> list[Key]:
    """Up to ``count`` new distinct random configurations with cost in [lo, hi].

    Each draw is uniform (every layer's w and a bits independently), then repaired into the window by
    random single-step moves: rejection sampling alone almost never lands in a window far from the
    cost of the average configuration (e.g. a 2.5-bit level when the uniform draw averages 4 bits).
    """
    found: list[Key] = []
    max_moves = 4 * memo.space.num_steps + 1
    for _ in range(max_draws):
        if len(found) >= count:
            break
        # Costs of intermediate configurations are not cached: there can be very many of them.
        key = _repair_into_window(memo.space, memo.space.sample_key(rng), rng,
                                  lambda k: memo.cost(k, cache=False), lo, hi, max_moves)
        if key is not None and key not in seen:
            seen.add(key)
            found.append(key)
    return found


def _window_error(lo: float, hi: float, memo: _Memo, max_draws: int) -> ValueError:
    reach_lo, reach_hi = memo.reachable()
    return ValueError(f"no configuration with BitOPs in [{lo:.6g}, {hi:.6g}] after {max_draws} random draws "
                      f"(reachable range [{reach_lo:.6g}, {reach_hi:.6g}]); widen the window or raise max_draws")


def _best(steps: Sequence[SearchStep]) -> int:
    return min(range(len(steps)), key=lambda i: (steps[i].error, steps[i].cost, i))


def random_search(space: SearchSpace, evaluator: Evaluator, cost_fn: CostFn, target: float, *,
                  num_samples: int, rng: random.Random, window: tuple[float, float] = (0.95, 1.0),
                  max_draws: int = 100_000) -> SearchResult:
    """Random-search baseline (paper's F5): best of ``num_samples`` configurations in a BitOPs window.

    Configurations are drawn uniformly (each layer's w and a bits independently), repaired into the window
    by random single-step moves (`_sample_in_window`), and kept when their
    cost lies in [window[0]*target, window[1]*target] and they are new; evaluation stops after
    ``num_samples`` of them (fewer, with a warning, if ``max_draws`` draws run out).
    """
    if num_samples < 1 or max_draws < 1:
        raise ValueError(f"num_samples and max_draws must be >= 1, got {num_samples}, {max_draws}")
    lo, hi = _check_window(target, window)
    memo = _Memo(space, evaluator, cost_fn)
    keys = _sample_in_window(memo, rng, lo, hi, num_samples, max_draws, set())
    if not keys:
        raise _window_error(lo, hi, memo, max_draws)
    if len(keys) < num_samples:
        logger.warning("random search: only %d of %d configurations found in the window after %d draws",
                       len(keys), num_samples, max_draws)
    steps = [memo.step(k, phase=0) for k in keys]
    best = keys[_best(steps)]
    return memo.result(target, best, steps, "random")


def evolutionary_search(space: SearchSpace, evaluator: Evaluator, cost_fn: CostFn, target: float, *,
                        population: int, generations: int, mutation_prob: float, rng: random.Random,
                        window: tuple[float, float] = (0.9, 1.0), num_parents: int | None = None,
                        num_children: int | None = None, max_draws: int = 100_000,
                        max_retries: int = 100) -> SearchResult:
    """Evolutionary baseline (paper's F5): uniform crossover and per-layer mutation inside a BitOPs window.

    The initial ``population`` comes from the random sampler in the window. Each generation the
    best ``num_parents`` (default half the population, at least 2) breed ``num_children`` (default
    ``population``) children: each layer's (w, a) pair from one of two distinct parents drawn at
    random, then w and a each re-drawn uniformly with ``mutation_prob``. A child outside the window
    or already seen is redrawn (at most ``max_retries`` times, then skipped). The best ``population``
    of the old population and the children survive (elitist: the best error never gets worse).
    ``trajectory`` holds every evaluated configuration, phase = generation (0 = initial population).
    """
    if population < 2 or generations < 0 or not 0 <= mutation_prob <= 1:
        raise ValueError(f"need population >= 2, generations >= 0, 0 <= mutation_prob <= 1; got "
                         f"{population}, {generations}, {mutation_prob}")
    num_parents = max(2, population // 2) if num_parents is None else num_parents
    num_children = population if num_children is None else num_children
    if not 2 <= num_parents <= population or num_children < 1 or max_retries < 1:
        raise ValueError(f"need 2 <= num_parents <= population, num_children >= 1, max_retries >= 1; got "
                         f"{num_parents}, {num_children}, {max_retries}")
    lo, hi = _check_window(target, window)
    memo = _Memo(space, evaluator, cost_fn)
    seen: set[Key] = set()
    members = _sample_in_window(memo, rng, lo, hi, population, max_draws, seen)
    if len(members) < 2:
        raise _window_error(lo, hi, memo, max_draws)
    trajectory = [memo.step(k, phase=0) for k in members]

    def rank(keys: list[Key]) -> list[Key]:
        order = sorted(range(len(keys)), key=lambda i: (memo.error(keys[i]), memo.cost(keys[i]), i))
        return [keys[i] for i in order]

    members = rank(members)
    for generation in range(1, generations + 1):
        parents = members[:num_parents]
        children: list[Key] = []
        for _ in range(num_children):
            for _ in range(max_retries):
                mother, father = rng.sample(parents, 2)
                child = []
                for i, name in enumerate(space.names):
                    w_bits, a_bits = (mother if rng.random() < 0.5 else father)[i]
                    if rng.random() < mutation_prob:
                        w_bits = rng.choice(space.w_choices[name])
                    if rng.random() < mutation_prob:
                        a_bits = rng.choice(space.a_choices[name])
                    child.append((w_bits, a_bits))
                key = tuple(child)
                if key not in seen and lo <= memo.cost(key, cache=False) <= hi:
                    seen.add(key)
                    children.append(key)
                    break
            else:
                logger.debug("generation %d: no new child in the window after %d tries", generation, max_retries)
        trajectory.extend(memo.step(k, phase=generation) for k in children)
        members = rank(members + children)[:population]
        logger.info("evolution generation %d: best score %.5g, %d new children, %d evaluations", generation,
                    memo.error(members[0]), len(children), memo.calls)
    return memo.result(target, members[0], trajectory, "evolutionary")


def brute_force(space: SearchSpace, evaluator: Evaluator, cost_fn: CostFn, target: float, *,
                max_configs: int = 1_000_000) -> SearchResult:
    """Exact optimum: the lowest error among all configurations with cost <= target (toy spaces, tests).

    Every feasible configuration is evaluated; ties go to the cheaper one. The trajectory is left
    empty (it would hold the whole space).
    """
    _check_target(target)
    if space.size > max_configs:
        raise ValueError(f"the space has {space.size} configurations, more than max_configs={max_configs}; "
                         "brute force is for toy spaces")
    memo = _Memo(space, evaluator, cost_fn)
    best: tuple[float, float, Key] | None = None
    for key in space.all_keys():
        cost = memo.cost(key, cache=False)
        if cost <= target:
            error = memo.error(key)
            if best is None or (error, cost) < best[:2]:
                best = (error, cost, key)
    if best is None:
        lo, hi = memo.reachable()
        raise ValueError(f"no configuration costs at most {target:.6g} BitOPs; reachable range [{lo:.6g}, {hi:.6g}]")
    return memo.result(target, best[2], (), "brute_force")
