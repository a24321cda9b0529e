"""The NumPy models as scikit-learn estimators: check_estimator, clone, search, pipelines."""

from unittest import SkipTest

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from medclf.models.numpy_models import MLP, LogisticRegression, Perceptron, load_model

# Checks each model is expected to fail, and why (run anyway; xfail_strict: passing fails).
EXPECTED_FAILED = {
    "check_n_features_in_after_fitting": "a wrong feature count raises a ValueError, but in "
    "medclf's words ('X has 19 features but the model was built for 20; use the same features "
    "(and bias column) as in training'), not scikit-learn's, which the check matches",
}
# Checks scikit-learn itself skips here, and why (any other skip fails the test).
SKIPPED = {
    "check_array_api_input": "SCIPY_ARRAY_API is not set; the models are NumPy-only anyway",
    "check_classifier_data_not_an_array": "pandas is not installed (its pandas half is skipped)",
}


@parametrize_with_checks(
    [Perceptron(), LogisticRegression(), MLP(hidden_sizes=(16,))],
    expected_failed_checks=lambda est: EXPECTED_FAILED,
    xfail_strict=True,
)
def test_scikit_learn_check_estimator(estimator, check):
    try:
        check(estimator)
    except SkipTest as skip:
        name = check.func.__name__ if hasattr(check, "func") else check.__name__
        assert name in SKIPPED, f"{name} skipped but not listed: {skip}"
        raise


