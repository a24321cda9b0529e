"""How sure a test metric is: bootstrap intervals over test images and paired tests of two runs.

Intervals resample test images with replacement (SciPy's ``scipy.stats.bootstrap``, percentile
method, seeded), recomputing ACC and AUC exactly as ``medclf.metrics`` does. A resample whose AUC
is undefined (one class drawn only) is left out of the AUC's percentiles and counted.

Paired tests compare two runs scored on the same test images:

- AUC, binary task: DeLong's test (DeLong, DeLong & Clarke-Pearson 1988) with the fast midrank
  algorithm of Sun & Xu (2014); two-sided normal p-value of the AUC difference.
- ACC, single-label tasks: McNemar's exact test, a two-sided binomial test (SciPy) on the images
  exactly one of the two runs gets right.
- Any metric, any task (multi-class and multi-label AUC, multi-label ACC, where the tests above do
  not apply as such): a paired bootstrap interval of the difference (same resampled images for
  both runs).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

from medclf.errors import InputError
from medclf.metrics import MULTI_LABEL, THRESHOLD, medmnist_acc, medmnist_auc

CONFIDENCE = 0.95
RESAMPLES = 1000
METRICS = {"acc": medmnist_acc, "auc": medmnist_auc}


def bootstrap_interval(
    task: str,
    labels: np.ndarray,
    scores: np.ndarray,
    metric: str,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> dict:
    """The metric's percentile bootstrap interval over images: {"low", "high", "method", ...}."""
    return mean_interval(
        task, labels, [scores], metric, seed=seed, resamples=resamples, confidence=confidence
    )


