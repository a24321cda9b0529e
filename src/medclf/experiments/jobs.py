"""Train one run from its config and write its run folder. Used by ``medclf train`` and by
the reproduce runner; the only place besides the CLI that turns configs into files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from medclf.data.features import make_features, to_features
from medclf.data.load import Dataset
from medclf.errors import ConfigError
from medclf.experiments.lifecycle import (
    Selector,
    auc_of,
    is_diverged,
    predictions,
    save_predictions,
    split_metrics,
    summary,
)
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
    """The file's JSON, or None where it is missing or damaged."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


RUN_FILES = ("config.json", "env.json", "history.json", "history.csv", "metrics.json",
             "model.npz", "model.pt", "predictions.npz", "checkpoint.npz", "checkpoint.pt",
             "best.npz", "best.pt", "accuracy.png", "loss.png", "confusion.png")  # fmt: skip


def claim_run_folder(out, config: dict, force: bool) -> None:
    """Refuse to write over a finished run of another config unless ``force``; then remove
    that run's files (only medclf's own, never anything else in the folder)."""
    run_dir = Path(out)
    if not (run_dir / "metrics.json").exists():
        return
    if read_json_or_none(run_dir / "config.json") == config and not force:
        return
    if not force:
        raise ConfigError(f"{run_dir} holds a finished run of another config; choose another "
                          "--out or pass --force to replace it")  # fmt: skip
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for csv_file in run_dir.glob("*@*.csv"):
        csv_file.unlink()


def title_of(config: dict, dataset: Dataset) -> str:
    skip = {"model", "dataset", "test_split", "seed", "dtype", "train_fraction", "init_std",
            "select", "patience", "size"}
    params = ", ".join(f"{k}={v}" for k, v in config.items() if k not in skip)
    return f"{config['model']} on {dataset.display_name} ({params})"


def stop_reason(history: list[dict], selector: Selector) -> str | None:
    """Why training ends before its last epoch: divergence or early stopping."""
    if not history:
        return None
    last = history[-1]
    if is_diverged(last):
        return f"diverged at epoch {last['epoch']} (the loss became NaN or infinite)"
    if selector.should_stop(last["epoch"]):
        return (f"early stop at epoch {last['epoch']}: no better {selector.metric} for "
                f"{selector.patience} epochs")  # fmt: skip
    return None


def end_epoch(rec: dict, task: str, y_val, val_scores, selector: Selector, save_best) -> bool:
    """The lifecycle's step after each epoch: add the validation AUC, track the best epoch
    (``save_best()`` writes it), and say whether training stops here."""
    rec["val_auc"] = auc_of(task, y_val, val_scores)
    if selector.update(rec) and selector.metric != "last":
        save_best()
    return stop_reason([rec], selector) is not None


def final_metrics(config, dataset: Dataset, history, features, seconds, preds: dict,
                  selector: Selector, stopped: str | None, **extra) -> dict:  # fmt: skip
    """metrics.json of a finished run: the selected epoch's headline numbers, every metric of
    every saved split, and the dataset facts that let `medclf predict` check inputs."""
    per_split = split_metrics(preds, dataset.info.task, dataset.class_names)
    chosen = history[selector.best_epoch - 1] if selector.best_epoch else history[-1]
    diverged = stopped is not None and stopped.startswith("diverged")
    return {
        "status": "diverged" if diverged else "done", "title": title_of(config, dataset),
        "task": dataset.info.task, "select": config["select"],
        "selected_epoch": chosen["epoch"], "epochs_run": len(history), "stopped": stopped,
        "train_acc": chosen["train_acc"], "val_acc": chosen["val_acc"],
        "val_auc": chosen["val_auc"], **extra, **summary(per_split, "test"),
        "test_split": features.test_split, "n_test": len(features.y_test), "seconds": seconds,
        "dataset_name": dataset.name, "dataset_source": dataset.source,
        "synthetic": dataset.synthetic, "class_names": list(dataset.class_names),
        "image_shape": list(dataset.info.image_shape), "metrics": per_split,
    }  # fmt: skip


def medmnist_flag(dataset: Dataset) -> str:
    """The dataset part of MedMNIST's result-file names: no '_' (it separates the size)."""
    info = dataset.info
    name = info.name.replace("_", "")
    return name if info.size == 28 else f"{name}_{info.size}"


