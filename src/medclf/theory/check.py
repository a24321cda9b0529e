"""Independent, exact checks of Question 3's certificates, written from their definitions.

Nothing here is imported from ``interval.py``: f, the inputs and the sign convention are
recomputed from scratch, so a bug in the decision cannot hide itself in the check. Every
check takes plain integer lists (the ``--json`` form), so anyone can rerun it on medclf's
output. Conventions: x in {-1,+1}^D, f(x) = +1 iff A <= sum(x) <= B, sign(z) = +1 iff z >= 0.

Up to ``EXHAUSTIVE_MAX_D`` inputs are enumerated. Above, a certificate is checkable only when
each unit's weights are one constant c (w = c*1): then w.x = c*sum(x), so every input with the
same sum gets the same output and checking the D + 1 reachable sums covers all 2^D inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

EXHAUSTIVE_MAX_D = 20
CHUNK = 1 << 16


@dataclass(frozen=True)
class Check:
    ok: bool
    method: str
    wrong_inputs: int | None = None  # inputs on which the certificate is wrong (None: unchecked)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "method": self.method, "wrong_inputs": self.wrong_inputs}


def f_of_sum(A: int, B: int, s):
    return np.where((A <= s) & (s <= B), 1, -1)


def sign(z):
    return np.where(z >= 0, 1, -1)


def input_chunks(D: int):
    """Every x in {-1,+1}^D, in chunks: the bits of 0 .. 2^D - 1, big-endian."""
    for start in range(0, 2**D, CHUNK):
        index = np.arange(start, min(start + CHUNK, 2**D), dtype=">u4")
        bits = np.unpackbits(index.view(np.uint8).reshape(-1, 4), axis=1)[:, 32 - D :]
        yield 2 * bits.astype(np.int64) - 1


def _constant_rows(rows) -> bool:
    return all(len(set(row)) <= 1 for row in rows)


def _check(D: int, A: int, B: int, rows, output) -> Check:
    """``output(z)`` maps the (n, len(rows)) matrix z = x @ rows.T to n outputs in {-1,+1}."""
    W = np.array(rows, dtype=np.int64).reshape(len(rows), D)
    if D <= EXHAUSTIVE_MAX_D:
        wrong = 0
        for X in input_chunks(D):
            wrong += int(np.sum(output(X @ W.T) != f_of_sum(A, B, X.sum(axis=1))))
        return Check(wrong == 0, f"exhaustive over all 2^{D} inputs", wrong)
    if not _constant_rows(rows):
        return Check(False, f"unchecked: D = {D} > {EXHAUSTIVE_MAX_D} and weights not constant")
    sums = np.arange(-D, D + 1, 2, dtype=np.int64)
    z = sums[:, None] * W[:, 0][None, :]  # w.x = c * sum(x) for each unit
    bad = output(z) != f_of_sum(A, B, sums)
    wrong = sum(comb(D, (D + int(s)) // 2) for s in sums[bad])
    return Check(wrong == 0, f"constant weights: all {D + 1} reachable sums", wrong)


def _small(values, bound: int = 2**20) -> bool:
    """Integers small enough that int64 cannot overflow below: |w.x + b| <= (D + 1) 2^20 and
    times an output weight, under 2^63 for any D < 2^22."""
    return all(isinstance(v, int | np.integer) and abs(int(v)) <= bound for v in values)


def check_perceptron(D: int, A: int, B: int, w: list[int], b: int) -> Check:
    """sign(w.x + b) == f(x) on every input."""
    if len(w) != D or not _small([*w, b]):
        return Check(False, f"malformed: need {D} integer weights and an integer bias")
    return _check(D, A, B, [w], lambda z: sign(z[:, 0] + b))


def check_network(D: int, A: int, B: int, W1, b1, w2, b2, hidden: str) -> Check:
    """sign(w2 . act(W1 x + b1) + b2) == f(x) on every input; act is sign or relu."""
    flat = [v for row in W1 for v in row] + [*b1, *w2, b2]
    shapes_ok = len(W1) == len(b1) == len(w2) and all(len(row) == D for row in W1)
    if not shapes_ok or hidden not in ("sign", "relu") or not _small(flat):
        return Check(False, "malformed network")
    act = sign if hidden == "sign" else (lambda z: np.maximum(z, 0))
    b1_, w2_ = np.array(b1, dtype=np.int64), np.array(w2, dtype=np.int64)
    return _check(D, A, B, W1, lambda z: sign(act(z + b1_) @ w2_ + b2))


def check_witness(
    D: int, A: int, B: int, negatives, negative_weights, positives, positive_weights
) -> Check:
    """Farkas: sum_i a_i (n_i, 1) == sum_j c_j (p_j, 1), a, c > 0, f(n_i) = -1, f(p_j) = +1.

    A perceptron matching f would give a_i (w.n_i + b) < 0 and c_j (w.p_j + b) >= 0, so the
    left sum of w.x + b would be negative and the right one not, yet they are equal. Checked
    in Python integers (exact, no overflow).
    """
    sides = ((negatives, negative_weights, -1), (positives, positive_weights, 1))
    totals = []
    for vectors, weights, label in sides:
        if len(vectors) != len(weights) or not vectors:
            return Check(False, "malformed witness: vectors and weights do not pair up")
        if not all(isinstance(k, int) and k > 0 for k in weights):
            return Check(False, "weights must be positive integers")
        if not all(len(x) == D and set(x) <= {-1, 1} for x in vectors):
            return Check(False, f"every vector must have {D} entries in {{-1, +1}}")
        if any((1 if A <= sum(x) <= B else -1) != label for x in vectors):
            return Check(False, f"a vector on the {'+1' if label > 0 else '-1'} side has f != it")
        column = [sum(k * x[i] for k, x in zip(weights, vectors, strict=True)) for i in range(D)]
        totals.append((sum(weights), column))
    if totals[0] != totals[1]:
        return Check(False, "the two weighted sums differ")
    return Check(True, "exact integer identity of the weighted sums, labels and weights")
