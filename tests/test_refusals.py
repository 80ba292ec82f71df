"""Nothing silently wrong, second round (issue 40): each class of silent error closed where it starts, one test
per example of the issue. A request is answered as asked or refused naming what is reachable; non-finite
weights are refused wherever weights are loaded, saved or exported; the files of an artefact are pinned to one
another by digest; parameter files are read strictly; checkpoints with options this version does not know are
refused naming the version that wrote them; images are converted by bit depth and mode; outputs are checked
whole before the work; files get the user's umask and no temporary file outlives a run; FP training on fewer
images than a batch is one line. ``tests/test_fuzz.py`` keeps the classes closed over random inputs."""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mpq.__main__ import main
from mpq.config import load_params, model_specs
from mpq.data.datasets import DataError, load_image_folder, read_image
from mpq.deploy.model import _doc_digest, lower
from mpq.training.checkpoint import (CheckpointError, OutputError, VERSION_KEY, atomic_folder, check_output,
                                     current_umask, load_checkpoint, package_version, save_checkpoint, write_json)
from mpq.training.oneshot import load_supernet

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --- 1. a request answered as asked, or refused naming what is reachable -----------------------------------

def test_a_level_above_the_walks_start_is_refused_naming_the_reachable_levels(trained, tmp_path, capsys):
    """`search --level 6` returned uniform W5A5 (level 5) with exit 0: the walk starts there and moves down."""
    _, path = trained
    assert main(["search", str(path), "--level", "6"]) == 2
    err = _one_line(capsys, "outside this supernet's reachable range", "to 5.00: the greedy walk starts at uniform "
                    "W5A5 and moves down")
    assert "6.00" not in err and not (tmp_path / "cfg.json").exists()


def test_more_images_than_there_are_is_refused_not_capped(trained, tmp_path, capsys):
    """`--test-size` and `--agreement-images` beyond the test set were capped silently."""
    _, path = trained
    assert main(["search", str(path), "--level", "4", "--test-size", "10001", "--evaluate"]) == 2
    _one_line(capsys, "--test-size 10001: the test set has 10000 images; use at most 10000")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"bit_cfg": {n: [4, 4] for n in trained[0].searchable}}))
    assert main(["evaluate", str(path), "--config", str(cfg), "--test-size", "16", "--agreement-images", "17"]) == 2
    _one_line(capsys, "--agreement-images 17: the test set has 16 images; use at most 16")


# --- 2. non-finite values refused wherever weights are loaded, saved or exported -------------------------

