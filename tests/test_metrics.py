"""medclf.metrics against independent computations: sklearn called directly, hand counts."""

import csv
import io
import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    mean_absolute_error,
    precision_recall_fscore_support,
    roc_auc_score,
)

from medclf.errors import InputError
from medclf.metrics import TASKS, medmnist_acc, medmnist_auc, medmnist_csv, task_metrics

BINARY, MULTI, ORDINAL, MULTI_LABEL = TASKS
NAMES = {
    BINARY: ["normal", "pneumonia"],
    MULTI: ["cnv", "dme", "drusen", "normal"],
    ORDINAL: ["g0", "g1", "g2", "g3", "g4"],
    MULTI_LABEL: ["effusion", "mass", "nodule"],
}


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _case(task, n=120, seed=0):
    """Informative but imperfect scores, every class present in truth and prediction."""
    rng = np.random.default_rng(seed)
    k = len(NAMES[task])
    if task == MULTI_LABEL:
        labels = rng.integers(0, 2, (n, k))
        scores = 1 / (1 + np.exp(-(2 * labels - 1 + rng.normal(0, 1.2, (n, k)))))
        return labels, scores
    labels = rng.integers(0, k, n)
    scores = _softmax(2 * np.eye(k)[labels] + rng.normal(0, 1.0, (n, k)))
    return labels, scores


def _predicted(task, scores):
    if task == BINARY:
        return (scores[:, 1] > 0.5).astype(int)
    if task == MULTI_LABEL:
        return (scores > 0.5).astype(int)
    return scores.argmax(axis=1)


@pytest.mark.parametrize("task", TASKS)
def test_acc_and_auc_equal_sklearn(task):
    labels, scores = _case(task)
    if task == BINARY:
        auc = roc_auc_score(labels, scores[:, 1])
        acc = accuracy_score(labels, scores[:, 1] > 0.5)
    elif task == MULTI_LABEL:
        auc = roc_auc_score(labels, scores, average="macro")
        acc = np.mean(labels == (scores > 0.5))
    else:
        auc = roc_auc_score(labels, scores, multi_class="ovr", average="macro")
        acc = accuracy_score(labels, scores.argmax(axis=1))
    result = task_metrics(task, labels, scores, NAMES[task])
    assert medmnist_auc(task, labels, scores) == pytest.approx(auc, abs=1e-12)
    assert medmnist_acc(task, labels, scores) == pytest.approx(acc, abs=1e-12)
    assert result["auc"] == pytest.approx(auc, abs=1e-12)
    assert result["acc"] == pytest.approx(acc, abs=1e-12)
    assert result["n"] == len(labels)


def test_threshold_is_strict_like_medmnist():
    scores = np.array([[0.5, 0.5], [0.4, 0.6]])
    assert medmnist_acc(BINARY, np.array([1, 1]), scores) == 0.5
    assert medmnist_acc(MULTI_LABEL, np.array([[1, 1]]), np.array([[0.5, 0.6]])) == 0.5


@pytest.mark.parametrize("task", TASKS)
def test_rates_and_per_class_equal_sklearn(task):
    labels, scores = _case(task)
    pred = _predicted(task, scores)
    result = task_metrics(task, labels, scores, NAMES[task])
    if task == MULTI_LABEL:
        balanced = np.mean([balanced_accuracy_score(labels[:, j], pred[:, j]) for j in range(3)])
    else:
        balanced = balanced_accuracy_score(labels, pred)
    p, r, f, s = precision_recall_fscore_support(labels, pred, average=None, zero_division=0)
    assert len(p) == len(NAMES[task]) and np.all(p > 0) and np.all(r > 0)  # a real comparison
    assert result["balanced_acc"] == pytest.approx(balanced, abs=1e-12)
    assert result["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"), abs=1e-12)
    for i, row in enumerate(result["per_class"]):
        assert row["name"] == NAMES[task][i]
        assert row["precision"] == pytest.approx(p[i], abs=1e-12)
        assert row["recall"] == pytest.approx(r[i], abs=1e-12)
        assert row["f1"] == pytest.approx(f[i], abs=1e-12)
        assert row["support"] == s[i]
    assert result["undefined"] == {}
    assert ("mae" in result) == ("qwk" in result) == (task == ORDINAL)


@pytest.mark.parametrize("task", [BINARY, MULTI, ORDINAL])
def test_confusion_matrix_equals_hand_count(task):
    labels, scores = _case(task)
    k = len(NAMES[task])
    pred = _predicted(task, scores)
    counts = [[0] * k for _ in range(k)]
    for t, p in zip(labels, pred, strict=True):
        counts[t][p] += 1
    assert task_metrics(task, labels, scores, NAMES[task])["confusion_matrix"] == counts


