"""Bit-width scheduler and oscillation measures (mpq.method.scheduler) and the IDM term (mpq.method.losses)."""
from __future__ import annotations

import doctest
import json

import pytest
import torch

import mpq.method.losses
import mpq.method.scheduler
from mpq.search.evaluation import search_space
from mpq.method.losses import capture_bn_outputs, idm_loss, lowest_bit_layers
from mpq.models import create_model
from mpq.method.scheduler import (OscillationMonitor, SchedulerConfig, apply_decision, call_steps, decide_frozen, persistence,
                                  flip_rate, freeze_ratio, frozen_count, integer_levels, layer_scores,
                                  quantization_distance, turbulence)
from mpq.method.supernet import Supernet


def test_doctests():
    for module in (mpq.method.scheduler, mpq.method.losses):
        assert doctest.testmod(module).failed == 0


def test_turbulence_on_constructed_weights():
    # step 1, 2 bits: levels -2..1, thresholds at -1.5, -0.5, 0.5; band 0.125
    w = torch.tensor([0.45, 0.55, 0.3, -0.5, -1.4, -1.6, 1.45, 1.6, -2.6])
    # near a threshold: 0.45, 0.55, -0.5, -1.4, -1.6 (5 of 9); 1.45 and 1.6 are beyond the top threshold 0.5's
    # band and on the outer side of the top level 1 (which has no threshold above it); -2.6 is clipped
    assert turbulence(w, 1.0, 2) == pytest.approx(5 / 9)
    # the same weights at 3 bits (levels -4..3) also have thresholds at 1.5 and -2.5: all but 0.3 count
    assert turbulence(w, 1.0, 3) == pytest.approx(8 / 9)
    # scale invariance: weights and step scaled together
    assert turbulence(w * 0.01, 0.01, 2) == pytest.approx(5 / 9)


def test_decision_on_hand_made_scores():
    scores = {"l1": 0.10, "l2": 0.40, "l3": 0.40, "l4": 0.05, "l5": 0.30}
    assert decide_frozen(scores, 0.4) == ["l2", "l3"]
    assert decide_frozen(scores, 0.2) == ["l2"]                  # tie: the earlier layer
    assert decide_frozen(scores, 0.0) == []
    assert decide_frozen(scores, 1.0) == list(scores)
    with pytest.raises(ValueError):
        decide_frozen(scores, 1.5)


def test_the_frozen_count_is_floored_as_the_official_int():
    # ResNet-20's 20 searchable layers at ratio 0.48 (a cosine-annealed ratio between 0.5 and 0.2): 9.6 layers
    scores = {f"l{i:02d}": 1.0 - i / 100 for i in range(20)}          # l00 the most turbulent, l19 the least
    assert frozen_count(20, 0.48) == 9 and frozen_count(20, 0.48, "round") == 10
    assert decide_frozen(scores, 0.48) == [f"l{i:02d}" for i in range(9)]
    assert decide_frozen(scores, 0.48, "round") == [f"l{i:02d}" for i in range(10)]
    assert frozen_count(20, 0.5) == 10 and frozen_count(3, 0.2) == 0 and frozen_count(3, 0.2, "round") == 1
    assert SchedulerConfig().count_rounding == "floor"
    with pytest.raises(ValueError, match="count_rounding"):
        SchedulerConfig(count_rounding="ceil")


def test_schedule_endpoints():
    assert freeze_ratio(0.0) == pytest.approx(0.5) and freeze_ratio(1.0) == pytest.approx(0.2)
    assert freeze_ratio(0.5) == pytest.approx(0.35)
    assert all(freeze_ratio(a) >= freeze_ratio(b) for a, b in zip([0.1 * i for i in range(10)], [0.1 * i for i in range(1, 11)]))
    # the official proportions (first after 7/150 of training, every 1.33% until 72%, every 10% after) in a long run
    steps = call_steps(15000, SchedulerConfig(min_steps=1))
    assert steps[0] == 705 and steps == sorted(set(steps)) and steps[-1] < 15000
    early = [b - a for a, b in zip(steps, steps[1:]) if b <= 0.72 * 15000]
    late = [b - a for a, b in zip(steps, steps[1:]) if a >= 0.72 * 15000]
    assert set(early) <= {199, 200} and set(late) == {1500}      # calls thin out late, as in the paper
    # a run of 470 steps: persistence wins, every decision outlasts the EMA horizon of 100 steps
    steps = call_steps(470, SchedulerConfig())
    assert steps == [22, 122, 222, 322, 422]
    assert persistence(steps, 470) == [100, 100, 100, 100, 48]
    with pytest.raises(ValueError, match="band"):
        SchedulerConfig(band=0.6)


