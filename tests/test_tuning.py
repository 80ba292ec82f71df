"""The held-out studies (mpq.studies.tuning): the images they choose on, and the summary over seeds."""
from __future__ import annotations

import pytest
import torch

from mpq.data.datasets import load_fashion_mnist
from mpq.studies.tuning import lr_summary, validation_set


def _keys(images: torch.Tensor) -> torch.Tensor:
    """One int64 per image (a fixed random projection of its pixels), sorted: a multiset of images."""
    weights = torch.randint(1, 2**20, (images[0].numel(),), generator=torch.Generator().manual_seed(0))
    return torch.sort((images.flatten(1).long() * weights).sum(1)).values


def test_validation_images_are_exactly_the_training_images_no_stage_uses(tiny_splits):
    params = {"seed": 0, "data": {"dataset": "fashion_mnist", "train_size": 256, "score_size": 128,
                                  "calib_size": 128, "test_size": 256}}
    held_out = validation_set(params, tiny_splits)
    train, _ = load_fashion_mnist()
    parts = torch.cat([held_out.images, tiny_splits.train.images, tiny_splits.score.images, tiny_splits.calib.images])
    assert len(held_out) == 60000 - 256 - 128 - 128
    assert torch.equal(_keys(parts), _keys(train.images))     # the four sets partition the 60k training images


def test_validation_falls_back_to_the_scoring_images_when_every_image_trains(tiny_splits):
    params = {"seed": 0, "data": {"dataset": "fashion_mnist", "train_size": None, "score_size": 128,
                                  "calib_size": 128, "test_size": 256}}
    from mpq.data.datasets import make_splits

    splits = make_splits("fashion_mnist", seed=0, train_size=None, score_size=128, calib_size=128, test_size=256)
    assert validation_set(params, splits) is splits.score


def test_lr_summary_averages_each_setting_over_its_seeds():
    trials = [{"recipe": "supernet", "lr": 0.04, "step_lr": 0.003, "seed": s, "mean_heldout_acc": a}
              for s, a in ((0, 0.80), (1, 0.90))]
    trials.append({"recipe": "supernet", "lr": 0.08, "step_lr": 0.003, "seed": 0, "mean_heldout_acc": 0.7})
    rows = {r["lr"]: r for r in lr_summary(trials)}
    assert rows[0.04]["mean_heldout_acc"] == pytest.approx(0.85)
    assert rows[0.04]["sd_over_seeds"] == pytest.approx(0.1 / 2 ** 0.5)
    assert rows[0.04]["seeds"] == [0, 1]
    assert rows[0.08]["sd_over_seeds"] != rows[0.08]["sd_over_seeds"]     # NaN with one seed
