"""Feed-forward network of Question 2: [Linear -> activation -> Dropout] x layers -> Linear."""

from __future__ import annotations

from torch import nn

from medclf.errors import ConfigError
from medclf.models.config import ACTIVATIONS, DEFAULTS

FFN = DEFAULTS["torch-ffn"]


class FeedforwardNetwork(nn.Module):
    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_size: int = FFN["hidden_size"],
        layers: int = FFN["layers"],
        activation: str = FFN["activation"],
        dropout: float = FFN["dropout"],
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation == {activation!r}, must be one of {ACTIVATIONS}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout == {dropout}, must be in [0, 1)")
        if layers < 1 or hidden_size < 1:
            raise ConfigError(f"layers == {layers}, hidden_size == {hidden_size}, need >= 1")
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        blocks, width = [], n_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden_size), act(), nn.Dropout(dropout)]
            width = hidden_size
        self.net = nn.Sequential(*blocks, nn.Linear(width, n_classes))

    def forward(self, x):  # (b, n_features) -> (b, n_classes) logits
        return self.net(x)
