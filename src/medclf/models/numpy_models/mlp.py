"""Multilayer perceptron with ReLU hidden layers and a softmax output (Q1.2b).

Forward, for layers l = 1..L:  z_l = W_l a_{l-1} + b_l,  a_l = relu(z_l) (l < L),  p = softmax(z_L).
Backward for -log p_y:  d_L = p - e_y;  dW_l = d_l a_{l-1}^T;  db_l = d_l;
d_{l-1} = (W_l^T d_l) * [z_{l-1} > 0]   (using W_l before its update).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from numba.typed import List

from medclf.models.numpy_models import _kernels
from medclf.models.numpy_models.base import (
    FINITE,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    ModelParamError,
    NumpyClassifier,
    log_sum_exp,
    softmax,
)


class MLP(NumpyClassifier):
    """Weights ~ N(init_mean, init_std) (the study: N(0.1, 0.1)), biases 0."""

    kind = "numpy-mlp"
    has_proba = True
    _parameter_constraints = {
        **NumpyClassifier._parameter_constraints,
        "hidden_sizes": ["array-like"],  # each size an int >= 1: checked by _init_params
        "lr": [POSITIVE],
        "batch_size": [POSITIVE_INT],
        "init_mean": [FINITE],
        "init_std": [NON_NEGATIVE],
    }

    def __init__(
        self,
        *,
        hidden_sizes=(200,),
        lr=0.001,
        batch_size=1,
        init_mean=0.1,
        init_std=0.1,
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
        self.hidden_sizes = hidden_sizes
        self.lr = lr
        self.batch_size = batch_size
        self.init_mean = init_mean
        self.init_std = init_std

    def _check_params(self):
        super()._check_params()
        sizes = list(self.hidden_sizes)
        whole = all(isinstance(h, Integral) and not isinstance(h, bool) and h >= 1 for h in sizes)
        if not sizes or not whole:
            rule = "must be one or more integers >= 1"
            raise ModelParamError(f"hidden_sizes == {self.hidden_sizes!r}, {rule}")

    def _init_params(self, rng):
        hidden = [int(h) for h in self.hidden_sizes]
        sizes = [self.n_features_, *hidden, self.n_classes_]
        self.weights_ = [
            rng.normal(self.init_mean, self.init_std, (out, inp)).astype(self.np_dtype)
            for inp, out in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        self.biases_ = [np.zeros(out, dtype=self.np_dtype) for out in sizes[1:]]

    def _epoch_compiled(self, X, y, order):
        Ws, bs = List(self.weights_), List(self.biases_)  # views: updated in place
        return float(_kernels.mlp_epoch(Ws, bs, X, y, order, self.np_dtype(self.lr)))

    def forward(self, X):
        """Pre-activations of every layer, (b, size_l) each; the last are the logits."""
        pres, a = [], X
        for l, (W, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            z = a @ W.T + b
            pres.append(z)
            a = np.maximum(z, 0) if l < len(self.weights_) - 1 else z
        return pres

    def gradient(self, X, y):
        """(mean loss, [dW_l], [db_l]) of a minibatch; the hand-written backward pass."""
        pres = self.forward(X)
        acts = [X] + [np.maximum(z, 0) for z in pres[:-1]]  # inputs of each layer
        logits = pres[-1]
        loss = float(np.mean(log_sum_exp(logits) - logits[np.arange(len(y)), y]))
        delta = softmax(logits)
        delta[np.arange(len(y)), y] -= 1
        delta /= len(y)
        dWs, dbs = [None] * len(pres), [None] * len(pres)
        for l in range(len(pres) - 1, -1, -1):
            dWs[l] = delta.T @ acts[l]  # (out, in)
            dbs[l] = delta.sum(axis=0)
            if l > 0:
                delta = (delta @ self.weights_[l]) * (pres[l - 1] > 0)
        return loss, dWs, dbs

    def _epoch_numpy(self, X, y, order):
        lr, total = self.np_dtype(self.lr), 0.0
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            loss, dWs, dbs = self.gradient(X[rows], y[rows])
            for W, b, dW, db in zip(self.weights_, self.biases_, dWs, dbs, strict=True):
                W -= lr * dW
                b -= lr * db
            total += loss * len(rows)
        return total / max(len(order), 1)

    def _decision(self, X):
        return self.forward(X)[-1]

    def params(self):
        return {
            **{f"W{l}": W for l, W in enumerate(self.weights_)},
            **{f"b{l}": b for l, b in enumerate(self.biases_)},
        }

    def set_params_arrays(self, arrays):
        n = len(self.hidden_sizes) + 1
        self.weights_ = [arrays[f"W{l}"].astype(self.np_dtype) for l in range(n)]
        self.biases_ = [arrays[f"b{l}"].astype(self.np_dtype) for l in range(n)]
