"""ResNet-18 and ResNet-50 as the MedMNIST v2 baselines use them, in plain PyTorch.

At 28x28 MedMNIST trained a CIFAR-style ResNet (MedMNIST/experiments, MedMNIST2D/models.py):
a 3x3 stride-1 stem and no max-pool, so the 28x28 image is not shrunk to 7x7 before the first
block. At 224x224 it trained torchvision's standard ResNet (7x7 stride-2 stem + 3x3 max-pool).
``stem`` picks one; by default ``size`` decides: 28 -> "cifar", larger -> "imagenet", the
pairing the paper used. The blocks are torchvision's (BasicBlock; Bottleneck with the stride on
its 3x3 convolution), so with stem="imagenet", 3 channels and 1000 outputs the parameter counts
equal torchvision's resnet18/resnet50 exactly.
"""

from __future__ import annotations

from torch import Tensor, nn

from medclf.errors import ConfigError

STEMS = ("cifar", "imagenet")


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity, or a 1x1 projection where the shape changes."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(*conv_bn(c_in, c_out, 1, stride))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(c_in, planes, 3, stride), nn.ReLU(inplace=True), *conv_bn(planes, planes, 3)
        )
        self.shortcut = shortcut(c_in, planes, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        self.body = nn.Sequential(
            *conv_bn(c_in, planes, 1),
            nn.ReLU(inplace=True),
            *conv_bn(planes, planes, 3, stride),
            nn.ReLU(inplace=True),
            *conv_bn(planes, c_out, 1),
        )
        self.shortcut = shortcut(c_in, c_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        blocks: tuple[int, int, int, int],
        in_channels: int,
        n_outputs: int,
        size: int = 28,
        stem: str | None = None,
    ):
        super().__init__()
        stem = stem or ("cifar" if size <= 32 else "imagenet")
        if stem not in STEMS:
            raise ConfigError(f"stem == {stem!r}, must be one of {STEMS}")
        if in_channels < 1 or n_outputs < 1:
            raise ConfigError(f"in_channels == {in_channels}, n_outputs == {n_outputs}, need >= 1")
        self.stem_name = stem
        if stem == "cifar":
            self.stem = nn.Sequential(*conv_bn(in_channels, 64, 3), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                *conv_bn(in_channels, 64, 7, stride=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        layers, c_in = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(block(c_in, planes, stride))
                c_in = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, n_outputs)
        if stem == "imagenet":
            # torchvision's initialisation; the CIFAR-style models keep PyTorch's defaults,
            # as MedMNIST's models.py does.
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:  # (b, C, H, W) -> (b, n_outputs) logits
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


class ResNet18(ResNet):
    def __init__(self, in_channels: int, n_outputs: int, size: int = 28, stem: str | None = None):
        super().__init__(BasicBlock, (2, 2, 2, 2), in_channels, n_outputs, size, stem)


class ResNet50(ResNet):
    def __init__(self, in_channels: int, n_outputs: int, size: int = 28, stem: str | None = None):
        super().__init__(Bottleneck, (3, 4, 6, 3), in_channels, n_outputs, size, stem)
