"""Multiclass perceptron (Q1.1a).

W = 0; per example y_hat = argmax W x; if y_hat != y: W[y] += x, W[y_hat] -= x.
"""

from __future__ import annotations

import numpy as np

from medclf.models.numpy_models import _kernels
from medclf.models.numpy_models.base import NumpyClassifier


class Perceptron(NumpyClassifier):
    """No separate bias: append a constant-1 feature (``to_features(..., bias=True)``)."""

    kind = "numpy-perceptron"

    def _init_params(self, rng):
        self.W_ = np.zeros((self.n_classes_, self.n_features_), dtype=self.np_dtype)

    def _epoch_compiled(self, X, y, order):
        self.mistakes_ = _kernels.perceptron_epoch(self.W_, X, y, order)
        return None

    def _epoch_numpy(self, X, y, order):
        W, mistakes = self.W_, 0
        for i in order:
            y_hat = int(np.argmax(W @ X[i]))
            if y_hat != y[i]:
                W[y[i]] += X[i]
                W[y_hat] -= X[i]
                mistakes += 1
        self.mistakes_ = mistakes
        return None

    def _decision(self, X):
        return X @ self.W_.T  # (n, n_classes)

    def params(self):
        return {"W": self.W_}

    def set_params_arrays(self, arrays):
        self.W_ = arrays["W"].astype(self.np_dtype)
