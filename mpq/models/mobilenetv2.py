"""MobileNetV2: inverted residual blocks with depthwise convs and linear bottlenecks.

The block's projection has no activation (the linear bottleneck), so the *next* block's expansion conv
sees signed inputs: its activation quantizer must use the signed range (DESIGN.md section 2).
"""
from __future__ import annotations

from torch import Tensor, nn

from .registry import register_model


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never below 90% of ``value``."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def conv_bn_act(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expansion -> kxk depthwise -> 1x1 linear projection, with a residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int, kernel: int = 3) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(c_in, hidden, 1))
        layers += [conv_bn_act(hidden, hidden, kernel, stride, groups=hidden),
                   conv_bn_act(hidden, c_out, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MBConvNet(nn.Module):
    """Stem conv, inverted-residual (MBConv) blocks, 1x1 head conv, pooling, classifier.

    ``settings`` rows are ``(t, k, c, n, s)``: expansion, depthwise kernel, output channels, repeats,
    stride of the first repeat (MobileNetV2's table plus EfficientNet's kernel column).
    """

    def __init__(self, settings: list[tuple[int, int, int, int, int]], stem_channels: int, head_channels: int,
                 stem_stride: int, num_classes: int, width_mult: float, in_channels: int) -> None:
        super().__init__()
        c_in = make_divisible(stem_channels * width_mult)
        features: list[nn.Module] = [conv_bn_act(in_channels, c_in, 3, stem_stride)]
        for expand, kernel, channels, repeats, stride in settings:
            c_out = make_divisible(channels * width_mult)
            for i in range(repeats):
                features.append(InvertedResidual(c_in, c_out, stride if i == 0 else 1, expand, kernel))
                c_in = c_out
        head = make_divisible(head_channels * max(1.0, width_mult))
        features.append(conv_bn_act(c_in, head, 1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))   # (B, head) -> (B, classes)


def _with_kernel(settings: list[tuple[int, int, int, int]], kernel: int = 3) -> list[tuple[int, int, int, int, int]]:
    return [(t, kernel, c, n, s) for t, c, n, s in settings]


@register_model("mobilenetv2_28", input_size=(1, 28, 28), role="MobileNetV2 analogue for 28x28 inputs",
                shared_candidates=False)
def mobilenetv2_28(num_classes: int = 10, width_mult: float = 1.0, in_channels: int = 1) -> MBConvNet:
    # Same block types as MobileNetV2, fewer stages: 28 -> 14 -> 7 spatially.
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 1)]
    return MBConvNet(_with_kernel(settings), 32, 256, 1, num_classes, width_mult, in_channels)


@register_model("mobilenetv2", input_size=(3, 224, 224), role="full-size MobileNetV2 (cost accounting, GPUs)",
                shared_candidates=False)
def mobilenetv2(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3) -> MBConvNet:
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    return MBConvNet(_with_kernel(settings), 32, 1280, 2, num_classes, width_mult, in_channels)
