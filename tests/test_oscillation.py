"""Dense oscillation windows (mpq.method.oscillation): changes, reversals and step-size-driven changes on a
known trajectory, the same counts from the pure function and from the monitor."""
from __future__ import annotations

import doctest

import pytest
import torch

import mpq.method.oscillation
from mpq.method.layers import quant_layers
from mpq.method.oscillation import WindowMonitor, level_changes, window_starts
from mpq.method.supernet import Supernet
from mpq.models import create_model

pytestmark = pytest.mark.timeout(30)


def test_doctests():
    assert doctest.testmod(mpq.method.oscillation).failed == 0


def test_level_changes_by_hand():
    levels = torch.tensor([[0, 0, 5], [1, 1, 5], [0, 2, 5], [1, 3, 5], [0, 3, 5]])
    # weight 0: up, down, up, down (4 changes, 3 reversals); weight 1: up three times; weight 2: still
    assert level_changes(levels) == {"changes": 7, "reversals": 3, "oscillating": 1}
    # a jump of several levels is one change, and a return after a pause is still a reversal
    assert level_changes(torch.tensor([[0], [3], [3], [2]])) == {"changes": 2, "reversals": 1, "oscillating": 1}
    with pytest.raises(ValueError, match="2\\+ rows"):
        level_changes(torch.zeros(1, 3))


def test_window_starts_fit_and_refuse():
    assert window_starts(6, 1, 4) == [0]
    starts = window_starts(1200, 4, 50)
    assert starts == sorted(starts) and all(b - a > 50 for a, b in zip(starts, starts[1:])) and starts[-1] + 50 < 1200
    with pytest.raises(ValueError, match="do not fit in 10 training steps"):
        window_starts(10, 2, 5)


def test_window_monitor_on_a_known_trajectory():
    """One layer's weights follow a hand-made path (in units of its 4-bit step size s0, every other weight 0);
    the step size doubles before step 2. Under the frozen s0: weight 0 goes 1.2, 0, 1.2, 0 (levels 1, 0, 1, 0:
    4 changes, 3 reversals), weight 1 goes 1.1, 2.1, 3.1, 3.1 (levels 1, 2, 3, 3: 3 changes), weight 2 sits at
    0.6 (level 1 throughout). Under the current step size weight 2 drops to level 0 at step 2: one change the
    grid made, not the weight; weights 0 and 1 change there under both."""
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    sn.calibrate(torch.randn(8, 1, 28, 28))
    layers = quant_layers(sn.model)
    with torch.no_grad():
        for name in sn.searchable:
            layers[name].weight.zero_()
    layer = layers[sn.searchable[0]]
    s0 = float(layer.weight_quantizer.step_size["4"].detach())
    path = {0: [0.0, 1.2, 0.0, 1.2, 0.0], 1: [0.0, 1.1, 2.1, 3.1, 3.1], 2: [0.6] * 5}
    monitor = WindowMonitor(bits=(4,), count=1, steps=4)
    for step in range(6):
        with torch.no_grad():
            flat = layer.weight.view(-1)
            for i, values in path.items():
                flat[i] = values[min(step, 4)] * s0
            if step == 2:
                layer.weight_quantizer.step_size["4"].mul_(2.0)
        monitor(step, 6, sn)
    record = monitor.as_dict()
    assert record["starts"] == [0] and record["window_steps"] == 4
    (window,) = record["windows"]["4"]
    total = sum(layers[n].weight.numel() for n in sn.searchable)
    assert window["start"] == 0 and window["steps"] == 4 and window["weights"] == total
    assert (window["changes"], window["reversals"], window["oscillating"]) == (7, 3, 1)
    # current grid: weight 0 changes at every step, weight 1 at steps 1 and 3, weight 2 at step 2
    assert window["changes_current_step"] == 7 and window["step_driven"] == 1
    assert window["reversal_rate"] == pytest.approx(3 / (4 * total))
    assert window["step_size_ratio"] == pytest.approx((2.0 + len(sn.searchable) - 1) / len(sn.searchable))
    # the pure count over the frozen-grid levels agrees with the monitor's running count
    levels = torch.tensor([[round(v[t]) for v in path.values()] for t in range(5)])
    assert level_changes(levels) == {k: window[k] for k in ("changes", "reversals", "oscillating")}
    with pytest.raises(ValueError, match="no searchable layer has a 8-bit"):
        WindowMonitor(bits=(8,), count=1, steps=1)(1, 4, sn)            # step 1 opens the window


def test_back_to_back_windows_are_both_recorded():
    """A window whose reference step is the last step of the one before: both are kept, each its own steps."""
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    sn.calibrate(torch.randn(8, 1, 28, 28))
    monitor = WindowMonitor(bits=(4,), count=2, steps=2)
    monitor.starts = [0, 2]                       # as window_starts could round them: window 1 ends where 2 begins
    for step in range(5):
        monitor(step, 5, sn)
    assert [(w["start"], w["steps"]) for w in monitor.as_dict()["windows"]["4"]] == [(0, 2), (2, 2)]
