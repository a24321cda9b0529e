"""Question 3's answers as text: weight tables for the terminal, a proof in Markdown, Figure 18."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from medclf.theory.check import Check, check_network, check_perceptron, check_witness
from medclf.theory.interval import (
    CertificateError,
    Network,
    PerceptronAnswer,
    Verification,
    perceptron_computable,
    relu_mlp,
    sign_mlp,
    verify,
)


@dataclass(frozen=True)
class Solution:
    """Everything Question 3 asks, each certificate checked independently."""

    D: int
    A: int
    B: int
    answer: PerceptronAnswer
    answer_check: Check
    nets: list[tuple[Network, Verification, Check]]  # sign, then ReLU


def solve(D: int, A: int, B: int) -> Solution:
    """Decide and construct, then check every certificate with ``medclf.theory.check`` (which
    shares no code with the decision); a failed check raises instead of printing an answer."""
    answer = perceptron_computable(D, A, B)
    if answer.computable:
        answer_check = check_perceptron(D, A, B, answer.weights.tolist(), answer.bias)
    else:
        answer_check = check_witness(D, A, B, **answer.witness.as_lists())
    nets = []
    for net in (sign_mlp(D, A, B), relu_mlp(D, A, B)):
        lists = network_lists(net)
        nets.append((net, verify(net, D, A, B), check_network(D, A, B, **lists)))
    failed = [c for c in [answer_check] + [c for _, _, c in nets] if not c.ok]
    if failed:
        raise CertificateError(
            f"internal error: a certificate for D={D}, A={A}, B={B} "
            f"failed its check ({failed[0].method}); please report this bug"
        )
    return Solution(D, A, B, answer, answer_check, nets)


def network_lists(net: Network) -> dict:
    return {
        "W1": net.W1.tolist(),
        "b1": net.b1.tolist(),
        "w2": net.w2.tolist(),
        "b2": int(net.b2),
        "hidden": net.hidden,
    }


def json_answer(D: int, A: int, B: int) -> dict:
    """The whole answer as plain data: rerun ``medclf.theory.check`` on it to trust nothing."""
    sol = solve(D, A, B)
    ans = sol.answer
    out = {
        "D": D,
        "A": A,
        "B": B,
        "conventions": "x in {-1,+1}^D; f(x) = +1 iff A <= sum(x) <= B; "
        "sign(z) = +1 if z >= 0 else -1",
        "perceptron_computable": ans.computable,
        "decided_by": ans.method,
        "perceptron": {"w": ans.weights.tolist(), "b": ans.bias} if ans.computable else None,
        "witness": None if ans.computable else ans.witness.as_lists(),
        "certificate_check": sol.answer_check.as_dict(),
    }
    for name, (net, v, c) in zip(("sign_mlp", "relu_mlp"), sol.nets, strict=True):
        out[name] = network_lists(net) | {
            "check": c.as_dict(),
            "verification": {
                "ok": v.ok,
                "correct": v.correct,
                "no_zero_preactivation": v.robust,
                "certified_linf_radius": v.radius,
                "random_perturbations_ok": v.random_ok,
                "method": v.method,
            },
        }
    return out


def _row(values) -> str:
    """A vector, with runs of equal entries written as [v] * n when that is shorter."""
    values = [int(v) for v in values]
    if len(values) <= 12:
        return "[" + ", ".join(map(str, values)) + "]"
    runs = [(v, len(list(group))) for v, group in itertools.groupby(values)]
    text = " + ".join(f"[{v}] * {n}" for v, n in runs)
    return text if len(runs) == 1 else f"({text})"


def network_table(net: Network) -> str:
    act = "sign" if net.hidden == "sign" else "relu"
    lines = [f"{'unit':8} {'weights on x':32} bias"]
    for j, (w, b) in enumerate(zip(net.W1, net.b1, strict=True)):
        lines.append(f"{act}{j + 1:<4} {_row(w):32} {int(b)}")
    lines.append(f"{'output':8} {_row(net.w2) + ' on (h1, h2)':32} {int(net.b2)}   (sign)")
    return "\n".join(lines)


def verification_line(v: Verification, c: Check) -> str:
    status = "VERIFIED" if v.ok and c.ok else "FAILED"
    return (
        f"{status}: independent check: {c.method}, wrong on {c.wrong_inputs} inputs; "
        f"no zero pre-activation={v.robust}, certified radius {v.radius:.6g} (l_inf), "
        f"random perturbations ok={v.random_ok}" + ("; " + "; ".join(v.notes) if v.notes else "")
    )


def perceptron_text(sol: Solution) -> str:
    answer, check = sol.answer, sol.answer_check
    checked = f"checked independently: {check.method}"
    if answer.computable:
        return (
            f"a) A single perceptron CAN compute f ({answer.method}): "
            f"w = {_row(answer.weights)}, b = {answer.bias}; {checked}"
        )
    wit = answer.witness
    neg = " + ".join(
        f"{k}*{_row(x)}" for k, x in zip(wit.negative_weights, wit.negatives, strict=True)
    )
    pos = " + ".join(
        f"{k}*{_row(x)}" for k, x in zip(wit.positive_weights, wit.positives, strict=True)
    )
    return (
        f"a) NO single perceptron computes f ({answer.method}: infeasible). Certificate: "
        f"{neg} = {pos}, with f = -1 on the left inputs and +1 on the right ones and equal "
        f"total weight; a perceptron would make the left sum of w.x+b negative and the "
        f"right one non-negative, yet they are equal ({checked})."
    )


def text_report(D: int, A: int, B: int) -> str:
    sol = solve(D, A, B)
    parts = [
        f"f(x) = +1 iff {A} <= sum(x) <= {B}, x in {{-1,+1}}^{D}",
        "",
        perceptron_text(sol),
        "",
    ]
    titles = ["b) two sign hidden units, sign output", "c) two ReLU hidden units, sign output"]
    for title, (net, v, c) in zip(titles, sol.nets, strict=True):
        parts += [title, network_table(net), verification_line(v, c), ""]
    return "\n".join(parts)


def markdown_proof(D: int, A: int, B: int) -> str:
    """Answers to 3.1 a), b), c) as a short proof, with the verified weights filled in."""
    sol = solve(D, A, B)
    (sgn, vs, cs), (relu, vr, cr) = sol.nets
    s = "\\sum_i x_i"
    a_text = perceptron_text(sol)[3:]
    return f"""### Question 3.1 (D = {D}, A = {A}, B = {B})