def test_multi_label_confusion_is_tn_fp_fn_tp_per_label():
    labels, scores = _case(MULTI_LABEL)
    matrices = task_metrics(MULTI_LABEL, labels, scores, NAMES[MULTI_LABEL])["confusion_matrix"]
    assert len(matrices) == 3
    for j, matrix in enumerate(matrices):
        counts = [[0, 0], [0, 0]]
        for t, s in zip(labels[:, j], scores[:, j], strict=True):
            counts[t][int(s > 0.5)] += 1
        assert matrix == counts


def test_ordinal_mae_and_qwk():
    labels, scores = _case(ORDINAL)
    pred = scores.argmax(axis=1)
    result = task_metrics(ORDINAL, labels, scores, NAMES[ORDINAL])
    hand_mae = sum(abs(int(t) - int(p)) for t, p in zip(labels, pred, strict=True)) / len(labels)
    assert result["mae"] == pytest.approx(hand_mae, abs=1e-12)
    assert result["mae"] == pytest.approx(mean_absolute_error(labels, pred), abs=1e-12)
    qwk = cohen_kappa_score(labels, pred, weights="quadratic")
    assert result["qwk"] == pytest.approx(qwk, abs=1e-12)
    assert result["qwk"] != pytest.approx(cohen_kappa_score(labels, pred), abs=1e-6)  # weighted


# Six images, positive score p, labels y: predictions 1, 1, 1, 1, 0, 1 with confidences
# 0.58, 0.6, 0.72, 0.76, 0.81, 0.86 and hits no, yes, yes, no, yes, no. Right-closed bins of
# 1/15: {0.58, 0.6} in (8/15, 9/15], 0.72 and 0.76 apart, {0.81, 0.86} in (12/15, 13/15]:
# ECE = (|1 - 1.18| + |1 - 0.72| + |0 - 0.76| + |1 - 1.67|) / 6 = 1.89 / 6 = 0.315.
# (10 bins give 0.2217, 20 bins 0.3783, left-closed bins 0.4483.)
ECE_P = np.array([0.58, 0.6, 0.72, 0.76, 0.19, 0.86])
ECE_Y = np.array([0, 1, 1, 0, 0, 0])
ECE = 0.315


def test_ece_hand_example_binary_and_multi_class():
    binary = np.stack([1 - ECE_P, ECE_P], axis=1)
    assert task_metrics(BINARY, ECE_Y, binary, NAMES[BINARY])["ece"] == pytest.approx(ECE)
    # The same confidences and hits as a 3-class problem: ECE only sees the predicted class.
    pred = np.array([1, 1, 1, 1, 0, 1])
    conf = np.array([0.58, 0.6, 0.72, 0.76, 0.81, 0.86])
    three = np.zeros((6, 3))
    three[np.arange(6), pred] = conf
    three[:, 2] = 1 - conf
    result = task_metrics(MULTI, ECE_Y, three, ["a", "b", "c"])
    assert result["ece"] == pytest.approx(ECE)


def test_ece_multi_label_is_mean_of_per_label_binary_ece():
    # Label 1: always 0.95 and always positive: ECE 0.05.
    scores = np.stack([ECE_P, np.full(6, 0.95)], axis=1)
    labels = np.stack([ECE_Y, np.ones(6, int)], axis=1)
    ece = task_metrics(MULTI_LABEL, labels, scores, ["x", "y"])["ece"]
    assert ece == pytest.approx((ECE + 0.05) / 2)


