"""Classification metrics as the MedMNIST field computes them, from saved scores.

ACC and AUC follow MedMNIST's own evaluator (``medmnist/evaluator.py``, v3.0.2: ``getACC``,
``getAUC``) exactly; everything else comes from scikit-learn, except the expected calibration
error, which scikit-learn does not provide.

Inputs. ``labels``: (n,) class indices for the single-label tasks ((n, 1), as stored in MedMNIST
files, is accepted too); (n, L) 0/1 for ``multi-label, binary-class``. ``scores``: (n, K) softmax
probabilities for single-label tasks (K = 2 for binary, rows sum to 1); (n, L) per-label sigmoid
probabilities for multi-label.

Predictions. binary: positive when the last column is > 0.5; multi-class and ordinal: argmax;
multi-label: each label positive when its score is > 0.5 (strictly, as MedMNIST does).

ECE: 15 equal-width bins over [0, 1], right-closed ((0, 1/15], ..., (14/15, 1]), on the
confidence of the predicted class; ECE = sum over bins of |bin| / n * |accuracy - mean
confidence|. For multi-label it is the mean over labels of that binary ECE, each label's
confidence being p when predicted positive and 1 - p otherwise.

Undefined metrics (an AUC where a class or label has a single value in the split, a zero-division
precision or recall, a kappa with no chance disagreement) are None in the result and named in its
``undefined`` dict with a reason. ``medmnist_auc`` returns NaN where MedMNIST's evaluator would
raise or give NaN, so that it stays a float.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    multilabel_confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from medclf.errors import InputError

TASKS = ("binary-class", "multi-class", "ordinal-regression", "multi-label, binary-class")
MULTI_LABEL = TASKS[3]
THRESHOLD = 0.5
ECE_BINS = 15
ROW_SUM_TOL = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; logits miss by far more


def medmnist_acc(task: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """ACC exactly as MedMNIST's getACC: mean per-label accuracy for multi-label."""
    labels, scores = _check(task, labels, scores)
    pred = _predict(task, scores)
    if task != MULTI_LABEL:
        return float(accuracy_score(labels, pred))
    per_label = [accuracy_score(labels[:, j], pred[:, j]) for j in range(labels.shape[1])]
    return float(sum(per_label) / len(per_label))


