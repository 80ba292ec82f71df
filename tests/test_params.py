"""params.yaml, the profiles, the notebooks' parameters cells and dvc.yaml's params lists agree."""
from __future__ import annotations

import ast

import nbformat
import pytest
import yaml

from mpq.config import (AblationConfig, BaselineConfig, DataConfig, EvalConfig, FPConfig, InterferenceConfig,
                        SearchConfig, from_dict, load_params, model_specs)
from mpq.training.recipe import OneShotConfig
from mpq.pages.pipeline import select_parameters
from mpq.studies.transfer import TransferConfig


def _structure(obj):
    """Keys all the way down (values ignored), so profiles can differ in values only."""
    if isinstance(obj, dict):
        return {k: _structure(v) for k, v in obj.items()}
    return None


def _notebook_defaults(path) -> dict:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {}
    for node in ast.parse(cell.source).body:
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def _stages(root):
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def test_profiles_have_the_same_keys_as_params(root):
    params = load_params(root / "params.yaml")
    for profile in sorted((root / "profiles").glob("*.yaml")):
        assert _structure(load_params(profile)) == _structure(params), profile.name


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/tiny.yaml", "profiles/smoke.yaml"])
def test_every_section_validates(root, profile):
    p = load_params(root / profile)
    from_dict(DataConfig, p["data"], "data")
    from_dict(FPConfig, p["fp"], "fp")
    from_dict(OneShotConfig, p["oneshot"], "oneshot")
    from_dict(EvalConfig, p["evaluation"], "evaluation")
    from_dict(BaselineConfig, p["baselines"], "baselines")
    from_dict(SearchConfig, p["search"], "search")
    from_dict(InterferenceConfig, p["interference"], "interference")
    from_dict(AblationConfig, p["ablation"], "ablation")
    from_dict(TransferConfig, p["transfer"], "transfer")
    assert set(p["benchmark"]) == {"model", "width_mult", "batch_size", "reps", "rounds"}
    model_specs(p["models"])


def test_notebooks_parameters_match_params_yaml_and_dvc(root):
    params = load_params(root / "params.yaml")
    stages = _stages(root)
    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        stage = next(s for s in stages.values() if str(nb.relative_to(root)) in s["cmd"])
        defaults = _notebook_defaults(nb)
        assert sorted(defaults) == sorted(stage["params"]), f"{nb.name}: parameters cell vs dvc.yaml params"
        for name, value in defaults.items():
            assert value == params[name], f"{nb.name}: default of {name!r} differs from params.yaml"
        assert select_parameters(nb, params) == {n: params[n] for n in defaults}
        assert str(nb.relative_to(root)) in stage["deps"]


def test_unknown_or_missing_keys_rejected():
    with pytest.raises(ValueError, match="unknown keys \\['epoch'\\].*missing keys \\[\\]"):
        from_dict(FPConfig, {"epoch": 3}, "fp")
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        model_specs({"vgg": {"width_mult": 1.0}})


def test_environment_yml_delegates_to_requirements(root):
    env = (root / "environment.yml").read_text()
    assert "python=3.11" in env and "-r requirements.txt" in env
    reqs = (root / "requirements.txt").read_text()
    assert "torch==2.13.0" in reqs and "torchvision" not in reqs.replace("No torchvision", "")


@pytest.mark.parametrize("cls, section, values, message", [
    (OneShotConfig, "oneshot", {"epochs": "3"}, "oneshot.epochs: expected int, got str '3'"),
    (OneShotConfig, "oneshot", {"lr": "0.04"}, "oneshot.lr: expected float, got str"),
    (OneShotConfig, "oneshot", {"w_bit_choices": [2, "3"]}, "oneshot.w_bit_choices: expected a list of int"),
    (FPConfig, "fp", {"epochs": True}, "fp.epochs: expected int, got bool"),
    (DataConfig, "data", {"train_size": 1.5}, "data.train_size: expected int or null"),
    (DataConfig, "data", {"dataset": "cifar10"}, "unknown data set 'cifar10'; choose one of"),
    (SearchConfig, "search", {"retrain": "yes"}, "search.retrain: expected bool"),
])
def test_wrong_types_and_names_fail_where_read(cls, section, values, message):
    with pytest.raises(ValueError, match=message):
        from_dict(cls, values, section)


def test_levels_outside_the_candidates_fail_in_the_config_cell():
    bits = (2, 3, 4, 5, 6)
    SearchConfig(levels=(4, 3, 2.5), start_bits=4).check_candidates(bits, bits)
    with pytest.raises(ValueError, match=r"search.levels \[7\] lie outside the candidates' range \[2, 6\]"):
        SearchConfig(levels=(7, 3), start_bits=6).check_candidates(bits, bits)
    with pytest.raises(ValueError, match="search.start_bits 8 is not a candidate"):
        SearchConfig(levels=(3,), start_bits=8).check_candidates(bits, bits)
    with pytest.raises(ValueError, match="evaluation.levels \\[8\\] are not candidates"):
        EvalConfig(levels=(2, 8)).check_candidates(bits, bits)


def test_every_profile_passes_the_candidate_checks(root):
    for path in ["params.yaml", *sorted(str(p.relative_to(root)) for p in (root / "profiles").glob("*.yaml"))]:
        params = load_params(root / path)
        oneshot = from_dict(OneShotConfig, params["oneshot"], "oneshot")
        from_dict(SearchConfig, params["search"], "search").check_candidates(oneshot.w_bit_choices, oneshot.a_bit_choices)
        from_dict(EvalConfig, params["evaluation"], "evaluation").check_candidates(oneshot.w_bit_choices,
                                                                                   oneshot.a_bit_choices)


