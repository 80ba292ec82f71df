"""The FP starting points (mpq.studies.fp_models, notebook 01): checkpoints, metrics, table and findings."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mpq.config import DataConfig, FPConfig, ModelSpec
import json

from mpq.studies.fp_models import load_fp_run, save_fp_run, train_fp_models
from mpq.studies.fp_tables import fp_findings, fp_table
from mpq.training.checkpoint import write_stage_record
from mpq.training.checkpoint import load_checkpoint
from mpq.training.fp import evaluate, load_fp_model

DATA = DataConfig(batch_size=64)
FP = FPConfig(epochs=1, lr=0.05)


def _small(splits, n=64):
    """The first ``n`` training and test images of ``splits``: a training run of one step per 64 images."""
    first = torch.arange(n)
    return dataclasses.replace(splits, train=splits.train.subset(first), test=splits.test.subset(first))


@pytest.mark.timeout(60)
def test_each_model_is_seeded_by_itself_and_its_checkpoint_reproduces_its_metrics(tiny_splits, tmp_path):
    splits = _small(tiny_splits)
    specs = [ModelSpec("resnet20", 0.25)]
    torch.manual_seed(123)                       # whatever the caller's RNG state: each model is seeded itself
    out = train_fp_models(specs, splits, DATA, FP, seed=0, device=torch.device("cpu"), folder=tmp_path / "a",
                          progress=False)
    assert list(out) == ["histories", "models"]
    assert list(out["models"]) == ["resnet20"] == list(out["histories"])
    m = out["models"]["resnet20"]
    assert list(m) == ["test_acc", "params", "width_mult", "epochs", "train_images", "train_seconds",
                       "train_img_per_s"]
    assert (m["width_mult"], m["epochs"], m["train_images"]) == (0.25, 1, 64)
    path = tmp_path / "a" / "resnet20.pt"
    state = load_checkpoint(path)
    assert "seconds" not in state["history"] and "seconds" in out["histories"]["resnet20"]
    model = load_fp_model(str(path), "resnet20", 0.25, len(splits.train.classes))
    assert m["params"] == sum(p.numel() for p in model.parameters())
    assert m["test_acc"] == evaluate(model, splits.test) == state["history"]["test_acc"][-1]
    # after another RNG history, the same model writes the same bytes
    torch.manual_seed(7)
    torch.rand(100)
    train_fp_models(specs, splits, DATA, FP, seed=0, device=torch.device("cpu"), folder=tmp_path / "b",
                    progress=False)
    assert (tmp_path / "b" / "resnet20.pt").read_bytes() == path.read_bytes()
    # the stage's results: run.json holds no wall time, and reading it back with the stage record gives the run
    timings = save_fp_run(out, tmp_path / "a")
    stored = json.loads((tmp_path / "a" / "run.json").read_text())
    assert "seconds" not in json.dumps(stored) and "img_per_s" not in json.dumps(stored)
    write_stage_record("fp_train", 1.0, tmp_path / "stages", timings=timings)
    assert load_fp_run(tmp_path / "a", tmp_path / "stages") == json.loads(json.dumps(out))


METRICS = {"resnet20": {"test_acc": 0.875, "params": 12345, "width_mult": 0.5, "epochs": 5, "train_images": 1000,
                        "train_seconds": 61.4, "train_img_per_s": 81.3}}


def test_table_and_findings_in_percent():
    table = fp_table(METRICS)
    assert list(table.columns) == ["model", "test top-1 (%)", "parameters", "width", "epochs", "training images",
                                   "training (s)", "training images/s"]
    assert table.loc[0, "test top-1 (%)"] == 87.5 and table.loc[0, "model"] == "resnet20"
    assert fp_findings(METRICS) == ["resnet20 (width 0.5, 12,345 parameters): 87.50% top-1 after 5 epochs, 61 s of "
                                    "training (81 images/s)"]


def test_a_missing_or_damaged_result_is_one_line_naming_the_file(tmp_path):
    from mpq.training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=r"run.json is missing: fetch the stage's results with `dvc pull`"):
        load_fp_run(tmp_path, tmp_path)
    (tmp_path / "run.json").write_text('{"models": ')
    with pytest.raises(CheckpointError, match=r"run.json is damaged .*`dvc repro fp_train`"):
        load_fp_run(tmp_path, tmp_path)
