"""From-scratch NumPy classifiers with hand-written gradients (Question 1)."""

from medclf.models.numpy_models.base import load_model
from medclf.models.numpy_models.logistic import LogisticRegression
from medclf.models.numpy_models.mlp import MLP
from medclf.models.numpy_models.perceptron import Perceptron

MODELS = {cls.kind: cls for cls in (Perceptron, LogisticRegression, MLP)}

__all__ = ["MLP", "MODELS", "LogisticRegression", "Perceptron", "load_model"]
