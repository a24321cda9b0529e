"""Interval functions f(x) = +1 iff A <= sum(x) <= B on x in {-1,+1}^D, and what computes them.

Notation: s = sum(x) takes the *reachable* values -D, -D+2, ..., D (same parity as D). All
networks here use sign(z) = +1 if z >= 0 else -1, as the study does.

a) Closed form. A single perceptron sign(w.x + b) computes f iff
       A <= -D  or  B >= D  or  no reachable s lies in [A, B].
   Why: f is invariant under permuting coordinates, and the set of (w, b) that separate the
   inputs with margin is convex, so if any perceptron works, the permutation average
   w = c*1 works too; sign(c*s + b) is monotone in s. The labels along the reachable sums are
   -,...,-,+,...,+,-,...,- ; they are monotone exactly when one of the three cases holds.
   Otherwise three reachable sums s1 < A <= s2 <= B < s3 interleave the labels, and the
   integer Farkas certificate of `FarkasWitness` makes this concrete on m + 2 inputs.
b) sign hidden units: h1 = sign(2s - 2A + 1) (+1 iff s >= A), h2 = sign(-2s + 2B + 1)
   (+1 iff s <= B), output sign(h1 + h2 - 1). Every pre-activation is odd, so never 0.
c) ReLU hidden units: h1 = relu(2s - 2B - 1) (>= 1 iff s > B), h2 = relu(-2s + 2A - 1)
   (>= 1 iff s < A), output sign(1 - 2 h1 - 2 h2): +1 inside [A, B], <= -1 outside.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from medclf.errors import ConfigError

EXHAUSTIVE_MAX_D = 20  # up to here verify() enumerates all 2^D inputs
LP_MAX_D = 14  # up to here the perceptron LP runs over all 2^D inputs


def check_params(D, A, B) -> None:
    for name, value in (("D", D), ("A", A), ("B", B)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ConfigError(f"{name} == {value!r}, must be an integer")
    if D < 1:
        raise ConfigError(f"D == {D}, must be >= 1")
    if not -D <= A <= B <= D:
        raise ConfigError(f"need -D <= A <= B <= D, got D={D}, A={A}, B={B}; adjust A or B")


def all_inputs(D: int) -> np.ndarray:
    """(2^D, D) int8: every x in {-1,+1}^D."""
    if D > 26:
        raise ConfigError(f"D == {D} has 2^{D} inputs, too many to enumerate; use D <= 26")
    bits = (np.arange(2**D)[:, None] >> np.arange(D)[None, :]) & 1
    return (2 * bits - 1).astype(np.int8)


def interval_function(D: int, A: int, B: int, X=None) -> np.ndarray:
    """f on the rows of X ((n, D) of +-1; default all 2^D inputs): +1 iff A <= sum <= B."""
    check_params(D, A, B)
    X = all_inputs(D) if X is None else np.asarray(X)
    s = X.sum(axis=1)
    return np.where((s >= A) & (s <= B), 1, -1).astype(np.int64)


def reachable_sums(D: int) -> np.ndarray:
    return np.arange(-D, D + 1, 2)


def closed_form_computable(D: int, A: int, B: int) -> bool:
    check_params(D, A, B)
    inside = [s for s in reachable_sums(D) if A <= s <= B]
    return A <= -D or B >= D or not inside


# --- a) decide -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FarkasWitness:
    """An integer certificate that no perceptron computes f.

    ``weights[i] * (x_i, 1)`` summed over the negative inputs equals the same sum over the
    positive inputs (both sides have equal total weight). If sign(w.x + b) matched f, every
    negative input would have w.x + b < 0 and every positive one w.x + b >= 0, so the left sum
    of w.x + b would be < 0 <= the right sum, yet the two are equal.
    """

    negatives: np.ndarray  # (k, D) inputs with f = -1
    negative_weights: np.ndarray  # (k,) positive integers
    positives: np.ndarray  # (m, D) inputs with f = +1
    positive_weights: np.ndarray  # (m,)

    def check(self, D: int, A: int, B: int) -> bool:
        """Exact integer check of labels, weights and the identity."""
        neg_ok = np.all(interval_function(D, A, B, self.negatives) == -1)
        pos_ok = np.all(interval_function(D, A, B, self.positives) == 1)
        lhs = self.negative_weights @ self.negatives.astype(np.int64)
        rhs = self.positive_weights @ self.positives.astype(np.int64)
        same_mass = self.negative_weights.sum() == self.positive_weights.sum() > 0
        weights_ok = np.all(self.negative_weights > 0) and np.all(self.positive_weights > 0)
        return bool(neg_ok and pos_ok and np.array_equal(lhs, rhs) and same_mass and weights_ok)


@dataclass(frozen=True)
class PerceptronAnswer:
    computable: bool
    weights: np.ndarray | None = None  # (D,) when computable: sign(w.x + b) computes f
    bias: float | None = None
    witness: FarkasWitness | None = None  # when not computable
    method: str = ""


def perceptron_computable(D: int, A: int, B: int) -> PerceptronAnswer:
    """Decide by linear programming whether one perceptron computes f, with a certificate.

    The LP asks for (w, b) with f(x) (w.x + b) >= 1 on every input (all 2^D for D <= 14; above,
    on the D + 1 symmetric class representatives, valid by the symmetry argument in the module
    docstring). Feasible: the LP's weights, checked on the inputs. Infeasible: an integer Farkas
    witness built from three interleaving sums, checked exactly.
    """
    check_params(D, A, B)
    if D <= LP_MAX_D:
        X, method = all_inputs(D).astype(float), "LP over all 2^D inputs"
    else:
        X, method = _sum_representatives(D), "LP over the D+1 sums (symmetric reduction)"
    y = interval_function(D, A, B, X.astype(np.int64)).astype(float)
    # variables (w, b); constraints -y_i (w.x_i + b) <= -1
    A_ub = -y[:, None] * np.hstack([X, np.ones((len(X), 1))])
    res = linprog(np.zeros(D + 1), A_ub=A_ub, b_ub=-np.ones(len(X)),
                  bounds=[(None, None)] * (D + 1), method="highs")  # fmt: skip
    if res.status == 0:
        w, b = res.x[:D], res.x[D]
        z = X @ w + b
        assert np.all(np.where(z >= 0, 1, -1) == y), "LP weights failed their own check"
        return PerceptronAnswer(True, weights=w, bias=float(b), method=method)
    if res.status != 2:
        raise RuntimeError(f"linprog ended with status {res.status}: {res.message}")
    witness = farkas_witness(D, A, B)
    assert witness.check(D, A, B), "Farkas witness failed its own check"
    return PerceptronAnswer(False, witness=witness, method=method)


def _sum_representatives(D: int) -> np.ndarray:
    """One input per reachable sum: the first k coordinates +1, the rest -1."""
    return np.array([[1] * k + [-1] * (D - k) for k in range(D + 1)], dtype=float)


def farkas_witness(D: int, A: int, B: int) -> FarkasWitness:
    """Integer certificate for the non-computable case (see FarkasWitness).

    Take reachable s1 < A <= s2 <= B < s3 and an input p with sum s2. Let P be d1 = (s2-s1)/2
    of p's +1 coordinates and M be d3 = (s3-s2)/2 of its -1 coordinates, m = d1 + d3. Then
    n1 = p with P flipped (sum s1) and n3 = p with M flipped (sum s3) satisfy
        d3 * n1 + d1 * n3 = sum of the m cyclic rotations of p on P u M   (all with sum s2).
    """
    sums = reachable_sums(D)
    inside = sums[(sums >= A) & (sums <= B)]
    if len(inside) == 0 or A <= -D or B >= D:
        raise ConfigError(f"f is perceptron-computable for D={D}, A={A}, B={B}; no witness")
    s2 = int(inside[0])
    s1, s3 = int(sums[sums < A].max()), int(sums[sums > B].min())
    d1, d3 = (s2 - s1) // 2, (s3 - s2) // 2
    plus = (D + s2) // 2
    p = np.array([1] * plus + [-1] * (D - plus), dtype=np.int64)
    block = np.r_[np.arange(plus - d1, plus), np.arange(plus, plus + d3)]  # P then M
    n1, n3 = p.copy(), p.copy()
    n1[block[:d1]] = -1
    n3[block[d1:]] = 1
    rotations = []
    for k in range(d1 + d3):
        q = p.copy()
        q[block] = np.roll(p[block], k)
        rotations.append(q)
    return FarkasWitness(
        negatives=np.array([n1, n3]), negative_weights=np.array([d3, d1]),
        positives=np.array(rotations), positive_weights=np.ones(d1 + d3, dtype=np.int64),
    )  # fmt: skip


# --- b), c) construct ----------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """One hidden layer (activation 'sign' or 'relu') and a sign output unit; integer weights."""

    W1: np.ndarray  # (h, D)
    b1: np.ndarray  # (h,)
    w2: np.ndarray  # (h,)
    b2: int
    hidden: str  # "sign" or "relu"

    def hidden_pre(self, X: np.ndarray) -> np.ndarray:
        return X @ self.W1.T + self.b1  # (n, h)

    def activate(self, Z: np.ndarray) -> np.ndarray:
        return np.where(Z >= 0, 1, -1) if self.hidden == "sign" else np.maximum(Z, 0)

    def output_pre(self, X: np.ndarray) -> np.ndarray:
        return self.activate(self.hidden_pre(X)) @ self.w2 + self.b2  # (n,)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return np.where(self.output_pre(X) >= 0, 1, -1)


def sign_mlp(D: int, A: int, B: int) -> Network:
    """b) h1 = sign(2s - 2A + 1), h2 = sign(-2s + 2B + 1), out = sign(h1 + h2 - 1)."""
    check_params(D, A, B)
    ones = np.ones(D, dtype=np.int64)
    return Network(np.stack([2 * ones, -2 * ones]), np.array([1 - 2 * A, 2 * B + 1]),
                   np.array([1, 1]), -1, "sign")  # fmt: skip


def relu_mlp(D: int, A: int, B: int) -> Network:
    """c) h1 = relu(2s - 2B - 1), h2 = relu(-2s + 2A - 1), out = sign(1 - 2 h1 - 2 h2)."""
    check_params(D, A, B)
    ones = np.ones(D, dtype=np.int64)
    return Network(np.stack([2 * ones, -2 * ones]), np.array([-2 * B - 1, 2 * A - 1]),
                   np.array([-2, -2]), 1, "relu")  # fmt: skip


# --- verify --------------------------------------------------------------------------------


@dataclass
class Verification:
    correct: bool  # agrees with f on every input (or on every sum, for symmetric large-D nets)
    robust: bool  # no sign unit's pre-activation is 0 on any input
    radius: float  # certified l_inf radius within which no output can change (0 if none)
    random_ok: bool  # randomised perturbations inside the radius changed no output
    method: str
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.correct and self.robust and self.radius > 0 and self.random_ok


def verify(net: Network, D: int, A: int, B: int, seed: int = 0, trials: int = 2000) -> Verification:
    """Check that ``net`` computes f and is robust to small input perturbations."""
    check_params(D, A, B)
    notes: list[str] = []
    if D <= EXHAUSTIVE_MAX_D:
        X, method = all_inputs(D).astype(np.int64), f"exhaustive over all 2^{D} inputs"
    elif np.all(net.W1 == net.W1[:, :1]):
        # Each hidden row is c_j * (1, ..., 1), so the net sees x only through sum(x): one
        # input per reachable sum covers every input.
        X = _sum_representatives(D).astype(np.int64)
        method = "symmetric: hidden weights constant per unit, checked on all D+1 sums"
    else:
        notes.append(f"D={D} is too large to enumerate and the net is not symmetric")
        return Verification(False, False, 0.0, False, "unverifiable", notes)
    correct = bool(np.all(net(X) == interval_function(D, A, B, X)))
    zeros = [net.output_pre(X)] + ([net.hidden_pre(X)] if net.hidden == "sign" else [])
    robust = all(np.all(z != 0) for z in zeros)
    if not robust:
        notes.append("a sign unit's pre-activation is exactly 0 on some input")
    radius = certified_radius(net, X) if robust else 0.0
    random_ok = robust and radius > 0 and _random_perturbations(net, X, radius, seed, trials)
    return Verification(correct, robust, radius, bool(random_ok), method, notes)


def _output_bounds(net: Network, X: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval arithmetic: bounds of the output pre-activation over the l_inf ball of radius
    eps around each row of X."""
    Z = net.hidden_pre(X).astype(float)
    spread = eps * np.abs(net.W1).sum(axis=1)  # (h,)
    lo, hi = Z - spread, Z + spread
    if net.hidden == "sign":
        h_lo, h_hi = np.where(lo >= 0, 1.0, -1.0), np.where(hi >= 0, 1.0, -1.0)
    else:
        h_lo, h_hi = np.maximum(lo, 0), np.maximum(hi, 0)
    w = net.w2.astype(float)
    out_lo = np.where(w >= 0, h_lo, h_hi) @ w + net.b2
    out_hi = np.where(w >= 0, h_hi, h_lo) @ w + net.b2
    return out_lo, out_hi


def _certified(net: Network, X: np.ndarray, eps: float) -> bool:
    lo, hi = _output_bounds(net, X, eps)
    return bool(np.all((lo > 0) | (hi < 0)))


def certified_radius(net: Network, X: np.ndarray, iters: int = 40) -> float:
    """Largest eps (by bisection, a certified lower bound) with every output's sign fixed."""
    if not _certified(net, X, 0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while _certified(net, X, hi) and hi < 1e6:
        lo, hi = hi, 2 * hi
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _certified(net, X, mid) else (lo, mid)
    return lo


def _random_perturbations(net, X, radius, seed, trials) -> bool:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(X), trials)
    noise = rng.uniform(-radius, radius, (trials, X.shape[1])) * 0.999
    return bool(np.all(net(X[rows] + noise) == net(X[rows])))


def enumerate_params(max_d: int):
    """Every valid (D, A, B) with 1 <= D <= max_d."""
    for D in range(1, max_d + 1):
        for A, B in itertools.combinations_with_replacement(range(-D, D + 1), 2):
            yield D, A, B