def data(n=120, f=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    X = rng.normal(size=(n, f)) + y[:, None] * 0.8
    return X, y


def test_string_labels_train_as_their_sorted_indices():
    X, y = data()
    names = np.array(["cyst", "drusen", "normal"])
    by_name = LogisticRegression(lr=0.05, epochs=3).fit(X, names[y])
    by_index = LogisticRegression(lr=0.05, epochs=3).fit(X, y)
    assert by_name.classes_.tolist() == names.tolist()
    np.testing.assert_array_equal(by_name.W_, by_index.W_)
    np.testing.assert_array_equal(by_name.predict(X), names[by_index.predict(X)])
    assert by_name.score(X, names[y]) == by_index.score(X, y)


def test_fit_starts_afresh_unless_warm_start():
    X, y = data()
    model = MLP(hidden_sizes=(8,), lr=0.01, epochs=2)
    first = [W.copy() for W in model.fit(X, y).weights_]
    again = model.fit(X, y)
    assert len(again.history_) == 2
    for a, b in zip(first, again.weights_, strict=True):
        np.testing.assert_array_equal(a, b)
    warm = MLP(hidden_sizes=(8,), lr=0.01, epochs=2, warm_start=True).fit(X, y).fit(X, y, 3)
    whole = MLP(hidden_sizes=(8,), lr=0.01, epochs=5).fit(X, y)
    assert [r["epoch"] for r in warm.history_] == [1, 2, 3, 4, 5]
    for a, b in zip(warm.weights_, whole.weights_, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", [Perceptron, LogisticRegression, MLP])
def test_k_partial_fits_equal_fit_with_k_epochs(cls):
    X, y = data()
    whole = cls(epochs=3).fit(X, y)
    steps = cls()
    for _ in range(3):
        steps.partial_fit(X, y)
    assert len(steps.history_) == 3
    for key, value in whole.params().items():
        np.testing.assert_array_equal(steps.params()[key], value)


def test_partial_fit_takes_every_class_on_its_first_call():
    X, y = data()
    model = LogisticRegression().partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    assert model.classes_.tolist() == [0, 1, 2] and model.W_.shape == (3, X.shape[1])
    model.partial_fit(X, y)


def test_only_models_with_probabilities_offer_predict_proba():
    assert not hasattr(Perceptron(), "predict_proba")
    assert hasattr(LogisticRegression(), "predict_proba") and hasattr(MLP(), "predict_proba")


def test_grid_search_and_clone_equal_a_manual_loop():
    X, y = data(n=150)
    grid = {"lr": [0.001, 0.05], "epochs": [1, 4]}
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(LogisticRegression(), grid, cv=cv).fit(X, y)
    for params, mean in zip(
        search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
    ):
        scores = [
            clone(LogisticRegression()).set_params(**params).fit(X[a], y[a]).score(X[b], y[b])
            for a, b in cv.split(X)
        ]
        assert mean == pytest.approx(np.mean(scores), abs=1e-12)
    best = LogisticRegression(**search.best_params_).fit(X, y)
    np.testing.assert_array_equal(search.best_estimator_.W_, best.W_)


def test_pipeline_and_cross_val_score():
    X, y = data(n=150)
    pipe = make_pipeline(StandardScaler(), MLP(hidden_sizes=(8,), lr=0.02, epochs=5))
    cv = KFold(3, shuffle=True, random_state=1)
    scores = cross_val_score(pipe, X, y, cv=cv)
    manual = [clone(pipe).fit(X[a], y[a]).score(X[b], y[b]) for a, b in cv.split(X)]
    np.testing.assert_allclose(scores, manual)
    assert scores.mean() > 0.6


def test_a_loaded_checkpoint_continues_and_a_saved_model_starts_afresh(tmp_path):
    X, y = data()
    model = MLP(hidden_sizes=(8,), lr=0.01, n_classes=3).fit(X, y, 2)
    ckpt = load_model(model.save(tmp_path / "checkpoint.npz", training_state=True))
    assert ckpt.warm_start and len(ckpt.history_) == 2
    ckpt.fit(X, y, 1)  # what the run lifecycle does on resume
    whole = MLP(hidden_sizes=(8,), lr=0.01, n_classes=3).fit(X, y, 3)
    assert [r["train_loss"] for r in ckpt.history_] == [r["train_loss"] for r in whole.history_]
    for a, b in zip(ckpt.weights_, whole.weights_, strict=True):
        np.testing.assert_array_equal(a, b)
    saved = load_model(model.save(tmp_path / "model.npz"))
    assert not saved.warm_start and saved.get_params() == model.get_params()


def test_string_classes_survive_save_and_load(tmp_path):
    X, y = data()
    names = np.array(["a", "b", "c"])
    model = Perceptron(epochs=2).fit(X, names[y])
    again = load_model(model.save(tmp_path / "p.npz"))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    assert again.classes_.tolist() == ["a", "b", "c"]


@pytest.mark.parametrize(
    "model, params",
    [
        (LogisticRegression, {"epochs": 1.5}),
        (LogisticRegression, {"epochs": True}),
        (LogisticRegression, {"lr": float("inf")}),
        (LogisticRegression, {"lr": float("nan")}),
        (LogisticRegression, {"batch_size": 0}),
        (LogisticRegression, {"init_std": -1.0}),
        (MLP, {"hidden_sizes": (1.5,)}),
        (MLP, {"init_mean": float("inf")}),
        (Perceptron, {"seed": -1}),
        (Perceptron, {"dtype": "float16"}),
    ],
)
def test_fit_refuses_bad_hyperparameters_as_scikit_learn_does(model, params):
    """Nothing truncated (1.5 epochs as 1) or left to give NaN probabilities (lr = inf): the
    error is scikit-learn's (a ValueError) and medclf's one line (a ConfigError)."""
    from sklearn.utils._param_validation import InvalidParameterError

    from medclf.errors import ConfigError

    X, y = np.random.default_rng(0).random((20, 4)), np.arange(20) % 2
    with pytest.raises(InvalidParameterError) as caught:
        model(**params).fit(X, y)
    assert isinstance(caught.value, ConfigError) and next(iter(params)) in str(caught.value)


def test_fit_refuses_a_fractional_epochs_argument():
    from medclf.errors import ConfigError

    X, y = np.random.default_rng(0).random((20, 4)), np.arange(20) % 2
    with pytest.raises(ConfigError, match="epochs == 2.5"):
        Perceptron().fit(X, y, epochs=2.5)
