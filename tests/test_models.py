"""Every registered model: forward shape, plausible parameter count, width multiplier."""
from __future__ import annotations

import pytest
import torch

from mpq.models import create_model, list_models, model_entry

# Parameter counts at width 1.0 with the designed input (published figures where they exist:
# ResNet-18 11.69M and MobileNetV2 3.50M with 1000 classes).
EXPECTED_PARAMS = {"resnet20": (0.26e6, 0.28e6), "resnet18": (11.6e6, 11.8e6), "mobilenetv2": (3.4e6, 3.6e6),
                   "mobilenetv2_28": (0.1e6, 0.6e6), "efficientnet_lite_28": (0.1e6, 0.8e6)}


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_params(name):
    entry = model_entry(name)
    model = create_model(name, num_classes=7).eval()
    c, h, w = entry.input_size
    size = (c, h, w) if h <= 32 else (c, 64, 64)    # full-size nets are fully convolutional: a small input suffices
    with torch.no_grad():
        out = model(torch.randn(2, *size).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 7)
    n = sum(p.numel() for p in create_model(name, num_classes=1000 if h > 32 else 10).parameters())
    lo, hi = EXPECTED_PARAMS[name]
    assert lo <= n <= hi, f"{name}: {n} parameters"


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_28", "efficientnet_lite_28"])
def test_width_multiplier_shrinks(name):
    full = sum(p.numel() for p in create_model(name, width_mult=1.0).parameters())
    half = sum(p.numel() for p in create_model(name, width_mult=0.5).parameters())
    assert half < 0.5 * full


def test_unknown_model_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*resnet20"):
        create_model("vgg")
    with pytest.raises(ValueError, match="width_mult"):
        create_model("resnet20", width_mult=0)
