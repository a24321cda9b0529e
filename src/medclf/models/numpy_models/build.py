"""The builders of the NumPy models' registry entries (ModelSpec.build): a config and the
number of classes -> an unfitted model."""

from __future__ import annotations

from medclf.models.numpy_models.logistic import LogisticRegression
from medclf.models.numpy_models.mlp import MLP
from medclf.models.numpy_models.perceptron import Perceptron


def common(config: dict, n_classes: int) -> dict:
    return {"n_classes": n_classes, "dtype": config["dtype"], "seed": config["seed"]}


def perceptron(config: dict, n_classes: int) -> Perceptron:
    return Perceptron(**common(config, n_classes))


def logistic_regression(config: dict, n_classes: int) -> LogisticRegression:
    c = config
    return LogisticRegression(
        lr=c["lr"], batch_size=c["batch_size"], init_std=c["init_std"], **common(c, n_classes)
    )


def mlp(config: dict, n_classes: int) -> MLP:
    c = config
    hidden = (c["hidden_size"],) * c["layers"]
    return MLP(hidden_sizes=hidden, lr=c["lr"], batch_size=c["batch_size"], **common(c, n_classes))
