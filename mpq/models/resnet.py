"""ResNet-20 (CIFAR style, the stand-in for the paper's ResNet-18) and the full-size ResNet-18."""
from __future__ import annotations

from torch import Tensor, nn

from .registry import register_model


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs and a shortcut (1x1 conv-BN when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c_in, c_out, 3, stride)
        self.conv2, self.bn2 = conv_bn(c_out, c_out, 3)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (nn.Sequential(*conv_bn(c_in, c_out, 1, stride))
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, stem: nn.Sequential, widths: list[int], depths: list[int], strides: list[int],
                 num_classes: int) -> None:
        super().__init__()
        self.stem = stem
        c_in = stem[0].out_channels
        stages = []
        for width, depth, stride in zip(widths, depths, strides):
            blocks = []
            for i in range(depth):
                blocks.append(BasicBlock(c_in, width, stride if i == 0 else 1))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.fc(self.pool(x).flatten(1))                  # (B, C) -> (B, classes)


def _width(base: int, width_mult: float) -> int:
    return max(4, int(round(base * width_mult)))


@register_model("resnet20", input_size=(1, 28, 28), role="ResNet-18 analogue (CIFAR-style ResNet-20)",
                shared_candidates=True)
def resnet20(num_classes: int = 10, width_mult: float = 1.0, in_channels: int = 1) -> ResNet:
    widths = [_width(w, width_mult) for w in (16, 32, 64)]
    stem = nn.Sequential(*conv_bn(in_channels, widths[0], 3), nn.ReLU(inplace=True))
    return ResNet(stem, widths, [3, 3, 3], [1, 2, 2], num_classes)


@register_model("resnet18", input_size=(3, 224, 224), role="full-size ResNet-18 (cost accounting, GPUs)",
                shared_candidates=True)
def resnet18(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3) -> ResNet:
    widths = [_width(w, width_mult) for w in (64, 128, 256, 512)]
    stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                         nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    return ResNet(stem, widths, [2, 2, 2, 2], [1, 2, 2, 2], num_classes)