def medmnist_auc(task: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC exactly as MedMNIST's getAUC; NaN where a class or label has one value in labels."""
    labels, scores = _check(task, labels, scores)
    parts = _auc_parts(task, labels, scores)
    if any(p is None for p in parts):
        return float("nan")
    return float(sum(parts) / len(parts))


def medmnist_csv(scores: np.ndarray) -> str:
    """MedMNIST's standard result file: no header, one row per image, its index then its scores.

    This is what ``Evaluator.evaluate(save_folder=...)`` writes and what
    ``Evaluator.parse_and_evaluate`` reads (``pd.read_csv(path, index_col=0, header=None)``).
    Each float is written as its shortest round-trip text in its own dtype, as pandas does, so
    the text equals the evaluator's own file and reads back to the same values.
    """
    checked = _check_scores(scores)
    raw = np.asarray(scores)
    values = raw if np.issubdtype(raw.dtype, np.floating) else checked
    rows = (",".join([str(i)] + [str(v) for v in row]) for i, row in enumerate(values))
    return "\n".join(rows) + "\n"


def task_metrics(
    task: str, labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Every metric of one split as a JSON-safe dict (no NaN: undefined values are None)."""
    labels, scores = _check(task, labels, scores)
    names = _check_names(class_names, scores.shape[1])
    pred = _predict(task, scores)
    undefined: dict[str, str] = {}
    out = {
        "n": int(len(scores)),
        "acc": medmnist_acc(task, labels, scores),
        "auc": _auc(task, labels, scores, names, undefined),
        "balanced_acc": _balanced_acc(task, labels, pred),
        "macro_f1": _macro_f1(task, labels, pred, len(names), undefined),
        "ece": _task_ece(task, labels, scores, pred),
        "per_class": _per_class(task, labels, pred, names, undefined),
        "confusion_matrix": _confusion(task, labels, pred, len(names)),
    }
    if task == "ordinal-regression":
        out["mae"] = float(mean_absolute_error(labels, pred))
        out["qwk"] = _qwk(labels, pred, len(names), undefined)
    out["undefined"] = undefined
    return out


def curve_data(
    task: str, labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str]
) -> dict:
    """The points of the ROC and precision-recall curves (scikit-learn's), of the reliability
    diagram (the ECE's own bins) and the confusion matrix of one split, as JSON-safe lists.

    ROC and PR: one curve per class (one-vs-rest) for multi-class and ordinal tasks, one per
    label for multi-label, one for the positive class of a binary task; a class with a single
    value in the split has no curve (``None`` points, its reason in ``undefined``).
    Reliability: one diagram for single-label tasks, one per label for multi-label, whose
    |bin| / n-weighted gaps sum to that diagram's ECE (``task_metrics``' "ece" is their mean).
    """
    labels, scores = _check(task, labels, scores)
    names = _check_names(class_names, scores.shape[1])
    pred = _predict(task, scores)
    curves = [_curves(name, y, s) for name, y, s in _one_vs_rest(task, labels, scores, names)]
    if task == MULTI_LABEL:
        reliability = [
            _reliability(
                names[j],
                np.where(pred[:, j] == 1, scores[:, j], 1 - scores[:, j]),
                pred[:, j] == labels[:, j],
            )
            for j in range(scores.shape[1])
        ]
    else:
        confidence = scores[np.arange(len(scores)), pred]
        reliability = [_reliability("all classes", confidence, pred == labels)]
    return {
        "task": task,
        "class_names": names,
        "curves": curves,
        "reliability": reliability,
        "confusion_matrix": _confusion(task, labels, pred, len(names)),
    }


def _one_vs_rest(task, labels, scores, names):
    """(name, 0/1 truth, score) of each curve: the positive class only for a binary task."""
    if task == "binary-class":
        return [(names[1], labels, scores[:, 1])]
    if task == MULTI_LABEL:
        return [(names[j], labels[:, j], scores[:, j]) for j in range(len(names))]
    return [(names[i], (labels == i).astype(np.int64), scores[:, i]) for i in range(len(names))]


def _curves(name: str, truth: np.ndarray, score: np.ndarray) -> dict:
    positives = int(truth.sum())
    curve = {"name": name, "positives": positives, "n": int(len(truth))}
    if positives in (0, len(truth)):  # sklearn would warn and give NaN points
        why = "all" if positives else "none"
        return {**curve, "undefined": f"{why} of the split is {name}: no curve", "roc": None}
    fpr, tpr, _ = roc_curve(truth, score)
    precision, recall, _ = precision_recall_curve(truth, score)
    return {
        **curve,
        "roc": {
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "auc": float(roc_auc_score(truth, score)),
        },
        "pr": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "average_precision": float(average_precision_score(truth, score)),
        },
    }


def _reliability(name: str, confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Per ECE bin: images, mean confidence and accuracy (None where a bin is empty)."""
    edges = np.linspace(0, 1, ECE_BINS + 1)
    bins = _ece_bins(confidence)
    count = np.bincount(bins, minlength=ECE_BINS)
    conf_sum = np.bincount(bins, weights=confidence, minlength=ECE_BINS)
    hit_sum = np.bincount(bins, weights=correct.astype(np.float64), minlength=ECE_BINS)

    def mean(sums):
        return [float(v / c) if c else None for v, c in zip(sums, count, strict=True)]

    return {
        "name": name,
        "edges": edges.tolist(),
        "count": count.tolist(),
        "confidence": mean(conf_sum),
        "accuracy": mean(hit_sum),
        "ece": _ece(confidence, correct),
    }


# --- validation -------------------------------------------------------------------------------


def _check(task: str, labels, scores) -> tuple[np.ndarray, np.ndarray]:
    if task not in TASKS:
        raise InputError(f"Unknown task {task!r}; use one of {', '.join(map(repr, TASKS))}.")
    scores = _check_scores(scores)
    if np.any(scores < 0) or np.any(scores > 1):
        raise InputError("Scores must be probabilities in [0, 1]; apply softmax or sigmoid first.")
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(
            f"Labels must be integers, not {labels.dtype}; cast them with astype(int)."
        )
    if task == MULTI_LABEL:
        return _check_multi_label(labels, scores), scores
    return _check_single_label(task, labels, scores), scores


def _check_scores(scores) -> np.ndarray:
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.number) or scores.dtype == bool:
        raise InputError(f"Scores must be a numeric array, not {scores.dtype}; pass probabilities.")
    if scores.ndim != 2 or len(scores) == 0:
        raise InputError(
            f"Scores must be a non-empty (n, classes) array, got shape {scores.shape}; "
            "pass one row of probabilities per image."
        )
    if not np.all(np.isfinite(scores)):
        raise InputError("Scores contain NaN or infinity; check the model output before scoring.")
    return scores.astype(np.float64)


def _check_multi_label(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    if labels.shape != scores.shape:
        raise InputError(
            f"Multi-label labels have shape {labels.shape} but scores {scores.shape}; "
            "pass one 0/1 column per label for each image."
        )
    if not np.isin(labels, (0, 1)).all():
        raise InputError("Multi-label labels must be 0 or 1; pass the binary label matrix.")
    return labels.astype(np.int64)


def _check_single_label(task: str, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]  # MedMNIST files store single labels as (n, 1)
    n, k = scores.shape
    if labels.shape != (n,):
        raise InputError(
            f"Labels have shape {labels.shape} but scores have {n} rows; "
            "pass one class index per image."
        )
    if task == "binary-class" and k != 2:
        raise InputError(f"Binary scores need 2 columns (negative, positive), got {k}; pass both.")
    if k < 2:
        raise InputError(f"Scores have {k} column; pass one probability per class.")
    if labels.min() < 0 or labels.max() >= k:
        raise InputError(f"Labels must lie in 0..{k - 1} for {k} score columns; check the task.")
    if np.abs(scores.sum(axis=1) - 1).max() > ROW_SUM_TOL:
        raise InputError("Score rows do not sum to 1; apply softmax to the model output first.")
    return labels.astype(np.int64)


def _check_names(class_names: Sequence[str], k: int) -> list[str]:
    names = [str(c) for c in class_names]
    if len(names) != k:
        raise InputError(
            f"Got {len(names)} class names for {k} score columns; pass one per column."
        )
    return names


# --- metrics ----------------------------------------------------------------------------------


def _predict(task: str, scores: np.ndarray) -> np.ndarray:
    if task == "binary-class":
        return (scores[:, -1] > THRESHOLD).astype(np.int64)
    if task == MULTI_LABEL:
        return (scores > THRESHOLD).astype(np.int64)
    return scores.argmax(axis=1)


def _auc_parts(task: str, labels: np.ndarray, scores: np.ndarray) -> list[float | None]:
    """The per-class (or per-label) AUCs that MedMNIST averages; None where undefined."""
    if task == "binary-class":
        pairs = [(labels, scores[:, -1])]
    elif task == MULTI_LABEL:
        pairs = [(labels[:, j], scores[:, j]) for j in range(scores.shape[1])]
    else:
        pairs = [((labels == i).astype(np.int64), scores[:, i]) for i in range(scores.shape[1])]
    # A single value in the truth makes the AUC undefined; skip sklearn's warning by not asking.
    return [None if len(np.unique(y)) < 2 else roc_auc_score(y, s) for y, s in pairs]


def _auc(task, labels, scores, names, undefined) -> float | None:
    parts = _auc_parts(task, labels, scores)
    if all(p is not None for p in parts):
        return float(sum(parts) / len(parts))
    if task == "binary-class":
        undefined["auc"] = "the split holds a single class, so no positive ranks over a negative"
    else:
        missing = ", ".join(n for n, p in zip(names, parts, strict=True) if p is None)
        undefined["auc"] = f"all or none of the split is {missing}, so its AUC is undefined"
    return None


def _balanced_acc(task, labels, pred) -> float:
    # sklearn averages recall over the classes present in the truth; its warning about
    # predicted classes absent from the truth is that documented behaviour, not a problem.
    if task != MULTI_LABEL:
        return float(_quiet(balanced_accuracy_score, labels, pred))
    per_label = [
        _quiet(balanced_accuracy_score, labels[:, j], pred[:, j]) for j in range(labels.shape[1])
    ]
    return float(np.mean(per_label))


def _macro_f1(task, labels, pred, k, undefined) -> float | None:
    # zero_division=nan leaves classes with no true and no predicted example out of the mean.
    kw = {} if task == MULTI_LABEL else {"labels": list(range(k))}
    value = f1_score(labels, pred, average="macro", zero_division=np.nan, **kw)
    return _defined(value, "macro_f1", "no class has a true or predicted example", undefined)


def _per_class(task, labels, pred, names, undefined) -> list[dict]:
    kw = {} if task == MULTI_LABEL else {"labels": list(range(len(names)))}
    p, r, f, support = precision_recall_fscore_support(
        labels, pred, average=None, zero_division=np.nan, **kw
    )
    rows = []
    for i, name in enumerate(names):
        rows.append(
            {
                "name": name,
                "precision": _defined(
                    p[i], f"precision[{name}]", "nothing was predicted as this class", undefined
                ),
                "recall": _defined(
                    r[i], f"recall[{name}]", "no true example of this class", undefined
                ),
                "f1": _defined(
                    f[i], f"f1[{name}]", "no true and no predicted example of this class", undefined
                ),
                "support": int(support[i]),
            }
        )
    return rows


def _confusion(task, labels, pred, k) -> list:
    """Rows are the true class; for multi-label one [[TN, FP], [FN, TP]] per label."""
    if task == MULTI_LABEL:
        return multilabel_confusion_matrix(labels, pred).tolist()
    return confusion_matrix(labels, pred, labels=list(range(k))).tolist()


def _qwk(labels, pred, k, undefined) -> float | None:
    # sklearn warns and gives NaN when truth and prediction share one class only.
    value = _quiet(cohen_kappa_score, labels, pred, weights="quadratic", labels=list(range(k)))
    reason = "truth and prediction are one and the same class: no chance disagreement"
    return _defined(value, "qwk", reason, undefined)


def _task_ece(task, labels, scores, pred) -> float:
    if task != MULTI_LABEL:
        confidence = scores[np.arange(len(scores)), pred]
        return _ece(confidence, pred == labels)
    per_label = []
    for j in range(scores.shape[1]):
        confidence = np.where(pred[:, j] == 1, scores[:, j], 1 - scores[:, j])
        per_label.append(_ece(confidence, pred[:, j] == labels[:, j]))
    return float(np.mean(per_label))


def _ece(confidence: np.ndarray, correct: np.ndarray) -> float:
    """ECE over ECE_BINS equal-width right-closed bins: sum |sum(correct) - sum(conf)| / n."""
    bins = _ece_bins(confidence)
    conf_sum = np.bincount(bins, weights=confidence, minlength=ECE_BINS)
    hit_sum = np.bincount(bins, weights=correct.astype(np.float64), minlength=ECE_BINS)
    return float(np.abs(hit_sum - conf_sum).sum() / len(confidence))


def _ece_bins(confidence: np.ndarray) -> np.ndarray:
    """The bin of each confidence: ECE_BINS equal-width right-closed bins over [0, 1]."""
    edges = np.linspace(0, 1, ECE_BINS + 1)
    return np.clip(np.searchsorted(edges[1:], confidence, side="left"), 0, ECE_BINS - 1)


# --- helpers ----------------------------------------------------------------------------------


def _defined(value, key: str, reason: str, undefined: dict) -> float | None:
    if np.isfinite(value):
        return float(value)
    undefined[key] = reason
    return None


def _quiet(fn, *args, **kwargs):
    """Call an sklearn metric whose undefined cases the caller handles (NaN -> None)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)
