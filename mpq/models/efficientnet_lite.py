"""EfficientNet-Lite-style network: MBConv blocks (no squeeze-excitation, ReLU6), mixed 3x3/5x5 depthwise."""
from __future__ import annotations

from torch import Tensor, nn

from .mobilenetv2 import InvertedResidual, conv_bn_act, make_divisible
from .registry import register_model


class EfficientNetLite(nn.Module):
    def __init__(self, settings: list[tuple[int, int, int, int, int]], num_classes: int, width_mult: float,
                 in_channels: int, stem_channels: int = 32, head_channels: int = 320) -> None:
        super().__init__()
        c_in = make_divisible(stem_channels * width_mult)
        blocks: list[nn.Module] = [conv_bn_act(in_channels, c_in, 3, 1)]   # Lite keeps the stem unscaled in depth
        for expand, kernel, channels, repeats, stride in settings:           # (t, k, c, n, s)
            c_out = make_divisible(channels * width_mult)
            for i in range(repeats):
                blocks.append(InvertedResidual(c_in, c_out, stride if i == 0 else 1, expand, kernel))
                c_in = c_out
        head = make_divisible(head_channels * max(1.0, width_mult))
        blocks.append(conv_bn_act(c_in, head, 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))   # (B, head) -> (B, classes)


@register_model("efficientnet_lite_28", input_size=(1, 28, 28), role="EfficientNet-Lite0 analogue for 28x28 inputs")
def efficientnet_lite_28(num_classes: int = 10, width_mult: float = 1.0, in_channels: int = 1) -> EfficientNetLite:
    settings = [(1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 5, 40, 2, 2), (6, 3, 80, 2, 1)]
    return EfficientNetLite(settings, num_classes, width_mult, in_channels)
