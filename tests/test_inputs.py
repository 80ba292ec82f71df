"""Bad inputs get one clear refusal, never a silent default: the params loaders (a property-based test), the
params file's top level, output locations checked before the work, and how a command line ends."""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpq.config import (AblationConfig, BaselineConfig, DataConfig, EvalConfig, FPConfig, InterferenceConfig,
                        SearchConfig, SECTIONS, check_params, from_dict, load_params)
from mpq.studies.model_bits import ModelBits
from mpq.studies.replicates import ReplicateConfig
from mpq.studies.retrain_check import RetrainCheckConfig
from mpq.studies.search_study import SearchStudyConfig
from mpq.studies.transfer import TransferConfig
from mpq.training.checkpoint import (OutputError, TrainingInterrupted, check_output, latest_checkpoint,
                                     run_command)
from mpq.training.recipe import OneShotConfig

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
TINY = load_params(ROOT / "profiles/tiny.yaml")
LOADERS = {"data": DataConfig, "fp": FPConfig, "oneshot": OneShotConfig, "evaluation": EvalConfig,
           "baselines": BaselineConfig, "search": SearchConfig, "interference": InterferenceConfig,
           "ablation": AblationConfig, "transfer": TransferConfig, "replicates": ReplicateConfig,
           "retrain_check": RetrainCheckConfig, "search_study": SearchStudyConfig,
           "model_bits.mobilenetv2_28": ModelBits}

# fields that must come out positive, or in [0, 1], whenever a section is accepted
POSITIVE = {"epochs", "lr", "step_lr", "batch_size", "score_size", "calib_size", "test_size", "train_size",
            "kd_temperature", "width_mult", "toy_steps", "toy_seeds", "random_samples", "evo_population",
            "evo_generations", "feature_images", "budget_passes", "alpha", "step_lr_ratio", "clip_grad_value"}
UNIT = {"momentum", "kd_weight", "qe_start", "ema_decay", "evo_mutation_prob", "label_smoothing", "grid_images",
        "test_fraction", "monitor_every", "sched_warmup", "sched_late_from", "sched_ratio_start", "sched_ratio_end"}


def _section(name: str) -> dict:
    values = TINY
    for key in name.split("."):
        values = values[key]
    return dict(values)


def _well_typed(hint):
    """Random values of a field's annotation, edge cases included: zero, negatives, nan, inf, empty lists."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_well_typed(h) for h in typing.get_args(hint)])
    if origin is tuple:
        return st.lists(_well_typed(typing.get_args(hint)[0]), max_size=4)
    if hint is type(None):
        return st.none()
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-3, 12) | st.integers()
    if hint is float:
        return st.floats() | st.floats(-2, 2) | st.integers(-3, 12)
    return st.text(max_size=6)


ILL_TYPED = st.one_of(st.text(max_size=4), st.none(), st.booleans(), st.lists(st.text(max_size=2), max_size=2),
                      st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def _mentions(message: str, value) -> bool:
    return repr(value) in message or str(value) in message


def _sane(obj) -> None:
    """What an accepted section must satisfy: finite numbers, positive sizes and rates, fractions in [0, 1]."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        items = value if isinstance(value, tuple) else (value,)
        assert all(math.isfinite(v) for v in items if isinstance(v, float)), (f.name, value)
        if f.name in POSITIVE and value is not None:
            assert value > 0, (f.name, value)
        if f.name in UNIT:
            assert 0 <= value <= 1, (f.name, value)


@pytest.mark.parametrize("section", sorted(LOADERS))
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_section_is_accepted_and_sane_or_refused_naming_key_and_value(section, data):
    """One key of a valid section (the tiny profile's) replaced by a random well- or ill-typed value: the section
    is either accepted and sane, or refused with a ValueError whose message names the key and the value."""
    cls = LOADERS[section]
    values = _section(section)
    hints = typing.get_type_hints(cls)
    key = data.draw(st.sampled_from(sorted(values)), label="key")
    value = data.draw(_well_typed(hints[key]) | ILL_TYPED, label="value")
    try:
        obj = from_dict(cls, {**values, key: value}, section)
    except ValueError as exc:
        message = str(exc)
        assert key in message and section.split(".")[0] in message, message
        assert _mentions(message, value), message
        assert "\n" not in message
    else:
        _sane(obj)


