"""The seed study's params: one model's own bit-widths written into the shared sections."""
from __future__ import annotations

import pytest

from mpq.config import load_params
from mpq.studies.model_bits import model_params
from mpq.studies.seed_study import main_record


def test_model_params_carry_the_models_own_bits_and_leave_the_input_alone(root):
    params = load_params(root / "params.yaml")
    before = repr(params)
    mbv2 = model_params(params, "mobilenetv2_28")
    assert repr(params) == before                                   # a copy, not an edit
    assert mbv2["replicates"]["model"] == "mobilenetv2_28"
    assert mbv2["oneshot"]["w_bit_choices"] == mbv2["oneshot"]["a_bit_choices"] == [3, 4, 5, 6]
    assert mbv2["evaluation"]["levels"] == [3, 4, 5, 6] and mbv2["baselines"]["levels"] == [3, 4]
    assert mbv2["search"]["levels"] == [4, 3.5] and mbv2["search"]["start_bits"] == params["search"]["start_bits"]
    assert {k: v for k, v in mbv2["oneshot"].items() if "bit_choices" not in k} == \
        {k: v for k, v in params["oneshot"].items() if "bit_choices" not in k}
    rn = model_params(params, "resnet20")                           # not listed: the shared settings
    assert {k: rn[k] for k in ("oneshot", "evaluation", "baselines")} == \
        {k: params[k] for k in ("oneshot", "evaluation", "baselines")}
    assert rn["search"]["levels"] == params["search"]["levels"]


def test_model_params_and_main_record_refuse_what_is_missing(root, tmp_path):
    params = load_params(root / "params.yaml")
    with pytest.raises(ValueError, match="not in the models section"):
        model_params({**params, "models": {"resnet20": {"width_mult": 0.5}}}, "mobilenetv2_28")
    with pytest.raises(FileNotFoundError, match="dvc repro search"):
        main_record(tmp_path, "resnet20")


def test_main_record_pools_with_replicates_of_the_same_shape(root):
    record = main_record(root / "reports/metrics", "mobilenetv2_28")
    assert set(record["gaps"]) == {"4", "3.5"}
    assert {"supernet W3A3", "LSQ W3A3", "greedy 3.5", "retrained 3.5"} <= set(record["test_acc"])
    assert "supernet W2A2" not in record["test_acc"]
