"""The from-scratch NumPy models as a family of the run lifecycle (medclf.run.lifecycle).

A checkpoint is the model saved with its history and shuffling RNG state, so a resumed run
continues to bit-equal weights. The perceptron has no probabilities: its scores are the softmax
of its decision values (same argmax, uncalibrated), so that AUC can rank its examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medclf.data.features import inputs_of, make_features, to_features
from medclf.errors import DataError
from medclf.models.numpy_models import MLP, load_model
from medclf.models.numpy_models.base import softmax
from medclf.models.registry import MODELS, builder
from medclf.run.family import Family, missing_model
from medclf.run.folder import BEST_NPZ, CHECKPOINT_NPZ, MODEL_NPZ, environment, kept
from medclf.run.onnx_graph import OPSET, flat_nodes, input_info, output_info, serialise
from medclf.run.selection import damaged_best


def build_numpy_model(config: dict, n_classes: int):
    """The model of a config (its registry entry's builder)."""
    return builder(config["model"])(config, n_classes)


class NumpyTrainer(Family):
    checkpoint_file, model_file, best_file = CHECKPOINT_NPZ, MODEL_NPZ, BEST_NPZ

    def __init__(self, config: dict, dataset):
        self.config = config
        self.dtype = np.float64 if config["dtype"] == "float64" else np.float32
        self.input_kind = MODELS[config["model"]].inputs
        self.features = make_features(
            dataset, config["test_split"], self.dtype, inputs=self.input_kind
        )
        self.model = build_numpy_model(config, dataset.info.n_classes)
        self.model.history_ = []

    @property
    def history(self) -> list[dict]:
        return self.model.history_

    def resume(self, path: Path) -> None:
        self.model = load_model(path)
        if (best := path.with_name(self.best_file)).exists():
            self.load_best(best)  # refused now, not after the remaining epochs

    def fit(self, on_epoch, progress, train_acc: bool) -> None:
        f = self.features
        left = self.config["epochs"] - len(self.history)
        if left > 0:
            self.model.fit(
                f.X_train,
                f.y_train,
                left,
                f.X_val,
                f.y_val,
                callback=lambda m, rec: on_epoch(rec, softmax(m.val_scores_)),
                progress=progress,
                train_acc=train_acc,
            )

    def inputs(self, images: np.ndarray) -> np.ndarray:
        return inputs_of(images, self.input_kind, self.dtype)

    def scores(self, model, X) -> np.ndarray:
        return softmax(model.class_scores(X))

    def accuracy(self, model, X, y) -> float:
        return model.score(X, y)

    def save_checkpoint(self, path: Path) -> None:
        self.model.save(path, training_state=True)

    def save_best(self, path: Path) -> None:
        self.model.save(path)

    def load_best(self, path: Path):
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

    @classmethod
    def outputs(cls, run_dir: Path, config: dict, metrics: dict, images):
        model, bias = saved_model(run_dir, config, len(metrics["class_names"]), images.shape[1:])
        X = to_features(images, model.np_dtype, bias=bias)
        logits = model.class_scores(X).astype(np.float64)
        return ("logits" if model.has_proba else "decision"), logits

    @classmethod
    def onnx_graph(cls, run_dir: Path, config: dict, metrics: dict) -> bytes:
        return numpy_graph(run_dir, config, metrics)

    @classmethod
    def network(cls, run_dir: Path, config: dict, metrics: dict):
        """The same numbers as torch layers: Linear(s) with ReLU between (the linear models'
        constant-1 input column is their bias, kept as a weight on that column)."""
        import torch

        model, _ = saved_model(run_dir, config, len(metrics["class_names"]), metrics["image_shape"])
        if isinstance(model, MLP):
            layers = list(zip(model.weights_, model.biases_, strict=True))
        else:
            layers = [(model.W_, None)]
        modules = []
        for W, b in layers:
            linear = torch.nn.Linear(W.shape[1], W.shape[0], bias=b is not None).double()
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.asarray(W, np.float64)))
                if b is not None:
                    linear.bias.copy_(torch.from_numpy(np.asarray(b, np.float64)))
            modules += [linear, torch.nn.ReLU()]
        return torch.nn.Sequential(*modules[:-1]).eval()


def saved_model(run_dir: Path, config: dict, n_classes: int, image_shape):
    """The run's model.npz, checked against its config and metrics.json (loaded once while the
    file and the settings stay the same)."""
    path = run_dir / NumpyTrainer.model_file
    if not path.is_file():
        raise missing_model(run_dir, NumpyTrainer.model_file)
    settings = json.dumps(config, sort_keys=True)
    shape = tuple(image_shape)
    return kept(
        path, lambda: load_checked(path, config, n_classes, shape), settings, n_classes, shape
    )


def load_checked(path: Path, config: dict, n_classes: int, image_shape):
    model = load_model(path)
    bias = MODELS[config["model"]].inputs == "flat+bias"
    n_features = int(np.prod(image_shape)) + bias
    if model.kind != config["model"]:
        raise DataError(
            f"{path} holds a {model.kind}, but config.json says {config['model']}; "
            "train the run again"
        )
    if model.n_classes_ != n_classes:
        raise DataError(
            f"{path} gives {model.n_classes_} classes, but metrics.json names "
            f"{n_classes}; train the run again"
        )
    if model.n_features_ != n_features:
        raise DataError(
            f"{path} takes {model.n_features_} inputs, but metrics.json's image "
            f"shape gives {n_features}; train the run again"
        )
    return model, bias


def numpy_graph(run_dir: Path, config: dict, metrics: dict) -> bytes:
    """The NumPy model as MatMul/Add(/Relu) layers and a Softmax, in its own dtype. The linear
    models' constant-1 column becomes the last column of W added as a bias (same numbers)."""
    from onnx import helper, numpy_helper

    n_classes = len(metrics["class_names"])
    model, _ = saved_model(run_dir, config, n_classes, metrics["image_shape"])
    dtype = model.np_dtype
    n_pixels = int(np.prod(metrics["image_shape"]))
    if isinstance(model, MLP):
        layers = list(zip(model.weights_, model.biases_, strict=True))
    else:
        layers = [(model.W_[:, :-1], model.W_[:, -1])]
    nodes, inits = flat_nodes(n_pixels, dtype, "a0")
    for l, (W, b) in enumerate(layers):
        inits += [
            numpy_helper.from_array(np.ascontiguousarray(W.T, dtype), f"W{l}"),
            numpy_helper.from_array(np.asarray(b, dtype), f"b{l}"),
        ]
        last = l == len(layers) - 1
        nodes += [
            helper.make_node("MatMul", [f"a{l}", f"W{l}"], [f"m{l}"]),
            helper.make_node("Add", [f"m{l}", f"b{l}"], ["logits" if last else f"z{l}"]),
        ]
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{l}"], [f"a{l + 1}"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        nodes, config["model"], [input_info(metrics)], [output_info(n_classes, elem)], inits
    )
    return serialise(graph, [helper.make_opsetid("", OPSET)])
