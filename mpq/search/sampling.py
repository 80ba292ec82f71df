"""The search baselines of the paper's comparison (F5): random search inside a BitOPs window, an
evolutionary search, and the exhaustive answer on toy spaces (`brute_force`).
"""
from __future__ import annotations

import logging
import random
from typing import Callable, Sequence

from mpq.search.space import (CostFn, Evaluator, Key, SearchResult, SearchSpace, SearchStep, _Memo, _check_target,
                              _check_window)

logger = logging.getLogger(__name__)


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
