"""From-scratch models: gradients against torch autograd, compiled loops against plain NumPy."""

import numpy as np
import pytest
import torch

from medclf.errors import ConfigError, InputError
from medclf.models.numpy_models import MLP, LogisticRegression, Perceptron, load_model


def data(n=300, f=20, c=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, f)).astype(dtype) / 256, rng.integers(0, c, n)


def rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def test_logistic_gradient_matches_autograd():
    X, y = data()
    model = LogisticRegression(n_classes=4)
    model.train_epoch(X[:50], y[:50])  # move W away from 0
    loss, grad = model.gradient(X, y)
    W = torch.tensor(model.W_, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(torch.tensor(X) @ W.T, torch.tensor(y))
    ref.backward()
    assert abs(loss - ref.item()) <= 1e-10 * abs(ref.item())
    assert rel_err(grad, W.grad.numpy()) <= 1e-8


@pytest.mark.parametrize("hidden", [(7,), (9, 5), (6, 8, 5)])
def test_mlp_gradient_matches_autograd(hidden):
    X, y = data(n=64)
    model = MLP(hidden_sizes=hidden, init_mean=0.0, init_std=0.5, n_classes=4, seed=3)
    model.train_epoch(X[:5], y[:5])
    loss, dWs, dbs = model.gradient(X, y)
    Ws = [torch.tensor(W, requires_grad=True) for W in model.weights_]
    bs = [torch.tensor(b, requires_grad=True) for b in model.biases_]
    a = torch.tensor(X)
    for l, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        a = a @ W.T + b
        if l < len(Ws) - 1:
            a = torch.relu(a)
    ref = torch.nn.functional.cross_entropy(a, torch.tensor(y))
    ref.backward()
    assert abs(loss - ref.item()) <= 1e-10 * abs(ref.item())
    for mine, theirs in zip(dWs + dbs, Ws + bs, strict=True):
        assert rel_err(mine, theirs.grad.numpy()) <= 1e-8


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "factory",
    [
        lambda **k: Perceptron(**k),
        lambda **k: LogisticRegression(lr=0.05, **k),
        lambda **k: MLP(hidden_sizes=(16,), lr=0.01, init_mean=0.0, init_std=0.3, **k),
        lambda **k: MLP(hidden_sizes=(12, 8), lr=0.01, init_mean=0.0, init_std=0.3, **k),
    ],
    ids=["perceptron", "logreg", "mlp1", "mlp2"],
)
def test_compiled_epoch_gives_the_plain_numpy_weights(factory, dtype):
    X, y = data(dtype=np.float64)
    order = np.random.default_rng(5).permutation(len(X))
    fast, plain = factory(dtype=dtype, engine="numba"), factory(dtype=dtype, engine="numpy")
    loss_fast = fast.train_epoch(X, y, order)
    loss_plain = plain.train_epoch(X, y, order)
    tol = 1e-12 if dtype == "float64" else 1e-4
    for key, value in plain.params().items():
        if isinstance(fast, Perceptron) and dtype == "float64":  # sums of k/256: exact
            np.testing.assert_array_equal(fast.params()[key], value)
        assert rel_err(fast.params()[key], value) <= tol, key
    if loss_plain is not None:
        assert abs(loss_fast - loss_plain) <= tol * abs(loss_plain)


def test_perceptron_converges_on_separable_data_and_stops_changing():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    X = np.hstack([X, np.ones((200, 1))])
    X[:, 0] += np.where(y == 1, 0.3, -0.3)  # margin
    model = Perceptron(n_classes=2).fit(X, y, epochs=50)
    assert model.score(X, y) == 1.0
    W = model.W_.copy()
    model.train_epoch(X, y)
    assert model.mistakes_ == 0
    np.testing.assert_array_equal(model.W_, W)