def finish_run(run_dir: Path, config: dict, dataset: Dataset, features, history, selector,
               selected_scores, last_scores, to_features, seconds, env, stopped,
               **extra) -> dict:  # fmt: skip
    """Predictions of the selected model (and of the last one where they differ), their
    metrics, and every file of the run folder but the model."""
    preds = predictions(selected_scores, features, dataset, to_features)
    if selector.best_epoch != history[-1]["epoch"]:  # the last epoch too, for comparison
        last = predictions(last_scores, features, dataset, to_features)
        preds.update({f"last_{k}": v for k, v in last.items()})
    save_predictions(run_dir, preds, medmnist_flag(dataset))
    metrics = final_metrics(config, dataset, history, features, seconds, preds, selector,
                            stopped, **extra)  # fmt: skip
    save_run(run_dir, config, history, metrics, env)
    return metrics


def open_run(run_dir: Path, config: dict, checkpoint: Path, resume: bool) -> None:
    """Refuse what would mix two runs in one folder; write config.json from the start."""
    if checkpoint.exists() and not resume:
        raise ConfigError(f"{run_dir} holds an unfinished run; pass --resume to continue it or "
                          "choose another --out")  # fmt: skip
    if checkpoint.exists() and read_json_or_none(run_dir / "config.json") != config:
        raise ConfigError(f"checkpoint {checkpoint} belongs to another config; use another "
                          "--out or delete the checkpoint")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config)  # ties the checkpoint to this config


def numpy_scores(model, X) -> np.ndarray:
    """Class probabilities; the perceptron's are the softmax of its scores (argmax-equal to
    its decisions, uncalibrated), so that AUC can rank its examples."""
    from medclf.numpy_models.base import softmax

    return softmax(model._scores(X))


def run_numpy(config: dict, dataset: Dataset, run_dir: Path, quiet: bool = False,
              after_epoch=None, train_acc: bool = True, resume: bool = True) -> dict:  # fmt: skip
    """Train (or continue from ``checkpoint.npz``) and write the run folder. ``train_acc``:
    measure training accuracy every epoch (else after the last one only)."""
    from medclf.numpy_models import load_model

    if dataset.info.multi_label:
        raise ConfigError(f"{config['model']} is single-label and {dataset.name} is multi-label; "
                          "use torch-logreg or torch-ffn, which train one sigmoid per label")
    dtype = np.float64 if config["dtype"] == "float64" else np.float32
    bias = config["model"] in LINEAR_NUMPY
    f = make_features(dataset, config["test_split"], dtype, bias=bias)
    run_dir = Path(run_dir)
    ckpt, best = run_dir / "checkpoint.npz", run_dir / "best.npz"
    open_run(run_dir, config, ckpt, resume)
    resumed = ckpt.exists()
    model = load_model(ckpt) if resumed else build_numpy_model(config, dataset.info.n_classes)
    history = getattr(model, "history_", [])
    selector = Selector(config["select"], config["patience"], history)
    seconds = sum(r["seconds"] for r in history)
    display = EpochProgress(len(f.y_train), config["epochs"], quiet, config["model"])

    def on_epoch(m, rec):
        stop = end_epoch(rec, dataset.info.task, f.y_val, numpy_scores(m, f.X_val), selector,
                         lambda: m.save(best))  # fmt: skip
        display.end_epoch(rec)
        m.save(ckpt, training_state=True)
        if after_epoch is not None:
            after_epoch(rec)
        return stop

    start = time.perf_counter()
    if config["epochs"] > len(history) and stop_reason(history, selector) is None:
        model.fit(f.X_train, f.y_train, config["epochs"] - len(history), f.X_val, f.y_val,
                  callback=on_epoch, progress=display.step, train_acc=train_acc)  # fmt: skip
    seconds += time.perf_counter() - start
    history = model.history_
    chosen = load_model(best) if selector.best_epoch != history[-1]["epoch"] else model
    record = history[selector.best_epoch - 1 if selector.best_epoch else -1]
    if record["train_acc"] is None:
        record["train_acc"] = chosen.score(f.X_train, f.y_train)
    chosen.save(run_dir / "model.npz")
    metrics = finish_run(run_dir, config, dataset, f, history, selector,
                         lambda X: numpy_scores(chosen, X), lambda X: numpy_scores(model, X),
                         lambda images: to_features(images, dtype, bias), seconds,
                         environment(threads=1, device="cpu"),
                         stop_reason(history, selector))  # fmt: skip
    ckpt.unlink(missing_ok=True)
    best.unlink(missing_ok=True)
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
