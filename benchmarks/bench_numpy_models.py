"""One epoch of each Question 1 model: medclf's compiled loop vs a textbook NumPy loop vs
scikit-learn's nearest equivalent, on OCTMNIST-shaped data, one core, same process.

Slow baselines are timed on a prefix of the data and scaled to the full 97,477 examples
(per-example loops cost the same per example). Run: python benchmarks/bench_numpy_models.py
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from common import N_TRAIN, machine, median_time, octmnist_shaped, one_thread

from medclf.models.numpy_models import MLP, LogisticRegression, Perceptron

# --- the textbook solutions: a plain per-example NumPy loop, as a homework writes it ---------


def textbook_perceptron(X, y):
    W = np.zeros((4, X.shape[1]))
    for i in range(len(X)):
        y_hat = np.argmax(W @ X[i])
        if y_hat != y[i]:
            W[y[i]] += X[i]
            W[y_hat] -= X[i]


def textbook_logreg(X, y, lr=0.01):
    W = np.zeros((4, X.shape[1]))
    for i in range(len(X)):
        z = W @ X[i]
        p = np.exp(z - z.max())
        p /= p.sum()
        p[y[i]] -= 1
        W -= lr * np.outer(p, X[i])


def textbook_mlp(X, y, lr=0.001, hidden=200):
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(0.1, 0.1, (hidden, X.shape[1])), np.zeros(hidden)
    W2, b2 = rng.normal(0.1, 0.1, (4, hidden)), np.zeros(4)
    for i in range(len(X)):
        a1 = W1 @ X[i] + b1
        h = np.maximum(a1, 0)
        z = W2 @ h + b2
        p = np.exp(z - z.max())
        p /= p.sum()
        p[y[i]] -= 1
        dh = (W2.T @ p) * (a1 > 0)
        W2 -= lr * np.outer(p, h)
        b2 -= lr * p
        W1 -= lr * np.outer(dh, X[i])
        b1 -= lr * dh


def scaled(fn_for_n, n, repeats=3):
    """Seconds for a full epoch, timing ``fn_for_n(n)`` on n examples."""
    return median_time(lambda: fn_for_n(n), repeats=repeats, warmup=0) * N_TRAIN / n


def ours(model_factory, X, y, order):
    model = model_factory()
    model.train_epoch(X[:50], y[:50])  # compile and create parameters
    return median_time(lambda: model.train_epoch(X, y, order), repeats=3)


def main():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Perceptron as SkPerceptron
    from sklearn.linear_model import SGDClassifier
    from sklearn.neural_network import MLPClassifier

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    one_thread()
    Xb, y = octmnist_shaped(bias=True)
    X = np.ascontiguousarray(Xb[:, :-1])
    X32 = X.astype(np.float32)
    order = np.random.default_rng(1).permutation(N_TRAIN)
    rows = []

    def textbook(fn, data, n):
        return scaled(lambda k: fn(data[:k], y[:k]), n)

    def sk(est, data, n, repeats=3):
        return scaled(lambda k: est.fit(data[:k], y[:k]), n, repeats)

    sgd = SGDClassifier(
        loss="log_loss",
        max_iter=1,
        tol=None,
        shuffle=False,
        learning_rate="constant",
        eta0=0.01,
        alpha=0.0,
    )
    mlp_sk = MLPClassifier(
        (200,),
        solver="sgd",
        batch_size=1,
        learning_rate_init=0.001,
        max_iter=1,
        shuffle=False,
        momentum=0.0,
    )
    rows.append(
        (
            "perceptron",
            ours(lambda: Perceptron(), Xb, y, order),
            textbook(textbook_perceptron, Xb, 20_000),
            sk(SkPerceptron(max_iter=1, tol=None, shuffle=False), X, N_TRAIN),
        )
    )
    rows.append(
        (
            "logistic regression, batch 1",
            ours(lambda: LogisticRegression(lr=0.01), Xb, y, order),
            textbook(textbook_logreg, Xb, 20_000),
            sk(sgd, X, N_TRAIN),
        )
    )
    rows.append(
        (
            "MLP 200 hidden, batch 1 (float64)",
            ours(lambda: MLP(lr=0.001), X, y, order),
            textbook(textbook_mlp, X, 5_000),
            sk(mlp_sk, X, 2_000, repeats=1),
        )
    )
    rows.append(
        (
            "MLP 200 hidden, batch 1 (float32)",
            ours(lambda: MLP(lr=0.001, dtype="float32"), X32, y, order),
            None,
            None,
        )
    )

    print(f"machine: {machine()}, one thread")
    print(
        "| model, one epoch | medclf | textbook NumPy loop | scikit-learn | speed-up vs textbook |"
    )
    print("|---|---|---|---|---|")
    for name, t_ours, t_text, t_sk in rows:
        fmt = lambda t: "—" if t is None else f"{t:.3f} s"  # noqa: E731
        speed = "—" if t_text is None else f"{t_text / t_ours:.0f}×"
        print(f"| {name} | {fmt(t_ours)} | {fmt(t_text)} | {fmt(t_sk)} | {speed} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
