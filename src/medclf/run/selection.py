"""Which epoch a run keeps and when it stops: the best epoch by a validation metric
(``--select``; ``last`` is the study's protocol), early stopping after ``patience`` epochs
without improvement, and divergence (a loss that became NaN or infinite)."""

from __future__ import annotations

import math

import numpy as np

from medclf.errors import ConfigError, InputError


def finite_or_none(value):
    return value if value is not None and math.isfinite(value) else None


def is_diverged(rec: dict) -> bool:
    """A loss that became NaN or infinite: later epochs cannot recover from it."""
    return any(
        rec.get(k) is not None and not math.isfinite(rec[k]) for k in ("train_loss", "val_loss")
    )


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


def stop_reason(history: list[dict], selector: Selector) -> str | None:
    """Why training ends before its last epoch: divergence or early stopping."""
    if not history:
        return None
    last = history[-1]
    if is_diverged(last):
        return f"diverged at epoch {last['epoch']} (the loss became NaN or infinite)"
    if selector.should_stop(last["epoch"]):
        return (
            f"early stop at epoch {last['epoch']}: no better {selector.metric} for "
            f"{selector.patience} epochs"
        )
    return None


def damaged_best(path, checkpoint_file: str, why: str) -> ConfigError:
    """The best epoch's weights cannot be read: the run cannot finish as it began."""
    return ConfigError(
        f"{path} is not a file medclf wrote for this run ({why}); delete it and "
        f"{path.with_name(checkpoint_file)} to start the run afresh, or choose another --out"
    )
