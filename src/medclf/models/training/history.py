"""One record per epoch, with the same keys for NumPy and PyTorch models.

``train_loss`` is the mean loss over the epoch's training steps (per example for the NumPy
models, per minibatch for PyTorch), measured while training; accuracies and validation loss are
measured on the whole split after the epoch; ``val_auc`` is MedMNIST's AUC of the validation
scores (medclf.metrics), added by the run lifecycle. A value that a model does not have (the
perceptron's loss) or that is undefined is None.
"""

from __future__ import annotations

FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "seconds")


def record(
    epoch, train_loss=None, train_acc=None, val_loss=None, val_acc=None, seconds=0.0, val_auc=None
):
    values = (epoch, train_loss, train_acc, val_loss, val_acc, val_auc, seconds)
    return {
        k: (None if v is None else float(v) if k != "epoch" else int(v))
        for k, v in zip(FIELDS, values, strict=True)
    }


def epoch_line(rec: dict) -> str:
    """One human line per epoch: train loss / train acc / val loss / val acc."""

    def fmt(key):
        return "  -   " if rec.get(key) is None else f"{rec[key]:.4f}"

    return (
        f"epoch {rec['epoch']:3d}  train loss {fmt('train_loss')}  train acc "
        f"{fmt('train_acc')}  val loss {fmt('val_loss')}  val acc {fmt('val_acc')}  "
        f"val auc {fmt('val_auc')}  "
        f"({rec['seconds']:.2f}s)"
    )
