"""Checkpoints are data, not code: safe loading, clear refusals, and a process-level resume."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mpq.training.checkpoint import CheckpointError, TrainingInterrupted, load_checkpoint, save_checkpoint
from mpq.models import create_model
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import build_supernet, load_supernet, run_meta, train_oneshot, training_progress
from mpq.training.fp import TrainingDiverged, load_fp_model, train_fp


class _Payload:
    """Unpickling this would run code (it would create a file); weights_only refuses it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_code_in_a_checkpoint_is_refused_and_not_run(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "ran"
    torch.save({"state_dict": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"was not loaded \(loading it could run code\)"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_foreign_and_missing_files(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint({"w": torch.arange(10000.0)}, good)
    assert torch.equal(load_checkpoint(good)["w"], torch.arange(10000.0))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "list.pt"
    torch.save([1, 2, 3], foreign)
    for path, message in ((truncated, "truncated, corrupt"), (foreign, "holds a list"),
                          (tmp_path / "missing.pt", "not found")):
        with pytest.raises(CheckpointError, match=message) as err:
            load_checkpoint(path, fix="re-run stage X")
        assert str(path) in str(err.value) and "re-run stage X" in str(err.value)


def test_fp_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "fp.pt"
    model = create_model("resnet20", width_mult=0.25)
    save_checkpoint({"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "state_dict": model.state_dict()}, path)
    assert isinstance(load_fp_model(str(path), "resnet20", 0.25, 10), torch.nn.Module)
    for kwargs, message in (({"expect_model": "mobilenetv2_28"}, "model 'resnet20', but 'mobilenetv2_28'"),
                            ({"expect_width": 0.5}, "width_mult 0.25, but 0.5"),
                            ({"expect_classes": 5}, "num_classes 10, but 5")):
        with pytest.raises(CheckpointError, match=message):
            load_fp_model(str(path), **kwargs)
    save_checkpoint({"model": "resnet20"}, path)
    with pytest.raises(CheckpointError, match="lacks"):
        load_fp_model(str(path))


def test_supernet_checkpoint_refuses_mismatches(tiny_splits, tmp_path):
    cfg = OneShotConfig(epochs=1, num_random_paths=1).for_model("resnet20")
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28))
    train = tiny_splits.train.subset(torch.arange(32))
    path = tmp_path / "sn.pt"
    meta = run_meta("resnet20", 0.25, tiny_splits, train)
    train_oneshot(sn, train, cfg, batch_size=32, pad=2, flip=True, seed=0, device=torch.device("cpu"),
                  checkpoint=path, progress=False, meta=meta)
    ok = load_supernet(path, model="resnet20", width_mult=0.25, spec=cfg.supernet_spec(), num_classes=10,
                       data=tiny_splits.identity)
    assert ok.searchable
    other_bits = OneShotConfig(w_bit_choices=(2, 4), a_bit_choices=(2, 4)).supernet_spec()
    for kwargs, message in (({"model": "mobilenetv2_28"}, "has model 'resnet20'"),
                            ({"width_mult": 0.5}, "has width_mult 0.25"),
                            ({"num_classes": 3}, "has num_classes 10"),
                            ({"spec": other_bits}, "has candidates"),
                            ({"data": {**tiny_splits.identity, "seed": 1}}, "has data seed 0, but 1")):
        with pytest.raises(CheckpointError, match=message):
            load_supernet(path, **kwargs)
    # resuming with another model's metadata is refused too, not silently mixed
    with pytest.raises(CheckpointError, match="meta width_mult"):
        train_oneshot(sn, train, cfg, batch_size=32, pad=2, flip=True, seed=0, device=torch.device("cpu"),
                      checkpoint=path, progress=False, meta={**meta, "width_mult": 0.5})


# --- checkpoints know whether they are finished; non-finite training and Ctrl-C stop cleanly --------------

def _tiny(tiny_splits, path, *, epochs=2, lr=0.04, images=8, **kwargs):
    """ResNet-20 x0.25 on 8 images: one step per epoch."""
    torch.manual_seed(0)
    cfg = OneShotConfig(epochs=epochs, lr=lr, num_random_paths=1, scheduler=False)
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28),
                        calib_images=16)
    train = tiny_splits.train.subset(torch.arange(images))
    return train_oneshot(sn, train, cfg, batch_size=8, pad=2, flip=True, seed=0, device=torch.device("cpu"),
                         checkpoint=path, progress=False, meta=run_meta("resnet20", 0.25, tiny_splits, train), **kwargs)


@pytest.mark.timeout(60)
def test_ctrl_c_names_the_last_complete_checkpoint_which_says_whether_it_is_finished(tiny_splits, tmp_path):
    path = tmp_path / "sn.pt"

    def interrupt(i, total, supernet):
        if i == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match=f"the last complete checkpoint is {path} \\(epoch 1 of 2\\)") as err:
        _tiny(tiny_splits, path, on_step=interrupt)
    assert (err.value.checkpoint, err.value.epoch, err.value.epochs) == (path, 1, 2)
    state = load_checkpoint(path)
    assert state["finished"] is False and training_progress(state) == (1, 2, False)
    del state["finished"]                               # a file written before the flag: judged by its epoch
    assert training_progress(state) == (1, 2, False)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is unfinished: it holds epoch 1 of 2"):
        load_supernet(path)                             # notebooks and the search command: not without a word
    assert load_supernet(path, allow_unfinished=True).searchable
    _tiny(tiny_splits, path)                            # the same call resumes to the end
    state = load_checkpoint(path)
    assert "finished" not in state and training_progress(state) == (2, 2, True)   # bytes as before the flag


def _poison_at(step):
    def on_step(i, total, supernet):
        if i == step:
            with torch.no_grad():
                next(supernet.parameters()).fill_(float("nan"))
    return on_step


@pytest.mark.timeout(60)
def test_non_finite_training_stops_naming_the_settings_and_saves_no_non_finite_checkpoint(tiny_splits, tmp_path):
    path = tmp_path / "sn.pt"
    with pytest.raises(TrainingDiverged, match=r"diverged: .*loss (inf|nan).* at step 2 \(epoch 1 of 2\); lower "
                                               r"oneshot.lr \(now 1e\+30\).*no checkpoint was written"):
        _tiny(tiny_splits, path, lr=1e30, images=16)      # two steps: the first update sends the second loss to inf
    assert not path.exists()
    # weights gone non-finite in the last step of epoch 2, every loss finite: the epoch-1 checkpoint stays
    with pytest.raises(TrainingDiverged, match=f"after epoch 2 of 2 the weights .* hold nan or inf.*{path} keeps "
                                               "epoch 1 of 2"):
        _tiny(tiny_splits, path, on_step=_poison_at(1))
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["supernet"].values()
                                       if torch.is_tensor(v) and v.is_floating_point())
    # a study that counts such runs trains on (here: resumes epoch 2); no non-finite checkpoint is written
    run = _tiny(tiny_splits, path, on_step=_poison_at(1), stop_on_nonfinite=False)
    assert run.history.epoch == [1, 2] and load_checkpoint(path)["epoch"] == 1


