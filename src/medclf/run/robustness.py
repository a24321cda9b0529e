"""A run's test metrics under MedMNIST-C's corruptions (medclf.data.corruptions): the run's own
test split, corrupted at each severity, scored by the run's saved model.

The run folder says which data and which test split it was scored on (config.json,
metrics.json); the file must still be the one it was trained on (its MD5) and its test labels
those of predictions.npz, so the clean row is the run's own test result.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from medclf.data import corruptions as mc
from medclf.data.features import select_test
from medclf.data.load import load_dataset
from medclf.data.registry import REGISTRY
from medclf.errors import ConfigError, DataError, SettingError
from medclf.metrics import task_metrics
from medclf.models.numpy_models.base import softmax
from medclf.run.dataid import changed_data
from medclf.run.families import family_of
from medclf.run.folder import PREDICTIONS
from medclf.run.outputs import load_predictions
from medclf.run.predict import check_run, predict_run

METRICS = ("acc", "auc", "balanced_acc")
CLEAN = "none"  # the clean row's corruption, at severity 0


def parse_severities(text: str) -> tuple[int, ...]:
    """'1-5', '3' or '1,3,5' -> the severities, each 1..5, in order; else one SettingError."""
    out: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?", part)
        lo, hi = (int(m[1]), int(m[2] or m[1])) if m else (None, None)
        if lo is None or not (1 <= lo <= hi <= 5):
            raise SettingError(
                f"severities '{text}' are not severities 1 to 5; give one (3), a range "
                "low-high (1-5) or a list (1,3,5)"
            )
        out += range(lo, hi + 1)
    return tuple(sorted(set(out)))


def is_3d(metrics: dict, dataset_name: str) -> bool:
    info = REGISTRY.get(dataset_name.lower())
    shape = metrics.get("image_shape", [])
    return getattr(info, "dims", 2) == 3 or (len(shape) == 3 and shape[-1] != 3)


def check_robustness_run(run_dir, corruptions=None) -> tuple[dict, dict, dict[str, tuple]]:
    """(config, metrics, the corruptions to apply) of a run MedMNIST-C can corrupt, or one error
    that says why not (no finished run, no predictions, 3D, a dataset or corruption it lacks)."""
    config, metrics = check_run(run_dir)
    if not (Path(run_dir) / PREDICTIONS).is_file():
        raise DataError(
            f"{Path(run_dir) / PREDICTIONS} is missing; give the folder of a run finished by "
            "'medclf train'"
        )
    name = str(metrics.get("dataset_name", ""))
    if is_3d(metrics, name):
        raise ConfigError(
            f"{run_dir} is a 3D run ({name}); MedMNIST-C's corruptions are for 2D images only"
        )
    table = mc.corruptions_of(name)
    if corruptions:
        unknown = [c for c in corruptions if c not in table]
        if unknown:
            raise ConfigError(
                f"'{unknown[0]}' is not one of MedMNIST-C's corruptions of {name}; choose from "
                f"{', '.join(c for c in table if c not in mc.NOT_IMPLEMENTED)}"
            )
        missing = [c for c in corruptions if c in mc.NOT_IMPLEMENTED]
        if missing:
            raise ConfigError(
                f"{missing[0]} is not available in medclf: {mc.NOT_IMPLEMENTED[missing[0]]}"
            )
        table = {c: table[c] for c in corruptions}
    return config, metrics, table


def test_images(run_dir, config: dict, metrics: dict, root=None):
    """The test images and labels the run was scored on, or one DataError where its data file
    has changed or is gone."""
    named = str(config["dataset"]).lower() in REGISTRY
    dataset = load_dataset(config["dataset"], root, size=config.get("size", 28) if named else None)
    why = changed_data(metrics, dataset.source)
    if why is not None:
        raise DataError(
            f"{run_dir} cannot be re-scored: {why}; give the run's own data file or train again"
        )
    test = select_test(dataset, str(metrics.get("test_split", "auto")))
    saved = load_predictions(run_dir).get("test_labels")
    if saved is None or not np.array_equal(saved, test.labels):
        raise DataError(
            f"{run_dir}: the test labels of {dataset.source} are not those in "
            f"{PREDICTIONS}; train the run again"
        )
    return dataset, test


def scores_of(run_dir, images, checked) -> np.ndarray:
    """The run's scores as predictions.npz holds them: its probabilities, for the perceptron
    the softmax of its decision values."""
    _, proba = predict_run(run_dir, images, checked)
    if proba is not None:
        return proba
    config, metrics = checked
    return softmax(family_of(config["model"]).outputs(run_dir, config, metrics, images)[1])


def row(task, labels, scores, names, corruption: str, severity: int) -> dict:
    m = task_metrics(task, labels, scores, names)
    return {"corruption": corruption, "severity": severity, **{k: m[k] for k in METRICS}}


def robustness(run_dir, severities=mc.SEVERITIES, seed: int = 0, corruptions=None, root=None):
    """The rows (clean first, then corruption x severity) and MedMNIST-C's summary, with what
    the numbers mean (data size, skipped corruptions)."""
    config, metrics, table = check_robustness_run(run_dir, corruptions)
    dataset, test = test_images(run_dir, config, metrics, root)
    name, task, names = dataset.name, metrics["task"], metrics["class_names"]
    checked = (config, metrics)
    rows = [row(task, test.labels, scores_of(run_dir, test.images, checked), names, CLEAN, 0)]
    skipped = {c: mc.NOT_IMPLEMENTED[c] for c in table if c in mc.NOT_IMPLEMENTED}
    for corruption in (c for c in table if c not in skipped):
        for s in severities:
            images = mc.corrupt(test.images, name, corruption, s, seed)
            scores = scores_of(run_dir, images, checked)
            rows.append(row(task, test.labels, scores, names, corruption, s))
    errors: dict[str, list[float]] = {}
    for r in rows[1:]:
        errors.setdefault(r["corruption"], []).append(1 - r["balanced_acc"])
    side = dataset.info.size
    return {
        "run": str(run_dir),
        "dataset": name,
        "synthetic": dataset.synthetic,
        "test_split": str(metrics.get("test_split")),
        "n_test": int(len(test.labels)),
        "image_size": side,
        "protocol": "MedMNIST-C" if side == mc.MEDMNISTC_SIZE else "MedMNIST-C-style",
        "severities": list(severities),
        "seed": seed,
        "skipped": skipped,
        "chosen": corruptions is not None,  # --corruption: a subset of the dataset's
        "source": mc.SOURCE,
        "rows": rows,
        "summary": mc.summary(1 - rows[0]["balanced_acc"], errors, name) if errors else None,
    }
