"""Classic scikit-learn baselines on flattened pixels, the family auto-sklearn searches.

Each model is a registry entry: a name, its default settings as plain JSON values
(``CLASSIC``), the tasks it supports (``CLASSIC_TASKS``) and, for the models whose cost grows
faster than the data, a training-size limit (``MAX_TRAIN``). ``build_classic`` turns a name and
its settings into an unfitted estimator; ``fit_classic`` fits it within a thread budget;
``classic_scores`` gives the probabilities MedMNIST's evaluator scores.

Inputs are pixels flattened and scaled to [0, 1] (float32), one row per image. Labels are (n,)
class indices, or (n, L) 0/1 for the multi-label task.

Scores. Single-label tasks: (n, K) rows summing to 1, from ``predict_proba``; the SVM has no
``predict_proba`` (sklearn's Platt scaling costs five extra fits and its probabilities can
disagree with ``predict``), so its scores are the softmax of its decision values: same argmax as
``predict``, same AUC as the decision values, not calibrated. Multi-label: (n, L) probability of
each label being 1; only random forest and kNN, which fit several outputs natively, take it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from medclf.errors import ConfigError, InputError
from medclf.models.registry import ALL_TASKS, MODELS, SINGLE_LABEL, builder

# Defaults and tasks are data beside each model's registry entry (medclf.models.registry).
MULTI_LABEL = ALL_TASKS[-1]
CLASSIC = {name: spec.defaults for name, spec in MODELS.items() if spec.family == "sklearn"}
CLASSIC_TASKS = {name: MODELS[name].tasks for name in CLASSIC}

# Largest training split at 784 features (28x28 gray). An RBF SVM fit costs O(n^2 d): measured
# on one shared core, synthetic OCTMNIST (a hard case: 60 % of images become support vectors)
# took 2 s for 2,500 images, 30 s for 10,000 and 140 s for 19,400, prediction up to a minute
# more; real PneumoniaMNIST (4,708) took 2 s. Wider images lower the limit by sqrt(784 / d).
MAX_TRAIN: dict[str, int] = {"sklearn-svm": 20_000}
REFERENCE_FEATURES = 28 * 28
SVM_CACHE_MB = 1000


def build_classic(name: str, settings: dict, seed: int, threads: int = 1) -> BaseEstimator:
    """An unfitted estimator for ``name`` with ``settings`` over its defaults (its registry
    entry's builder, one of the functions below)."""
    s = _settings(name, settings)  # an unknown name or setting: one line, first
    return builder(name)(s, seed, threads)


def logistic_regression(s: dict, seed: int, threads: int) -> BaseEstimator:
    # Standardised pixels let lbfgs converge; C=1 is sklearn's default L2 strength.
    model = LogisticRegression(C=s["C"], max_iter=s["max_iter"], random_state=seed)
    return make_pipeline(StandardScaler(), model)


def random_forest(s: dict, seed: int, threads: int) -> BaseEstimator:
    # Trees need no scaling; 300 trees is past the point where more stop helping.
    return RandomForestClassifier(
        n_estimators=s["n_estimators"],
        min_samples_leaf=s["min_samples_leaf"],
        n_jobs=threads,
        random_state=seed,
    )


def gradient_boosting(s: dict, seed: int, threads: int) -> BaseEstimator:
    # No internal early-stopping split: the lifecycle selects on the given validation split.
    return HistGradientBoostingClassifier(
        max_iter=s["max_iter"],
        learning_rate=s["learning_rate"],
        max_leaf_nodes=s["max_leaf_nodes"],
        early_stopping=False,
        random_state=seed,
    )


def knn(s: dict, seed: int, threads: int) -> BaseEstimator:
    # PCA to 50 components scored as raw pixels did on validation (PneumoniaMNIST,
    # BreastMNIST) and makes each distance 15x cheaper on large splits. 0 means raw pixels.
    model = KNeighborsClassifier(n_neighbors=s["n_neighbors"], weights="distance", n_jobs=threads)
    if s["pca_components"]:
        return make_pipeline(PCA(s["pca_components"], random_state=seed), model)
    return model


def svm(s: dict, seed: int, threads: int) -> BaseEstimator:
    # break_ties makes predict the argmax of decision_function, hence of the scores. A 1 GB
    # kernel cache halved the fit of 10,000 images (sklearn's 200 MB holds 5,000 rows of 5,000).
    model = SVC(
        C=s["C"], gamma=s["gamma"], break_ties=True, cache_size=SVM_CACHE_MB, random_state=seed
    )
    return make_pipeline(StandardScaler(), model)


def fit_classic(estimator: BaseEstimator, X: np.ndarray, y: np.ndarray, threads: int = 1):
    """Fit with BLAS and OpenMP (logistic regression, HGB, PCA) held to ``threads``."""
    with threadpool_limits(threads):
        return estimator.fit(X, y)


def check_task(name: str, task: str) -> None:
    """Refuse a task the model cannot fit, in one sentence naming the models that can."""
    _settings(name, {})
    if task not in CLASSIC_TASKS[name]:
        able = ", ".join(m for m, tasks in CLASSIC_TASKS.items() if task in tasks)
        raise ConfigError(f"{name} does not support the task '{task}'; use {able} or torch models")


def max_train(name: str, n_features: int) -> int | None:
    """The largest training split ``name`` accepts at ``n_features``, None for no limit."""
    if name not in MAX_TRAIN:
        return None
    return int(MAX_TRAIN[name] * min(1.0, math.sqrt(REFERENCE_FEATURES / n_features)))


def check_size(name: str, n_train: int, n_features: int) -> None:
    """Refuse a training split too large for ``name`` to fit in minutes, in one sentence."""
    limit = max_train(name, n_features)
    if limit is not None and n_train > limit:
        raise ConfigError(
            f"{name} trains in O(n^2): {n_train:,} training images of {n_features:,} features "
            f"exceed its limit of {limit:,}; use sklearn-hgb or torch-cnn, or pass "
            "--train-fraction"
        )


def classic_scores(
    estimator: BaseEstimator, X: np.ndarray, task: str, n_classes: int | None = None
) -> np.ndarray:
    """Probabilities as MedMNIST scores them: (n, K) rows summing to 1, or (n, L) for
    multi-label. ``n_classes`` K adds zero columns for classes absent from the training split
    (default: the classes the estimator saw)."""
    if task == MULTI_LABEL:
        return _multi_label_scores(estimator, X)
    if task not in SINGLE_LABEL:
        raise InputError(f"Unknown task {task!r}; use one of {(*SINGLE_LABEL, MULTI_LABEL)}.")
    if hasattr(estimator, "predict_proba"):
        p = estimator.predict_proba(X)
    else:
        d = estimator.decision_function(X)
        if d.ndim == 1:  # binary: one decision value; softmax([0, d]) is sigmoid(d)
            d = np.column_stack([np.zeros_like(d), d])
        p = softmax(d, axis=1)
    classes = np.asarray(estimator.classes_)
    out = np.zeros((len(p), n_classes or len(classes)))
    out[:, classes] = p
    return out


def _multi_label_scores(estimator: BaseEstimator, X: np.ndarray) -> np.ndarray:
    per_label = estimator.predict_proba(X)
    if not isinstance(per_label, list):
        raise InputError("Multi-label scores need an estimator fitted on an (n, L) label matrix.")
    out = np.zeros((len(X), len(per_label)))
    for j, (p, classes) in enumerate(zip(per_label, estimator.classes_, strict=True)):
        if 1 in classes:  # a label never 1 in training keeps probability 0
            out[:, j] = p[:, list(classes).index(1)]
    return out


def _settings(name: str, settings: dict) -> dict:
    if name not in CLASSIC:
        raise ConfigError(f"unknown classic model '{name}'; choose one of {', '.join(CLASSIC)}")
    unknown = sorted(set(settings) - set(CLASSIC[name]))
    if unknown:
        raise ConfigError(
            f"{name} has no setting {', '.join(unknown)}; its settings are "
            f"{', '.join(CLASSIC[name])}"
        )
    return {**CLASSIC[name], **settings}
