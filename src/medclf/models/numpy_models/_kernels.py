"""Compiled per-example training loops (numba).

Each kernel makes one pass over ``order``, updating the weights in place exactly as the plain
NumPy formulation in the model classes does (same arithmetic, possibly another summation order:
``fastmath`` lets numba vectorise the dot products). They work for float32 and float64 arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, fastmath=True)
def _dot(w, x):
    s = 0.0
    for f in range(x.shape[0]):
        s += w[f] * x[f]
    return s


@njit(cache=True, fastmath=True)
def _axpy(a, x, w):
    """w += a * x, in place."""
    for f in range(x.shape[0]):
        w[f] += a * x[f]


@njit(cache=True, fastmath=True)
def _axpy_dot(a, x, w, x_next):
    """w += a * x, and return the updated w . x_next: one pass over w instead of two."""
    s = 0.0
    for f in range(x.shape[0]):
        w[f] += a * x[f]
        s += w[f] * x_next[f]
    return s


@njit(cache=True, fastmath=True)
def perceptron_epoch(W, X, y, order):
    """Multiclass perceptron: y_hat = argmax W x (first maximum); if wrong, W[y] += x,
    W[y_hat] -= x. Returns the number of mistakes."""
    n_classes = W.shape[0]
    mistakes = 0
    for i in order:
        x = X[i]
        best, best_score = 0, -np.inf
        for c in range(n_classes):
            s = _dot(W[c], x)
            if s > best_score:
                best, best_score = c, s
        if best != y[i]:
            mistakes += 1
            _axpy(1.0, x, W[y[i]])
            _axpy(-1.0, x, W[best])
    return mistakes


@njit(cache=True, fastmath=True)
def logistic_epoch(W, X, y, order, lr):
    """Multinomial logistic regression, one SGD step per example on -log softmax(Wx)[y].
    Gradient (P - Y) x^T. Returns the mean loss, each taken before its step. The update for
    example k and the scores of example k+1 share one pass over W."""
    n_classes = W.shape[0]
    n = len(order)
    z = np.empty(n_classes, dtype=W.dtype)
    total = 0.0
    if n == 0:
        return 0.0
    for c in range(n_classes):
        z[c] = _dot(W[c], X[order[0]])
    for k in range(n):
        i = order[k]
        x = X[i]
        x_next = X[order[k + 1]] if k + 1 < n else x
        top = z.max()
        log_norm = top + np.log(np.exp(z - top).sum())
        total += log_norm - z[y[i]]
        for c in range(n_classes):
            g = np.exp(z[c] - log_norm) - (1.0 if c == y[i] else 0.0)
            # the update for x and the score of the next example share one pass over W[c]
            z[c] = _axpy_dot(W.dtype.type(-lr * g), x, W[c], x_next)
    return total / n


@njit(cache=True, fastmath=True)
def mlp_epoch(Ws, bs, X, y, order, lr):
    """ReLU MLP with softmax output, one SGD step per example. Returns the mean loss.

    The first layer dominates (W1 is 200 x 784): its update for example i and its forward
    product for example i+1 share one pass over W1, and rows whose gradient is 0 (inactive
    ReLU units) skip the update.
    """
    L = len(Ws)
    n = len(order)
    acts = [np.zeros(W.shape[0], dtype=X.dtype) for W in Ws]  # post-activations per layer
    pres = [np.zeros(W.shape[0], dtype=X.dtype) for W in Ws]  # pre-activations per layer
    deltas = [np.zeros(W.shape[0], dtype=X.dtype) for W in Ws]
    total = 0.0
    if n == 0:
        return 0.0
    W1, b1 = Ws[0], bs[0]
    z1 = pres[0]
    x0 = X[order[0]]
    for j in range(W1.shape[0]):
        z1[j] = _dot(W1[j], x0) + b1[j]
    for k in range(n):
        i = order[k]
        x = X[i]
        # forward through the rest (layer 0's pre-activation is already in pres[0])
        for l in range(L):
            if l > 0:
                prev = acts[l - 1]
                for j in range(Ws[l].shape[0]):
                    pres[l][j] = _dot(Ws[l][j], prev) + bs[l][j]
            if l < L - 1:
                for j in range(pres[l].shape[0]):
                    acts[l][j] = max(pres[l][j], 0.0)
        out = pres[L - 1]
        top = out.max()
        log_norm = top + np.log(np.exp(out - top).sum())
        total += log_norm - out[y[i]]
        for c in range(out.shape[0]):
            deltas[L - 1][c] = np.exp(out[c] - log_norm) - (1.0 if c == y[i] else 0.0)
        # backward: delta_{l-1} = (W_l^T delta_l) * relu'(z_{l-1}), before W_l changes
        for l in range(L - 1, 0, -1):
            d_prev = deltas[l - 1]
            d_prev[:] = 0.0
            for j in range(Ws[l].shape[0]):
                dj = deltas[l][j]
                if dj != 0.0:
                    _axpy(dj, Ws[l][j], d_prev)
            for m in range(d_prev.shape[0]):
                if pres[l - 1][m] <= 0.0:
                    d_prev[m] = 0.0
        # update layers >= 1: W_l -= lr delta_l a_{l-1}^T, b_l -= lr delta_l
        for l in range(L - 1, 0, -1):
            prev = acts[l - 1]
            for j in range(Ws[l].shape[0]):
                step = X.dtype.type(lr * deltas[l][j])
                if step != 0.0:
                    _axpy(-step, prev, Ws[l][j])
                    bs[l][j] -= step
        # layer 0: update for x and forward for the next example in one pass over W1
        has_next = k + 1 < n
        x_next = X[order[k + 1]] if has_next else x
        d0 = deltas[0]
        for j in range(W1.shape[0]):
            step = X.dtype.type(lr * d0[j])
            row = W1[j]
            if step != 0.0:
                b1[j] -= step
                z1[j] = _axpy_dot(-step, x, row, x_next) + b1[j]
            elif has_next:
                z1[j] = _dot(row, x_next) + b1[j]
    return total / n
