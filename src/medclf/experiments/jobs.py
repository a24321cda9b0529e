"""Train one run from its config and write its run folder. Used by ``medclf train`` and by
the reproduce runner; the only place besides the CLI that turns configs into files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from medclf.data.features import make_features
from medclf.data.load import Dataset
from medclf.experiments.store import environment, save_run
from medclf.train.display import EpochProgress

LINEAR_NUMPY = ("numpy-perceptron", "numpy-logreg")  # the study appends a 1-column instead


def build_numpy_model(config: dict, n_classes: int):
    from medclf.numpy_models import MLP, LogisticRegression, Perceptron

    common = {"n_classes": n_classes, "dtype": config["dtype"], "seed": config["seed"]}
    if config["model"] == "numpy-perceptron":
        return Perceptron(**common)
    if config["model"] == "numpy-logreg":
        return LogisticRegression(lr=config["lr"], batch_size=config["batch_size"], **common)
    return MLP(hidden_sizes=(config["hidden_size"],) * config["layers"], lr=config["lr"],
               batch_size=config["batch_size"], **common)  # fmt: skip


def title_of(config: dict, dataset: Dataset) -> str:
    skip = {"model", "dataset", "test_split", "seed", "dtype"}
    params = ", ".join(f"{k}={v}" for k, v in config.items() if k not in skip)
    return f"{config['model']} on {dataset.display_name} ({params})"


def run_numpy(config: dict, dataset: Dataset, run_dir: Path, quiet: bool = False) -> dict:
    dtype = np.float64 if config["dtype"] == "float64" else np.float32
    f = make_features(dataset, config["test_split"], dtype, bias=config["model"] in LINEAR_NUMPY)
    model = build_numpy_model(config, dataset.info.n_classes)
    display = EpochProgress(len(f.y_train), config["epochs"], quiet, config["model"])
    start = time.perf_counter()
    model.fit(f.X_train, f.y_train, config["epochs"], f.X_val, f.y_val,
              callback=lambda m, rec: display.end_epoch(rec), progress=display.step)  # fmt: skip
    seconds = time.perf_counter() - start
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.npz")
    last = model.history_[-1]
    metrics = {
        "status": "done", "title": title_of(config, dataset),
        "train_acc": last["train_acc"], "val_acc": last["val_acc"],
        "test_acc": model.score(f.X_test, f.y_test), "test_split": f.test_split,
        "n_test": len(f.y_test), "seconds": seconds,
        "dataset_source": dataset.source, "synthetic": dataset.synthetic,
    }  # fmt: skip
    save_run(run_dir, config, model.history_, metrics, environment(threads=1, device="cpu"))
    return metrics


def run_job(config: dict, dataset: Dataset, run_dir, quiet: bool = False) -> dict:
    """Train the run ``config`` describes, whichever family its model belongs to."""
    if config["model"].startswith("numpy-"):
        return run_numpy(config, dataset, Path(run_dir), quiet)
    from medclf.experiments.torch_job import run_torch

    return run_torch(config, dataset, Path(run_dir), quiet)
