"""Classic scikit-learn baselines: scores in MedMNIST's form, metrics equal to sklearn's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medclf.data.load import load_dataset
from medclf.data.synthetic import write_synthetic
from medclf.errors import ConfigError
from medclf.metrics import task_metrics
from medclf.models.classic import (
    CLASSIC,
    CLASSIC_TASKS,
    build_classic,
    check_size,
    check_task,
    classic_scores,
    fit_classic,
)
from medclf.models.registry import ALL_TASKS

REAL = Path(__file__).resolve().parents[2] / "shared" / "data"
# Smaller than the defaults so that every model fits in about a second.
FAST = {
    "sklearn-logreg": {"max_iter": 200},
    "sklearn-rf": {"n_estimators": 40},
    "sklearn-hgb": {"max_iter": 10},
    "sklearn-knn": {"pca_components": 20},
    "sklearn-svm": {},
}


def features(split):
    return split.images.reshape(len(split), -1).astype(np.float32) / 255


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny synthetic files: multi-class (OCTMNIST), binary (PneumoniaMNIST), multi-label."""
    folder = tmp_path_factory.mktemp("classic")
    return {
        like: load_dataset(write_synthetic(folder / f"{like}.npz", like, scale, 0))
        for like, scale in [("octmnist", 0.01), ("pneumoniamnist", 0.1), ("chestmnist", 0.01)]
    }


def fitted(name, ds, seed=0, settings=None):
    model = build_classic(name, FAST[name] if settings is None else settings, seed)
    return fit_classic(model, features(ds.train), ds.train.labels)


