"""Question 3: decisions against the closed form, constructions against brute force."""

import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.optimize import linprog

from medclf.cli import cli
from medclf.errors import ConfigError
from medclf.theory import check
from medclf.theory.check import check_network, check_perceptron, check_witness
from medclf.theory.interval import (
    LP_MAX_D,
    MAX_D,
    Network,
    _distinct_rows,
    _threshold_on_sums,
    all_inputs,
    closed_form_computable,
    enumerate_params,
    farkas_witness,
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


def brute_perceptron_wrong(D, A, B, w, b):
    """Independent oracle: inputs on which sign(w.x + b) differs from f, by plain loops."""
    return sum(
        (1 if sum(wi * xi for wi, xi in zip(w, x, strict=True)) + b >= 0 else -1) != y
        for x, y in brute_f(D, A, B).items()
    )


def assert_witness_by_hand(D, A, B, wit: dict):
    """Independent oracle for a Farkas witness (its JSON lists): plain Python."""
    rows = {
        -1: (wit["negatives"], wit["negative_weights"]),
        1: (wit["positives"], wit["positive_weights"]),
    }
    totals = {}
    for label, (xs, ks) in rows.items():
        assert all(k > 0 for k in ks) and all(set(x) <= {-1, 1} and len(x) == D for x in xs)
        assert all((1 if A <= sum(x) <= B else -1) == label for x in xs)
        column = [sum(k * x[i] for k, x in zip(ks, xs, strict=True)) for i in range(D)]
        totals[label] = (sum(ks), column)
    assert totals[-1] == totals[1]


def test_lp_decision_equals_closed_form_with_integer_weights():
    rng = np.random.default_rng(0)
    cases = list(enumerate_params(8))
    for D in range(9, LP_MAX_D + 1):  # all 2^D inputs in each LP: a sample keeps this fast
        pairs = [p for p in enumerate_params(D) if p[0] == D]
        cases += [pairs[i] for i in rng.choice(len(pairs), 4, replace=False)]
        cases += [(D, -D, 1), (D, -1, 1)]
    for D, A, B in cases:
        answer = perceptron_computable(D, A, B)
        assert answer.computable == closed_form_computable(D, A, B), (D, A, B)
        if answer.computable and D <= 8:
            assert np.issubdtype(answer.weights.dtype, np.integer)
            assert brute_perceptron_wrong(D, A, B, answer.weights.tolist(), answer.bias) == 0
        elif not answer.computable and D <= 8:
            assert_witness_by_hand(D, A, B, answer.witness.as_lists())


def test_symmetric_decision_equals_closed_form_up_to_40():
    for D, A, B in enumerate_params(40):
        found = _threshold_on_sums(D, A, B)
        assert (found is not None) == closed_form_computable(D, A, B), (D, A, B)
        if D > LP_MAX_D:  # what perceptron_computable answers there
            answer = perceptron_computable(D, A, B)
            assert answer.computable == closed_form_computable(D, A, B), (D, A, B)
            if answer.computable:
                assert len(set(answer.weights.tolist())) == 1  # w = c*1


@pytest.mark.parametrize("D", [12, 13])
def test_symmetric_weights_and_witnesses_hold_on_every_input(D):
    pairs = [p[1:] for p in enumerate_params(D) if p[0] == D]
    assert len(pairs) == (2 * D + 1) * (2 * D + 2) // 2
    for A, B in pairs:
        found = _threshold_on_sums(D, A, B)
        if found is None:
            assert_witness_by_hand(D, A, B, farkas_witness(D, A, B).as_lists())
        else:
            X, f = all_inputs(D).astype(np.int64), interval_function(D, A, B)
            assert np.array_equal(np.where(X @ found[0] + found[1] >= 0, 1, -1), f)


@pytest.mark.parametrize("D", [100, 501, 999, 1000, MAX_D])
def test_large_dimension_spot_checks(D):
    rng = np.random.default_rng(D)
    cases = [(-D, D), (-D, 0), (0, D), (-1, 1), (0, 0), (1, 1), (-D + 1, D - 1), (-D + 2, D - 2)]
    cases += [tuple(sorted(rng.integers(-D, D + 1, 2).tolist())) for _ in range(6)]
    for A, B in cases:
        answer = perceptron_computable(D, A, B)
        assert answer.computable == closed_form_computable(D, A, B), (D, A, B)
        if answer.computable:
            assert check_perceptron(D, A, B, answer.weights.tolist(), answer.bias).ok
        else:
            assert check_witness(D, A, B, **answer.witness.as_lists()).ok


def test_the_old_bug_is_caught_by_the_independent_check():
    """Above LP_MAX_D the old code solved the LP on the D + 1 sum representatives with D free
    weights: its w fits those 16 inputs and fails on thousands of others."""
    D, A, B = 15, -1, 1
    X = np.where(np.arange(D)[None, :] < np.arange(D + 1)[:, None], 1, -1)
    y = np.where((X.sum(1) >= A) & (X.sum(1) <= B), 1, -1)
    res = linprog(
        np.zeros(D + 1),
        A_ub=-y[:, None] * np.hstack([X, np.ones((D + 1, 1))]),
        b_ub=-np.ones(D + 1),
        bounds=[(None, None)] * (D + 1),
        method="highs",
    )
    assert res.status == 0  # the reduced LP with free weights is feasible...
    w, b = np.rint(1000 * res.x[:D]).astype(int).tolist(), int(np.rint(1000 * res.x[D]))
    result = check_perceptron(D, A, B, w, b)
    assert not result.ok and result.wrong_inputs > 1000  # ...but its w is wrong
    assert not perceptron_computable(D, A, B).computable


def test_perceptron_check_counts_wrong_inputs_like_brute_force(monkeypatch):
    rng = np.random.default_rng(1)
    for _ in range(40):
        D = int(rng.integers(1, 8))
        A, B = sorted(rng.integers(-D, D + 1, 2).tolist())
        w, b = rng.integers(-3, 4, D).tolist(), int(rng.integers(-4, 5))
        assert check_perceptron(D, A, B, w, b).wrong_inputs == brute_perceptron_wrong(D, A, B, w, b)
        c = int(rng.integers(-3, 4))  # constant weights: the symmetric path must agree too
        monkeypatch.setattr(check, "EXHAUSTIVE_MAX_D", 0)
        result = check_perceptron(D, A, B, [c] * D, b)
        monkeypatch.undo()
        assert result.method.startswith("constant weights")
        assert result.wrong_inputs == brute_perceptron_wrong(D, A, B, [c] * D, b)
    wide = check_perceptron(25, -1, 1, [1] + [0] * 24, 0)  # not constant: refuses to vouch
    assert not wide.ok and wide.method.startswith("unchecked")


def test_witness_check_rejects_tampering():
    D, A, B = 6, -2, 2
    lists = farkas_witness(D, A, B).as_lists()
    assert check_witness(D, A, B, **lists).ok
    swapped = lists | {"negatives": lists["positives"], "positives": lists["negatives"]}
    heavier = lists | {"negative_weights": [2, 2], "positive_weights": [2, 1]}
    short = lists | {"negatives": [x[:-1] for x in lists["negatives"]]}
    zero = lists | {"negatives": [[0] + x[1:] for x in lists["negatives"]]}
    for bad in (swapped, heavier, short, zero):
        assert not check_witness(D, A, B, **bad).ok


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


@pytest.mark.parametrize(
    ("D", "A", "B", "computable"),
    [
        (5, -5, 1, True),  # A = -D
        (5, -1, 5, True),  # B = D
        (5, -5, 5, True),  # everything
        (5, 1, 1, False),  # A = B, reachable
        (5, 0, 0, True),  # A = B, no reachable sum (parity): f is constant -1
        (6, -3, -3, True),  # same, even D
        (6, -2, 2, False),
    ],
)
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
                    net = Network(
                        mutated["W1"], mutated["b1"], mutated["w2"], int(mutated["b2"]), base.hidden
                    )
                    outputs = net(np.array(list(oracle)))
                    agrees = list(outputs) == list(oracle.values())
                    result = verify(net, D, A, B, trials=100)
                    assert result.correct == agrees
                    lists = {
                        "W1": net.W1.tolist(),
                        "b1": net.b1.tolist(),
                        "w2": net.w2.tolist(),
                        "b2": net.b2,
                        "hidden": net.hidden,
                    }
                    wrong = int(np.sum(outputs != np.array(list(oracle.values()))))
                    assert check_network(D, A, B, **lists).wrong_inputs == wrong
                    if not agrees:
                        assert not result.ok
                        caught += 1
    assert caught > 0


def test_radius_is_positive_and_a_zero_preactivation_is_rejected():
    for build in (sign_mlp, relu_mlp):
        assert verify(build(3, -1, 1), 3, -1, 1).radius > 0
    # h1 = sign(s + 1) is exactly 0 at s = -1, which D = 3 reaches; the function is still right
    # on the grid (sign(0) = +1 means s >= -1) but an infinitesimal nudge flips it.
    net = Network(
        np.array([[1, 1, 1], [-2, -2, -2]]), np.array([1, 3]), np.array([1, 1]), -1, "sign"
    )
    result = verify(net, 3, -1, 1)
    assert result.correct and not result.robust and not result.ok and result.radius == 0


def test_large_dimension_uses_the_symmetric_proof():
    result = verify(sign_mlp(40, -6, 10), 40, -6, 10)
    assert result.ok and result.method.startswith("symmetric")
    asym = sign_mlp(40, -6, 10)
    W1 = asym.W1.copy()
    W1[0, 0] = 4
    assert not verify(Network(W1, asym.b1, asym.w2, asym.b2, "sign"), 40, -6, 10).ok


def test_distinct_rows_equals_numpy_unique():
    Z = np.random.default_rng(2).integers(-3, 4, (500, 2))
    assert np.array_equal(_distinct_rows(Z), np.unique(Z, axis=0))


def test_exhaustive_verification_for_d16():
    result = verify(relu_mlp(16, -4, 6), 16, -4, 6)
    assert result.ok and result.method == "exhaustive over all 2^16 inputs"


def test_cli_prints_the_three_answers_and_draws_figure_18(tmp_path):
    out = tmp_path / "fig18.png"
    result = CliRunner().invoke(
        cli, ["theory", "interval", "--D", "2", "--A", "-1", "--B", "1", "--plot", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "NO single perceptron" in result.output
    assert result.output.count("VERIFIED") == 2
    assert out.read_bytes()[:4] == b"\x89PNG"
    md = CliRunner().invoke(
        cli, ["theory", "interval", "--D", "2", "--A", "-1", "--B", "1", "--markdown"]
    )
    assert "**b)**" in md.output and "**c)**" in md.output and "[2, 2]" in md.output
    bad = CliRunner().invoke(cli, ["theory", "interval", "--D", "2", "--A", "2", "--B", "1"])
    assert bad.exit_code == 2 and "need -D <= A <= B <= D" in bad.output  # a usage error


def test_cli_json_is_the_whole_answer_and_checkable_without_medclf(tmp_path):
    out = tmp_path / "fig18.png"
    for D, A, B, computable in [(4, -2, 0, False), (4, -4, 1, True), (30, -3, 4, False)]:
        args = ["theory", "interval", "--D", str(D), "--A", str(A), "--B", str(B), "--json"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)  # stdout is one JSON object and nothing else
        assert (answer["D"], answer["A"], answer["B"]) == (D, A, B)
        assert answer["perceptron_computable"] is computable
        assert answer["certificate_check"]["ok"]
        for name in ("sign_mlp", "relu_mlp"):
            net = answer[name]
            assert net["check"]["ok"] and net["verification"]["ok"]
            assert all(isinstance(v, int) for v in [*net["W1"][0], *net["b1"], *net["w2"]])
            if D <= 8:  # rerun the network in plain Python: trust nothing from medclf
                act = (
                    (lambda z: 1 if z >= 0 else -1) if name == "sign_mlp" else (lambda z: max(z, 0))
                )
                for x, y in brute_f(D, A, B).items():
                    h = [
                        act(sum(w * v for w, v in zip(row, x, strict=True)) + b)
                        for row, b in zip(net["W1"], net["b1"], strict=True)
                    ]
                    z = sum(w * v for w, v in zip(net["w2"], h, strict=True)) + net["b2"]
                    assert (1 if z >= 0 else -1) == y
        if computable:
            w, b = answer["perceptron"]["w"], answer["perceptron"]["b"]
            assert answer["witness"] is None and brute_perceptron_wrong(D, A, B, w, b) == 0
        else:
            assert answer["perceptron"] is None
            assert_witness_by_hand(D, A, B, answer["witness"])
    args = ["theory", "interval", "--D", "2", "--A", "-1", "--B", "1", "--json", "--plot", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and json.loads(result.stdout)["D"] == 2
    assert f"wrote {out}" in result.stderr and out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--D", "5000", "--A", "0", "--B", "1"], f"above the largest supported D ({MAX_D}"),
        (["--D", "0", "--A", "0", "--B", "0"], "D == 0, must be >= 1"),
        (["--D", "-3", "--A", "0", "--B", "0"], "D == -3, must be >= 1"),
        (["--D", "4", "--A", "3", "--B", "1"], "need -D <= A <= B <= D"),
        (["--D", "4", "--A", "-5", "--B", "1"], "need -D <= A <= B <= D"),
        (["--D", "4", "--A", "0", "--B", str(10**30)], "need -D <= A <= B <= D"),
        (["--D", str(10**30), "--A", "0", "--B", "1"], "above the largest supported D"),
        (["--D", "abc", "--A", "0", "--B", "1"], "'abc' is not a valid integer"),
        (["--D", "4", "--A", "0", "--B", "1", "--json", "--markdown"], "pick one"),
        (["--D", "4", "--A", "0", "--B", "1", "--plot", "x.png"], "--plot draws the D = 2 picture"),
    ],
)
def test_cli_rejects_bad_input_in_one_line(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["theory", "interval", *args])
    assert result.exit_code != 0 and message in result.output, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped error


def test_a_certificate_that_fails_its_check_is_never_printed(monkeypatch):
    from medclf.theory import explain
    from medclf.theory.interval import PerceptronAnswer

    wrong = PerceptronAnswer(True, weights=np.array([1, -1] + [0] * 13), bias=0, method="bug")
    monkeypatch.setattr(explain, "perceptron_computable", lambda D, A, B: wrong)
    result = CliRunner().invoke(cli, ["theory", "interval", "--D", "15", "--A", "-1", "--B", "1"])
    assert result.exit_code == 1 and "failed its check" in result.output
    assert "[1, -1" not in result.output and result.output.count("\n") == 1
