"""One-shot training: losses, schedule pieces, baselines, and resume == uninterrupted."""
from __future__ import annotations

import pytest
import torch

from mpq.models import create_model
from mpq.oneshot import OneShotConfig, build_supernet, distillation_loss, qe_ramp, train_oneshot

TINY = dict(epochs=2, num_random_paths=2, warmup_epochs=0.5, qe_start=0.5)


def test_distillation_loss_zero_for_equal_logits_and_positive_otherwise():
    a = torch.randn(5, 10)
    assert distillation_loss(a, a).abs() < 1e-6
    assert distillation_loss(a, torch.randn(5, 10)) > 0


def test_qe_ramp():
    assert qe_ramp(10, 100, 0.75, 2.0) == 0.0
    assert qe_ramp(75, 100, 0.75, 2.0) == 0.0
    assert qe_ramp(100, 100, 0.75, 2.0) == pytest.approx(2.0)


def test_baseline_is_a_single_candidate_max_path_only():
    base = OneShotConfig().baseline(3)
    assert base.w_bit_choices == (3,) and base.a_bit_choices == (3,) and base.num_random_paths == 0
    spec = base.supernet_spec()
    assert spec.depthwise_min_bits == 3 and spec.w_bit_choices == (3,)
    with pytest.raises(ValueError, match="num_random_paths"):
        OneShotConfig(num_random_paths=-1)


def _run(tiny_splits, tmp_path, name, stop_after=None, resume_from=None):
    torch.manual_seed(0)
    cfg = OneShotConfig(**TINY)
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28))
    ckpt = resume_from or tmp_path / f"{name}.pt"
    return train_oneshot(sn, tiny_splits.train.subset(torch.arange(128)), cfg, batch_size=32, pad=2, flip=True,
                         seed=0, device=torch.device("cpu"), checkpoint=ckpt, progress=False,
                         stop_after_epoch=stop_after)


def test_training_moves_weights_and_resume_equals_uninterrupted(tiny_splits, tmp_path):
    full = _run(tiny_splits, tmp_path, "full")
    first = _run(tiny_splits, tmp_path, "part", stop_after=1)
    assert first.history.epoch == [1]
    resumed = _run(tiny_splits, tmp_path, "part", resume_from=tmp_path / "part.pt")
    assert resumed.history.epoch == [1, 2]
    for model in ("supernet", "ema"):
        a, b = getattr(full, model).state_dict(), getattr(resumed, model).state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert (a[k] == b[k]) if k.endswith("_extra_state") else torch.equal(a[k], b[k]), f"{model}: {k}"
    torch.manual_seed(0)
    init = build_supernet(create_model("resnet20", width_mult=0.25), OneShotConfig().supernet_spec(),
                          tiny_splits.calib, (1, 28, 28))
    name = "model.stages.1.0.conv1.weight"
    assert not torch.equal(init.state_dict()[name], full.supernet.state_dict()[name])