def mean_interval(
    task: str,
    labels: np.ndarray,
    runs: list[np.ndarray],
    metric: str,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> dict:
    """Interval of the mean metric of several runs (seeds) scored on the same images: each
    resample draws images once and scores every run on them, so the interval is the image
    sampling's uncertainty of the mean a benchmark reports."""
    labels = np.asarray(labels)
    _same_images(labels, *runs)
    on = [_on_images(task, labels, np.asarray(s), metric) for s in runs]
    values = _resampled(lambda idx: sum(f(idx) for f in on) / len(on), len(labels), seed, resamples)
    return _percentiles(values, confidence, seed, resamples)


def paired_bootstrap(
    task: str,
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    metric: str,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> dict:
    """Interval of metric(a) - metric(b), both runs scored on the same resampled images."""
    labels, a, b = np.asarray(labels), np.asarray(scores_a), np.asarray(scores_b)
    _same_images(labels, a, b)
    on_a, on_b = _on_images(task, labels, a, metric), _on_images(task, labels, b, metric)
    values = _resampled(lambda idx: on_a(idx) - on_b(idx), len(labels), seed, resamples)
    out = _percentiles(values, confidence, seed, resamples)
    everything = np.arange(len(labels))
    out["difference"] = float(on_a(everything) - on_b(everything))
    return out


def delong_test(labels: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict:
    """DeLong's test of two correlated binary AUCs: {"auc_a", "auc_b", "z", "p_value"}.

    ``score_a``/``score_b`` are each run's score for the positive class (one per image)."""
    labels = np.asarray(labels).reshape(-1)
    a, b = np.asarray(score_a, float).reshape(-1), np.asarray(score_b, float).reshape(-1)
    _same_images(labels, a, b)
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise InputError("DeLong's test needs at least two images of each class in the split.")
    aucs, v10, v01 = zip(*(_placements(s[positive], s[~positive]) for s in (a, b)), strict=True)
    cov = np.cov(np.vstack(v10)) / m + np.cov(np.vstack(v01)) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = aucs[0] - aucs[1]
    if var <= 0:  # identical rankings: no difference can be seen
        z, p = 0.0, 1.0
    else:
        z = diff / math.sqrt(var)
        p = float(2 * stats.norm.sf(abs(z)))
    return {"auc_a": aucs[0], "auc_b": aucs[1], "difference": diff, "z": z, "p_value": p}


def mcnemar_test(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict:
    """McNemar's exact test: {"only_a_right", "only_b_right", "p_value"} (binomial, two-sided)."""
    labels = np.asarray(labels).reshape(-1)
    pred_a, pred_b = np.asarray(pred_a).reshape(-1), np.asarray(pred_b).reshape(-1)
    _same_images(labels, pred_a, pred_b)
    right_a, right_b = pred_a == labels, pred_b == labels
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p}


def compare_runs(
    task: str, labels, scores_a, scores_b, *, seed: int = 0, resamples: int = RESAMPLES
) -> dict:
    """Every paired comparison that applies to the task, keyed by metric."""
    labels, a, b = np.asarray(labels), np.asarray(scores_a), np.asarray(scores_b)
    out = {
        m: {"bootstrap": paired_bootstrap(task, labels, a, b, m, seed=seed, resamples=resamples)}
        for m in METRICS
    }
    if task == "binary-class":
        out["auc"]["delong"] = delong_test(labels, a[:, -1], b[:, -1])
    if task != MULTI_LABEL:
        out["acc"]["mcnemar"] = mcnemar_test(
            labels, _single_label_pred(task, a), _single_label_pred(task, b)
        )
    return out


def _single_label_pred(task: str, scores: np.ndarray) -> np.ndarray:
    if task == "binary-class":
        return (scores[:, -1] > THRESHOLD).astype(np.int64)
    return scores.argmax(axis=1)


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components from midranks (Sun & Xu 2014, Algorithm 1)."""
    m, n = len(pos), len(neg)
    tx, ty = stats.rankdata(pos), stats.rankdata(neg)
    tz = stats.rankdata(np.concatenate([pos, neg]))
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:m] - tx) / n  # per positive: the share of negatives it outranks (ties half)
    v01 = 1.0 - (tz[m:] - ty) / m  # per negative: the share of positives that outrank it
    return float(auc), v10, v01


def _resampled(statistic, n: int, seed: int, resamples: int) -> np.ndarray:
    """The statistic over SciPy's bootstrap resamples of image indices (paired by construction)."""
    if n < 2:
        raise InputError("A bootstrap interval needs at least two test images.")
    with warnings.catch_warnings():  # only the distribution is used, not SciPy's own interval
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (np.arange(n),),
            lambda idx: statistic(idx.astype(np.int64)),
            vectorized=False,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    return np.asarray(result.bootstrap_distribution, dtype=float)


def _percentiles(values: np.ndarray, confidence: float, seed: int, resamples: int) -> dict:
    finite = values[np.isfinite(values)]
    alpha = (1 - confidence) / 2
    low, high = (None, None)
    if len(finite):
        low, high = (float(v) for v in np.quantile(finite, [alpha, 1 - alpha]))
    return {
        "low": low,
        "high": high,
        "confidence": confidence,
        "method": "percentile bootstrap over test images (scipy.stats.bootstrap)",
        "resamples": resamples,
        "undefined_resamples": int(len(values) - len(finite)),
        "seed": seed,
    }


def _on_images(task: str, labels: np.ndarray, scores: np.ndarray, metric: str):
    """The metric of a resample, given as image indices. ACC is the mean of a fixed per-image
    (per-label) correctness, which equals MedMNIST's ACC and costs one mean per resample."""
    if metric not in METRICS:
        raise InputError(f"Unknown metric {metric!r}; use one of {', '.join(METRICS)}.")
    if metric == "acc":
        correct = _correct(task, labels, scores)
        return lambda idx: float(correct[idx].mean())
    return lambda idx: medmnist_auc(task, labels[idx], scores[idx])


def _correct(task: str, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    medmnist_acc(task, labels, scores)  # the same validation, one line on bad input
    if task == MULTI_LABEL:
        return (scores > THRESHOLD).astype(np.int64) == labels
    return _single_label_pred(task, scores) == labels.reshape(-1)


def _same_images(labels, *scores) -> None:
    if any(len(s) != len(labels) for s in scores):
        raise InputError("The two runs were scored on different numbers of test images.")