def test_freeze_and_unfreeze_bound_sampling_and_search():
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    names = list(sn.searchable)
    frozen = names[:3]
    cands = apply_decision(sn.choices, frozen, activations=False)     # weights only (split lists)
    for name in names:
        full_w, full_a = sn.choices[name]
        assert cands[name][1] == full_a
        assert cands[name][0] == (full_w[1:] if name in frozen else full_w)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        cfg = sn.sample_config(gen, cands)
        assert all(cfg[n][0] != 2 for n in frozen)
    space = search_space(sn, cands)
    assert all(2 not in space.w_choices[n] for n in frozen) and 2 in space.w_choices[names[-1]]
    # the next decision unfreezes: a layer frozen before gets its full list back
    again = apply_decision(sn.choices, names[3:4], activations=False)
    assert again[names[0]] == sn.choices[names[0]] and 2 not in again[names[3]][0]
    with pytest.raises(ValueError, match="not searchable"):
        apply_decision(sn.choices, ["nope"], activations=False)
    with pytest.raises(ValueError, match="for_model"):              # an unresolved rule is refused
        apply_decision(sn.choices, frozen, activations=None)


def _drawn(sn: Supernet, cands, names, draws: int = 300) -> dict[str, set[tuple[int, int]]]:
    """Every (w_bits, a_bits) pair ``draws`` random paths give each of ``names``."""
    gen = torch.Generator().manual_seed(0)
    seen: dict[str, set[tuple[int, int]]] = {n: set() for n in names}
    for _ in range(draws):
        cfg = sn.sample_config(gen, cands)
        for n in names:
            seen[n].add(cfg[n])
    return seen


@pytest.mark.timeout(10)
def test_a_frozen_resnet_layer_samples_neither_w2_nor_a2():
    from mpq.training.recipe import OneShotConfig

    rule = OneShotConfig().for_model("resnet20").sched_freeze_activations     # the registry: ResNet shares its lists
    assert rule is True
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    names = list(sn.searchable)
    frozen, free = names[:3], names[3:6]
    cands = apply_decision(sn.choices, frozen, activations=rule)
    assert all(cands[n] == ((3, 4, 5, 6), (3, 4, 5, 6)) for n in frozen)
    seen = _drawn(sn, cands, frozen + free)
    assert all(w != 2 and a != 2 for n in frozen for w, a in seen[n])
    assert {w for n in frozen for w, _ in seen[n]} == {3, 4, 5, 6} == {a for n in frozen for _, a in seen[n]}
    assert all(any(w == 2 for w, _ in seen[n]) and any(a == 2 for _, a in seen[n]) for n in free)
    # the supernet's own lowest point: W3A3 on the frozen layers, W2A2 elsewhere; the search space agrees
    low = sn.min_config(cands)
    assert all(low[n] == (3, 3) for n in frozen) and all(low[n] == (2, 2) for n in names[3:])
    space = search_space(sn, cands)
    assert all(2 not in space.w_choices[n] and 2 not in space.a_choices[n] for n in frozen)
    # a value set in params wins over the family's
    assert OneShotConfig(sched_freeze_activations=False).for_model("resnet20").sched_freeze_activations is False


@pytest.mark.timeout(10)
def test_a_frozen_mobilenetv2_layer_still_samples_a2():
    from torch import nn

    from mpq.training.recipe import OneShotConfig

    rule = OneShotConfig().for_model("mobilenetv2_28").sched_freeze_activations     # the MobileNetV2 config splits
    assert rule is False and OneShotConfig().for_model("efficientnet_lite_28").sched_freeze_activations is False
    sn = Supernet(create_model("mobilenetv2_28", width_mult=0.25), (1, 28, 28))
    modules = dict(sn.model.named_modules())
    pointwise = [n for n in sn.searchable if isinstance(modules[n], nn.Conv2d) and modules[n].groups == 1][:3]
    depthwise = [n for n in sn.searchable if isinstance(modules[n], nn.Conv2d) and modules[n].groups > 1][:2]
    cands = apply_decision(sn.choices, pointwise + depthwise, activations=rule)
    seen = _drawn(sn, cands, pointwise + depthwise)
    for n in pointwise:                  # weights lose 2, activations keep it
        assert {w for w, _ in seen[n]} == {3, 4, 5, 6} and any(a == 2 for _, a in seen[n])
    for n in depthwise:                  # weights lose their floor 3; activations keep 3..6 (never 2: the floor)
        assert {w for w, _ in seen[n]} == {4, 5, 6} and {a for _, a in seen[n]} == {3, 4, 5, 6}
    with pytest.raises(ValueError, match="unknown model"):
        OneShotConfig().for_model("vgg")


