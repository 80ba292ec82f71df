"""The bidirectional greedy search (claim C5; docs/method.md section 2): one weight walk, then
activation walks, scoring single-layer moves by ``alpha * norm(error) - norm(BitOPs saved)``.

Like ``mpq.search.space`` and ``mpq.search.sampling`` it knows nothing about models: it gets an evaluator and a cost
function (``mpq.search.space`` says what they are).
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

from mpq.search.space import (COST_NORMS, CostFn, Evaluator, Key, Move, SearchResult, SearchSpace, SearchStep, _Memo,
                              _check_target, move_scores)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# greedy search (paper's C5)


def _lowest_in(space: SearchSpace, key: Key, dim: int) -> Key:
    """``key`` with every layer's weight (dim 0) or activation (dim 1) bits at its lowest choice."""
    choices = space.w_choices if dim == 0 else space.a_choices
    return tuple((choices[n][0], a) if dim == 0 else (w, choices[n][0]) for n, (w, a) in zip(space.names, key))


class WalkStuck(ValueError):
    """A greedy walk that cannot get within its budget with the settings it was given (its scores keep choosing up
    moves: ``alpha`` too high for the scores, or the min-max cost norm). A consequence of those settings, so a
    command line reports it in one line naming them."""


class OutOfReach(ValueError):
    """A target below ``floor``, the smallest cost the activation walk reaches from where the weight walk ended."""

    def __init__(self, message: str, floor: float) -> None:
        super().__init__(message)
        self.floor = floor


def _walk_error(phase: str, stuck: bool, cost: float, iterations: int, budget: str, cost_norm: str) -> WalkStuck:
    why = "is stuck (every neighbouring configuration already visited)" if stuck else "hit its iteration cap"
    fix = "lower alpha" if cost_norm == "signed" else "use cost_norm='signed' or lower alpha"
    return WalkStuck(f"greedy {phase} walk {why} at {cost:.6g} BitOPs after {iterations} iterations, "
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


def greedy_reachable(space: SearchSpace, cost_fn: CostFn, start_bits: int = 5) -> tuple[float, float]:
    """``(lowest, highest)`` cost a greedy walk from uniform W{start_bits}A{start_bits} can answer: every layer
    at its lowest choices, and the start itself (the walk moves down from its start and stops as soon as it is
    within the budget, so a target above the start would get the start back)."""
    return cost_fn(space.cfg(space.lowest_key())), cost_fn(space.cfg(space.start_key(start_bits)))


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
    the cheapest configuration the walk reaches (see ``STALL_PATIENCE``). Raises ValueError when a target lies outside
    the reachable BitOPs range (``greedy_reachable``: above the start included), or when a target
    is below what activation moves can reach from its phase-1 end point; ``WalkStuck`` (a ValueError) when a walk gets
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
    start = space.start_key(start_bits)
    lo, hi = greedy_reachable(space, cost_fn, start_bits)
    for target in targets:
        if not lo <= target <= hi:
            # above the start the walk would stop at once and return the start: an answer to another question
            raise ValueError(f"target {target:.6g} BitOPs outside the reachable range [{lo:.6g}, {hi:.6g}] (every "
                             f"layer at its lowest choices; the walk's start, uniform W{start_bits}A{start_bits}, "
                             "from which it moves down); pick a target in that range, or start higher")
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
        raise OutOfReach(f"target {target:.6g} is below {floor:.6g}, the smallest BitOPs that activation moves "
                         f"reach from the weight phase's end {memo.space.cfg(key)}; lower that target's phase1_budget",
                         floor)
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
    target's level with A5, `mpq.method.cost.phase1_budget`). The result's cost is at most ``target``.
    """
    return greedy_front(space, evaluator, cost_fn, [target], [phase1_budget], start_bits=start_bits,
                        alpha=alpha, cost_norm=cost_norm)[0]