def test_logistic_loss_falls_on_average():
    X, y = data(n=400, f=10, c=3, seed=2)
    y = (X[:, 0] * 3 + X[:, 1] > 1.8).astype(int) + (X[:, 2] > 0.5)
    model = LogisticRegression(lr=0.05, n_classes=3).fit(X, y, epochs=12)
    losses = [r["train_loss"] for r in model.history_]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) * 0.9


def test_mlp_solves_xor_that_linear_models_cannot():
    rng = np.random.default_rng(0)
    X = rng.choice([-1.0, 1.0], (400, 2)) + rng.normal(0, 0.15, (400, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    Xb = np.hstack([X, np.ones((400, 1))])
    mlp = MLP(hidden_sizes=(16,), lr=0.05, init_mean=0.0, init_std=0.5).fit(X, y, epochs=40)
    linear = LogisticRegression(lr=0.05).fit(Xb, y, epochs=40)
    perceptron = Perceptron().fit(Xb, y, epochs=40)
    assert mlp.score(X, y) > 0.97
    assert linear.score(Xb, y) < 0.75 and perceptron.score(Xb, y) < 0.75


def test_fixed_seed_reproduces_identical_weights():
    X, y = data()

    def weights(seed):
        m = MLP(hidden_sizes=(8,), lr=0.01, seed=seed).fit(X, y, epochs=2)
        return np.concatenate([W.ravel() for W in m.weights_])

    np.testing.assert_array_equal(weights(7), weights(7))
    assert not np.array_equal(weights(7), weights(8))


def test_history_callback_and_early_stop():
    X, y = data()
    seen = []
    model = LogisticRegression(n_classes=4).fit(
        X,
        y,
        epochs=5,
        X_val=X[:50],
        y_val=y[:50],
        callback=lambda m, rec: seen.append(rec) or rec["epoch"] == 2,
    )
    assert [r["epoch"] for r in model.history_] == [1, 2] and seen == model.history_
    rec = model.history_[0]
    assert rec["val_loss"] > 0 and 0 <= rec["val_acc"] <= 1 and rec["seconds"] >= 0


def test_predict_proba_is_softmax_of_one_product():
    X, y = data()
    model = MLP(hidden_sizes=(8,), lr=0.01).fit(X, y, epochs=1)
    P = model.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1)
    np.testing.assert_array_equal(P.argmax(axis=1), model.predict(X))
    with pytest.raises(AttributeError):
        Perceptron().fit(X, y, epochs=1).predict_proba(X)


@pytest.mark.parametrize(
    "factory",
    [
        Perceptron,
        lambda: LogisticRegression(lr=0.1),
        lambda: MLP(hidden_sizes=(5, 4), dtype="float32"),
    ],
)
def test_save_and_load_without_pickle(tmp_path, factory):
    X, y = data()
    model = factory().fit(X, y, epochs=1)
    path = model.save(tmp_path / "model.npz")
    again = load_model(path)
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    assert again.get_params() == model.get_params()


def test_bad_inputs_get_clear_errors():
    X, y = data()
    model = LogisticRegression(n_classes=4).fit(X, y, epochs=1)
    with pytest.raises(InputError, match="has 19 features but the model was built for 20"):
        model.predict(X[:, :19])
    with pytest.raises(InputError, match="outside 0..3"):
        model.train_epoch(X, np.full(len(X), 4))
    bad = X.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        model.train_epoch(bad, y)
    with pytest.raises(ConfigError, match="'lr' parameter of LogisticRegression must be"):
        LogisticRegression(lr=-1).fit(X, y)


def test_training_accuracy_can_be_measured_once_at_the_end():
    X, y = data()
    every = LogisticRegression(n_classes=4).fit(X, y, epochs=3)
    once = LogisticRegression(n_classes=4).fit(X, y, epochs=3, train_acc=False)
    assert [r["train_acc"] for r in once.history_[:2]] == [None, None]
    assert once.history_[-1]["train_acc"] == every.history_[-1]["train_acc"]
