"""Question 3's answers as text: weight tables for the terminal, a proof in Markdown, Figure 18."""

from __future__ import annotations

import numpy as np

from medclf.theory.interval import (
    Network,
    PerceptronAnswer,
    Verification,
    perceptron_computable,
    relu_mlp,
    sign_mlp,
    verify,
)


def solve(D: int, A: int, B: int):
    """Everything Question 3 asks, verified: (perceptron answer, [(net, verification), ...])."""
    answer = perceptron_computable(D, A, B)
    nets = [sign_mlp(D, A, B), relu_mlp(D, A, B)]
    return answer, [(net, verify(net, D, A, B)) for net in nets]


def _row(values) -> str:
    values = list(values)
    if len(values) > 6 and len(set(values)) == 1:
        return f"[{values[0]}] * {len(values)}"
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def network_table(net: Network) -> str:
    act = "sign" if net.hidden == "sign" else "relu"
    lines = [f"{'unit':8} {'weights on x':32} bias"]
    for j, (w, b) in enumerate(zip(net.W1, net.b1, strict=True)):
        lines.append(f"{act}{j + 1:<4} {_row(w):32} {int(b)}")
    lines.append(f"{'output':8} {_row(net.w2) + ' on (h1, h2)':32} {int(net.b2)}   (sign)")
    return "\n".join(lines)


def verification_line(v: Verification) -> str:
    status = "VERIFIED" if v.ok else "FAILED"
    return (f"{status}: correct={v.correct}, no zero pre-activation={v.robust}, certified "
            f"radius {v.radius:.6g} (l_inf), random perturbations ok={v.random_ok}; {v.method}"
            + ("; " + "; ".join(v.notes) if v.notes else ""))  # fmt: skip


def perceptron_text(D: int, A: int, B: int, answer: PerceptronAnswer) -> str:
    if answer.computable:
        w = np.round(answer.weights, 4)
        return (f"a) A single perceptron CAN compute f ({answer.method}): "
                f"w = {w.tolist()}, b = {answer.bias:.4g}")  # fmt: skip
    wit = answer.witness
    neg = " + ".join(
        f"{k}*{x.tolist()}" for k, x in zip(wit.negative_weights, wit.negatives, strict=True)
    )
    pos = " + ".join(
        f"{k}*{x.tolist()}" for k, x in zip(wit.positive_weights, wit.positives, strict=True)
    )
    return (
        f"a) NO single perceptron computes f ({answer.method}: infeasible). Certificate: "
        f"{neg} = {pos}, with f = -1 on the left inputs and +1 on the right ones and equal "
        f"total weight; a perceptron would make the left sum of w.x+b negative and the "
        f"right one non-negative, yet they are equal."
    )


def text_report(D: int, A: int, B: int) -> str:
    answer, nets = solve(D, A, B)
    parts = [f"f(x) = +1 iff {A} <= sum(x) <= {B}, x in {{-1,+1}}^{D}", "",
             perceptron_text(D, A, B, answer), ""]  # fmt: skip
    titles = ["b) two sign hidden units, sign output", "c) two ReLU hidden units, sign output"]
    for title, (net, v) in zip(titles, nets, strict=True):
        parts += [title, network_table(net), verification_line(v), ""]
    return "\n".join(parts)


def markdown_proof(D: int, A: int, B: int) -> str:
    """Answers to 3.1 a), b), c) as a short proof, with the verified weights filled in."""
    answer, ((sgn, vs), (relu, vr)) = solve(D, A, B)
    s = "\\sum_i x_i"
    a_text = perceptron_text(D, A, B, answer)[3:]
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
{verification_line(vs)}

**c)** With $h_1 = \\mathrm{{ReLU}}(2s - 2B - 1)$ ($\\ge 1$ iff $s > B$, else 0) and
$h_2 = \\mathrm{{ReLU}}(-2s + 2A - 1)$ ($\\ge 1$ iff $s < A$, else 0), the output
$\\mathrm{{sign}}(1 - 2h_1 - 2h_2)$ is $+1$ (pre-activation 1) inside $[A, B]$ and $-1$
(pre-activation $\\le -1$) outside; certified radius {vr.radius:.4g}.

```
{network_table(relu)}
```
{verification_line(vr)}
"""


def figure18(A: int, B: int):
    """The four inputs of D = 2 coloured by f, with the sign construction's two hidden lines."""
    from medclf.report.plots import plt
    from medclf.theory.interval import all_inputs, interval_function

    X = all_inputs(2)
    y = interval_function(2, A, B, X)
    net = sign_mlp(2, A, B)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for label, colour, name in ((1, "tab:red", "f(x) = +1"), (-1, "tab:blue", "f(x) = -1")):
        pts = X[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=140, c=colour, label=name, zorder=3)
    t = np.linspace(-1.8, 1.8, 2)
    for j, style in enumerate(("--", ":")):
        (w1, w2), b = net.W1[j], net.b1[j]
        ax.plot(t, -(w1 * t + b) / w2, style, color="k", label=f"hidden unit {j + 1}: "
                f"{w1:+d}x1 {w2:+d}x2 {b:+d} = 0")  # fmt: skip
    ax.set(xlim=(-1.8, 1.8), ylim=(-1.8, 1.8), xlabel="$x_1$", ylabel="$x_2$",
           title=f"f for D = 2, A = {A}, B = {B}")  # fmt: skip
    ax.axhline(0, color="0.85", lw=0.8)
    ax.axvline(0, color="0.85", lw=0.8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    return fig
