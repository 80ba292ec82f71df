"""Replicates with other training seeds (mpq.studies.replicates): which models get them, the refusals before any
training, and the DVC stages the profiles expand to."""
from __future__ import annotations

import pytest
import yaml

from mpq.config import load_params
from mpq.studies.model_bits import model_params
from mpq.studies.replicates import ReplicateConfig, main, run_replicate


@pytest.mark.timeout(10)
def test_other_models_are_checked():
    assert ReplicateConfig(other_models=["mobilenetv2_28"]).other_models == ("mobilenetv2_28",)
    with pytest.raises(ValueError, match="replicates.other_models must be distinct models other than replicates"):
        ReplicateConfig(other_models=("resnet20",))
    with pytest.raises(ValueError, match="replicates.other_models must be distinct"):
        ReplicateConfig(other_models=("mobilenetv2_28", "mobilenetv2_28"))


@pytest.mark.timeout(10)
def test_an_other_model_trains_with_its_own_bits_as_the_replicated_model(root):
    params = load_params(root / "params.yaml")
    study = model_params(params, "mobilenetv2_28")
    rep = ReplicateConfig(**study["replicates"])
    assert rep.model == "mobilenetv2_28" and rep.other_models == ("efficientnet_lite_28",)
    assert study["oneshot"]["w_bit_choices"] == [3, 4, 5, 6] and study["search"]["levels"] == [4, 3.5]
    assert params["replicates"]["other_models"] == ["mobilenetv2_28", "efficientnet_lite_28"]    # left alone


@pytest.mark.timeout(10)
def test_replicates_refuse_a_model_or_budget_they_do_not_train(root, tmp_path, capsys):
    params = load_params(root / "params.yaml")
    with pytest.raises(ValueError, match="model 'vgg' is neither replicates.model 'resnet20' nor one of"):
        run_replicate(params, 1, tmp_path / "out", model="vgg")
    with pytest.raises(ValueError, match="budget runs train replicates.model 'resnet20' only"):
        run_replicate(params, 1, tmp_path / "out", budget=2, model="mobilenetv2_28")
    assert not (tmp_path / ".out.partial").exists()
    assert main(["--model", "vgg", "--seed", "1", "--out", str(tmp_path / "x"),
                 "--params", str(root / "params.yaml")]) == 2
    assert "model 'vgg' is neither replicates.model" in capsys.readouterr().err


@pytest.mark.timeout(10)
@pytest.mark.parametrize("profile, per_model", [("params.yaml", 3), ("profiles/tiny.yaml", 3),
                                                ("profiles/smoke.yaml", 2)])
def test_every_model_of_a_claim_gets_the_replicate_seeds(root, profile, per_model):
    """C1 and C6 with seeds: ResNet-20 (replicate@<seed>) and every other model (model_replicate@<model>-<seed>),
    each seed with the main run's (``seed``); the default profile gives every model three."""
    params = load_params(root / profile)
    rep = ReplicateConfig(**params["replicates"])
    stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["model_replicate"]
    assert stage["matrix"] == {"model": "${replicates.other_models}", "seed": "${replicates.seeds}"}
    assert stage["outs"] == ["checkpoints/model_replicates/${item.model}/seed-${item.seed}"]
    assert "--model ${item.model} --seed ${item.seed}" in stage["cmd"] and "model_bits" in stage["params"]
    assert set(rep.other_models) | {rep.model} <= set(params["models"])
    assert len(rep.seeds) + 1 == per_model and params["seed"] not in rep.seeds
    if profile == "params.yaml":
        assert set(rep.other_models) | {rep.model} == set(params["models"])
