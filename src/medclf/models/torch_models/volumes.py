"""2D networks made 3D, as MedMNIST v2 made its 3D baselines: the 2D ResNet of
medclf.models.torch_models.resnet (MedMNIST's CIFAR-style stem at 28) with every Conv2d
replaced by one of three 3D convolutions, every BatchNorm2d / pooling by its 3D twin.

The three kinds are the ``acsconv`` package's converters (M3DV/ACSConv, which MedMNIST's
experiments/MedMNIST3D used), written here because the package pulls in torchvision:

- ``3d``: Conv3d with a k x k x k kernel (Conv3dConverter);
- ``2.5d``: Conv3d with a 1 x k x k kernel, a 2D convolution of each slice along the first
  axis, shared by all slices (Conv2_5dConverter, its default unsqueeze_axis=-3);
- ``acs``: a 2D k x k kernel whose output channels are split in three near-equal parts
  (the first part gets the remainder), convolving the axial, coronal and sagittal planes:
  kernels 1 x k x k, k x 1 x k and k x k x 1 (ACSConverter, ACSConv's default split).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medclf.errors import ConfigError

KINDS = ("3d", "2.5d", "acs")


def acs_split(out_channels: int) -> tuple[int, int, int]:
    """ACSConv's default split of the output channels over the three axes."""
    third, rest = divmod(out_channels, 3)
    return (third + (rest > 0), third + (rest > 1), third)


class ACSConv(nn.Module):
    """A 2D kernel (out, in, k, k) applied on three orthogonal planes of a volume: each third
    of the output channels sees one plane, its kernel lying flat along one axis."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default init
        self.split, self.stride, self.padding = acs_split(c_out), stride, padding

    def kernels(self) -> list[Tensor]:
        """The three parts' 3D kernels: (a, 1, k, k), (c, k, 1, k), (s, k, k, 1) per filter."""
        a, c, _ = self.split
        w = self.weight
        return [w[:a].unsqueeze(2), w[a : a + c].unsqueeze(3), w[a + c :].unsqueeze(4)]

    def forward(self, x: Tensor) -> Tensor:
        p = self.padding
        pads = ((0, p, p), (p, 0, p), (p, p, 0))  # no padding along the flat axis
        parts = [
            F.conv3d(x, w, None, self.stride, pad)
            for w, pad in zip(self.kernels(), pads, strict=True)
            if len(w)
        ]
        out = torch.cat(parts, dim=1)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1, 1)


def conv3d_of(conv: nn.Conv2d, kind: str) -> nn.Module:
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.kernel_size != (k, k):
        raise ConfigError(f"cannot make {conv} 3D: only square, ungrouped, undilated kernels")
    bias = conv.bias is not None
    c_in, c_out = conv.in_channels, conv.out_channels
    if kind == "3d":
        return nn.Conv3d(c_in, c_out, k, s, p, bias=bias)
    if kind == "2.5d":
        return nn.Conv3d(c_in, c_out, (1, k, k), s, (0, p, p), bias=bias)
    return ACSConv(c_in, c_out, k, s, p, bias)


TWINS = {
    nn.BatchNorm2d: lambda m: nn.BatchNorm3d(m.num_features, m.eps, m.momentum),
    nn.MaxPool2d: lambda m: nn.MaxPool3d(m.kernel_size, m.stride, m.padding),
    nn.AdaptiveAvgPool2d: lambda m: nn.AdaptiveAvgPool3d(m.output_size),
}


def to_3d(model: nn.Module, kind: str) -> nn.Module:
    """``model`` with its 2D layers replaced in place by 3D ones of ``kind`` (fresh weights)."""
    if kind not in KINDS:
        raise ConfigError(f"conv == {kind!r}, must be one of {KINDS}")
    for name, child in model.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(model, name, conv3d_of(child, kind))
        elif type(child) in TWINS:
            setattr(model, name, TWINS[type(child)](child))
        else:
            to_3d(child, kind)
    return model
