"""Bootstrap intervals and paired tests against independent oracles."""

from math import comb

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medclf.errors import InputError
from medclf.stats import (
    bootstrap_interval,
    compare_runs,
    delong_test,
    mcnemar_test,
    paired_bootstrap,
)


def binary_scores(p):
    p = np.asarray(p, float)
    return np.stack([1 - p, p], axis=1)


def test_delong_components_equal_the_definition():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    a = np.round(rng.random(60) + 0.4 * labels, 1)  # rounded: ties, which midranks must count half
    b = np.round(rng.random(60) + 0.2 * labels, 1)
    pos, neg = labels == 1, labels == 0

    def components(s):  # O(m n) from DeLong's definition psi(x, y) = [x > y] + [x = y] / 2
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = components(a), components(b)
    m, n = pos.sum(), neg.sum()
    var = (
        np.var(v10a, ddof=1) / m
        + np.var(v01a, ddof=1) / n
        + np.var(v10b, ddof=1) / m
        + np.var(v01b, ddof=1) / n
        - 2 * (np.cov(v10a, v10b)[0, 1] / m + np.cov(v01a, v01b)[0, 1] / n)
    )
    result = delong_test(labels, a, b)
    assert result["auc_a"] == pytest.approx(roc_auc_score(labels, a), abs=1e-12)
    assert result["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert result["z"] == pytest.approx((auc_a - auc_b) / np.sqrt(var), rel=1e-9)


def test_delong_is_calibrated_under_the_null():
    rng = np.random.default_rng(2)
    p_values = []
    for _ in range(300):
        labels = rng.integers(0, 2, 100)
        signal = labels + rng.normal(0, 1, 100)
        a, b = signal + rng.normal(0, 1, 100), signal + rng.normal(0, 1, 100)  # equal AUCs
        p_values.append(delong_test(labels, a, b)["p_value"])
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09
    strong = rng.integers(0, 2, 300)
    better, worse = strong + rng.normal(0, 0.3, 300), strong + rng.normal(0, 3, 300)
    assert delong_test(strong, better, worse)["p_value"] < 1e-6


def test_delong_identical_runs_and_too_few_images():
    labels = np.array([0, 1, 0, 1, 1, 0])
    s = np.linspace(0, 1, 6)
    assert delong_test(labels, s, s)["p_value"] == 1.0
    with pytest.raises(InputError, match="two images of each class"):
        delong_test(np.array([0, 1, 1]), s[:3], s[:3])


def test_mcnemar_exact_binomial():
    labels = np.zeros(30, int)
    pred_a, pred_b = np.zeros(30, int), np.zeros(30, int)
    pred_b[:10] = 1  # a right, b wrong on 10 images
    pred_a[10:12] = 1  # b right, a wrong on 2
    result = mcnemar_test(labels, pred_a, pred_b)
    assert (result["only_a_right"], result["only_b_right"]) == (10, 2)
    expected = 2 * sum(comb(12, k) for k in range(3)) / 2**12
    assert result["p_value"] == pytest.approx(expected, rel=1e-12)
    assert mcnemar_test(labels, pred_a, pred_a)["p_value"] == 1.0


def test_bootstrap_interval_covers_the_truth():
    rng = np.random.default_rng(3)
    covered = 0
    for trial in range(60):
        labels = rng.integers(0, 2, 150)
        right = rng.random(150) < 0.8  # true ACC 0.8
        p = np.where(right == (labels == 1), 0.9, 0.1)
        interval = bootstrap_interval(
            "binary-class", labels, binary_scores(p), "acc", seed=trial, resamples=300
        )
        covered += interval["low"] <= 0.8 <= interval["high"]
    assert 0.85 <= covered / 60 <= 1.0


def test_resampled_acc_equals_medmnist_acc():
    from medclf.metrics import medmnist_acc
    from medclf.stats import _on_images

    rng = np.random.default_rng(6)
    for task, labels, scores in [
        ("binary-class", rng.integers(0, 2, 50), binary_scores(rng.random(50))),
        ("multi-class", rng.integers(0, 4, 50), rng.dirichlet(np.ones(4), 50)),
        ("multi-label, binary-class", rng.integers(0, 2, (50, 3)), rng.random((50, 3))),
    ]:
        idx = rng.integers(0, 50, 50)
        fast = _on_images(task, labels, scores, "acc")(idx)
        assert fast == pytest.approx(medmnist_acc(task, labels[idx], scores[idx]), abs=1e-12)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 120)
    scores = rng.dirichlet(np.ones(3), 120)
    scores[np.arange(120), labels] += 0.3
    scores /= scores.sum(axis=1, keepdims=True)
    one = bootstrap_interval("multi-class", labels, scores, "auc", seed=7, resamples=200)
    two = bootstrap_interval("multi-class", labels, scores, "auc", seed=7, resamples=200)
    other = bootstrap_interval("multi-class", labels, scores, "auc", seed=8, resamples=200)
    assert one == two and one != other
    auc = np.mean([roc_auc_score(labels == k, scores[:, k]) for k in range(3)])
    assert one["low"] < auc < one["high"]


def test_undefined_auc_resamples_are_counted_not_averaged():
    labels = np.array([1] + [0] * 9)  # a resample misses the one positive about 35 % of the time
    p = np.linspace(0.1, 0.9, 10)
    out = bootstrap_interval("binary-class", labels, binary_scores(p), "auc", resamples=200)
    assert 30 < out["undefined_resamples"] < 120
    assert out["low"] is not None


def test_paired_bootstrap_and_compare_runs():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 200)
    good = binary_scores(np.clip(labels * 0.6 + rng.random(200) * 0.4, 0, 1))
    bad = binary_scores(rng.random(200))
    diff = paired_bootstrap("binary-class", labels, good, bad, "acc", resamples=200)
    assert diff["low"] > 0
    same = paired_bootstrap("binary-class", labels, good, good, "auc", resamples=200)
    assert same["low"] == same["high"] == 0
    both = compare_runs("binary-class", labels, good, bad)
    assert both["auc"]["delong"]["p_value"] < 1e-6
    assert both["acc"]["mcnemar"]["only_a_right"] > both["acc"]["mcnemar"]["only_b_right"]
    multi = compare_runs(
        "multi-label, binary-class",
        np.stack([labels, 1 - labels], 1),
        np.stack([good[:, 1], good[:, 0]], 1),
        np.stack([bad[:, 1], bad[:, 0]], 1),
    )
    assert set(multi["acc"]) == {"bootstrap"} and set(multi["auc"]) == {"bootstrap"}


def test_bad_inputs_are_one_line():
    labels = np.array([0, 1, 0, 1])
    s = binary_scores([0.1, 0.9, 0.2, 0.8])
    with pytest.raises(InputError, match="Unknown metric"):
        bootstrap_interval("binary-class", labels, s, "f1")
    with pytest.raises(InputError, match="different numbers"):
        paired_bootstrap("binary-class", labels, s, s[:3], "acc")
    with pytest.raises(InputError, match="two test images"):
        bootstrap_interval("binary-class", labels[:1], s[:1], "acc")
