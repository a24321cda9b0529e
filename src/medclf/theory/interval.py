"""Interval functions f(x) = +1 iff A <= sum(x) <= B on x in {-1,+1}^D, and what computes them.

Notation: s = sum(x) takes the *reachable* values -D, -D+2, ..., D (same parity as D). All
networks here use sign(z) = +1 if z >= 0 else -1, as the study does.

a) Closed form. A single perceptron sign(w.x + b) computes f iff
       A <= -D  or  B >= D  or  no reachable s lies in [A, B].
   Why: f is invariant under permuting coordinates, and the set of (w, b) that separate the
   inputs with margin is convex, so if any perceptron works, the permutation average
   w = c*1 works too; sign(c*s + b) is monotone in s. The labels along the reachable sums are
   -,...,-,+,...,+,-,...,- ; they are monotone exactly when one of the three cases holds.
   Otherwise take the reachable sums s1 < A and s3 > B nearest to [A, B]: four inputs with
   n1 + n3 = p1 + p2, sums s1, s3, s1 + 2, s3 - 2, are a Farkas certificate (`farkas_witness`).
   The decision itself does not use this formula (the tests compare it with it): up to
   LP_MAX_D an LP over all 2^D inputs and any w; above, the symmetry argument reduces the
   problem to w = c*1, i.e. to a threshold on the D + 1 labelled sums, decided exactly.
b) sign hidden units: h1 = sign(2s - 2A + 1) (+1 iff s >= A), h2 = sign(-2s + 2B + 1)
   (+1 iff s <= B), output sign(h1 + h2 - 1). Every pre-activation is odd, so never 0.
c) ReLU hidden units: h1 = relu(2s - 2B - 1) (>= 1 iff s > B), h2 = relu(-2s + 2A - 1)
   (>= 1 iff s < A), output sign(1 - 2 h1 - 2 h2): +1 inside [A, B], <= -1 outside.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from medclf.errors import ConfigError, MedclfError, SettingError
from medclf.theory.check import check_witness

EXHAUSTIVE_MAX_D = 20  # up to here verify() enumerates all 2^D inputs
LP_MAX_D = 14  # up to here the perceptron LP runs over all 2^D inputs
MAX_D = 2000  # above, certificates and symmetric checks grow past a few seconds and 100 MB


class CertificateError(MedclfError):
    """A certificate failed its independent check: a bug in medclf, never printed as an answer."""


def check_params(D, A, B) -> None:
    for name, value in (("D", D), ("A", A), ("B", B)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise SettingError(f"{name} == {value!r}, must be an integer")
    if D < 1:
        raise SettingError(f"D == {D}, must be >= 1")
    if D > MAX_D:
        raise SettingError(
            f"D == {D} is above the largest supported D ({MAX_D}, where answers "
            f"and their checks take seconds); use D <= {MAX_D}"
        )
    if not -D <= A <= B <= D:
        raise SettingError(f"need -D <= A <= B <= D, got D={D}, A={A}, B={B}; adjust A or B")


@functools.lru_cache(maxsize=2)  # verify() asks twice per answer, once per network
def all_inputs(D: int) -> np.ndarray:
    """(2^D, D) int8, read-only: every x in {-1,+1}^D."""
    if D > 26:
        raise ConfigError(f"D == {D} has 2^{D} inputs, too many to enumerate; use D <= 26")
    bits = (np.arange(2**D, dtype=np.uint32)[:, None] >> np.arange(D, dtype=np.uint32)) & 1
    X = 2 * bits.astype(np.int8) - 1
    X.flags.writeable = False
    return X


def interval_function(D: int, A: int, B: int, X=None) -> np.ndarray:
    """f on the rows of X ((n, D) of +-1; default all 2^D inputs): +1 iff A <= sum <= B."""
    check_params(D, A, B)
    X = all_inputs(D) if X is None else np.asarray(X)
    return labels_of_sums(A, B, X.sum(axis=1))


def labels_of_sums(A: int, B: int, s: np.ndarray) -> np.ndarray:
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
    positive inputs. If sign(w.x + b) matched f, every negative input would have w.x + b < 0
    and every positive one w.x + b >= 0, so the left sum of w.x + b would be < 0 <= the right
    sum, yet the two are equal.
    """

    negatives: np.ndarray  # (k, D) inputs with f = -1
    negative_weights: np.ndarray  # (k,) positive integers
    positives: np.ndarray  # (m, D) inputs with f = +1
    positive_weights: np.ndarray  # (m,)

    def as_lists(self) -> dict:
        return {
            name: getattr(self, name).tolist()
            for name in ("negatives", "negative_weights", "positives", "positive_weights")
        }

    def check(self, D: int, A: int, B: int) -> bool:
        """Exact integer check, by the independent checker."""
        return check_witness(D, A, B, **self.as_lists()).ok