def _with_nan_ema(path, tmp_path):
    """A copy of checkpoint ``path`` whose EMA weights hold nan (written with torch.save: save_checkpoint refuses)."""
    state = torch.load(path, weights_only=True)
    name = next(k for k, v in state["ema"].items() if k.endswith(".weight") and v.is_floating_point())
    state["ema"][name] = torch.full_like(state["ema"][name], math.nan)
    bad = tmp_path / "nan.pt"
    torch.save(state, bad)
    return bad, name


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _repin(folder) -> None:
    """Record the files' digests in model.json again, as a writer that did not check its values would have."""
    doc = json.loads((folder / "model.json").read_text())
    doc["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in doc["files"]}
    doc["sha256"] = _doc_digest(doc)
    (folder / "model.json").write_text(json.dumps(doc))


def test_non_finite_weights_are_refused_when_saved_loaded_exported_and_evaluated(trained, exports, tmp_path, capsys):
    """`export` of a checkpoint whose EMA weights are nan wrote a deployable folder; `evaluate` reported 8.6% on it."""
    supernet, path = trained
    with pytest.raises(ValueError, match=r"checkpoint .*x.pt not written: it would hold nan or inf in ema.w"):
        save_checkpoint({"ema": {"w": torch.tensor([1.0, math.inf])}}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    bad, name = _with_nan_ema(path, tmp_path)
    with pytest.raises(CheckpointError, match=rf"holds nan or inf in ema.{name}: its weights are unusable"):
        load_checkpoint(bad)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"bit_cfg": {n: [4, 4] for n in supernet.searchable}}))
    for argv in (["export", str(bad), "--config", str(cfg), "--out", str(tmp_path / "out")],
                 ["search", str(bad), "--level", "3"],
                 ["evaluate", str(bad), "--config", str(cfg)]):
        assert main(argv) == 2
        _one_line(capsys, f"checkpoint {bad} holds nan or inf in ema.{name}")
    assert not (tmp_path / "out").exists()
    folder = tmp_path / "deployed"
    shutil.copytree(exports[4], folder)
    with np.load(folder / "weights.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = next(k for k in arrays if k.endswith(".multiplier"))
    arrays[key][:] = np.nan
    np.savez(folder / "weights.npz", **arrays)
    _repin(folder)
    assert main(["evaluate", str(folder), "--test-size", "8"]) == 2
    _one_line(capsys, f"weights.npz holds nan or inf in {key}")


def test_a_step_size_that_is_not_positive_is_refused_by_the_export(trained):
    supernet = copy.deepcopy(trained[0])
    cfg = supernet.uniform_config(4)
    layer = dict(supernet.model.named_modules())[supernet.searchable[1]]
    with torch.no_grad():
        layer.weight_quantizer.step_size["4"].zero_()
    with pytest.raises(ValueError, match=rf"layer {supernet.searchable[1]}: its weight step size at 4 bits is 0.0"):
        lower(supernet, cfg)


# --- 3. the files of an artefact pinned to one another by digest -------------------------------------------

def test_an_export_folders_files_are_pinned_by_digest(exports, tmp_path, capsys):
    """A model.onnx from another export evaluated with exit 0 (reporting the other model's accuracy); a truncated
    weights.npz gave a zipfile.BadZipFile traceback."""
    folder = tmp_path / "w4a4"
    shutil.copytree(exports[4], folder)
    assert main(["evaluate", str(folder), "--test-size", "8"]) == 0
    capsys.readouterr()
    doc = json.loads((folder / "model.json").read_text())
    assert set(doc["files"]) == {"weights.npz", "model.onnx"} and doc["version"] == 2
    shutil.copy(exports[3] / "model.onnx", folder / "model.onnx")              # swapped in from another export
    assert main(["evaluate", str(folder), "--test-size", "8"]) == 2
    _one_line(capsys, f"{folder / 'model.onnx'} does not belong to this export: its sha256 differs")
    shutil.copy(exports[4] / "model.onnx", folder / "model.onnx")
    data = (folder / "weights.npz").read_bytes()
    (folder / "weights.npz").write_bytes(data[:len(data) // 2])                 # truncated
    assert main(["evaluate", str(folder), "--test-size", "8"]) == 2
    _one_line(capsys, f"{folder / 'weights.npz'} does not belong to this export")
    shutil.copy(exports[4] / "weights.npz", folder / "weights.npz")
    text = (folder / "model.json").read_text()
    w_step = next(op["w_step"] for op in doc["ops"] if op["op"] == "conv")
    assert f'"w_step": {w_step}' in text
    (folder / "model.json").write_text(text.replace(f'"w_step": {w_step}', f'"w_step": {w_step * 2}', 1))
    assert main(["evaluate", str(folder), "--test-size", "8"]) == 2            # valid JSON, another model
    _one_line(capsys, f"{folder / 'model.json'} is damaged: its content does not match the sha256 it records")
    old = dict(doc, version=1)
    old.pop("files"), old.pop("sha256")
    (folder / "model.json").write_text(json.dumps(old))
    assert main(["evaluate", str(folder), "--test-size", "8"]) == 2
    _one_line(capsys, "is of format version 1, this version reads 2")


def test_a_released_supernet_is_pinned_to_its_record(trained, tmp_path, capsys):
    """models/MODEL.pt and MODEL.json: a file that is not the one its record describes is refused naming both."""
    from mpq.deploy.release import release

    release(trained[1].parent, tmp_path / "models", "tiny")
    released, record = tmp_path / "models" / "resnet20.pt", tmp_path / "models" / "resnet20.json"
    load_checkpoint(released)
    for damage, message in (
            (lambda: released.write_bytes(_flip(released.read_bytes(), 1000)),
             f"checkpoint {released} does not match its record {record}: its sha256 differs"),
            (lambda: record.write_text(record.read_text()[:40]),
             f"{record}, the record beside checkpoint {released}, is not valid JSON (damaged)"),
            (lambda: record.write_text(json.dumps({**json.loads(record.read_text()), "file": "other.pt"})),
             f"{record}, the record beside checkpoint {released}, describes file 'other.pt'")):
        saved = released.read_bytes(), record.read_text()
        damage()
        assert main(["search", str(released), "--level", "3"]) == 2
        _one_line(capsys, message)
        released.write_bytes(saved[0]), record.write_text(saved[1])


# --- 4. parameter files read strictly -----------------------------------------------------------------------

TINY_TEXT = (ROOT / "profiles" / "tiny.yaml").read_text()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + "fp:\n  epochs: 3\n", r"line \d+: key 'fp' given twice at the top level \(first on line 19\)"),
    (lambda t: t.replace("seed: 0\n", "seed: 0\nseed: 1\n"), r"line 4: key 'seed' given twice at the top level"),
    (lambda t: t.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 2\n", 1), r"line 21: key 'epochs' given twice in fp"),
    (lambda t: t.replace("  resnet20: {width_mult: 0.25}", "  resnet20: null"),
     r"line 14: models.resnet20 is empty \(null\); give its settings as a mapping"),
    (lambda t: t.replace("fp:\n", "fp:\nfp_old:\n", 1), r"line 19: section 'fp' is empty \(null\)"),
    (lambda t: t.replace("seed: 0\n", "seed: [0\n"), r"line 4: not valid YAML \(expected ',' or '\]'"),
    (lambda t: t + "---\nseed: 1\n", r"line \d+: not valid YAML \(but found another document\)"),
])
def test_a_params_file_is_read_strictly_naming_the_file_and_line(tmp_path, edit, message):
    """A second `fp:` section or a repeated `seed:` overrode the first silently; `models: {resnet20: null}` gave a
    TypeError traceback."""
    path = tmp_path / "params.yaml"
    path.write_text(edit(TINY_TEXT))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}, {message}") as info:
        load_params(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"models.resnet20 must be a mapping of its settings"):
        model_specs({"resnet20": None})              # a notebook's parameters cell, read without the file