def test_layer_scores_cover_searchable_layers():
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    sn.calibrate(torch.randn(8, 1, 28, 28))
    scores = layer_scores(sn)
    assert list(scores) == list(sn.searchable) and all(0.0 <= s <= 0.5 for s in scores.values())


def test_flip_rate_and_distance():
    w = torch.tensor([0.2, 0.8, -0.6, 1.4])
    before = integer_levels(w, 1.0, 4)
    assert before.tolist() == [0, 1, -1, 1]
    after = integer_levels(w + torch.tensor([0.0, -0.4, 0.0, 0.2]), 1.0, 4)
    assert flip_rate(before, after) == pytest.approx(2 / 4)
    assert quantization_distance(w, 1.0, 4) == pytest.approx((0.2 + 0.2 + 0.4 + 0.4) / 4)


def test_oscillation_monitor_counts_moved_levels():
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    sn.calibrate(torch.randn(8, 1, 28, 28))
    monitor = OscillationMonitor(bits=(4, 6), every=0.5)
    monitor(0, 4, sn)                        # not a measurement step (every 2 steps)
    monitor(1, 4, sn)
    from mpq.method.layers import quant_layers
    layers = quant_layers(sn.model)
    name = sn.searchable[0]
    layer = layers[name]
    s4 = float(layer.weight_quantizer.step_size["4"].detach())
    with torch.no_grad():                   # move a quarter of one layer's weights by one whole 4-bit step
        flat = layer.weight.view(-1)
        idx = torch.arange(0, flat.numel(), 4)
        levels = integer_levels(flat[idx], s4, 4)
        flat[idx] += torch.where(levels < 7, s4, -s4)
    monitor(3, 4, sn)
    total = sum(layers[n].weight.numel() for n in sn.searchable)
    record = monitor.as_dict()
    assert record["steps"] == [2, 4] and record["progress"] == [0.5, 1.0]
    assert record["flip_rate"]["4"][0] is None
    assert record["flip_rate"]["4"][1] == pytest.approx(len(idx) / total)
    assert 0.0 < record["flip_rate"]["6"][1] and all(0.0 <= d <= 0.5 for d in record["distance"]["6"])
    with pytest.raises(ValueError, match="no searchable layer"):
        OscillationMonitor(bits=(8,)).measure(sn)


def test_idm_loss_properties():
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    x = torch.randn(4, 1, 28, 28)
    sn.calibrate(x)
    bns = {n: sn.model.get_submodule(b) for n, b in sn.bn_of.items()}
    sn.set_config(sn.max_config())
    with capture_bn_outputs(bns) as teacher:
        sn(x)
    # zero when features match
    assert float(idm_loss(teacher, teacher, list(teacher)).detach()) == 0.0
    low = sn.sample_config(torch.Generator().manual_seed(1))
    layers = lowest_bit_layers(low, sn.choices)
    assert layers and all(low[n][0] == 2 for n in layers)
    sn.set_config(low)
    with capture_bn_outputs(bns) as student:
        sn(x)
    assert all(not h for bn in bns.values() for h in (bn._forward_hooks,))     # hooks removed
    sn.zero_grad()
    loss = idm_loss(student, teacher, layers)
    assert loss > 0
    loss.backward()
    # gradients reach the student path only: the max path's own BN (w6a6) gets none
    name = layers[0]
    switch = bns[name]
    w, a = low[name]
    assert switch.bns[f"w{w}a{a}"].weight.grad is not None
    assert switch.bns["w6a6"].weight.grad is None or (w, a) == (6, 6)
    # only the given layers contribute
    other = [n for n in student if n not in layers][:1]
    by_hand = sum(torch.nn.functional.mse_loss(student[n], teacher[n]) for n in layers)
    assert float(loss.detach()) == pytest.approx(float(by_hand.detach()), rel=1e-6)
    assert float(idm_loss(student, teacher, [])) == 0.0
    if other:
        assert float(idm_loss(student, teacher, layers + other).detach()) > float(loss.detach())