Write $s = {s}$; on $\\{{-1,+1\\}}^D$ it takes the values $-D, -D+2, \\dots, D$.

**a)** A single perceptron computes $f$ exactly when $A \\le -D$, or $B \\ge D$, or no
reachable $s$ lies in $[A, B]$. Because $f$ is invariant under permuting coordinates and the
separating $(w, b)$ form a convex set, any working perceptron can be averaged into one with
$w = c\\mathbf{{1}}$, i.e. $\\mathrm{{sign}}(c\\,s + b)$, which is monotone in $s$; labels
$-,+,-$ at three sums $s_1 < A \\le s_2 \\le B < s_3$ rule that out. Here: {a_text}

**b)** With $h_1 = \\mathrm{{sign}}(2s - 2A + 1)$ ($+1$ iff $s \\ge A$) and
$h_2 = \\mathrm{{sign}}(-2s + 2B + 1)$ ($+1$ iff $s \\le B$), the output
$\\mathrm{{sign}}(h_1 + h_2 - 1)$ is $+1$ iff both are $+1$. Every pre-activation is an odd
integer ($\\pm 2s$ plus an odd bias; $h_1 + h_2 - 1 \\in \\{{-3, -1, 1\\}}$), so none is ever 0
and the network keeps its outputs under perturbations of the inputs smaller than
{vs.radius:.4g} in every coordinate (certified by interval arithmetic).

```
{network_table(sgn)}
```
{verification_line(vs, cs)}

**c)** With $h_1 = \\mathrm{{ReLU}}(2s - 2B - 1)$ ($\\ge 1$ iff $s > B$, else 0) and
$h_2 = \\mathrm{{ReLU}}(-2s + 2A - 1)$ ($\\ge 1$ iff $s < A$, else 0), the output
$\\mathrm{{sign}}(1 - 2h_1 - 2h_2)$ is $+1$ (pre-activation 1) inside $[A, B]$ and $-1$
(pre-activation $\\le -1$) outside; certified radius {vr.radius:.4g}.

```
{network_table(relu)}
```
{verification_line(vr, cr)}
"""


def figure18(A: int, B: int):
    """The four inputs of D = 2 coloured by f, with the sign construction's two hidden lines."""
    from medclf.plots import subplots
    from medclf.theory.interval import all_inputs, interval_function

    X = all_inputs(2)
    y = interval_function(2, A, B, X)
    net = sign_mlp(2, A, B)
    fig, ax = subplots(figsize=(4.6, 4.2))
    for label, colour, name in ((1, "tab:red", "f(x) = +1"), (-1, "tab:blue", "f(x) = -1")):
        pts = X[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=140, c=colour, label=name, zorder=3)
    t = np.linspace(-1.8, 1.8, 2)
    for j, style in enumerate(("--", ":")):
        (w1, w2), b = net.W1[j], net.b1[j]
        ax.plot(
            t,
            -(w1 * t + b) / w2,
            style,
            color="k",
            label=f"hidden unit {j + 1}: {w1:+d}x1 {w2:+d}x2 {b:+d} = 0",
        )
    ax.set(
        xlim=(-1.8, 1.8),
        ylim=(-1.8, 1.8),
        xlabel="$x_1$",
        ylabel="$x_2$",
        title=f"f for D = 2, A = {A}, B = {B}",
    )
    ax.axhline(0, color="0.85", lw=0.8)
    ax.axvline(0, color="0.85", lw=0.8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    return fig