# --- 5. checkpoints carrying options this version does not know ------------------------------------------

def test_a_checkpoint_with_options_this_version_does_not_know_is_refused_naming_the_writer(trained, tmp_path,
                                                                                           capsys):
    """A config option this version does not know gave `TypeError: OneShotConfig.__init__() got an unexpected
    keyword argument`."""
    import mpq

    _, path = trained
    state = torch.load(path, weights_only=True)
    assert state[VERSION_KEY] == package_version() == mpq.__version__            # every checkpoint records it
    newer = tmp_path / "newer.pt"
    torch.save({**state, "config": {**state["config"], "warp_drive": True}, VERSION_KEY: "9.1.0"}, newer)
    older = tmp_path / "older.pt"
    torch.save({k: v for k, v in state.items() if k != VERSION_KEY} | {"config": {**state["config"], "zeta": 1}}, older)
    for ckpt, writer, option in ((newer, "mpq 9.1.0", "warp_drive"), (older, "an unknown version of mpq", "zeta")):
        assert main(["search", str(ckpt), "--level", "3"]) == 2
        _one_line(capsys, f"checkpoint {ckpt} was written by {writer} with training options ['{option}'] that this "
                          f"version (mpq {mpq.__version__}) does not know")
    with pytest.raises(CheckpointError, match="was written by mpq 9.1.0 with training options"):
        load_supernet(newer)


# --- 6. images converted by their bit depth and mode ---------------------------------------------------------

def test_images_are_read_by_bit_depth_and_mode(tmp_path):
    """A folder of 16-bit PNGs loaded with 96% of its pixels at 255 (clipped, not scaled)."""
    from PIL import Image

    ramp16 = (np.arange(28 * 28, dtype=np.int64).reshape(28, 28) * 80).astype(np.uint16)     # 0 .. 62640
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(ramp16).save(tmp_path / cls / "x.png")
    assert Image.open(tmp_path / "a" / "x.png").mode == "I;16"
    data = load_image_folder(tmp_path)
    expected = np.rint(ramp16 * (255 / 65535)).astype(np.uint8)
    assert np.array_equal(data.images[0, 0].numpy(), expected)                    # 28x28: no resampling
    assert (data.images == 255).float().mean() == 0 and data.images.max() == round(62640 * 255 / 65535)
    half = np.full((28, 28, 4), [200, 100, 50, 128], dtype=np.uint8)                # half transparent orange
    grey_rgb = round((200 * 299 + 100 * 587 + 50 * 114) / 1000 * 128 / 255)
    for mode, image, grey in (
            ("RGBA", Image.fromarray(half, "RGBA"), grey_rgb),
            ("LA", Image.fromarray(np.dstack([np.full((28, 28), 200, np.uint8), np.full((28, 28), 64, np.uint8)]),
                                   "LA"), round(200 * 64 / 255)),
            ("RGBA", Image.fromarray(np.full((28, 28, 4), [255, 255, 255, 0], np.uint8), "RGBA"), 0)):
        image.save(tmp_path / "a" / "x.png")
        assert Image.open(tmp_path / "a" / "x.png").mode == mode
        assert abs(int(read_image(tmp_path / "a" / "x.png", 28, True).max()) - grey) <= 1, mode
    palette = Image.new("P", (28, 28), 1)
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.info["transparency"] = 1                                                 # the white entry is clear
    palette.save(tmp_path / "a" / "x.png", transparency=1)
    assert read_image(tmp_path / "a" / "x.png", 28, True).max() == 0
    with pytest.raises(DataError, match=r"x.tif: float pixels outside \[0, 1\]; convert it"):
        Image.fromarray(np.full((28, 28), 3.5, np.float32), "F").save(tmp_path / "a" / "x.tif")
        read_image(tmp_path / "a" / "x.tif", 28, True)
    Image.fromarray(np.full((28, 28), 0.5, np.float32), "F").save(tmp_path / "a" / "x.tif")
    assert read_image(tmp_path / "a" / "x.tif", 28, True).max() == 128