def test_single_class_split_gives_none_with_reasons_and_no_warning():
    scores = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.zeros(3, int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # undefined cases are handled, not warned about
        result = task_metrics(BINARY, labels, scores, NAMES[BINARY])
        nan_auc = medmnist_auc(BINARY, labels, scores)
    assert result["auc"] is None and "single class" in result["undefined"]["auc"]
    assert np.isnan(nan_auc)
    positive = result["per_class"][1]
    assert positive["recall"] is None and "recall[pneumonia]" in result["undefined"]
    assert positive["precision"] == 0.0  # one image predicted positive, wrongly
    json.dumps(result, allow_nan=False)


def test_absent_class_and_constant_score():
    # Class 'c' never occurs and is never predicted; every row is the same score.
    labels = np.array([0, 1, 0, 1])
    scores = np.tile([0.5, 0.3, 0.2], (4, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = task_metrics(MULTI, labels, scores, ["a", "b", "c"])
    assert result["auc"] is None and "c" in result["undefined"]["auc"]
    assert result["per_class"][1]["precision"] is None  # 'b' is never predicted
    assert result["per_class"][2]["f1"] is None
    assert set(result["undefined"]) >= {"auc", "precision[b]", "recall[c]", "f1[c]"}
    expected = f1_score(
        labels, scores.argmax(1), labels=[0, 1, 2], average="macro", zero_division=np.nan
    )
    assert result["macro_f1"] == pytest.approx(expected)
    json.dumps(result, allow_nan=False)


def test_constant_binary_score_has_tie_auc_like_medmnist():
    # Ties count half in the Mann-Whitney AUC, in sklearn and therefore in MedMNIST.
    labels = np.array([0, 1, 0, 1])
    scores = np.full((4, 2), 0.5)
    result = task_metrics(BINARY, labels, scores, NAMES[BINARY])
    assert result["auc"] == 0.5 == roc_auc_score(labels, scores[:, 1])
    assert result["per_class"][1]["precision"] is None
    assert "precision[pneumonia]" in result["undefined"]


def test_multi_label_absent_label_and_undefined_qwk():
    labels = np.array([[1, 0], [0, 0], [1, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = task_metrics(MULTI_LABEL, labels, scores, ["effusion", "hernia"])
        ordinal = task_metrics(ORDINAL, np.zeros(3, int), np.tile([0.6, 0.3, 0.1], (3, 1)), "abc")
    assert result["auc"] is None and "hernia" in result["undefined"]["auc"]
    assert "effusion" not in result["undefined"]["auc"]
    assert ordinal["qwk"] is None and "qwk" in ordinal["undefined"]
    assert ordinal["mae"] == 0.0
    json.dumps([result, ordinal], allow_nan=False)


def test_labels_shaped_like_medmnist_files_are_accepted():
    labels, scores = _case(MULTI)
    flat = task_metrics(MULTI, labels, scores, NAMES[MULTI])
    assert task_metrics(MULTI, labels[:, None], scores, NAMES[MULTI]) == flat


GOOD = (np.array([0, 1]), np.array([[0.7, 0.3], [0.2, 0.8]]))


@pytest.mark.parametrize(
    ("task", "labels", "scores", "names", "words"),
    [
        ("multiclass", *GOOD, "ab", "Unknown task"),
        (BINARY, GOOD[0], np.array([[np.nan, 1.0], [0.2, 0.8]]), "ab", "NaN"),
        (BINARY, np.array([0, 1, 1]), GOOD[1], "ab", "shape"),
        (BINARY, np.array([0, 2]), GOOD[1], "ab", "0..1"),
        (BINARY, GOOD[0], np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]), "abc", "2 columns"),
        (MULTI, GOOD[0], np.array([[2.0, -1.0], [0.5, 0.5]]), "ab", "[0, 1]"),
        (MULTI, GOOD[0], np.array([[0.7, 0.7], [0.2, 0.8]]), "ab", "sum to 1"),
        (MULTI, GOOD[0].astype(float), GOOD[1], "ab", "integers"),
        (MULTI, *GOOD, "abc", "class names"),
        (MULTI, GOOD[0], np.array([0.3, 0.8]), "ab", "shape"),
        (MULTI_LABEL, GOOD[0], GOOD[1], "ab", "shape"),
        (MULTI_LABEL, np.array([[0, 2], [1, 0]]), GOOD[1], "ab", "0 or 1"),
    ],
)
def test_bad_inputs_raise_one_line_input_error(task, labels, scores, names, words):
    with pytest.raises(InputError) as info:
        task_metrics(task, labels, scores, list(names))
    message = str(info.value)
    assert words in message and "\n" not in message and message.endswith(".")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_medmnist_csv_round_trips(dtype):
    _, scores = _case(MULTI, n=25)
    scores = scores.astype(dtype)
    scores[0, 0] = 1e-9  # scientific notation must read back too
    text = medmnist_csv(scores)
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 25 and all(len(row) == 5 for row in rows)  # no header, index + 4 scores
    assert [int(row[0]) for row in rows] == list(range(25))
    back = np.array([[float(v) for v in row[1:]] for row in rows]).astype(dtype)
    np.testing.assert_array_equal(back, scores)


def test_medmnist_csv_rejects_nan():
    with pytest.raises(InputError, match="NaN"):
        medmnist_csv(np.array([[0.5, np.nan]]))
