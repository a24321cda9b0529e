"""PyTorch models of Question 2; defaults live in medclf.config.DEFAULTS."""

from medclf.torch_models.feedforward import FeedforwardNetwork, build_torch_model
from medclf.torch_models.logistic import LogisticRegression

__all__ = ["FeedforwardNetwork", "LogisticRegression", "build_torch_model"]
