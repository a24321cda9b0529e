"""Where a study network's training step spends its time, and what stacking a sweep saves
(issue 20 §1; docs/benchmarks.md, "The whole study").

usage: python benchmarks/bench_study_steps.py [--threads 1] [--repeats 3]

Part 1, the operations the fused step (medclf.models.training.fused_sgd) replaced by faster
ones with the same results, on Q2.2c's shapes (batch 256, 200 hidden units): the ReLU mask of
the backward pass and the minibatch gather. Part 2: k runs of a sweep trained as
one stacked model (medclf.models.training.stacked_sgd) against the same k runs one after
another, per step, on full-size OCTMNIST shapes (784 -> 200 -> 200 -> 4; logistic regression
784 -> 4). Everything in one process, alternated, best of ``--repeats``: the machine is shared,
so read the ratios.
"""

from __future__ import annotations

import argparse
import time

import torch

N, FEATURES, HIDDEN, CLASSES = 97_477, 784, 200, 4


def best_of(fn, repeats: int, calls: int) -> float:
    """Microseconds per call, the best of ``repeats`` rounds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return min(times)


def operations(repeats: int) -> list[tuple[str, float, float]]:
    a = torch.randn(256, HIDDEN).relu_()
    d = torch.randn(256, HIDDEN)
    X, idx = torch.rand(N, FEATURES), torch.randperm(N)[:256]
    pairs = [
        (
            "ReLU backward: masked_fill_(a <= 0) -> threshold_backward",
            lambda: d.clone().masked_fill_(a <= 0, 0),
            lambda: torch.ops.aten.threshold_backward(d, a, 0),
        ),
        ("gather 256 rows: X[idx] -> index_select", lambda: X[idx], lambda: X.index_select(0, idx)),
    ]
    return [
        (name, best_of(old, repeats, 500), best_of(new, repeats, 500)) for name, old, new in pairs
    ]


def networks(k: int, logistic: bool):
    from medclf.models.torch_models import FeedforwardNetwork, LogisticRegression

    if logistic:
        return [LogisticRegression(FEATURES, CLASSES) for _ in range(k)]
    return [FeedforwardNetwork(FEATURES, CLASSES, HIDDEN, 2, "relu", 0.0) for _ in range(k)]


def stacking(batch: int, k: int, logistic: bool, repeats: int) -> tuple[float, float]:
    """(one by one, stacked): milliseconds per step of k runs."""
    from medclf.models.training.fused_sgd import sgd_step, structure
    from medclf.models.training.stacked_sgd import Stack

    X, y = torch.rand(N, FEATURES), torch.randint(0, CLASSES, (N,))
    order = torch.randperm(N)
    alone = [structure(m) for m in networks(k, logistic)]
    stack = Stack(networks(k, logistic))
    lrs, wds, gens = torch.full((k,), 0.1), torch.zeros(k), [torch.Generator() for _ in range(k)]
    step = {"n": 0}

    def batch_rows():
        start = (step["n"] * batch) % (N - batch)
        step["n"] += 1
        idx = order[start : start + batch]
        return X.index_select(0, idx), y[idx]

    def one_by_one():
        x, t = batch_rows()
        for linears, act, p in alone:
            sgd_step(linears, act, p, x, t, 0.1, 0.0)

    def stacked():
        x, t = batch_rows()
        stack.step(x, t, lrs, wds, gens)

    calls = 2000 if batch <= 64 else 200
    return best_of(one_by_one, repeats, calls) / 1e3, best_of(stacked, repeats, calls) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)\n")
    print("| operation | before (µs) | after (µs) | speed-up |\n|---|---|---|---|")
    for name, old, new in operations(args.repeats):
        print(f"| {name} | {old:.0f} | {new:.0f} | {old / new:.1f}× |")
    print("\n| runs | batch | k | one by one (ms/step) | stacked (ms/step) | speed-up |")
    print("|---|---|---|---|---|---|")
    for batch, k, logistic in [(16, 4, False), (16, 2, False), (16, 3, True), (256, 3, False)]:
        alone, stacked = stacking(batch, k, logistic, args.repeats)
        name = "torch-logreg" if logistic else "torch-ffn"
        print(f"| {name} | {batch} | {k} | {alone:.3f} | {stacked:.3f} | {alone / stacked:.2f}× |")


if __name__ == "__main__":
    main()