def test_the_top_level_is_checked_when_params_are_loaded():
    assert set(SECTIONS) == set(load_params(ROOT / "params.yaml"))
    for profile in sorted((ROOT / "profiles").glob("*.yaml")):
        load_params(profile)                                       # every committed profile passes
    with pytest.raises(ValueError, match=r"unknown top-level keys \['oneshot_extra'\]"):
        check_params({**TINY, "oneshot_extra": {}})
    with pytest.raises(ValueError, match="params seed: expected int, got str '0'"):
        check_params({**TINY, "seed": "0"})
    with pytest.raises(ValueError, match=r"replicates.seeds \[0, 1\] lists the main run's seed 0"):
        check_params({**TINY, "replicates": {**TINY["replicates"], "seeds": [0, 1]}})


@pytest.mark.parametrize("cls, values, message", [
    (OneShotConfig, {"lr": math.nan}, "params oneshot.lr: expected finite numbers, got nan"),
    (FPConfig, {"lr": math.inf}, "params fp.lr: expected finite numbers, got inf"),
    (OneShotConfig, {"kd_temperature": 0.0}, "oneshot.kd_temperature must be a finite number > 0, got 0.0"),
    (OneShotConfig, {"train_size": 0}, "oneshot.train_size must be a positive number of images, or null"),
    (OneShotConfig, {"weight_decay": -1e-4}, "oneshot.weight_decay must be a finite number >= 0"),
    (OneShotConfig, {"warmup_epochs": 5.0}, r"oneshot.warmup_epochs must be in \[0, oneshot.epochs\]"),
    (OneShotConfig, {"w_bit_choices": []}, "oneshot.w_bit_choices must be a non-empty increasing list"),
    (OneShotConfig, {"a_bit_choices": [2, 16]}, "oneshot.a_bit_choices must be .* from 2 to 8, got \\[2, 16\\]"),
    (OneShotConfig, {"sched_band": 0.7}, r"oneshot.sched_band must lie in \(0, 0.5\), got 0.7"),
    (FPConfig, {"warmup_epochs": 9.0}, r"fp.warmup_epochs must be in \[0, fp.epochs\]"),
    (SearchConfig, {"evo_mutation_prob": 1.5}, r"search.evo_mutation_prob must be a probability in \[0, 1\]"),
    (SearchConfig, {"levels": [3, 3]}, r"search.levels must be a non-empty list of distinct"),
    (DataConfig, {"test_size": 0}, "data.test_size must be a positive number of images, or null for all, got 0"),
])
def test_each_example_of_the_issue_is_refused_where_read(cls, values, message):
    section = {OneShotConfig: "oneshot", FPConfig: "fp", SearchConfig: "search", DataConfig: "data"}[cls]
    with pytest.raises(ValueError, match=message):
        from_dict(cls, values, section)


# --- output locations, before the work ------------------------------------------------------------------

def test_an_output_never_replaces_an_input_and_its_place_is_checked(tmp_path):
    ckpt = tmp_path / "sn.pt"
    ckpt.write_bytes(b"weights")
    for out, kwargs, message in (
            (ckpt, {"inputs": [ckpt]}, "would overwrite the input"),
            (tmp_path / "." / "sn.pt", {"inputs": [ckpt]}, "would overwrite the input"),
            (tmp_path, {}, "is a folder; pass a file path"),
            (ckpt / "cfg.json", {}, "is a file, not a folder"),
            (ckpt, {"folder": True}, "is a file, but the output is a folder"),
            (tmp_path, {"folder": True, "inputs": [tmp_path / "fp" / "m.pt"]}, "would overwrite the input"),
            (tmp_path, {"folder": True}, r"holding other files \(no result.json")):
        with pytest.raises(OutputError, match=message):
            check_output(out, **kwargs)
    assert ckpt.read_bytes() == b"weights"
    before = set(tmp_path.rglob("*"))
    assert check_output(tmp_path / "new" / "deeper" / "cfg.json", inputs=[ckpt]) == tmp_path / "new/deeper/cfg.json"
    assert check_output(tmp_path / "run", folder=True) == tmp_path / "run"
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "result.json").write_text("{}")
    check_output(tmp_path / "done", folder=True)                    # an earlier result is replaced
    assert set(tmp_path.rglob("*")) == before | {tmp_path / "done", tmp_path / "done" / "result.json"}   # no probe left


# --- how a command ends ---------------------------------------------------------------------------------

