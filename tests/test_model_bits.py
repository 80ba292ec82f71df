"""Per-model bit-widths (model_bits): floors on candidates, levels, searches, and the committed params."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from mpq.studies.allocation import allocation_figure
from mpq.config import BaselineConfig, EvalConfig, SearchConfig, from_dict, load_params
from mpq.method.cost import level_bitops
from mpq.studies.model_bits import ModelBits, check_shared, model_bits
from mpq.models import create_model, model_entry
from mpq.training.recipe import OneShotConfig
from mpq.method.supernet import Supernet

FLOOR3 = {"mobilenetv2_28": {"min_bits": 3, "search_levels": [4, 3.5]}}


def test_a_floor_removes_lower_candidates_and_levels_and_keeps_the_rest_of_the_recipe():
    own = model_bits(FLOOR3, "mobilenetv2_28")
    cfg = own.oneshot(OneShotConfig(lr=0.02))
    assert cfg.w_bit_choices == (3, 4, 5, 6) and cfg.a_bit_choices == (3, 4, 5, 6)
    assert cfg.lr == 0.02 and cfg.depthwise_min_bits == 3
    assert own.evaluation(EvalConfig(levels=(2, 3, 4, 5, 6))).levels == (3, 4, 5, 6)
    assert own.baseline_levels(BaselineConfig(levels=(2, 3, 4))) == (3, 4)
    assert own.search(SearchConfig(levels=(4, 3, 2.5), start_bits=4)).levels == (4, 3.5)
    assert own.search(SearchConfig(start_bits=4)).start_bits == 4                    # the shared start
    assert ModelBits(start_bits=5).search(SearchConfig(start_bits=4)).start_bits == 5  # its own


def test_a_model_not_listed_keeps_the_shared_settings():
    own = model_bits(FLOOR3, "resnet20")
    assert own == ModelBits()
    cfg = OneShotConfig()
    assert own.oneshot(cfg) == cfg
    assert own.search(SearchConfig(levels=(4, 3, 2.5))).levels == (4, 3, 2.5)
    assert own.baseline_levels(BaselineConfig(levels=(2, 3, 4))) == (2, 3, 4)


def test_without_its_own_levels_a_floored_model_searches_the_shared_levels_above_the_floor():
    own = ModelBits(min_bits=3)
    assert own.search(SearchConfig(levels=(4, 3, 2.5))).levels == (4, 3)
    with pytest.raises(ValueError, match="give the model its own search_levels"):
        own.search(SearchConfig(levels=(2.5,)))


def test_bad_entries_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="unknown models \\['vgg'\\]"):
        model_bits({"vgg": {"min_bits": 3}}, "resnet20")
    with pytest.raises(ValueError, match="model_bits.mobilenetv2_28.min_bits: expected int"):
        model_bits({"mobilenetv2_28": {"min_bits": "3"}}, "mobilenetv2_28")
    with pytest.raises(ValueError, match="unknown keys \\['floor'\\]"):
        model_bits({"mobilenetv2_28": {"floor": 3}}, "mobilenetv2_28")
    with pytest.raises(ValueError, match="leaves no candidate"):
        ModelBits(min_bits=7).oneshot(OneShotConfig())
    with pytest.raises(ValueError, match="min_bits must be >= 2"):
        ModelBits(min_bits=1)
    # a level under the floor is out of reach: the search's own check names the range
    own = ModelBits(min_bits=3, search_levels=(4, 2.5))
    cfg = own.oneshot(OneShotConfig())
    with pytest.raises(ValueError, match="outside the candidates' range \\[3, 6\\]"):
        own.search(SearchConfig(levels=(4,), start_bits=4)).check_candidates(cfg.w_bit_choices, cfg.a_bit_choices)


def test_single_model_studies_refuse_a_model_with_its_own_bits():
    check_shared(FLOOR3, ["resnet20"], "replicates.model")
    with pytest.raises(ValueError, match="replicates.model: model 'mobilenetv2_28' has its own entry"):
        check_shared(FLOOR3, ["mobilenetv2_28"], "replicates.model")


def test_a_floored_supernet_has_no_candidate_under_the_floor_and_reaches_its_levels():
    cfg = model_bits(FLOOR3, "mobilenetv2_28").oneshot(OneShotConfig())
    net = Supernet(create_model("mobilenetv2_28", width_mult=0.25), model_entry("mobilenetv2_28").input_size,
                   cfg.supernet_spec())
    assert all(min(w) >= 3 and min(a) >= 3 for w, a in net.choices.values())
    low = net.min_config()
    assert low == net.uniform_config(3)
    table = net.cost_table
    # level 3.5 lies between the floor's cost and uniform W4A4; level 2.5 is under the cheapest configuration
    assert net.bitops(low) <= level_bitops(table, 3.5) < net.bitops(net.uniform_config(4))
    assert level_bitops(table, 2.5) < net.bitops(low)


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/tiny.yaml", "profiles/large.yaml"])
def test_committed_model_bits_fit_each_profile(root, profile):
    p = load_params(root / profile)
    oneshot = from_dict(OneShotConfig, p["oneshot"], "oneshot")
    search = from_dict(SearchConfig, p["search"], "search")
    evaluation = from_dict(EvalConfig, p["evaluation"], "evaluation")
    for name in p["models"]:
        own = model_bits(p["model_bits"], name)
        cfg = own.oneshot(oneshot)
        own.search(search).check_candidates(cfg.w_bit_choices, cfg.a_bit_choices)
        own.evaluation(evaluation).check_candidates(cfg.w_bit_choices, cfg.a_bit_choices)
    for study in ("replicates", "ablation"):        # notebook 06 honours model_bits; these studies do not
        check_shared(p["model_bits"], [p[study]["model"]], f"{study}.model")


def test_allocation_figure_gives_each_model_its_own_levels():
    results = {"a": {"levels": {4: {"greedy": {"bit_cfg": {"l1": (4, 4), "l2": (3, 5)}}}, 3: {"greedy": {"bit_cfg":
                                {"l1": (3, 3), "l2": (2, 4)}}}}},
               "b": {"levels": {3.5: {"greedy": {"bit_cfg": {"m1": (4, 3)}}}}}}
    fig = allocation_figure(results, "t")
    axes = fig.axes
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes if ax.axison] == ["a, level 4", "a, level 3", "b, level 3.5"]
    heights = [p.get_height() for p in axes[1].patches]
    assert heights == [3, 2, 3, 4]          # weights then activations, layer order
    plt.close(fig)
    fig = allocation_figure(results, "t", names={"a": "Model A"})      # a display name where one is given
    assert [ax.get_title() for ax in fig.axes if ax.axison] == ["Model A, level 4", "Model A, level 3", "b, level 3.5"]
    plt.close(fig)
