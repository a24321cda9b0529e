"""From-scratch NumPy classifiers with hand-written gradients (Question 1)."""

from medclf.models.numpy_models.base import load_model
from medclf.models.numpy_models.logistic import LogisticRegression
from medclf.models.numpy_models.mlp import MLP
from medclf.models.numpy_models.perceptron import Perceptron

KINDS = {cls.kind: cls for cls in (Perceptron, LogisticRegression, MLP)}  # model.npz's kind

__all__ = ["KINDS", "MLP", "LogisticRegression", "Perceptron", "load_model"]
