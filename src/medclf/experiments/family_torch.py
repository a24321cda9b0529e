"""PyTorch networks as a family of the run lifecycle (medclf.experiments.lifecycle).

The whole split lives in device tensors (medclf.training.torch_engine batches them by index). A
checkpoint holds the model, the optimizer, every RNG state and the history, so a resumed run
continues to the same numbers; the learning-rate schedule depends on the epoch number only and
the augmentation draws from the saved shuffling generator, so both resume exactly too.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from medclf.data.features import inputs_of, make_features
from medclf.errors import ConfigError
from medclf.experiments.selection import finite_or_none
from medclf.experiments.store import environment
from medclf.files import atomic_path
from medclf.model_registry import MODELS
from medclf.training import torch_engine as engine

CHECKPOINT_KEYS = {"config", "model", "optimizer", "rng", "history", "seconds"}


def build_network(config: dict, input_shape: tuple[int, ...], n_outputs: int):
    """The network of a config: input_shape is (n_features,) or (channels, height, width)."""
    if MODELS[config["model"]].inputs != "image":
        from medclf.torch_models import build_torch_model

        return build_torch_model(config, input_shape[0], n_outputs)
    from medclf.torch_models.cnn import SmallCNN
    from medclf.torch_models.resnet import ResNet18, ResNet50

    channels, side = input_shape[0], input_shape[-1]
    if config["model"] == "torch-cnn":
        return SmallCNN(channels, n_outputs, size=side, width=config["width"],
                        dropout=config["dropout"])  # fmt: skip
    return {"torch-resnet18": ResNet18, "torch-resnet50": ResNet50}[config["model"]](
        channels, n_outputs)


def scale_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 (b, C, H, W) -> float32 in [-1, 1], the same numbers as features.to_images."""
    return x.float().div_(127.5).sub_(1)


def save_atomic(path: Path, state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, config: dict) -> dict:
    """The state medclf saved after an epoch; anything else is refused in one line."""
    afresh = "delete it to start the run afresh"
    try:
        state = torch.load(path, weights_only=True)
    except Exception as err:  # truncated, empty or foreign file
        raise ConfigError(f"checkpoint {path} cannot be read ({type(err).__name__}); "
                          f"{afresh}") from err  # fmt: skip
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= set(state):
        raise ConfigError(f"checkpoint {path} is not a checkpoint medclf wrote; {afresh}")
    if state["config"] != config:
        raise ConfigError(f"checkpoint {path} belongs to another config; use another --out or "
                          "delete the checkpoint")  # fmt: skip
    return state


def augmentation(config: dict, dataset_name: str, generator):
    """The batch transform of a config's ``augment`` setting, or None. ``auto`` takes the
    label-safe operations for the dataset (medclf.training.augment.SAFE_AUGMENT)."""
    ops = config.get("augment", "none")
    if ops == "none":
        return None
    from medclf.training.augment import SAFE_AUGMENT, augment

    ops = SAFE_AUGMENT.get(dataset_name, ()) if ops == "auto" else tuple(ops.split("+"))
    return (lambda x: augment(x, ops, generator)) if ops else None


