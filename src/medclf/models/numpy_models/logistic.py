"""Multinomial logistic regression trained by SGD (Q1.1b).

Loss for one example: l = -log softmax(W x)[y] = logsumexp(W x) - (W x)[y].
Gradient: dl/dW = (p - e_y) x^T with p = softmax(W x); for a minibatch, the mean over it.
"""

from __future__ import annotations

import numpy as np

from medclf.models.numpy_models import _kernels
from medclf.models.numpy_models.base import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    NumpyClassifier,
    log_sum_exp,
    softmax,
)


class LogisticRegression(NumpyClassifier):
    """No separate bias: append a constant-1 feature as the study does."""

    kind = "numpy-logreg"
    has_proba = True
    _parameter_constraints = {
        **NumpyClassifier._parameter_constraints,
        "lr": [POSITIVE],
        "batch_size": [POSITIVE_INT],
        "init_std": [NON_NEGATIVE],
    }

    def __init__(
        self,
        *,
        lr=0.01,
        batch_size=1,
        init_std=0.0,
        epochs=20,
        warm_start=False,
        n_classes=None,
        dtype="float64",
        seed=42,
        engine="numba",
    ):
        super().__init__(
            epochs=epochs,
            warm_start=warm_start,
            n_classes=n_classes,
            dtype=dtype,
            seed=seed,
            engine=engine,
        )
        self.lr = lr
        self.batch_size = batch_size
        self.init_std = init_std

    def _init_params(self, rng):
        """W = 0 as in the study, or W ~ N(0, init_std) to show that the start does not matter."""
        shape = (self.n_classes_, self.n_features_)
        self.W_ = (
            rng.normal(0, self.init_std, shape) if self.init_std else np.zeros(shape)
        ).astype(self.np_dtype)

    def _epoch_compiled(self, X, y, order):
        return float(_kernels.logistic_epoch(self.W_, X, y, order, self.np_dtype(self.lr)))

    def gradient(self, X, y):
        """(mean loss, dL/dW) of a minibatch; the hand-written backward pass."""
        Z = X @ self.W_.T  # (b, C)
        P = softmax(Z)
        loss = float(np.mean(log_sum_exp(Z) - Z[np.arange(len(y)), y]))
        P[np.arange(len(y)), y] -= 1  # P - Y
        return loss, P.T @ X / len(y)  # (C, F)

    def _epoch_numpy(self, X, y, order):
        losses = []
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            loss, grad = self.gradient(X[rows], y[rows])
            self.W_ -= self.np_dtype(self.lr) * grad
            losses.append(loss * len(rows))
        return float(np.sum(losses) / max(len(order), 1))

    def _decision(self, X):
        return X @ self.W_.T

    def params(self):
        return {"W": self.W_}

    def set_params_arrays(self, arrays):
        self.W_ = arrays["W"].astype(self.np_dtype)