def test_user_errors_and_interrupts_end_in_one_line(tmp_path, capsys):
    def refuse():
        raise ValueError("oneshot.lr must be a finite number > 0, got nan")

    assert run_command(refuse, "mpq.training.distributed", ["--out", "x.pt"]) == 2
    assert capsys.readouterr().err == "error: oneshot.lr must be a finite number > 0, got nan\n"

    def interrupted():
        raise TrainingInterrupted(tmp_path / "sn.pt", 2, 6)

    assert run_command(interrupted, "mpq.training.distributed", ["--model", "resnet20", "--out", "a b.pt"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"the last complete checkpoint is {tmp_path / 'sn.pt'} (epoch 2 of 6)" in err
    assert err.rstrip().endswith("resume with: python -m mpq.training.distributed --model resnet20 --out 'a b.pt'")

    def ctrl_c_after_a_checkpoint():
        (tmp_path / "work").mkdir()
        (tmp_path / "work" / "supernet.pt").write_bytes(b"x")
        (tmp_path / "work" / ".supernet.abc.tmp.pt").write_bytes(b"half")     # a write in progress: not complete
        raise KeyboardInterrupt

    assert run_command(ctrl_c_after_a_checkpoint, "mpq.studies.ablation", ["--cell", "plain"],
                       checkpoints=[tmp_path / "work"]) == 130
    assert f"the last checkpoint written is {tmp_path / 'work' / 'supernet.pt'}; resume with: python -m " \
           "mpq.studies.ablation --cell plain" in capsys.readouterr().err
    assert latest_checkpoint([tmp_path / "work"], since=2e9) is None          # only files written by this run

    def ctrl_c():
        raise KeyboardInterrupt

    assert run_command(ctrl_c, "mpq", ["search", "sn.pt"], resumes=False) == 130
    assert capsys.readouterr().err.startswith("interrupted: nothing was written")


def test_the_training_launcher_refuses_zero_overrides_and_an_output_over_its_input(tmp_path, capsys):
    from mpq.training.distributed import main

    params = str(ROOT / "profiles/tiny.yaml")
    for extra, message in ((["--width-mult", "0"], "--width-mult 0.0: must be a number > 0; leave it out to use "
                                                   "models.MODEL.width_mult"),
                           (["--train-images", "0"], "--train-images 0: must be a number > 0"),
                           (["--epochs", "-1"], "--epochs -1: must be a number > 0"),
                           (["--model", "vgg"], "--model vgg: not in the models section")):
        args = ["--model", "resnet20", "--params", params, "--fp-checkpoint", "none", "--out", str(tmp_path / "sn.pt")]
        assert main(args + extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["--model", "resnet20", "--params", params, "--out", params]) == 2
    assert f"--out {params} would overwrite the input {params}" in capsys.readouterr().err
    assert not (tmp_path / "sn.pt").exists()


def test_the_notebook_runner_reports_a_notebooks_bad_input_and_ctrl_c_in_one_line(monkeypatch, capsys, tmp_path):
    from papermill.exceptions import PapermillExecutionError

    import mpq.pages.pipeline as pipeline

    def kernel_raises(ename, evalue):
        def run(*args, **kwargs):
            raise PapermillExecutionError(3, 4, "train_supernets(...)", ename, evalue, [])
        return run

    monkeypatch.chdir(tmp_path)                       # the newest checkpoint is looked for under ./checkpoints
    monkeypatch.setattr(pipeline, "run_notebook", kernel_raises("TrainingDiverged", "one-shot training diverged: x"))
    assert pipeline.main(["notebooks/02_supernet.ipynb"]) == 2
    assert capsys.readouterr().err == ("error: notebooks/02_supernet.ipynb, cell 4: TrainingDiverged: one-shot "
                                       "training diverged: x\n")
    monkeypatch.setattr(pipeline, "run_notebook", kernel_raises(
        "TrainingInterrupted", "interrupted during training; the last complete checkpoint is c.pt (epoch 1 of 3)"))
    assert pipeline.main(["notebooks/02_supernet.ipynb"]) == 130
    assert capsys.readouterr().err == ("interrupted during training; the last complete checkpoint is c.pt (epoch 1 "
                                       "of 3); resume with: python -m mpq.pages.pipeline notebooks/02_supernet.ipynb\n")
    monkeypatch.setattr(pipeline, "run_notebook", kernel_raises("IndexError", "a bug"))
    with pytest.raises(PapermillExecutionError):       # not a bad input: the traceback stays
        pipeline.main(["notebooks/02_supernet.ipynb"])
