"""SmallCNN: a VGG-style network sized for 28x28 images on a CPU.

Three blocks of [conv3x3-BN-ReLU] x convs -> 2x2 max-pool with widths w, 2w, 4w, then a global
average pool, dropout and one linear layer. At 28x28 the maps go 28 -> 14 -> 7 -> 3, so the last
block still sees the whole image. Larger images (64, 128, 224) keep their full resolution in the
first block, then extra 2x2 pools bring the grid back to about 28x28's (16 or 14 after the first
block), so the later, wider blocks cost about what they cost at 28; the global pool makes the
weights the same shape at every size.
"""

from __future__ import annotations

from torch import Tensor, nn

from medclf.errors import ConfigError


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    # No conv bias: the BatchNorm after it has its own shift.
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        size: int = 28,
        width: int = 32,
        dropout: float = 0.0,
        convs: int = 2,
    ):
        super().__init__()
        if in_channels < 1 or n_outputs < 1 or width < 1 or convs < 1:
            raise ConfigError(
                f"in_channels == {in_channels}, n_outputs == {n_outputs}, "
                f"width == {width}, convs == {convs}: each must be >= 1"
            )
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout == {dropout}, must be in [0, 1)")
        if size < 8:
            raise ConfigError(f"size == {size}, must be >= 8 (three 2x2 pools)")
        layers, c_in = [], in_channels
        for i, c_out in enumerate((width, 2 * width, 4 * width)):
            for j in range(convs):
                layers += conv_bn_relu(c_in if j == 0 else c_out, c_out)
            layers.append(nn.MaxPool2d(2))
            if i == 0:
                # 64 -> one extra pool, 128 -> two, 224 -> three: back to about 28x28's grid.
                side = size // 2
                while side >= 28:
                    layers.append(nn.MaxPool2d(2))
                    side //= 2
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, n_outputs)
        )

    def forward(self, x: Tensor) -> Tensor:  # (b, C, H, W) -> (b, n_outputs) logits
        return self.head(self.features(x))
