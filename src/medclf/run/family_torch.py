"""PyTorch networks as a family of the run lifecycle (medclf.run.lifecycle).

The whole split lives in device tensors (medclf.models.training.torch_engine batches them by
index). A
checkpoint holds the model, the optimizer, every RNG state and the history, so a resumed run
continues to the same numbers; the learning-rate schedule depends on the epoch number only and
the augmentation draws from the saved shuffling generator, so both resume exactly too.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from medclf.data.features import (
    Features,
    inputs_of,
    make_features,
    resolve_test_split,
    select_test,
)
from medclf.errors import ConfigError, DataError
from medclf.files import atomic_path
from medclf.metrics import MULTI_LABEL
from medclf.models.config import PRECISIONS
from medclf.models.registry import MODELS, builder
from medclf.models.training import torch_engine as engine
from medclf.models.training.augment import SAFE_AUGMENT, augment
from medclf.models.training.fused_sgd import fusable
from medclf.models.training.precision import bf16_support, resolve
from medclf.models.training.schedules import lr_at
from medclf.run.family import Family, missing_model
from medclf.run.folder import BEST_PT, CHECKPOINT_PT, CONFIG, MODEL_PT, damaged, environment, kept
from medclf.run.onnx_graph import OPSET
from medclf.run.selection import damaged_best, finite_or_none

# The largest batch stacked runs take: above it a step's GEMMs dominate its overhead, and one
# stacked pass costs about what its runs cost one by one (benchmarks/bench_study_steps.py:
# 1.11x for three torch-ffn runs at batch 256).
STACK_MAX_BATCH = 64
TRAINED_PRECISIONS = tuple(p for p in PRECISIONS if p != "auto")  # what a run ran in
CHECKPOINT_KEYS = {"config", "model", "optimizer", "rng", "history", "seconds"}


def build_network(config: dict, input_shape: tuple[int, ...], n_outputs: int):
    """The network of a config (its registry entry's builder): input_shape is (n_features,) or
    (channels, height, width)."""
    return builder(config["model"])(config, tuple(input_shape), n_outputs)


def scale_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 (b, C, H, W) -> float32 in [-1, 1], the same numbers as features.to_images."""
    return x.float().div_(127.5).sub_(1)


def network_inputs(images: np.ndarray, inputs: str) -> np.ndarray:
    """A registry entry's inputs of uint8 samples: ``volume`` (n, D, H, W) -> (n, 1, D, H, W)
    in [-1, 1] as images are (``volume-uint8``: left uint8); else medclf.data.features'."""
    if not inputs.startswith("volume"):
        return inputs_of(images, inputs, np.float32)
    X = np.ascontiguousarray(images[:, None])
    return X if inputs == "volume-uint8" else scale_images(torch.from_numpy(X)).numpy()


def network_features(dataset, test_split: str, inputs: str) -> Features:
    """make_features for every kind of network input, volumes included."""
    if not inputs.startswith("volume"):
        return make_features(dataset, test_split, np.float32, inputs=inputs)
    test = select_test(dataset, test_split)
    return Features(
        network_inputs(dataset.train.images, inputs),
        dataset.train.labels,
        network_inputs(dataset.val.images, inputs),
        dataset.val.labels,
        network_inputs(test.images, inputs),
        test.labels,
        resolve_test_split(dataset, test_split),
    )


def save_atomic(path: Path, state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_weights(path: Path):
    """torch.load that never unpickles code (weights_only) and prints nothing: a foreign
    pickle's protocol warning would add a second line to the one-line refusal."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, weights_only=True, map_location="cpu")


def load_checkpoint(path: Path, config: dict) -> dict:
    """The state medclf saved after an epoch; anything else is refused in one line."""
    afresh = "delete it to start the run afresh"
    try:
        state = load_weights(path)
    except Exception as err:  # truncated, empty or foreign file
        raise ConfigError(
            f"checkpoint {path} cannot be read ({type(err).__name__}); {afresh}"
        ) from err
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= set(state):
        raise ConfigError(f"checkpoint {path} is not a checkpoint medclf wrote; {afresh}")
    if state["config"] != config:
        raise ConfigError(
            f"checkpoint {path} belongs to another config; use another --out or "
            "delete the checkpoint"
        )
    return state


def augmentation(config: dict, dataset_name: str, generator):
    """The batch transform of a config's ``augment`` setting, or None. ``auto`` takes the
    label-safe operations for the dataset (medclf.models.training.augment.SAFE_AUGMENT),
    ``flip`` its label-safe flips only, ``crop`` the random crop."""
    setting = config.get("augment", "none")
    safe = SAFE_AUGMENT.get(dataset_name, ())
    named = {
        "auto": safe,
        "flip": tuple(op for op in safe if op.endswith("flip")),
        "crop": ("crop",),
    }
    ops = tuple(op for part in setting.split("+") if part != "none" for op in named[part])
    return (lambda x: augment(x, ops, generator)) if ops else None


class TorchTrainer(Family):
    checkpoint_file, model_file, best_file = CHECKPOINT_PT, MODEL_PT, BEST_PT
    options = ("device", "threads")

    def __init__(
        self, config: dict, dataset, device: str | None = None, threads: int | None = None
    ):
        self.config = config
        self.threads = threads or engine.default_threads(config["batch_size"])
        torch.set_num_threads(self.threads)
        self.device = engine.pick_device(device)
        # checked before anything is written; auto resolved on this device (env.json says)
        self.precision = resolve(config.get("precision", "fp32"), self.device)
        self.generator = engine.seed_everything(config["seed"])
        self.multi_label = dataset.info.multi_label
        inputs = MODELS[config["model"]].inputs
        images = inputs in ("image", "volume")
        # images and volumes stay uint8 (a quarter of float32's memory) until a batch is formed
        self.input_kind = f"{inputs}-uint8" if images else inputs
        self.prepare = scale_images if images else None
        # evaluation batch: bounded by memory (a 28^3 volume is 28 images)
        self.chunk = (32 if inputs == "volume" else 1024) if images else 65536
        self.features = f = network_features(dataset, config["test_split"], self.input_kind)
        label_type = torch.float32 if self.multi_label else torch.long
        self.data = {
            name: torch.from_numpy(getattr(f, name)).to(self.device)
            for name in ("X_train", "X_val")
        }
        self.data.update(
            {
                name: torch.from_numpy(getattr(f, name)).to(self.device, label_type)
                for name in ("y_train", "y_val")
            }
        )
        self.model = build_network(config, f.X_train.shape[1:], dataset.info.n_classes)
        # bf16 speeds the epochs (training and the validation that selects); the kept model
        # is scored in float32, as predict and its ONNX graph compute it
        self.eval_options = {"chunk": self.chunk, "prepare": self.prepare}
        self.model.to(self.device)
        # torch.compile's wrapper shares the model's parameters; it trains, the model is saved
        self.forward = torch.compile(self.model) if config.get("compile") else None
        self.optimizer = engine.make_optimizer(
            self.model, config["optimizer"], config["lr"], config["l2"]
        )
        self.transform = augmentation(config, dataset.name, self.generator)
        self.history: list[dict] = []
        # where the global stream dropout draws from stands now: a stacked fit gives each run
        # its own copy of it
        self.dropout_rng = torch.get_rng_state()
        self.stacked = 1  # how many runs fit_stacked trained as one with this one

    def resume(self, path: Path) -> None:
        state = load_checkpoint(path, self.config)
        # (a checkpoint older than the key trained in its config's precision, fp32 or bf16)
        before = state.get("precision", self.precision)
        if not isinstance(before, str) or before not in TRAINED_PRECISIONS:
            raise ConfigError(
                f"checkpoint {path} is not a checkpoint medclf wrote (its precision); "
                "delete it to start the run afresh"
            )
        if before != self.precision:
            # the same config (checked above), so precision auto, resolved on other hardware:
            # the epochs left would change arithmetic
            asked = self.config.get("precision", "fp32")
            raise ConfigError(
                f"checkpoint {path} was trained in {before}, but precision {asked} is "
                f"{self.precision} here; continue it on the hardware that started it, or "
                "delete it to start the run afresh"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise ConfigError(
                f"checkpoint {path} does not fit this model ({type(err).__name__})"
                "; delete it to start the run afresh"
            ) from err
        engine.set_rng_states(state["rng"], self.generator)
        self.dropout_rng = torch.get_rng_state()
        self.history = state["history"]
        if (best := path.with_name(self.best_file)).exists():
            self.load_best(best)  # refused now, not after the remaining epochs

    def epoch_lr(self, epoch: int) -> float:
        """The learning rate fit trains an epoch with (the optimizer's own where constant)."""
        if self.config.get("schedule", "constant") == "constant":
            return self.optimizer.param_groups[0]["lr"]
        return self.lr_at(epoch)

    def lr_at(self, epoch: int) -> float:
        c = self.config
        return lr_at(epoch - 1, c["epochs"], c["lr"], c.get("schedule", "constant"))

    def fit(self, on_epoch, progress, train_acc: bool) -> None:
        c = self.config
        schedule = self.lr_at if c.get("schedule", "constant") != "constant" else None
        engine.fit(
            self.model,
            self.optimizer,
            self.data,
            c["epochs"],
            c["batch_size"],
            self.generator,
            history=self.history,
            train_acc=train_acc,
            callback=lambda rec, logits: on_epoch(
                rec, engine.probabilities(logits, self.multi_label)
            ),
            progress=progress,
            lr_at=schedule,
            transform=self.transform,
            forward=self.forward,
            precision=self.precision,
            **self.eval_options,
        )

    @classmethod
    def stack_key(cls, config: dict) -> str | None:
        """Runs of plain SGD at small batches that differ only in their registry entry's
        ``stack`` settings: where a step's overhead outweighs its GEMMs, so that k runs in
        one pass cost less than k passes (docs/benchmarks.md, "The whole study")."""
        stack = MODELS[config["model"]].stack
        plain = (
            config.get("optimizer") == "sgd"
            and config.get("precision", "fp32") == "fp32"
            and not config.get("compile")
            and config.get("augment", "none") == "none"
        )
        if not stack or not plain or config.get("batch_size", 0) > STACK_MAX_BATCH:
            return None
        return json.dumps({k: v for k, v in config.items() if k not in stack}, sort_keys=True)

    @classmethod
    def can_stack(cls, trainers: list) -> bool:
        """Same key, same fused step, same epoch and shuffling state (the same batches), on
        the CPU (the stack's per-run settings and dropout streams are CPU tensors)."""
        first = trainers[0]
        key, order = cls.stack_key(first.config), first.generator.get_state()
        return key is not None and all(
            cls.stack_key(t.config) == key
            and t.device.type == "cpu"
            and fusable(t.model, t.optimizer)
            and not t.multi_label
            and t.transform is None
            and t.forward is None
            and len(t.history) == len(first.history)
            and torch.equal(t.generator.get_state(), order)
            for t in trainers
        )

    @classmethod
    def fit_stacked(cls, trainers: list, on_epochs: list, progress, train_acc: bool) -> None:
        """The runs' fits as one (medclf.models.training.stacked_sgd): each run keeps its
        learning rate (and schedule), weight decay and dropout stream; before its epoch ends
        its shuffling and dropout states are its own again, so its checkpoint resumes alone."""
        from medclf.models.training import stacked_sgd

        first, c = trainers[0], trainers[0].config
        for t in trainers:
            t.stacked = len(trainers)
        dtype = next(first.model.parameters()).dtype
        stack = stacked_sgd.Stack([t.model for t in trainers])
        streams = [torch.Generator() for _ in trainers]
        for stream, t in zip(streams, trainers, strict=True):
            stream.set_state(t.dropout_rng)
        wds = torch.tensor([t.config["l2"] for t in trainers], dtype=dtype)

        def lrs_at(epoch):
            return torch.tensor([t.epoch_lr(epoch) for t in trainers], dtype=dtype)

        def callback(j):
            def end_epoch(rec, logits):
                t = trainers[j]
                t.generator.set_state(first.generator.get_state())
                torch.set_rng_state(streams[j].get_state())
                for group in t.optimizer.param_groups:
                    group["lr"] = t.epoch_lr(rec["epoch"])
                return on_epochs[j](rec, engine.probabilities(logits, t.multi_label))

            return end_epoch

        stacked_sgd.fit(
            stack,
            first.data,
            c["epochs"],
            c["batch_size"],
            first.generator,
            [t.history for t in trainers],
            lrs_at,
            wds,
            streams,
            [callback(j) for j in range(len(trainers))],
            train_acc,
            progress,
            first.chunk,
        )

    def inputs(self, images: np.ndarray) -> np.ndarray:
        return network_inputs(images, self.input_kind)

    def scores(self, model, X) -> np.ndarray:
        X = torch.from_numpy(X).to(self.device)
        return engine.scores(model, X, self.multi_label, **self.eval_options)

    def accuracy(self, model, X, y) -> float:
        label_type = torch.float32 if self.multi_label else torch.long
        y = torch.from_numpy(y).to(self.device, label_type)
        return engine.evaluate(model, torch.from_numpy(X).to(self.device), y, **self.eval_options)[
            1
        ]

    def save_checkpoint(self, path: Path) -> None:
        save_atomic(
            path,
            {
                "config": self.config,
                "epoch": self.history[-1]["epoch"],
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": engine.rng_states(self.generator),
                "history": self.history,
                "seconds": sum(r["seconds"] for r in self.history),
                "precision": self.precision,
            },
        )

    def save_best(self, path: Path) -> None:
        save_atomic(path, self.model.state_dict())

    def load_best(self, path: Path):
        best = copy.deepcopy(self.model)
        try:
            best.load_state_dict(load_weights(path))
        except OSError as err:
            if err.errno is not None:
                raise  # an environment fault: the CLI names it
            raise damaged_best(path, self.checkpoint_file, type(err).__name__) from None
        except Exception as err:  # cut short, a pickle, weights of another model
            raise damaged_best(path, self.checkpoint_file, type(err).__name__) from None
        return best

    def save_model(self, model, path: Path) -> None:
        save_atomic(path, model.state_dict())

    def extra_metrics(self, model) -> dict:
        f = self.features
        label_type = torch.float32 if self.multi_label else torch.long
        X = torch.from_numpy(f.X_test).to(self.device)
        y = torch.from_numpy(f.y_test).to(self.device, label_type)
        loss = finite_or_none(engine.evaluate(model, X, y, **self.eval_options)[0])
        # the precision trained in, beside the results (precision auto differs by machine)
        trained = {"precision": self.precision} if "precision" in self.config else {}
        return {"test_loss": loss, **trained}

    def environment(self) -> dict:
        return environment(
            threads=self.threads,
            device=str(self.device),
            precision=self.precision,
            bf16_hardware=bf16_support(self.device),
            compile=bool(self.config.get("compile")),
            **({"stacked": self.stacked} if self.stacked > 1 else {}),
        )

    @classmethod
    def outputs(cls, run_dir: Path, config: dict, metrics: dict, images):
        inputs = MODELS[config["model"]].inputs
        X = torch.from_numpy(network_inputs(images, inputs))
        model = saved_network(run_dir, config, len(metrics["class_names"]), X.shape[1:])
        step = 32 if inputs == "volume" else 1024
        with torch.no_grad():
            logits = torch.cat([model(X[i : i + step]) for i in range(0, len(X), step)])
        return "logits", logits.double().numpy()

    @classmethod
    def onnx_graph(cls, run_dir: Path, config: dict, metrics: dict) -> bytes:
        return torch_graph(run_dir, config, metrics)

    @classmethod
    def network(cls, run_dir: Path, config: dict, metrics: dict):
        kind = MODELS[config["model"]].inputs
        probe = inputs_of(np.zeros((1, *metrics["image_shape"]), np.uint8), kind, np.float32)
        model = saved_network(run_dir, config, len(metrics["class_names"]), probe.shape[1:])
        return copy.deepcopy(model).double()  # a copy: the kept model stays float32


def saved_network(run_dir: Path, config: dict, n_classes: int, input_shape):
    """The run's model.pt in its network, checked against config.json and metrics.json; on
    the CPU, in eval mode. Loaded once while the file and the settings stay the same."""
    path = run_dir / TorchTrainer.model_file
    if not path.is_file():
        raise missing_model(run_dir, TorchTrainer.model_file)
    settings = json.dumps(config, sort_keys=True)
    shape = tuple(input_shape)
    return kept(
        path, lambda: load_network(path, config, n_classes, shape), settings, n_classes, shape
    )


def load_network(path: Path, config: dict, n_classes: int, input_shape):
    run_dir = path.parent
    try:
        state = load_weights(path)  # never unpickles code
    except OSError as err:
        if err.errno is not None:
            raise  # an environment fault: the CLI names it
        state = None
    except Exception:  # random bytes, cut short, a pickle of something else
        state = None
    if not (
        isinstance(state, dict)
        and state
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise DataError(
            f"{path} is not a model file that medclf wrote (unreadable, cut short "
            "or not a state dict); train the run again"
        )
    try:
        model = build_network(config, input_shape, n_classes)
    except (KeyError, TypeError, ValueError) as err:
        raise damaged(run_dir / CONFIG, f"no valid {err}") from err
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    out = list(want)[-1]  # the output layer's bias: one entry per class
    if out in got and got[out] != want[out]:
        raise DataError(
            f"{path} gives {got[out][0] if got[out] else '?'} classes, but "
            f"metrics.json names {n_classes}; train the run again"
        )
    bad = next((k for k in sorted({*want, *got}) if want.get(k) != got.get(k)), None)
    if bad is not None:
        raise DataError(
            f"{path} does not fit config.json: '{bad}' has shape {got.get(bad)}, "
            f"the config needs {want.get(bad)}; train the run again"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def torch_graph(run_dir: Path, config: dict, metrics: dict) -> bytes:
    """The network wrapped with its input scaling and its softmax/sigmoid, exported with
    torch.onnx's TorchScript exporter (dynamo=False: no onnxscript needed)."""
    shape, n_classes = metrics["image_shape"], len(metrics["class_names"])
    probe = np.zeros((1, *shape), np.uint8)
    inputs = MODELS[config["model"]].inputs
    input_shape = network_inputs(probe, inputs).shape[1:]
    network = saved_network(run_dir, config, n_classes, input_shape)
    multi_label = metrics.get("task") == MULTI_LABEL
    wrapped = Probabilities(network, inputs, multi_label).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (torch.from_numpy(probe),),
            buffer,
            dynamo=False,
            input_names=["images"],
            output_names=["probabilities"],
            dynamic_axes={"images": {0: "n"}, "probabilities": {0: "n"}},
            opset_version=OPSET,
        )
    return buffer.getvalue()


class Probabilities(torch.nn.Module):
    """uint8 images -> the network's inputs (network_inputs) -> probabilities."""

    def __init__(self, network, inputs: str, multi_label: bool):
        super().__init__()
        self.network, self.inputs, self.multi_label = network, inputs, multi_label

    def forward(self, images):
        x = images.float()
        if self.inputs == "volume":  # (n, 1, D, H, W) in [-1, 1]
            x = x.unsqueeze(1) / 127.5 - 1
        elif self.inputs == "image":  # (n, C, H, W) in [-1, 1], as to_images
            x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
            x = x / 127.5 - 1
        else:  # flattened pixels / 256, as to_features
            x = torch.flatten(x, 1) / 256
        logits = self.network(x)
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)
