"""Transfer (mpq.studies.transfer): the new classifier, mismatch errors, a user's image folder, and T5's
runs, tables, metrics and findings."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mpq.config import load_params
from mpq.data.datasets import DataError
from mpq.method.layers import quant_layers
from mpq.method.supernet import Supernet
from mpq.models import create_model
from mpq.pages.plotting import transfer_front
from mpq.studies.stats import seed_verdict
from mpq.studies.transfer import (TransferConfig, accuracy, check_input_channels, comparison_table, fresh_float_model,
                                  head_name, load_target, paired_differences, replace_head, retarget_supernet,
                                  run_record, run_transfer, t5_table, transfer_findings, transfer_metrics,
                                  transfer_setup)
from mpq.training.checkpoint import CheckpointError, save_checkpoint, write_json
from mpq.training.fp import load_fp_model, predictions, train_fp
from mpq.training.oneshot import build_supernet, train_oneshot


def _trained_supernet(width=0.25):
    sn = Supernet(create_model("resnet20", width_mult=width), (1, 28, 28))
    sn.calibrate(torch.randn(16, 1, 28, 28))
    with torch.no_grad():                       # stand-in for training: move every weight and step size
        for p in sn.parameters():
            p.add_(0.01 * torch.randn_like(p)) if p.dim() > 1 else p.mul_(1.1)
    return sn


def test_replace_head_changes_only_the_classifier():
    model = create_model("resnet20", width_mult=0.25)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    name = head_name(model)
    in_features = model.get_submodule(name).in_features
    replace_head(model, 7)
    head = model.get_submodule(name)
    assert (head.in_features, head.out_features) == (in_features, 7)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith(name + "."))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


def test_retarget_supernet_keeps_everything_but_the_classifier():
    source = _trained_supernet()
    x = torch.randn(16, 1, 28, 28)
    target = retarget_supernet(source, create_model("resnet20", num_classes=5, width_mult=0.25), x)
    head = head_name(target.model)
    src, dst = source.state_dict(), target.state_dict()
    shared = [k for k in src if not k.startswith(f"model.{head}.")]
    assert shared and all(torch.equal(src[k], dst[k]) for k in shared if isinstance(src[k], torch.Tensor))
    layer = quant_layers(target.model)[head]
    assert layer.out_features == 5
    assert target.choices == source.choices and target.fixed_names == source.fixed_names
    target.set_config(target.uniform_config(3))
    assert target(x).shape == (16, 5)
    steps = layer.weight_quantizer.step_size
    assert all(float(v.detach()) > 0 for v in steps.values())     # the classifier's quantizers were initialised


def test_retarget_refuses_another_architecture_and_other_channels():
    source = _trained_supernet(width=0.5)
    with pytest.raises(CheckpointError, match="does not fit the target model"):
        retarget_supernet(source, create_model("resnet20", num_classes=5, width_mult=0.25), torch.randn(4, 1, 28, 28))
    with pytest.raises(ValueError, match="3 channel\\(s\\) but the model takes 1"):
        check_input_channels(source, torch.randn(4, 3, 28, 28))


def _image_folder(root, classes=("cat", "dog"), per_class=12):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (20 + i, 30) if i % 2 else (40, 40)
            if i % 3 == 0:          # colour
                arr = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                Image.fromarray(arr, "RGB").save(root / name / f"{i}.png")
            else:                   # grey
                arr = np.full(size, 40 + 150 * c, dtype=np.uint8)
                Image.fromarray(arr, "L").save(root / name / f"{i}.jpg")
    return root


def test_image_folder_target_grey_and_colour_any_size(tmp_path):
    root = _image_folder(tmp_path / "pets")
    cfg = TransferConfig(targets=("folder",), root=str(root), score_size=4, calib_size=4, test_fraction=0.25)
    splits = load_target("folder", cfg, seed=0)
    assert splits.train.classes == ("cat", "dog")
    assert splits.train.images.shape[1:] == (1, 28, 28) and splits.train.images.dtype == torch.uint8
    assert len(splits.test) == 6 and len(splits.score) == 4 and len(splits.calib) == 4 and len(splits.train) == 10
    assert splits.identity["name"] == "folder"


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="transfer.root is empty"):
        TransferConfig(targets=("folder",))
    one = _image_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="need at least 2"):
        load_target("folder", TransferConfig(targets=("folder",), root=str(one)), seed=0)
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_target("folder", TransferConfig(targets=("folder",), root=str(empty)), seed=0)
    broken = _image_folder(tmp_path / "broken")
    (broken / "dog" / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="remove or replace the file"):
        load_target("folder", TransferConfig(targets=("folder",), root=str(broken)), seed=0)


# --- T5: tables, metrics and findings from hand-made records --------------------------------------------------

LABELS = torch.tensor([0, 1, 0, 1])


def _preds(correct: int) -> torch.Tensor:
    """Predictions of ``LABELS`` with the first ``correct`` right (top-1 = correct / 4)."""
    return torch.where(torch.arange(4) < correct, LABELS, 1 - LABELS)


def _records():
    """Two seeds of one target, T5's arm order; top-1 per seed: FP 4/4 and 3/4, LSQ W3A3 2/4 and 2/4,
    this method @3 3/4 and 4/4, @2.9 1/4 and 2/4; no pre-training @3 1/4 and 1/4, @2.9 0/4 and 1/4."""
    correct = {("FP", 32): (4, 3), ("LSQ W3A3", 3): (2, 2), ("this method", 3): (3, 4), ("this method", 2.9): (1, 2),
               ("supernet without pre-training", 3): (1, 1), ("supernet without pre-training", 2.9): (0, 1)}
    records = []
    for s in (0, 1):
        for (arm, level), right in correct.items():
            extra = {} if arm == "FP" or arm.startswith("LSQ") else {"search_seconds": 2.0 + s, "found_level": level,
                                                                      "bit_cfg": {"w": [level]}}
            records.append(run_record("t", s, arm, level, _preds(right[s]), LABELS,
                                      None if arm == "FP" else level / 10, 10.0 * (s + 1), **extra))
    return records


def test_run_record_keeps_the_key_order_of_the_metrics():
    r = run_record("t", 1, "this method", 3, _preds(2), LABELS, 0.5, 7.0, search_seconds=1.0, found_level=2.9)
    assert list(r) == ["target", "seed", "arm", "level", "preds", "labels", "gbitops", "tune_seconds",
                       "search_seconds", "found_level"]
    assert accuracy(r["preds"], r["labels"]) == 0.5


def test_t5_table_rows_in_record_order_with_hand_computed_values():
    t5 = t5_table(_records())
    assert list(t5.columns) == ["target", "method", "W/A level", "seeds", "top-1 mean", "top-1 SD", "per seed",
                                "G-BitOPs", "fine-tune s (per run)", "search s"]
    assert list(t5.method) == ["FP", "LSQ W3A3", "this method, no retraining", "this method, no retraining",
                               "supernet without pre-training, no retraining",
                               "supernet without pre-training, no retraining"]
    assert list(t5["W/A level"]) == ["32/32", "3.0", "3.0", "2.9", "3.0", "2.9"]     # levels share a float column
    fp, lsq, ours3 = t5.iloc[0], t5.iloc[1], t5.iloc[2]
    assert fp["top-1 mean"] == 87.5 and fp["per seed"] == "100.00 / 75.00"
    assert fp["top-1 SD"] == pytest.approx(math.sqrt(2 * 12.5 ** 2))      # sample SD of 100 and 75
    assert lsq["top-1 SD"] == 0.0 and ours3["top-1 mean"] == 87.5
    assert math.isnan(fp["G-BitOPs"]) and lsq["G-BitOPs"] == pytest.approx(0.3)
    assert fp["fine-tune s (per run)"] == 15.0 and math.isnan(fp["search s"]) and ours3["search s"] == 2.5
    one_seed = t5_table([r for r in _records() if r["seed"] == 0])
    assert (one_seed.seeds == 1).all() and one_seed["top-1 SD"].isna().all()


def test_paired_comparisons_pair_seeds_and_add_lsq_only_at_its_integer_level():
    records = _records()
    assert paired_differences(records, "t", (0, 1), "this method", 3, "LSQ W3A3", 3) == [25.0, 50.0]
    comparisons = comparison_table(records, ("t",), (3, 2.9), (0, 1), (3,))
    assert list(comparisons["this method minus"]) == ["LSQ W3A3", "supernet without pre-training",
                                                      "supernet without pre-training"]
    assert list(comparisons.level) == [3, 3, 2.9]
    assert list(comparisons["mean (points)"]) == [37.5, 62.5, 25.0]
    assert list(comparisons["per seed"]) == ["+25.00 / +50.00", "+50.00 / +75.00", "+25.00 / +25.00"]
    assert comparisons.verdict.iloc[0] == seed_verdict([25.0, 50.0])
    no_lsq = comparison_table(records, ("t",), (3,), (0, 1), (2,))        # no W3A3 model: no LSQ pair
    assert list(no_lsq["this method minus"]) == ["supernet without pre-training"]


def test_transfer_metrics_drop_predictions_and_round_trip_json(tmp_path):
    records = _records()
    t5, comparisons = t5_table(records), comparison_table(records, ("t",), (3, 2.9), (0, 1), (3,))
    spec = transfer_setup(**_sections(), device=torch.device("cpu")).spec
    tr = TransferConfig(seeds=(0, 1), levels=(3, 2.9), baseline_bits=(3,))
    m = transfer_metrics(profile="tiny", seed=0, spec=spec, device=torch.device("cpu"), stage_seconds=12.345,
                         transfer=tr, t5=t5, comparisons=comparisons, records=records)
    assert list(m) == ["profile", "seed", "model", "width_mult", "device", "cpu_capability", "stage_seconds",
                       "transfer", "t5", "comparisons", "runs"]
    assert m["stage_seconds"] == 12.3 and m["device"] == "cpu" and m["transfer"]["levels"] == (3, 2.9)
    assert len(m["runs"]) == len(records) and "preds" not in m["runs"][0] and "labels" not in m["runs"][0]
    assert list(m["runs"][0])[-1] == "test_acc" and m["runs"][0]["test_acc"] == 1.0 and m["runs"][1]["test_acc"] == 0.5
    write_json(m, tmp_path / "transfer.json")
    back = json.loads((tmp_path / "transfer.json").read_text())
    assert back["t5"][0]["top-1 mean"] == 87.5 and back["comparisons"][0]["mean (points)"] == 37.5


def test_transfer_findings_name_each_comparison_then_the_fp_model():
    records = _records()
    t5, comparisons = t5_table(records), comparison_table(records, ("t",), (3,), (0, 1), (3,))
    assert transfer_findings(comparisons, t5, ("t", "absent")) == [
        "t: this method (no retraining) minus LSQ W3A3 at level 3: +37.50 points (per seed +25.00 / +50.00, "
        f"{seed_verdict([25.0, 50.0])}); supernet without pre-training at level 3: +62.50 points (per seed "
        f"+50.00 / +75.00, {seed_verdict([50.0, 75.0])})",
        "t: the FP model fine-tuned reaches 87.50%"]


def test_transfer_front_one_panel_per_target_with_fp_line():
    import matplotlib.pyplot as plt

    t5 = t5_table(_records())
    fig = transfer_front(t5, ["t"], "title")
    (ax,) = fig.axes
    assert ax.get_title() == "t" and [t.get_text() for t in ax.get_legend().get_texts()] == [
        "FP fine-tuned", "LSQ W3A3", "this method, no retraining", "supernet without pre-training, no retraining"]
    assert ax.lines[-1].get_ydata()[0] == 87.5
    plt.close(fig)


# --- T5: the set-up and the runs, on a tiny image folder ------------------------------------------------------

def _sections(**transfer):
    """The params sections notebook 06 reads (params.yaml), with resnet20 at width 0.25 and ``transfer`` overrides."""
    params = load_params(Path(__file__).resolve().parent.parent / "params.yaml")
    keys = ("data", "models", "model_bits", "fp", "oneshot", "evaluation", "baselines", "search", "transfer")
    sections = {k: params[k] for k in keys}
    sections["models"] = {"resnet20": {"width_mult": 0.25}}
    sections["transfer"] = {**params["transfer"], "model": "resnet20", **transfer}
    return sections


def test_transfer_setup_reads_the_sections_and_refuses_what_no_stage_trains():
    sections = _sections(epochs=3, lr=0.01, step_lr=0.001, ema_decay=0.8)
    setup = transfer_setup(**sections, device=torch.device("cpu"))
    assert (setup.spec.name, setup.spec.width_mult, tuple(setup.input_size)) == ("resnet20", 0.25, (1, 28, 28))
    tune = setup.tune
    assert (tune.epochs, tune.lr, tune.step_lr, tune.ema_decay, tune.train_size) == (3, 0.01, 0.001, 0.8, None)
    assert tune.num_random_paths == setup.oneshot.num_random_paths and tune.w_bit_choices == setup.oneshot.w_bit_choices
    with pytest.raises(ValueError, match=r"baseline_bits \[3\] have no LSQ model"):
        transfer_setup(**{**sections, "baselines": {**sections["baselines"], "levels": [4]},
                          "transfer": {**sections["transfer"], "baseline_bits": [3, 4]}}, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="is not in the models section"):
        transfer_setup(**{**sections, "transfer": {**sections["transfer"], "model": "mobilenetv2_28"}},
                       device=torch.device("cpu"))


@pytest.mark.timeout(120)
def test_run_transfer_tiny_folder_every_arm_in_order(tmp_path):
    root = _image_folder(tmp_path / "pets")            # 24 images: train 10, score 4, calib 4, test 6
    sections = _sections(targets=["folder"], root=str(root), seeds=[0], epochs=1, train_size=None, score_size=4,
                         calib_size=4, test_fraction=0.25, levels=[3], baseline_bits=[3])
    # one step per run (10 training images, batches of 8), two candidates per layer (none frozen), one random
    # path: quick
    sections["data"] = {**sections["data"], "batch_size": 8}
    sections["oneshot"] = {**sections["oneshot"], "w_bit_choices": [3, 4], "a_bit_choices": [3, 4],
                           "num_random_paths": 1, "scheduler": False}
    sections["baselines"] = {**sections["baselines"], "levels": [3]}
    sections["search"] = {**sections["search"], "levels": [3], "start_bits": 3}
    setup = transfer_setup(**sections, device=torch.device("cpu"))
    ckpt = tmp_path / "checkpoints"
    # notebook 01's FP model and notebook 02's supernet, stand-ins: a 10-class model, a one-step one-shot run
    fp_model = create_model("resnet20", width_mult=0.25)
    save_checkpoint({"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "state_dict": fp_model.state_dict()},
                    ckpt / "fp" / "resnet20.pt")
    splits = load_target("folder", setup.transfer, 0)
    net = build_supernet(create_model("resnet20", width_mult=0.25), setup.oneshot.supernet_spec(), splits.calib,
                         setup.input_size)
    train_oneshot(net, splits.train.subset(torch.arange(8)), dataclasses.replace(setup.oneshot, epochs=1),
                  batch_size=8, pad=2, flip=False, seed=0, device=torch.device("cpu"),
                  checkpoint=ckpt / "supernet" / "resnet20.pt", progress=False,
                  meta={"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "data": {}})
    (ckpt / "baselines").mkdir()
    shutil.copy(ckpt / "supernet" / "resnet20.pt", ckpt / "baselines" / "resnet20_w3a3.pt")   # any supernet loads

    records, seconds = run_transfer(setup, 0, checkpoints=str(ckpt))
    assert [(r["target"], r["seed"], r["arm"], r["level"]) for r in records] == [
        ("folder", 0, "FP", 32), ("folder", 0, "LSQ W3A3", 3), ("folder", 0, "this method", 3),
        ("folder", 0, "supernet without pre-training", 3)]
    assert seconds > 0 and all(r["labels"] is records[0]["labels"] and r["preds"].shape == (6,) for r in records)
    assert records[0]["gbitops"] is None and records[1]["gbitops"] > 0
    ours = records[2]
    assert list(ours)[-3:] == ["search_seconds", "found_level", "bit_cfg"] and ours["found_level"] <= 3 + 1e-9
    assert {p.name for p in (ckpt / "transfer").iterdir()} == {"resnet20_folder_transferred_seed0.pt",
                                                               "resnet20_folder_from-fp_seed0.pt"}
    # the FP arm by hand: seed, new classifier, fine-tuning with the same seed give the same predictions
    torch.manual_seed(0)
    model = fresh_float_model(load_fp_model(str(ckpt / "fp" / "resnet20.pt")), 2)
    train_fp(model, splits.train, splits.test, epochs=1, batch_size=8, lr=setup.transfer.fp_lr,
             momentum=setup.fp.momentum, weight_decay=setup.fp.weight_decay, warmup_epochs=setup.fp.warmup_epochs,
             label_smoothing=setup.fp.label_smoothing, pad=setup.data.pad, flip=False, seed=0,
             device=torch.device("cpu"), progress=False)
    assert torch.equal(predictions(model, splits.test), records[0]["preds"])
    assert len(t5_table(records)) == 4 and len(comparison_table(records, ("folder",), (3,), (0,), (3,))) == 2
    # the command line finds a configuration for another budget on the user's folder, and asks for the folder
    from mpq.__main__ import main

    ours_ckpt = ckpt / "transfer" / "resnet20_folder_transferred_seed0.pt"
    out = tmp_path / "folder_cfg.json"
    assert main(["search", str(ours_ckpt), "--level", "3.5", "--data-root", str(root), "--evaluate",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["level"] <= 3.5 + 1e-9
    assert main(["search", str(ours_ckpt), "--level", "3.5"]) == 2
