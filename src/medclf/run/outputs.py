"""What a finished run leaves behind besides its model: the selected model's scores on the
validation and test splits (``predictions.npz``, pickle-free, and MedMNIST's result CSVs) and
``metrics.json``, whose every metric is computed from those saved scores by medclf.metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclf.data.features import select_test
from medclf.data.load import Dataset
from medclf.errors import DataError
from medclf.files import atomic_path
from medclf.metrics import medmnist_csv, task_metrics
from medclf.plots import confusion_figure, history_figures, save_figure
from medclf.run.folder import (
    CONFIG,
    ENV,
    FIGURES,
    HISTORY,
    HISTORY_CSV,
    METRICS,
    PREDICTIONS,
    history_csv,
    load_arrays,
    save_arrays,
    write_json,
    write_text,
)

UNTITLED = {
    "model",
    "dataset",
    "test_split",
    "seed",
    "dtype",
    "train_fraction",
    "init_std",
    "select",
    "patience",
    "size",
}


def title_of(config: dict, dataset: Dataset) -> str:
    params = ", ".join(f"{k}={v}" for k, v in config.items() if k not in UNTITLED)
    return f"{config['model']} on {dataset.display_name} ({params})"


def test_splits(dataset: Dataset, test_split: str) -> dict:
    """The test split a run reports, plus the official one where the study's subset is used
    (OCTMNIST: the subset is imbalanced, the official 1,000 images are not)."""
    splits = {"test": select_test(dataset, test_split)}
    if test_split == "study":
        splits["test_official"] = select_test(dataset, "official")
    return splits


def predictions(scores_of, features, dataset: Dataset, inputs_of) -> dict:
    """Labels and scores of the val split and every reported test split."""
    out = {"val_labels": features.y_val, "val_scores": scores_of(features.X_val)}
    for name, split in test_splits(dataset, features.test_split).items():
        X = features.X_test if name == "test" else inputs_of(split.images)
        out[f"{name}_labels"], out[f"{name}_scores"] = split.labels, scores_of(X)
    return out


def metrics_per_split(preds: dict, task: str, class_names) -> dict:
    """Every metric of every saved split, recomputed from the saved scores alone."""
    result = {}
    for key in preds:
        if key.endswith("_scores"):
            name = key.removesuffix("_scores")
            scores = preds[key]
            if not np.isfinite(scores).all():
                result[name] = {"undefined": {"all": "the scores hold NaN or inf (diverged)"}}
                continue
            result[name] = task_metrics(task, preds[f"{name}_labels"], scores, class_names)
    return result


def medmnist_flag(dataset: Dataset) -> str:
    """The dataset part of MedMNIST's result-file names: no '_' (it separates the size)."""
    return flag_of(dataset.info.name, dataset.info.size)


def flag_of(name: str, size: int) -> str:
    name = name.replace("_", "")
    return name if size == 28 else f"{name}_{size}"


def save_predictions(run_dir: Path, preds: dict, flag: str, run_name: str | None = None) -> None:
    """predictions.npz, and MedMNIST's standard result CSV for each split
    (``{flag}_{split}@{run}.csv``), which MedMNIST's own evaluator reads. ``run_name``: the
    folder's name where it is written under a temporary one."""
    save_arrays(run_dir / PREDICTIONS, preds)
    for split in ("val", "test"):
        if not np.isfinite(preds[f"{split}_scores"]).all():  # a diverged model: nothing to score
            continue
        text = medmnist_csv(preds[f"{split}_scores"])
        run = (run_name or run_dir.name).replace(
            ".", "-"
        )  # MedMNIST's reader splits the name at dots
        with atomic_path(run_dir / f"{flag}_{split}@{run}.csv") as tmp:
            tmp.write_text(text)


def load_predictions(run_dir: Path) -> dict:
    """predictions.npz's arrays, every one numeric; a file medclf did not write is refused in
    one line."""
    path = Path(run_dir) / PREDICTIONS
    preds = load_arrays(path)
    odd = next((k for k, v in preds.items() if v.dtype.kind not in "biuf"), None)
    if odd is not None:
        raise DataError(
            f"{path}: '{odd}' holds {preds[odd].dtype} values, not numbers; train the run again"
        )
    return preds


def summary(metrics: dict, split: str) -> dict:
    """The headline numbers of one split: ACC and AUC as MedMNIST computes them."""
    m = metrics.get(split, {})
    return {f"{split}_acc": m.get("acc"), f"{split}_auc": m.get("auc")}


def final_metrics(
    config,
    dataset: Dataset,
    history,
    features,
    seconds,
    preds: dict,
    selected_epoch: int,
    stopped: str | None,
    **extra,
) -> dict:
    """metrics.json of a finished run: the selected epoch's headline numbers, every metric of
    every saved split, and the dataset facts that let `medclf predict` check inputs."""
    per_split = metrics_per_split(preds, dataset.info.task, dataset.class_names)
    chosen = history[selected_epoch - 1]
    diverged = stopped is not None and stopped.startswith("diverged")
    return {
        "status": "diverged" if diverged else "done",
        "title": title_of(config, dataset),
        "task": dataset.info.task,
        "select": config["select"],
        "selected_epoch": chosen["epoch"],
        "epochs_run": len(history),
        "stopped": stopped,
        "train_acc": chosen["train_acc"],
        "val_acc": chosen["val_acc"],
        "val_auc": chosen["val_auc"],
        **extra,
        **summary(per_split, "test"),
        "test_split": features.test_split,
        "n_test": len(features.y_test),
        "seconds": seconds,
        "dataset_name": dataset.name,
        "dataset_source": str(Path(dataset.source).resolve()),
        "synthetic": dataset.synthetic,
        "class_names": list(dataset.class_names),
        "image_shape": list(dataset.info.image_shape),
        "metrics": per_split,
    }


def save_run(run_dir: Path, config: dict, history: list[dict], metrics: dict, env: dict) -> Path:
    """Write everything but the model; then draw the plots."""
    run_dir = Path(run_dir)
    write_json(run_dir / CONFIG, config)
    write_json(run_dir / ENV, env)
    write_json(run_dir / HISTORY, history)
    write_text(run_dir / HISTORY_CSV, history_csv(history))
    history_figures(history, run_dir, title=metrics.get("title", config["model"]))
    confusion_png(run_dir, metrics)
    write_json(run_dir / METRICS, metrics)  # last: its presence marks a finished run
    return run_dir


def confusion_png(run_dir: Path, metrics: dict) -> None:
    """The test confusion matrix of the selected model (single-label tasks)."""
    matrix = metrics.get("metrics", {}).get("test", {}).get("confusion_matrix")
    if matrix is None or metrics.get("task", "").startswith("multi-label"):
        return
    title = f"{metrics.get('title', '')}\ntest split ({metrics.get('test_split')})"
    save_figure(confusion_figure(matrix, metrics["class_names"], title), run_dir / FIGURES[2])
