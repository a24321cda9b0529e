"""Logistic regression in PyTorch: one linear layer; softmax lives in the cross-entropy loss."""

from __future__ import annotations

from torch import nn


class LogisticRegression(nn.Module):
    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x):  # (b, n_features) -> (b, n_classes) logits
        return self.linear(x)