# --- 7. outputs checked whole before the work ----------------------------------------------------------------

def test_an_output_name_the_file_system_cannot_hold_is_refused_before_the_work(trained, tmp_path, capsys):
    """An `--out` with a 250-character name passed the check, then the write failed after the search: its
    temporary name was longer still. Such a name now fits (temporary names are short); a longer one than the
    file system's NAME_MAX is refused before anything is loaded."""
    _, path = trained
    fits = tmp_path / ("c" * 245 + ".json")                                  # 250 characters
    assert check_output(fits) == fits
    write_json({"ok": True}, fits)
    assert json.loads(fits.read_text()) == {"ok": True} and sorted(tmp_path.iterdir()) == [fits]
    too_long = tmp_path / ("c" * 252 + ".json")                              # 257 bytes
    for argv in (["search", str(path), "--level", "3", "--out", str(too_long)],
                 ["evaluate", str(path), "--config", str(fits), "--out", str(too_long)],
                 ["export", str(path), "--config", str(fits), "--out", str(tmp_path / ("d" * 256))],
                 ["search", str(path), "--level", "3", "--out", str(tmp_path / ("e" * 300) / "cfg.json")]):
        assert main(argv) == 2
        _one_line(capsys, "bytes a name may have on this file system; pass a shorter name")
    for out, message in ((tmp_path / "new" / "", "ends with a slash, so it names a folder"),
                         ("a\x00b.json", "a path cannot hold a NUL character")):
        with pytest.raises(OutputError, match=message):
            check_output(str(out) + ("/" if out != "a\x00b.json" else ""))
    assert sorted(tmp_path.iterdir()) == [fits]


# --- 8. files created with the user's umask, and no temporary file left behind ----------------------------

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_users_umask(tmp_path, umask):
    """Search results and checkpoints were written 0600 whatever the umask (tempfile.mkstemp's mode)."""
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        save_checkpoint({"w": torch.ones(2)}, tmp_path / "a.pt")
        write_json({}, tmp_path / "b.json")
        with atomic_folder(tmp_path / "out") as folder:
            (folder / "model.json").write_text("{}")
        (tmp_path / "plain").write_text("")
    finally:
        os.umask(old)
    plain = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert plain == 0o666 & ~umask
    for name in ("a.pt", "b.json", "out/model.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == plain, name
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask


def test_a_killed_runs_temporary_files_are_removed_by_the_next_write(tmp_path):
    """Hidden 0-byte temporary files stayed beside a checkpoint after a killed run."""
    done = subprocess.run(["true"])                 # a process that has ended: its pid names a killed writer
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = [tmp_path / f".resnet20.{dead.pid}.abcd1234.tmp.pt",         # this version's, its writer gone
            tmp_path / ".resnet20.x7_kq2mz.tmp.pt",                      # an earlier version's (no pid)
            tmp_path / f".run.{dead.pid}.old.tmp", tmp_path / f".run.{dead.pid}.zz99aa11.tmp"]
    live = [tmp_path / f".resnet20.{os.getppid()}.abcd1234.tmp.pt",      # a write in progress elsewhere
            tmp_path / ".resnet20_b.x7_kq2mz.tmp.pt", tmp_path / ".resnet.x7_kq2mz.tmp.pt"]   # other targets'
    for path in left + live:
        path.mkdir() if path.name.startswith(".run.") else path.write_bytes(b"")
    assert done.returncode == 0
    save_checkpoint({"w": torch.ones(1)}, tmp_path / "resnet20.pt")
    with atomic_folder(tmp_path / "run") as folder:
        (folder / "result.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["resnet20.pt", "run", *(p.name for p in live)])


# --- 9. FP training on fewer images than one batch --------------------------------------------------------

def test_fp_training_on_fewer_images_than_a_batch_is_one_line(tiny_splits):
    """It ended in ZeroDivisionError, where the one-shot path refused the same mistake in one line."""
    from mpq.models import create_model
    from mpq.training.fp import train_fp

    few = tiny_splits.train.subset(torch.arange(20))
    with pytest.raises(ValueError, match=r"^20 training images give no full batch of 32, so training would take no "
                                         r"step; use more training images or a smaller batch$"):
        train_fp(create_model("resnet20", width_mult=0.25), few, tiny_splits.test, epochs=1, batch_size=32, lr=0.1,
                 momentum=0.9, weight_decay=0.0, warmup_epochs=0.0, label_smoothing=0.0, pad=2, flip=True, seed=0,
                 device=torch.device("cpu"), progress=False)
