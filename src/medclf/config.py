"""Defaults of every trainable model, held in one place (the study's values, protocol.md).

A run's config is a flat dict: ``{"model": name, **COMMON, **DEFAULTS[name], **overrides}``.
Only keys a model uses appear in its config, so equal configs mean equal runs (the reproduce
runner keys runs by a hash of it).
"""

from __future__ import annotations

from medclf.errors import ConfigError

COMMON = {
    "dataset": "octmnist",
    "test_split": "auto",  # OCTMNIST: the study's 529-image subset; others: official
    "seed": 42,  # the study seeds every generator with 42
    "train_fraction": 1.0,  # < 1 trains and validates on the first part of each split (--quick)
}

DEFAULTS = {
    # Q1: from scratch, one example at a time, float64 for fidelity to the study.
    "numpy-perceptron": {"epochs": 20, "dtype": "float64"},
    "numpy-logreg": {"epochs": 20, "lr": 0.01, "batch_size": 1, "dtype": "float64",
                     "init_std": 0.0},  # the study starts from W = 0
    "numpy-mlp": {"epochs": 20, "lr": 0.001, "hidden_size": 200, "layers": 1, "batch_size": 1,
                  "dtype": "float64"},
    # Q2: PyTorch; the feed-forward defaults are Table 1 of the assignment.
    "torch-logreg": {"epochs": 20, "lr": 0.01, "batch_size": 16, "l2": 0.0, "optimizer": "sgd"},
    "torch-ffn": {"epochs": 20, "lr": 0.1, "hidden_size": 200, "layers": 2, "dropout": 0.0,
                  "batch_size": 16, "activation": "relu", "l2": 0.0, "optimizer": "sgd"},
}  # fmt: skip

MODELS = tuple(DEFAULTS)
ACTIVATIONS = ("relu", "tanh")
OPTIMIZERS = ("sgd", "adam")


def make_config(model: str, **overrides) -> dict:
    """Full config of a run; ``None`` overrides keep the default. Checks every value."""
    if model not in DEFAULTS:
        raise ConfigError(f"unknown model '{model}'; choose one of {', '.join(MODELS)}")
    config = {"model": model, **COMMON, **DEFAULTS[model]}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in config:
            raise ConfigError(f"{model} has no setting '{key}'; its settings are "
                              f"{', '.join(k for k in config if k != 'model')}")  # fmt: skip
        config[key] = value
    check_config(config)
    return config


def check_config(c: dict) -> None:
    rules = [
        ("epochs", lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1"),
        ("lr", lambda v: v > 0, "must be > 0"),
        ("batch_size", lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1"),
        ("hidden_size", lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1"),
        ("layers", lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1"),
        ("dropout", lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("l2", lambda v: v >= 0, "must be >= 0"),
        ("init_std", lambda v: v >= 0, "must be >= 0"),
        ("train_fraction", lambda v: 0 < v <= 1, "must be in (0, 1]"),
        ("activation", lambda v: v in ACTIVATIONS, f"must be one of {ACTIVATIONS}"),
        ("optimizer", lambda v: v in OPTIMIZERS, f"must be one of {OPTIMIZERS}"),
        ("dtype", lambda v: v in ("float32", "float64"), "must be float32 or float64"),
        ("test_split", lambda v: v in ("auto", "study", "official"),
         "must be auto, study or official"),
    ]  # fmt: skip
    for key, ok, rule in rules:
        if key in c and not ok(c[key]):
            raise ConfigError(f"{key} == {c[key]!r}, {rule}")
