"""Question 3: decisions against the closed form, constructions against brute force."""

import itertools

import numpy as np
import pytest
from click.testing import CliRunner

from medclf.cli import cli
from medclf.errors import ConfigError
from medclf.theory.interval import (
    Network,
    all_inputs,
    closed_form_computable,
    enumerate_params,
    interval_function,
    perceptron_computable,
    relu_mlp,
    sign_mlp,
    verify,
)


def brute_f(D, A, B):
    """Independent oracle: a plain loop over itertools.product."""
    return {x: (1 if A <= sum(x) <= B else -1) for x in itertools.product((-1, 1), repeat=D)}


def test_interval_function_matches_brute_force():
    for D, A, B in [(1, -1, 1), (3, -1, 1), (4, 0, 0), (5, -5, 3)]:
        X = all_inputs(D)
        oracle = brute_f(D, A, B)
        assert len({tuple(x) for x in X}) == 2**D
        assert [oracle[tuple(int(v) for v in x)] for x in X] == list(interval_function(D, A, B))


@pytest.mark.parametrize(
    ("D", "A", "B"),
    [(0, 0, 0), (2, 1, 0), (2, -3, 1), (2, 0, 3), (2.5, 0, 1), (2, 0.5, 1), (True, 0, 1)],
)
def test_invalid_parameters(D, A, B):
    with pytest.raises(ConfigError):
        interval_function(D, A, B)


def test_both_constructions_verified_for_every_small_case():
    for D, A, B in enumerate_params(10):
        for build in (sign_mlp, relu_mlp):
            net = build(D, A, B)
            assert net.W1.shape == (2, D)  # exactly two hidden units
            for array in (net.W1, net.b1, net.w2, np.array(net.b2)):
                assert np.issubdtype(array.dtype, np.integer)
            result = verify(net, D, A, B, trials=200)
            assert result.ok, (D, A, B, build.__name__, result)


def test_decision_equals_closed_form_up_to_12():
    for D, A, B in enumerate_params(12):
        answer = perceptron_computable(D, A, B)
        assert answer.computable == closed_form_computable(D, A, B), (D, A, B)
        if answer.computable:  # the weights really work, on the brute-force oracle
            oracle = brute_f(D, A, B)
            for x, y in oracle.items():
                assert (1 if np.dot(answer.weights, x) + answer.bias >= 0 else -1) == y
        else:
            assert answer.witness.check(D, A, B)


def test_report_counterexample_has_a_checkable_certificate():
    answer = perceptron_computable(2, -1, 1)
    assert not answer.computable
    wit = answer.witness
    assert wit.check(2, -1, 1)
    # The certificate is the XOR identity (-1,-1) + (1,1) = (1,-1) + (-1,1).
    assert {tuple(x) for x in wit.negatives} == {(-1, -1), (1, 1)}
    assert {tuple(x) for x in wit.positives} == {(1, -1), (-1, 1)}
    # A tampered certificate fails the check.
    bad = type(wit)(wit.negatives, wit.negative_weights + 1, wit.positives, wit.positive_weights)
    assert not bad.check(2, -1, 1)


@pytest.mark.parametrize(("D", "A", "B", "computable"), [
    (5, -5, 1, True),    # A = -D
    (5, -1, 5, True),    # B = D
    (5, -5, 5, True),    # everything
    (5, 1, 1, False),    # A = B, reachable
    (5, 0, 0, True),     # A = B, no reachable sum (parity): f is constant -1
    (6, -3, -3, True),   # same, even D
    (6, -2, 2, False),
])  # fmt: skip
def test_edge_cases(D, A, B, computable):
    assert perceptron_computable(D, A, B).computable is computable
    for build in (sign_mlp, relu_mlp):
        assert verify(build(D, A, B), D, A, B).ok


def test_mutating_any_weight_is_caught_whenever_it_changes_the_function():
    D, A, B = 4, -2, 0
    oracle = brute_f(D, A, B)
    caught = 0
    for build in (sign_mlp, relu_mlp):
        base = build(D, A, B)
        fields = {"W1": base.W1, "b1": base.b1, "w2": base.w2, "b2": np.array(base.b2)}
        for name, array in fields.items():
            for index in np.ndindex(array.shape):
                for delta in (-1, 1):
                    mutated = {k: v.copy() for k, v in fields.items()}
                    mutated[name][index] += delta
                    net = Network(mutated["W1"], mutated["b1"], mutated["w2"],
                                  int(mutated["b2"]), base.hidden)  # fmt: skip
                    outputs = net(np.array(list(oracle)))
                    agrees = list(outputs) == list(oracle.values())
                    result = verify(net, D, A, B, trials=100)
                    assert result.correct == agrees
                    if not agrees:
                        assert not result.ok
                        caught += 1
    assert caught > 0


def test_radius_is_positive_and_a_zero_preactivation_is_rejected():
    for build in (sign_mlp, relu_mlp):
        assert verify(build(3, -1, 1), 3, -1, 1).radius > 0
    # h1 = sign(s + 1) is exactly 0 at s = -1, which D = 3 reaches; the function is still right
    # on the grid (sign(0) = +1 means s >= -1) but an infinitesimal nudge flips it.
    net = Network(np.array([[1, 1, 1], [-2, -2, -2]]), np.array([1, 3]), np.array([1, 1]), -1,
                  "sign")  # fmt: skip
    result = verify(net, 3, -1, 1)
    assert result.correct and not result.robust and not result.ok and result.radius == 0


def test_large_dimension_uses_the_symmetric_proof():
    result = verify(sign_mlp(40, -6, 10), 40, -6, 10)
    assert result.ok and result.method.startswith("symmetric")
    asym = sign_mlp(40, -6, 10)
    W1 = asym.W1.copy()
    W1[0, 0] = 4
    assert not verify(Network(W1, asym.b1, asym.w2, asym.b2, "sign"), 40, -6, 10).ok


def test_exhaustive_verification_for_d16():
    result = verify(relu_mlp(16, -4, 6), 16, -4, 6)
    assert result.ok and result.method == "exhaustive over all 2^16 inputs"


def test_cli_prints_the_three_answers_and_draws_figure_18(tmp_path):
    out = tmp_path / "fig18.png"
    result = CliRunner().invoke(cli, ["theory", "interval", "--D", "2", "--A", "-1", "--B", "1",
                                      "--plot", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "NO single perceptron" in result.output
    assert result.output.count("VERIFIED") == 2
    assert out.read_bytes()[:4] == b"\x89PNG"
    md = CliRunner().invoke(cli, ["theory", "interval", "--D", "2", "--A", "-1", "--B", "1",
                                  "--markdown"])  # fmt: skip
    assert "**b)**" in md.output and "**c)**" in md.output and "[2, 2]" in md.output
    bad = CliRunner().invoke(cli, ["theory", "interval", "--D", "2", "--A", "2", "--B", "1"])
    assert bad.exit_code == 1 and "need -D <= A <= B <= D" in bad.output