class TorchTrainer:
    checkpoint_file, model_file, best_file = "checkpoint.pt", "model.pt", "best.pt"

    def __init__(self, config: dict, dataset, device: str | None = None,
                 threads: int | None = None):  # fmt: skip
        self.config = config
        self.threads = threads or engine.default_threads(config["batch_size"])
        torch.set_num_threads(self.threads)
        self.device = engine.pick_device(device)
        self.generator = engine.seed_everything(config["seed"])
        self.multi_label = dataset.info.multi_label
        images = MODELS[config["model"]].inputs == "image"
        # images stay uint8 (a quarter of float32's memory) until a batch is formed
        self.input_kind = "image-uint8" if images else MODELS[config["model"]].inputs
        self.prepare = scale_images if images else None
        self.chunk = 1024 if images else 65536  # evaluation batch: bounded by memory
        self.features = f = make_features(dataset, config["test_split"], np.float32,
                                          inputs=self.input_kind)  # fmt: skip
        label_type = torch.float32 if self.multi_label else torch.long
        self.data = {name: torch.from_numpy(getattr(f, name)).to(self.device)
                     for name in ("X_train", "X_val")}  # fmt: skip
        self.data.update({name: torch.from_numpy(getattr(f, name)).to(self.device, label_type)
                          for name in ("y_train", "y_val")})  # fmt: skip
        self.model = build_network(config, f.X_train.shape[1:], dataset.info.n_classes)
        self.eval_options = {"chunk": self.chunk, "prepare": self.prepare}
        self.model.to(self.device)
        self.optimizer = engine.make_optimizer(self.model, config["optimizer"], config["lr"],
                                               config["l2"])  # fmt: skip
        self.transform = augmentation(config, dataset.name, self.generator)
        self.history: list[dict] = []

    def resume(self, path: Path) -> None:
        state = load_checkpoint(path, self.config)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise ConfigError(f"checkpoint {path} does not fit this model ({type(err).__name__})"
                              "; delete it to start the run afresh") from err  # fmt: skip
        engine.set_rng_states(state["rng"], self.generator)
        self.history = state["history"]

    def lr_at(self, epoch: int) -> float:
        from medclf.training.schedules import lr_at

        c = self.config
        return lr_at(epoch - 1, c["epochs"], c["lr"], c.get("schedule", "constant"))

    def fit(self, on_epoch, progress, train_acc: bool) -> None:
        c = self.config
        schedule = self.lr_at if c.get("schedule", "constant") != "constant" else None
        engine.fit(self.model, self.optimizer, self.data, c["epochs"], c["batch_size"],
                   self.generator, history=self.history, train_acc=train_acc,
                   callback=on_epoch, progress=progress, lr_at=schedule,
                   transform=self.transform, **self.eval_options)  # fmt: skip

    def inputs(self, images: np.ndarray) -> np.ndarray:
        return inputs_of(images, self.input_kind, np.float32)

    def scores(self, model, X) -> np.ndarray:
        X = torch.from_numpy(X).to(self.device)
        return engine.scores(model, X, self.multi_label, **self.eval_options)

    def accuracy(self, model, X, y) -> float:
        label_type = torch.float32 if self.multi_label else torch.long
        y = torch.from_numpy(y).to(self.device, label_type)
        return engine.evaluate(model, torch.from_numpy(X).to(self.device), y,
                               **self.eval_options)[1]  # fmt: skip

    def save_checkpoint(self, path: Path) -> None:
        save_atomic(path, {
            "config": self.config, "epoch": self.history[-1]["epoch"],
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": engine.rng_states(self.generator), "history": self.history,
            "seconds": sum(r["seconds"] for r in self.history),
        })  # fmt: skip

    def save_best(self, path: Path) -> None:
        save_atomic(path, self.model.state_dict())

    def load_best(self, path: Path):
        best = copy.deepcopy(self.model)
        try:
            best.load_state_dict(torch.load(path, weights_only=True))
        except Exception as err:  # cut short, foreign, a pickle payload (never executed)
            raise ConfigError(
                f"{path} is not a model that medclf saved ({type(err).__name__}); delete it and "
                "the checkpoint to start the run afresh"
            ) from err
        return best

    def save_model(self, model, path: Path) -> None:
        save_atomic(path, model.state_dict())

    def extra_metrics(self, model) -> dict:
        f = self.features
        label_type = torch.float32 if self.multi_label else torch.long
        X = torch.from_numpy(f.X_test).to(self.device)
        y = torch.from_numpy(f.y_test).to(self.device, label_type)
        return {"test_loss": finite_or_none(engine.evaluate(model, X, y, **self.eval_options)[0])}

    def environment(self) -> dict:
        return environment(threads=self.threads, device=str(self.device))
