"""The from-scratch NumPy models as a family of the run lifecycle (medclf.experiments.lifecycle).

A checkpoint is the model saved with its history and shuffling RNG state, so a resumed run
continues to bit-equal weights. The perceptron has no probabilities: its scores are the softmax
of its decision values (same argmax, uncalibrated), so that AUC can rank its examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclf.data.features import inputs_of, make_features
from medclf.experiments.store import environment
from medclf.model_registry import MODELS


def build_numpy_model(config: dict, n_classes: int):
    from medclf.numpy_models import MLP, LogisticRegression, Perceptron

    common = {"n_classes": n_classes, "dtype": config["dtype"], "seed": config["seed"]}
    if config["model"] == "numpy-perceptron":
        return Perceptron(**common)
    if config["model"] == "numpy-logreg":
        return LogisticRegression(lr=config["lr"], batch_size=config["batch_size"],
                                  init_std=config["init_std"], **common)  # fmt: skip
    return MLP(hidden_sizes=(config["hidden_size"],) * config["layers"], lr=config["lr"],
               batch_size=config["batch_size"], **common)  # fmt: skip


class NumpyTrainer:
    checkpoint_file, model_file, best_file = "checkpoint.npz", "model.npz", "best.npz"

    def __init__(self, config: dict, dataset):
        self.config = config
        self.dtype = np.float64 if config["dtype"] == "float64" else np.float32
        self.input_kind = MODELS[config["model"]].inputs
        self.features = make_features(dataset, config["test_split"], self.dtype,
                                      inputs=self.input_kind)  # fmt: skip
        self.model = build_numpy_model(config, dataset.info.n_classes)
        self.model.history_ = []

    @property
    def history(self) -> list[dict]:
        return self.model.history_

    def resume(self, path: Path) -> None:
        from medclf.numpy_models import load_model

        self.model = load_model(path)
        if (best := path.with_name(self.best_file)).exists():
            self.load_best(best)  # refused now, not after the remaining epochs

    def fit(self, on_epoch, progress, train_acc: bool) -> None:
        f = self.features
        left = self.config["epochs"] - len(self.history)
        if left > 0:
            self.model.fit(f.X_train, f.y_train, left, f.X_val, f.y_val,
                           callback=lambda m, rec: on_epoch(rec), progress=progress,
                           train_acc=train_acc)  # fmt: skip

    def inputs(self, images: np.ndarray) -> np.ndarray:
        return inputs_of(images, self.input_kind, self.dtype)

    def scores(self, model, X) -> np.ndarray:
        from medclf.numpy_models.base import softmax

        return softmax(model._scores(X))

    def accuracy(self, model, X, y) -> float:
        return model.score(X, y)

    def save_checkpoint(self, path: Path) -> None:
        self.model.save(path, training_state=True)

    def save_best(self, path: Path) -> None:
        self.model.save(path)

    def load_best(self, path: Path):
        from medclf.errors import DataError
        from medclf.experiments.selection import damaged_best
        from medclf.numpy_models import load_model

        try:
            return load_model(path)
        except DataError:
            raise damaged_best(path, self.checkpoint_file, "damaged or foreign") from None

    def save_model(self, model, path: Path) -> None:
        model.save(path)

    def extra_metrics(self, model) -> dict:
        return {}

    def environment(self) -> dict:
        return environment(threads=1, device="cpu")