# --- the scheduler's record: calls, spacing, overlap of consecutive decisions, score gaps ----------------------

from mpq.method.scheduler import (SchedulerLog, chance_overlap, frozen_overlap, schedule_design, schedule_summary,
                                  score_gap)


@pytest.mark.timeout(10)
def test_overlap_chance_and_gap_by_hand():
    assert frozen_overlap(["a", "b"], ["b", "c", "d"]) == (1, 0.25)
    assert frozen_overlap([], []) == (0, 1.0) and frozen_overlap(["a"], []) == (0, 0.0)
    assert chance_overlap(2, 3, 6) == 1.0 and chance_overlap(2, 3, 0) == 0.0
    assert score_gap({"a": 0.4, "b": 0.2, "c": 0.0}, ["a"]) == pytest.approx(0.3)
    assert score_gap({"a": 0.4}, ["a"]) is None and score_gap({"a": 0.4}, []) is None


@pytest.mark.timeout(10)
def test_schedule_summary_of_hand_made_calls():
    log = SchedulerLog()
    # four layers; call 1 freezes a, b; call 2 (a rotation: a and b scored without their lowest candidate)
    # freezes c, d although on the full lists a and b are still the most turbulent; call 3 freezes a, c
    full = {n: ((2, 3, 4), (2, 3, 4)) for n in "abcd"}

    def cands(frozen, activations=True):
        return apply_decision(full, frozen, activations=activations)

    log.record(10, 0.5, ["a", "b"], {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}, {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1},
               cands(["a", "b"]))
    log.record(110, 0.5, ["c", "d"], {"a": 0.1, "b": 0.1, "c": 0.3, "d": 0.2}, {"a": 0.4, "b": 0.3, "c": 0.3, "d": 0.2},
               cands(["c", "d"]))
    log.record(260, 0.5, ["a", "c"], {"a": 0.5, "b": 0.1, "c": 0.3, "d": 0.1}, {"a": 0.5, "b": 0.1, "c": 0.3, "d": 0.1},
               cands(["a", "c"], activations=False))
    s = log.as_dict(300)["summary"]
    assert s["calls"] == 3 and s["call_steps"] == [10, 110, 260] and s["steps_between"] == [100, 150]
    assert s["persistence"] == [100, 150, 40] and s["median_persistence"] == 100 and s["min_persistence"] == 40
    assert s["overlap"] == [0, 1] and s["jaccard"] == [0.0, pytest.approx(1 / 3)]
    assert s["chance_overlap"] == [1.0, 1.0] and s["mean_chance_overlap"] == 1.0
    assert s["score_gap"] == [pytest.approx(0.2), pytest.approx(0.15), pytest.approx(0.3)]
    # on the full lists the second decision picked the less turbulent half: a negative gap
    assert s["full_score_gap"][1] == pytest.approx(0.25 - 0.35)
    # the full scores would have frozen a, b at call 2 (none shared with c, d) and a, c at call 3
    assert s["refrozen_by_full_scores"] == [0.0, 1.0]
    # what freezing took: W2 and A2 at the first two calls, W2 only at the third
    assert log.calls[0].frozen_lowest == {"a": (3, 3), "b": (3, 3)} and log.calls[2].frozen_lowest["c"] == (3, 2)
    assert s["frozen_lowest_points"] == [[3, 2], [3, 3]]
    assert json.loads(json.dumps(log.as_dict(300), allow_nan=False)) == log.as_dict(300)    # strict JSON
    again = SchedulerLog()
    again.load_state(log.state())
    assert again.as_dict(300) == log.as_dict(300)
    empty = SchedulerLog().as_dict(50)["summary"]
    assert empty["calls"] == 0 and empty["median_persistence"] is None and empty["mean_jaccard"] is None


@pytest.mark.timeout(10)
def test_schedule_design_counts_calls_and_compares_persistence_with_the_ema_horizon():
    design = schedule_design(1200, SchedulerConfig(min_steps=100), 0.99)
    assert design["calls"] == 12 and design["call_steps"][:2] == [56, 156] and design["call_steps"][-3:] == [956, 1076, 1196]
    assert design["median_persistence"] == 100 and design["decisions_outlast_ema"]
    short = schedule_design(470, SchedulerConfig(min_steps=100), 0.995)      # horizon 200 steps
    assert short["calls"] == 5 and not short["decisions_outlast_ema"]


# --- this package's variant: scores over the full candidate list, so a decision can persist -------------------------

