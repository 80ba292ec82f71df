"""Transfer (mpq.transfer): the new classifier, mismatch errors, and a user's image folder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mpq.checkpoint import CheckpointError
from mpq.data import DataError
from mpq.layers import quant_layers
from mpq.models import create_model
from mpq.supernet import Supernet
from mpq.transfer import (TransferConfig, check_input_channels, head_name, load_target, replace_head,
                          retarget_supernet)


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