@dataclass(frozen=True)
class PerceptronAnswer:
    computable: bool
    weights: np.ndarray | None = None  # (D,) integers when computable: sign(w.x + b) is f
    bias: int | None = None
    witness: FarkasWitness | None = None  # when not computable
    method: str = ""


def perceptron_computable(D: int, A: int, B: int) -> PerceptronAnswer:
    """Decide whether one perceptron computes f, with an (unchecked) certificate.

    Up to LP_MAX_D: an LP for (w, b) with f(x) (w.x + b) >= 1 on all 2^D inputs. Above: the
    symmetric reduction (w = c*1, see the module docstring), decided exactly on the D + 1
    reachable sums, so the weights are constant. Not computable: an integer Farkas witness.
    Callers check the certificate with ``medclf.theory.check`` (``explain.solve`` does).
    """
    check_params(D, A, B)
    if D <= LP_MAX_D:
        found, method = _lp_all_inputs(D, A, B), "LP over all 2^D inputs"
    else:
        found = _threshold_on_sums(D, A, B)
        method = "symmetric reduction (w = c*1): exact threshold test on the D+1 reachable sums"
    if found is None:
        return PerceptronAnswer(False, witness=farkas_witness(D, A, B), method=method)
    w, b = found
    return PerceptronAnswer(True, weights=w, bias=b, method=method)


def _lp_all_inputs(D: int, A: int, B: int) -> tuple[np.ndarray, int] | None:
    X = all_inputs(D).astype(float)
    y = interval_function(D, A, B, X.astype(np.int64)).astype(float)
    # variables (w, b); constraints -y_i (w.x_i + b) <= -1
    A_ub = -y[:, None] * np.hstack([X, np.ones((len(X), 1))])
    res = linprog(
        np.zeros(D + 1),
        A_ub=A_ub,
        b_ub=-np.ones(len(X)),
        bounds=[(None, None)] * (D + 1),
        method="highs",
    )
    if res.status == 2:
        return None
    if res.status != 0:
        raise RuntimeError(f"linprog ended with status {res.status}: {res.message}")
    # Margin >= 1 survives scaling by D + 2 and rounding: that moves w.x + b by at most
    # (D + 1) / 2 < D + 2. Dividing by the gcd keeps the integers small.
    v = np.rint((D + 2) * res.x).astype(np.int64)
    v //= max(int(np.gcd.reduce(np.abs(v))), 1)
    return v[:D], int(v[D])


def _threshold_on_sums(D: int, A: int, B: int) -> tuple[np.ndarray, int] | None:
    """sign(c*s + b) with margin 1 on the labelled reachable sums, or None if none exists."""
    s = reachable_sums(D)
    y = labels_of_sums(A, B, s)
    pos, neg = s[y == 1], s[y == -1]
    if len(pos) == 0 or len(neg) == 0:  # constant f: c = 0
        c, b = 0, 1 if len(neg) == 0 else -1
    elif neg.max() < pos.min():  # +1 above a threshold; sums share D's parity, so the
        c, b = 1, -int(neg.max() + pos.min()) // 2  # midpoint is an integer 1 from each
    elif pos.max() < neg.min():
        c, b = -1, int(pos.max() + neg.min()) // 2
    else:
        return None
    return np.full(D, c, dtype=np.int64), b


def _sum_representatives(D: int) -> np.ndarray:
    """(D + 1, D) int64, one input per reachable sum: the first k coordinates +1, the rest -1."""
    return np.where(np.arange(D)[None, :] < np.arange(D + 1)[:, None], 1, -1)


