"""Train one run from its config and write its run folder. Used by ``medclf train`` and by
the reproduce runner; the only place besides the CLI that turns configs into files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from medclf.data.features import make_features
from medclf.data.load import Dataset
from medclf.errors import ConfigError
from medclf.experiments.store import environment, read_json, save_run, write_json
from medclf.train.display import EpochProgress

LINEAR_NUMPY = ("numpy-perceptron", "numpy-logreg")  # the study appends a 1-column instead


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


def read_json_or_none(path: Path):
    return read_json(path) if path.exists() else None


def title_of(config: dict, dataset: Dataset) -> str:
    skip = {"model", "dataset", "test_split", "seed", "dtype", "train_fraction", "init_std"}
    params = ", ".join(f"{k}={v}" for k, v in config.items() if k not in skip)
    return f"{config['model']} on {dataset.display_name} ({params})"


def final_metrics(config, dataset: Dataset, history, features, seconds, **extra) -> dict:
    """metrics.json of a finished run; the dataset facts let `medclf predict` check inputs."""
    last = history[-1]
    return {
        "status": "done", "title": title_of(config, dataset),
        "train_acc": last["train_acc"], "val_acc": last["val_acc"], **extra,
        "test_split": features.test_split, "n_test": len(features.y_test), "seconds": seconds,
        "dataset_name": dataset.name, "dataset_source": dataset.source,
        "synthetic": dataset.synthetic, "class_names": list(dataset.class_names),
        "image_shape": list(dataset.info.image_shape),
    }  # fmt: skip


def run_numpy(config: dict, dataset: Dataset, run_dir: Path, quiet: bool = False,
              after_epoch=None, train_acc: bool = True, resume: bool = True) -> dict:  # fmt: skip
    """Train (or continue from ``checkpoint.npz``) and write the run folder. ``train_acc``:
    measure training accuracy every epoch (else after the last one only)."""
    from medclf.numpy_models import load_model

    dtype = np.float64 if config["dtype"] == "float64" else np.float32
    f = make_features(dataset, config["test_split"], dtype, bias=config["model"] in LINEAR_NUMPY)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.npz"
    if ckpt.exists() and not resume:
        raise ConfigError(f"{run_dir} holds an unfinished run; pass --resume to continue it or "
                          "choose another --out")  # fmt: skip
    resumed = ckpt.exists() and read_json_or_none(run_dir / "config.json") == config
    model = load_model(ckpt) if resumed else build_numpy_model(config, dataset.info.n_classes)
    write_json(run_dir / "config.json", config)  # ties the checkpoint to this config
    done = len(getattr(model, "history_", []))
    seconds = sum(r["seconds"] for r in model.history_) if resumed else 0.0
    display = EpochProgress(len(f.y_train), config["epochs"], quiet, config["model"])

    def on_epoch(m, rec):
        display.end_epoch(rec)
        m.save(ckpt, training_state=True)
        if after_epoch is not None:
            after_epoch(rec)

    start = time.perf_counter()
    if config["epochs"] > done:
        model.fit(f.X_train, f.y_train, config["epochs"] - done, f.X_val, f.y_val,
                  callback=on_epoch, progress=display.step, train_acc=train_acc)  # fmt: skip
    seconds += time.perf_counter() - start
    model.save(run_dir / "model.npz")
    metrics = final_metrics(config, dataset, model.history_, f, seconds,
                            test_acc=model.score(f.X_test, f.y_test))  # fmt: skip
    save_run(run_dir, config, model.history_, metrics, environment(threads=1, device="cpu"))
    ckpt.unlink(missing_ok=True)
    return metrics


def run_job(config: dict, dataset: Dataset, run_dir, quiet: bool = False, train_acc=True,
            resume=True, **torch_options):  # fmt: skip
    """Train the run ``config`` describes, whichever family its model belongs to.
    ``torch_options``: device, threads (PyTorch runs only)."""
    dataset = dataset.head(config["train_fraction"])
    if config["model"].startswith("numpy-"):
        return run_numpy(config, dataset, Path(run_dir), quiet, train_acc=train_acc,
                         resume=resume)  # fmt: skip
    from medclf.experiments.torch_job import run_torch

    return run_torch(config, dataset, Path(run_dir), quiet, train_acc=train_acc, resume=resume,
                     **torch_options)  # fmt: skip
