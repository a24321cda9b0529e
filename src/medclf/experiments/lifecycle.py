"""What every run does around its model family's training loop, whatever the family.

After each epoch: the validation AUC joins the epoch's record, a diverged run stops, and the
best epoch by the chosen validation metric is tracked (``--select``; ``last`` is the study's
protocol) with early stopping after ``patience`` epochs without improvement. When training
ends: the selected model's scores on the validation and test splits are saved
(``predictions.npz``, pickle-free, and MedMNIST's result CSVs) and every metric of
``medclf.metrics`` is computed from them for ``metrics.json``. A family provides only
``scores(model, X)``: probabilities (softmax over classes, or a sigmoid per label).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medclf.data.features import select_test
from medclf.data.load import Dataset
from medclf.errors import InputError
from medclf.files import atomic_path

PREDICTIONS = "predictions.npz"


def is_diverged(rec: dict) -> bool:
    """A loss that became NaN or infinite: later epochs cannot recover from it."""
    return any(rec.get(k) is not None and not math.isfinite(rec[k])
               for k in ("train_loss", "val_loss"))  # fmt: skip


def finite_or_none(value):
    return value if value is not None and math.isfinite(value) else None


def auc_of(task: str, labels: np.ndarray, scores: np.ndarray) -> float | None:
    """MedMNIST's AUC, or None where it is undefined (one class only, NaN scores)."""
    from medclf.metrics import medmnist_auc

    if not np.isfinite(scores).all():
        return None
    try:
        return finite_or_none(medmnist_auc(task, labels, scores))
    except (InputError, ValueError):
        return None


class Selector:
    """The best epoch so far by a validation metric; ``last`` makes every epoch the best.
    Built from a history, so a resumed run picks up where it stopped."""

    def __init__(self, metric: str = "last", patience: int = 0, history=()):
        self.metric, self.patience = metric, patience
        self.best_epoch, self.best = None, None
        for rec in history:
            self.update(rec)

    def update(self, rec: dict) -> bool:
        """Record an epoch; True if it is the new best."""
        if self.metric == "last":
            self.best_epoch = rec["epoch"]
            return True
        value = finite_or_none(rec.get(self.metric))
        if value is None:
            return False
        lower_is_better = self.metric == "val_loss"
        if self.best is None or (value < self.best if lower_is_better else value > self.best):
            self.best, self.best_epoch = value, rec["epoch"]
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        return self.patience > 0 and epoch - (self.best_epoch or 0) >= self.patience


def test_splits(dataset: Dataset, test_split: str) -> dict:
    """The test split a run reports, plus the official one where the study's subset is used
    (OCTMNIST: the subset is imbalanced, the official 1,000 images are not)."""
    splits = {"test": select_test(dataset, test_split)}
    if test_split == "study":
        splits["test_official"] = select_test(dataset, "official")
    return splits


def predictions(scores_of, features, dataset: Dataset, to_features) -> dict:
    """Labels and scores of the val split and every reported test split."""
    out = {"val_labels": features.y_val, "val_scores": scores_of(features.X_val)}
    for name, split in test_splits(dataset, features.test_split).items():
        X = features.X_test if name == "test" else to_features(split.images)
        out[f"{name}_labels"], out[f"{name}_scores"] = split.labels, scores_of(X)
    return out


def split_metrics(preds: dict, task: str, class_names) -> dict:
    """Every metric of every saved split, recomputed from the saved scores alone."""
    from medclf.metrics import task_metrics

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


def save_predictions(run_dir: Path, preds: dict, flag: str) -> None:
    """predictions.npz, and MedMNIST's standard result CSV for each split
    (``{flag}_{split}@{run}.csv``), which MedMNIST's own evaluator reads."""
    from medclf.metrics import medmnist_csv

    with atomic_path(run_dir / PREDICTIONS) as tmp:
        np.savez(tmp, **preds)
    for split in ("val", "test"):
        if not np.isfinite(preds[f"{split}_scores"]).all():  # a diverged model: nothing to score
            continue
        text = medmnist_csv(preds[f"{split}_scores"])
        run = run_dir.name.replace(".", "-")  # MedMNIST's reader splits the name at dots
        with atomic_path(run_dir / f"{flag}_{split}@{run}.csv") as tmp:
            tmp.write_text(text)


def load_predictions(run_dir: Path) -> dict:
    with np.load(Path(run_dir) / PREDICTIONS, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def summary(metrics: dict, split: str) -> dict:
    """The headline numbers of one split: ACC and AUC as MedMNIST computes them."""
    m = metrics.get(split, {})
    return {f"{split}_acc": m.get("acc"), f"{split}_auc": m.get("auc")}
