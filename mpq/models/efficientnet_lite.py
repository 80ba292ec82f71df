"""EfficientNet-Lite-style network: MBConv blocks (no squeeze-excitation, ReLU6), mixed 3x3/5x5 depthwise.

EfficientNet-Lite drops squeeze-excitation and swish for quantization-friendliness, which leaves the
same block as MobileNetV2 with a per-stage kernel size, so it shares ``MBConvNet``.
"""
from __future__ import annotations

from .mobilenetv2 import MBConvNet
from .registry import register_model


@register_model("efficientnet_lite_28", input_size=(1, 28, 28), role="EfficientNet-Lite0 analogue for 28x28 inputs",
                shared_candidates=False)
def efficientnet_lite_28(num_classes: int = 10, width_mult: float = 1.0, in_channels: int = 1) -> MBConvNet:
    settings = [(1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 5, 40, 2, 2), (6, 3, 80, 2, 1)]   # (t, k, c, n, s)
    return MBConvNet(settings, 32, 320, 1, num_classes, width_mult, in_channels)
