"""The interference runs on a real model (mpq.studies.ablation): cells, parameters, the command's refusals."""
from __future__ import annotations

import pytest

from mpq.studies.ablation import cell_config, main
from mpq.config import AblationConfig, from_dict
from mpq.training.recipe import OneShotConfig


def test_cells_switch_only_what_they_name():
    base = OneShotConfig(scheduler=True, idm=True)
    expected = {"plain": (False, False), "sched": (True, False), "idm": (False, True), "both": (True, True)}
    for cell, (scheduler, idm) in expected.items():
        cfg = cell_config(base, cell, 500)
        assert (cfg.scheduler, cfg.idm, cfg.train_size) == (scheduler, idm, 500)
        assert cfg.w_bit_choices == base.w_bit_choices and cfg.lr == base.lr
    no2bit = cell_config(base, "no2bit", 500)
    assert no2bit.w_bit_choices == (3, 4, 5, 6) and no2bit.a_bit_choices == base.a_bit_choices
    assert not no2bit.scheduler and not no2bit.idm
    with pytest.raises(ValueError, match="unknown ablation cell 'bothh'"):
        cell_config(base, "bothh", 500)


def test_ablation_config_checks():
    with pytest.raises(ValueError, match="unknown cells \\['x'\\]"):
        AblationConfig(cells=("plain", "x"))
    with pytest.raises(ValueError, match="distinct seeds"):
        AblationConfig(seeds=(0, 0))
    with pytest.raises(ValueError, match="ablation.seeds: expected"):
        from_dict(AblationConfig, {"seeds": 3}, "ablation")


def test_command_refuses_a_cell_or_seed_not_in_params(root, capsys):
    assert main(["--cell", "both", "--seed", "99", "--out", "unused", "--params", str(root / "params.yaml")]) == 2
    assert "seed 99" in capsys.readouterr().err