from mpq.method.scheduler import SchedulerCall, decision_scores, overlap_against_chance, score_layers, turbulence_table


@pytest.mark.timeout(10)
def test_full_candidate_scores_let_a_decision_persist():
    # four layers whose turbulence does not change between two calls; a and b are the most turbulent at 2 bits
    table = {"a": {2: 0.8, 3: 0.3, 4: 0.2}, "b": {2: 0.7, 3: 0.3, 4: 0.2},
             "c": {2: 0.4, 3: 0.45, 4: 0.4}, "d": {2: 0.3, 3: 0.45, 4: 0.4}}
    full = {n: ((2, 3, 4), (2, 3, 4)) for n in table}
    # full scores (mean of turbulence / b): a (0.4 + 0.1 + 0.05) / 3, b 0.5 / 3, c 0.45 / 3, d 0.4 / 3
    assert score_layers(table, full) == pytest.approx({"a": 0.55 / 3, "b": 0.5 / 3, "c": 0.15, "d": 0.4 / 3})
    first = decide_frozen(decision_scores(table, full, full, "current"), 0.5)
    assert first == ["a", "b"] and decide_frozen(decision_scores(table, full, full, "full"), 0.5) == first
    now = apply_decision(full, first, activations=True)                    # a and b lose W2 and A2
    current = decision_scores(table, full, now, "current")
    # the paper's score: a and b scored without their 2-bit term, (0.1 + 0.05) / 2, drop under c and d: a rotation
    assert current == pytest.approx({"a": 0.075, "b": 0.075, "c": 0.15, "d": 0.4 / 3})
    assert decide_frozen(current, 0.5) == ["c", "d"]
    # the full-candidate score does not see the previous decision: a and b stay frozen while their turbulence does
    assert decide_frozen(decision_scores(table, full, now, "full"), 0.5) == ["a", "b"]
    with pytest.raises(ValueError, match=r"score_candidates must be one of \['current', 'full'\]"):
        decision_scores(table, full, now, "lowest")
    with pytest.raises(ValueError, match="scheduler.score_candidates"):
        SchedulerConfig(score_candidates="all")


@pytest.mark.timeout(10)
def test_overlap_against_chance_by_hand():
    def calls(*frozen_sets, layers="abcdef"):
        return [SchedulerCall(10 * i, 0.5, tuple(f), {n: 0.0 for n in layers}, {}, {}) for i, f in enumerate(frozen_sets)]

    # six layers; sizes 3, 3, 2: chance shares 3 * 3 / 6 = 1.5, then 3 * 2 / 6 = 1; shared 3 (a persisting
    # decision), then 1 (b)
    rec = overlap_against_chance(calls("abc", "abc", "bd"))
    assert rec == {"pairs": 2, "mean_overlap": 2.0, "mean_chance_overlap": 1.25, "excess": 0.75, "ratio": 1.6,
                   "above_chance": True}
    rotation = overlap_against_chance(calls("abc", "def", "abc"))              # no layer stays frozen
    assert rotation["mean_overlap"] == 0.0 and rotation["mean_chance_overlap"] == 1.5 and not rotation["above_chance"]
    assert overlap_against_chance(calls("abc")) is None and overlap_against_chance([]) is None
    # the same as the summary's mean overlap and chance (scheduler.schedule_summary)
    summary = schedule_summary(calls("abc", "abc", "bd"), 100)
    assert (summary["mean_overlap"], summary["mean_chance_overlap"]) == (rec["mean_overlap"], rec["mean_chance_overlap"])


@pytest.mark.timeout(20)
def test_a_full_candidate_scheduler_call_decides_on_and_records_the_full_scores():
    from mpq.training.oneshot import schedule

    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    sn.calibrate(torch.randn(8, 1, 28, 28))
    table = turbulence_table(sn)
    assert layer_scores(sn) == score_layers(table, sn.choices)
    frozen = list(sn.searchable[:4])
    now = apply_decision(sn.choices, frozen, activations=True)
    assert layer_scores(sn, now) == score_layers(table, now)
    for mode in ("current", "full"):
        log = SchedulerLog()
        cfg = SchedulerConfig(score_candidates=mode, freeze_activations=True)
        decided = schedule(sn, now, 0.0, cfg, log, step=7)
        call = log.calls[0]
        assert call.full_scores == score_layers(table, sn.choices)
        assert call.scores == (call.full_scores if mode == "full" else score_layers(table, now))
        assert decided == decide_frozen(call.scores, 0.5) and call.step == 7