def positive_scores(model, X):
    """sklearn's own ranking score of the positive class, independent of classic_scores."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return model.decision_function(X)


@pytest.mark.parametrize("name", list(CLASSIC))
def test_multiclass_scores_and_metrics_match_sklearn(data, name):
    ds = data["octmnist"]
    model = fitted(name, ds)
    X, y = features(ds.val), ds.val.labels
    scores = classic_scores(model, X, ds.info.task)
    assert scores.shape == (len(y), 4)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-6)
    m = task_metrics(ds.info.task, y, scores, ds.class_names)
    assert m["acc"] == pytest.approx(model.score(X, y), abs=1e-12)
    if hasattr(model, "predict_proba"):
        oracle = roc_auc_score(y, model.predict_proba(X), multi_class="ovr")
        assert m["auc"] == pytest.approx(oracle, abs=1e-12)
    assert m["acc"] > 0.4  # four classes: better than chance on learnable synthetic images


@pytest.mark.parametrize("name", list(CLASSIC))
def test_binary_metrics_match_sklearn(data, name):
    ds = data["pneumoniamnist"]
    model = fitted(name, ds)
    X, y = features(ds.val), ds.val.labels
    scores = classic_scores(model, X, ds.info.task)
    assert scores.shape == (len(y), 2)
    m = task_metrics(ds.info.task, y, scores, ds.class_names)
    assert m["acc"] == pytest.approx(model.score(X, y), abs=1e-12)
    assert m["auc"] == pytest.approx(roc_auc_score(y, positive_scores(model, X)), abs=1e-12)


@pytest.mark.parametrize("name", list(CLASSIC))
def test_same_seed_same_scores(data, name):
    ds = data["pneumoniamnist"]
    X = features(ds.val)
    a, b = (classic_scores(fitted(name, ds, seed=3), X, ds.info.task) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_seed_reaches_the_random_forest(data):
    ds = data["pneumoniamnist"]
    X = features(ds.val)
    a, b = (classic_scores(fitted("sklearn-rf", ds, seed=s), X, ds.info.task) for s in (1, 2))
    assert not np.array_equal(a, b)


def test_absent_class_gets_a_zero_column(data):
    ds = data["octmnist"]
    keep = ds.train.labels < 3
    model = build_classic("sklearn-logreg", FAST["sklearn-logreg"], 0)
    fit_classic(model, features(ds.train)[keep], ds.train.labels[keep])
    scores = classic_scores(model, features(ds.val), ds.info.task, n_classes=4)
    assert scores.shape == (len(ds.val), 4)
    assert np.all(scores[:, 3] == 0)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-6)


@pytest.mark.parametrize("name", [m for m, t in CLASSIC_TASKS.items() if len(t) == 4])
def test_multi_label_scores_and_metrics_match_sklearn(data, name):
    ds = data["chestmnist"]
    model = fitted(name, ds)
    X, y = features(ds.val), ds.val.labels
    scores = classic_scores(model, X, ds.info.task)
    assert scores.shape == y.shape == (len(y), 14)
    m = task_metrics(ds.info.task, y, scores, ds.class_names)
    assert m["acc"] == pytest.approx(np.mean(model.predict(X) == y), abs=1e-12)
    labels = [j for j in range(14) if 0 < y[:, j].sum() < len(y)]  # AUC needs both values
    proba = model.predict_proba(X)
    oracle = np.mean([roc_auc_score(y[:, j], proba[j][:, 1]) for j in labels])
    assert len(labels) == 14 and m["auc"] == pytest.approx(oracle, abs=1e-12)


def test_multi_label_refused_in_one_line_naming_able_models():
    check_task("sklearn-rf", "multi-label, binary-class")
    with pytest.raises(ConfigError) as err:
        check_task("sklearn-logreg", "multi-label, binary-class")
    text = str(err.value)
    assert "\n" not in text and "sklearn-rf" in text and "sklearn-knn" in text


def test_size_limit_refuses_in_one_line():
    check_size("sklearn-svm", 20_000, 784)
    check_size("sklearn-logreg", 1_000_000, 784)
    with pytest.raises(ConfigError) as err:
        check_size("sklearn-svm", 97_477, 784)
    text = str(err.value)
    assert "\n" not in text and "97,477" in text and "20,000" in text and "sklearn-hgb" in text
    with pytest.raises(ConfigError):  # wider images cost more per pair: a lower limit
        check_size("sklearn-svm", 12_000, 3 * 64 * 64)


def test_unknown_model_and_setting_refused():
    with pytest.raises(ConfigError, match="sklearn-rf"):
        build_classic("sklearn-xgb", {}, 0)
    with pytest.raises(ConfigError, match="n_estimators"):
        build_classic("sklearn-rf", {"trees": 5}, 0)


@pytest.mark.skipif(
    not (REAL / "breastmnist.npz").is_file(),
    reason=f"the genuine BreastMNIST file {REAL / 'breastmnist.npz'} is absent",
)
def test_logreg_on_real_breastmnist_beats_chance():
    ds = load_dataset(REAL / "breastmnist.npz")
    model = fitted("sklearn-logreg", ds, seed=42, settings={})
    scores = classic_scores(model, features(ds.test), ds.info.task)
    assert task_metrics(ds.info.task, ds.test.labels, scores, ds.class_names)["auc"] > 0.7


def test_defaults_are_json_and_hgb_keeps_every_iteration():
    assert json.loads(json.dumps(CLASSIC)) == CLASSIC
    hgb = build_classic("sklearn-hgb", {}, 0, threads=2)
    assert hgb.get_params()["early_stopping"] is False  # selection uses the given val split
    assert build_classic("sklearn-rf", {}, 0, threads=2).n_jobs == 2


# Each task's tiny synthetic file; kNN also with few PCA components (sklearn then builds a
# KD-tree, which writes types of its own), on raw pixels and with its default.
TASK_FILES = {
    "binary-class": ("pneumoniamnist", 0.02),
    "multi-class": ("octmnist", 0.003),
    "ordinal-regression": ("retinamnist", 0.2),
    "multi-label, binary-class": ("chestmnist", 0.003),
}
WRITTEN_SETTINGS = {
    "sklearn-logreg": [{"max_iter": 50}],
    "sklearn-rf": [{"n_estimators": 5}],
    "sklearn-hgb": [{"max_iter": 3}],
    "sklearn-knn": [{"pca_components": 5}, {"pca_components": 0}, {}],
    "sklearn-svm": [{"gamma": "scale"}, {"gamma": "auto"}],
}


def test_every_type_medclf_writes_is_on_the_exact_allow_list(tmp_path):
    """Every model file medclf writes (each sklearn model, each task it supports) holds only
    types skops trusts by default or family_sklearn.TRUSTED_TYPES names: a new scikit-learn that
    writes new types fails here instead of being trusted silently. No entry is a prefix or a
    builtin, and each is still written by some model."""
    import skops.io as sio

    import medclf
    from medclf.run.family_sklearn import TRUSTED_TYPES

    assert set(WRITTEN_SETTINGS) == set(CLASSIC)  # a new sklearn model needs its settings here
    assert not [t for t in TRUSTED_TYPES if t.startswith("builtins.") or t.endswith(".")]
    files = {
        task: write_synthetic(tmp_path / f"{like}.npz", like, scale, 0)
        for task, (like, scale) in TASK_FILES.items()
    }
    written = set()
    for name in CLASSIC:
        for task in CLASSIC_TASKS[name]:
            for i, settings in enumerate(WRITTEN_SETTINGS[name]):
                out = tmp_path / f"{name}-{ALL_TASKS.index(task)}-{i}"
                run = medclf.train(name, dataset=str(files[task]), out=out, **settings)
                untrusted = set(sio.get_untrusted_types(file=out / "model.skops"))
                assert untrusted <= set(TRUSTED_TYPES), (name, task, settings, untrusted)
                written |= untrusted
                images = load_dataset(files[task]).test.images[:3]
                assert run.predict(images).shape[0] == 3  # medclf's loader takes its own file
    assert written == set(TRUSTED_TYPES)


def test_fitted_trees_put_children_after_their_parent(data):
    """What medclf's model-file check relies on (family_sklearn.check_nodes): scikit-learn's
    tree builders (depth-first, best-first with max_leaf_nodes) and HGB's predictors store every
    child at a larger index than its parent, and leaves with no children."""
    from sklearn.ensemble import RandomForestClassifier

    ds = data["octmnist"]
    X, y = features(ds.train), ds.train.labels
    forests = [fitted("sklearn-rf", ds)]
    forests.append(RandomForestClassifier(5, max_leaf_nodes=30, random_state=0).fit(X, y))
    trees = [t.tree_ for f in forests for t in f.estimators_]
    arrays = [(t.children_left != -1, t.children_left, t.children_right) for t in trees]
    hgb = fitted("sklearn-hgb", ds)
    nodes = [p.nodes for predictors in hgb._predictors for p in predictors]
    arrays += [(n["is_leaf"] == 0, n["left"], n["right"]) for n in nodes]
    for internal, left, right in arrays:
        parent = np.flatnonzero(internal)
        assert len(parent) > 1
        assert np.all(left[parent] > parent) and np.all(right[parent] > parent)
        assert np.all(left[parent] < len(left)) and np.all(right[parent] < len(left))
    for t in trees:
        assert np.all(t.children_right[t.children_left == -1] == -1)
