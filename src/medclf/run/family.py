"""The one interface of a model family (Family): how the run lifecycle trains its models, and
how predict and export use the model a finished run saved. medclf.run.families maps each
registry family name (medclf.models.registry.ModelSpec.family) to its Family.

Training: one instance per run, built from the config and the dataset (its shape and classes);
``fit`` trains epoch by epoch and calls the lifecycle's ``on_epoch(record, val_scores) -> stop``
after each, with the validation probabilities (as ``scores`` gives them) of the one pass that
gave the record's val_loss and val_acc: validation is scored once per epoch.
A finished run: the class methods read RUN_DIR/``model_file``, give its outputs for images and
build its ONNX graph; a file that does not fit the run is one DataError.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from medclf.errors import ConfigError, DataError

# What ``outputs`` returns beside its values: probabilities already, logits (softmax or sigmoid
# make them probabilities), or decision values that are no probabilities (the perceptron).
OUTPUT_KINDS = ("proba", "logits", "decision")


class Family(ABC):
    checkpoint_file: ClassVar[str | None] = None  # the last epoch (None: no checkpoint)
    best_file: ClassVar[str | None] = None  # the best epoch so far (None: not kept)
    model_file: ClassVar[str]  # the selected model
    options: ClassVar[tuple[str, ...]] = ()  # keyword options beyond config and dataset

    features: object  # medclf.data.features.Features of its inputs
    history: list[dict]  # the epoch records so far
    model: object  # the live model

    @abstractmethod
    def __init__(self, config: dict, dataset, **options): ...

    @classmethod
    def stack_key(cls, config: dict) -> str | None:
        """Runs whose configs share a key may be fitted as one (``fit_stacked``); None: alone."""
        return None

    @classmethod
    def can_stack(cls, trainers: list) -> bool:
        """Whether these trainers, as built and resumed, can take ``fit_stacked``."""
        return False

    @classmethod
    def fit_stacked(cls, trainers: list, on_epochs: list, progress, train_acc: bool) -> None:
        """``fit`` of every trainer at once, ``on_epochs[j]`` after each epoch of trainer j."""
        raise NotImplementedError

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint (refuse a foreign one)."""
        raise ConfigError(f"{path}: {type(self).__name__} keeps no checkpoint to resume from")

    @abstractmethod
    def fit(self, on_epoch, progress, train_acc: bool) -> None:
        """Train the remaining epochs; ``on_epoch(record, val_scores)`` after each, True: stop."""

    @abstractmethod
    def inputs(self, images: np.ndarray) -> np.ndarray:
        """The model's inputs from uint8 images."""

    @abstractmethod
    def scores(self, model, X) -> np.ndarray:
        """Probabilities (n, classes) of ``model`` for inputs ``X``."""

    @abstractmethod
    def accuracy(self, model, X, y) -> float: ...

    def save_checkpoint(self, path: Path) -> None:
        """Only where ``checkpoint_file`` names one (the lifecycle passes None otherwise)."""
        return None

    def save_best(self, path: Path) -> None:
        """Only where ``best_file`` names one (the lifecycle passes None otherwise)."""
        return None

    def load_best(self, path: Path):
        return self.model

    @abstractmethod
    def save_model(self, model, path: Path) -> None: ...

    def extra_metrics(self, model) -> dict:
        return {}

    @abstractmethod
    def environment(self) -> dict:
        """env.json: machine, versions, threads, device."""

    @classmethod
    @abstractmethod
    def outputs(cls, run_dir: Path, config: dict, metrics: dict, images) -> tuple[str, np.ndarray]:
        """(kind, values): the saved model's outputs for uint8 images, kind in OUTPUT_KINDS."""

    @classmethod
    @abstractmethod
    def onnx_graph(cls, run_dir: Path, config: dict, metrics: dict) -> bytes:
        """The saved model as one ONNX graph from uint8 ``images`` to ``probabilities``
        (medclf.run.onnx_graph); a model with no exact graph raises ConfigError."""

    @classmethod
    def network(cls, run_dir: Path, config: dict, metrics: dict):
        """The saved model as a float64 ``torch.nn.Module`` from its inputs (``inputs_of``
        with its registry entry's ``inputs``) to its logits or decision values, for gradient
        attribution (medclf.run.explain); a family without gradients raises ConfigError."""
        raise ConfigError(f"{config['model']} has no gradients to attribute")


def missing_model(run_dir: Path, name: str) -> DataError:
    return DataError(f"{run_dir} has no {name}; train the run again with 'medclf train'")