@pytest.mark.timeout(60)
def test_fp_training_stops_on_a_non_finite_loss(tiny_splits):
    kwargs = dict(epochs=1, batch_size=8, momentum=0.9, weight_decay=5e-4, warmup_epochs=0.0, label_smoothing=0.0,
                  pad=2, flip=True, seed=0, device=torch.device("cpu"), progress=False)
    train = tiny_splits.train.subset(torch.arange(16))
    with pytest.raises(TrainingDiverged, match=r"FP training diverged: the loss is (nan|inf) at step 2 of epoch 1 of "
                                               r"1; lower the learning rate \(fp.lr, now 1e\+30\)"):
        train_fp(create_model("resnet20", width_mult=0.25), train, train, lr=1e30, **kwargs)
    history = train_fp(create_model("resnet20", width_mult=0.25), train, train, lr=1e30, stop_on_nonfinite=False,
                       **kwargs)
    assert not math.isfinite(history.loss[0])


# --- process-level resume: SIGKILL after the first epoch's checkpoint, resume, compare ------------------

ARGS = ["-m", "mpq.training.distributed", "--model", "resnet20", "--width-mult", "0.25", "--params", "profiles/smoke.yaml",
        "--epochs", "2", "--fp-checkpoint", "none"]


def _train(root, out, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *ARGS, "--out", str(out)], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killed_run_resumes_to_the_uninterrupted_result(root, tmp_path):
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    proc = _train(root, full)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()[-3000:]

    proc = _train(root, part)
    deadline = time.monotonic() + 120
    while not part.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = load_checkpoint(part)["epoch"]
    assert proc.returncode == -signal.SIGKILL and killed_at < 2, (proc.returncode, killed_at)

    proc = _train(root, part)                       # the same command resumes from the checkpoint
    assert proc.wait(timeout=120) == 0, proc.stderr.read()[-3000:]
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["epoch"] == b["epoch"] == 2
    for key in ("supernet", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            same = a[key][name] == b[key][name] if name.endswith("_extra_state") else torch.equal(a[key][name], b[key][name])
            assert same, f"{key}: {name}"
    assert a["history"]["loss"] == b["history"]["loss"]
    assert not {"sgd", "adam", "generator"} & (a.keys() | b.keys())   # a finished file keeps no optimizer state
    # data-parallel training trains on the one-shot subset, like the notebooks (smoke: oneshot.train_size 128)
    assert a["meta"]["data"]["train_images"] == 128