def farkas_witness(D: int, A: int, B: int) -> FarkasWitness:
    """Four inputs with n1 + n3 = p1 + p2 (all weights 1) when f is not computable.

    Take the reachable s1 < A and s3 > B nearest to [A, B] (then s1 + 2 and s3 - 2 lie in it),
    c = (s1 + s3) / 2 and k = (s3 - s1) / 2. Coordinates: 1 where p1 = +1, p2 = -1; k - 1
    where p1 = -1, p2 = +1; the remaining D - k are shared, with sum c (possible since
    |c| + k <= D). n1 = min(p1, p2) and n3 = max(p1, p2) coordinatewise, so n1 + n3 = p1 + p2,
    with sums s1, s3 (f = -1) and s1 + 2, s3 - 2 (f = +1).
    """
    sums = reachable_sums(D)
    if A <= -D or B >= D or not np.any((sums >= A) & (sums <= B)):
        raise ConfigError(f"f is perceptron-computable for D={D}, A={A}, B={B}; no witness")
    s1, s3 = int(sums[sums < A].max()), int(sums[sums > B].min())
    c, k = (s1 + s3) // 2, (s3 - s1) // 2
    plus = (D - k + c) // 2  # shared coordinates equal to +1
    shared = [1] * plus + [-1] * (D - k - plus)
    p1 = np.array([1] + [-1] * (k - 1) + shared, dtype=np.int64)
    p2 = np.array([-1] + [1] * (k - 1) + shared, dtype=np.int64)
    ones = np.ones(2, dtype=np.int64)
    return FarkasWitness(
        np.stack([np.minimum(p1, p2), np.maximum(p1, p2)]), ones, np.stack([p1, p2]), ones.copy()
    )


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
    return Network(
        np.stack([2 * ones, -2 * ones]),
        np.array([1 - 2 * A, 2 * B + 1]),
        np.array([1, 1]),
        -1,
        "sign",
    )


def relu_mlp(D: int, A: int, B: int) -> Network:
    """c) h1 = relu(2s - 2B - 1), h2 = relu(-2s + 2A - 1), out = sign(1 - 2 h1 - 2 h2)."""
    check_params(D, A, B)
    ones = np.ones(D, dtype=np.int64)
    return Network(
        np.stack([2 * ones, -2 * ones]),
        np.array([-2 * B - 1, 2 * A - 1]),
        np.array([-2, -2]),
        1,
        "relu",
    )


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
    # The bounds below depend on x only through the hidden pre-activations: a few distinct rows.
    radius = certified_radius(net, _distinct_rows(net.hidden_pre(X))) if robust else 0.0
    random_ok = robust and radius > 0 and _random_perturbations(net, X, radius, seed, trials)
    return Verification(correct, robust, radius, bool(random_ok), method, notes)


def _distinct_rows(Z: np.ndarray) -> np.ndarray:
    """np.unique(Z, axis=0), several times faster: one integer key per row from the ranks of
    its entries (rank products stay below 2^63 for the two-unit nets here)."""
    key = np.zeros(len(Z), dtype=np.int64)
    for column in Z.T:
        values, rank = np.unique(column, return_inverse=True)
        key = key * len(values) + rank
    return Z[np.unique(key, return_index=True)[1]]


def _output_bounds(net: Network, Z: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval arithmetic: bounds of the output pre-activation over the l_inf ball of radius
    eps around each input whose hidden pre-activations are a row of Z."""
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


def _certified(net: Network, Z: np.ndarray, eps: float) -> bool:
    lo, hi = _output_bounds(net, Z, eps)
    return bool(np.all((lo > 0) | (hi < 0)))


def certified_radius(net: Network, Z: np.ndarray, iters: int = 40) -> float:
    """Largest eps (by bisection, a certified lower bound) with every output's sign fixed, over
    the inputs whose hidden pre-activations are the rows of Z."""
    Z = Z.astype(float)
    if not _certified(net, Z, 0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while _certified(net, Z, hi) and hi < 1e6:
        lo, hi = hi, 2 * hi
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _certified(net, Z, mid) else (lo, mid)
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
