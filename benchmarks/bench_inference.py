"""Inference speed (issue 20 §5): images per second of medclf's ways to score images against a
plain PyTorch loop, at batch 1 and batch 256, on the genuine PneumoniaMNIST test images.

Contenders, for torch-cnn, torch-ffn and sklearn-logreg (each trained briefly with
medclf.train into a temporary folder):
- ``medclf predict RUN FILE.npz``, the CLI as a subprocess: wall time with start-up at batch
  1 and 256, and the per-image rate with start-up taken off (the wall time of a 4,096-image
  file minus that of a 1-image file, over 4,095: 256 images cost less than the start-up's
  noise);
- ``medclf.open_run(RUN).predict_proba(images)`` and ``Run.predict`` (the Python API);
- the graph ``medclf export onnx RUN`` writes, under onnxruntime (CPU provider, 2 threads);
- the baseline: a plain PyTorch loop (model.pt loaded with torch.load(weights_only=True) into the
  registry's network, eval(), inference_mode, softmax over batches of 256, inputs scaled as
  medclf scales them); for sklearn-logreg, the estimator loaded once with skops, predict_proba.

Same process, 2 threads everywhere; the in-process contenders alternate (the order rotates each
round) and each figure is the median of the rounds. The machine is shared: read the ratios.
Run: python benchmarks/bench_inference.py [--data FILE] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import machine
from threadpoolctl import threadpool_limits

import medclf

THREADS = 2
BATCHES = (1, 256)
CLI_LARGE = 4096  # images in the file whose wall time, minus a 1-image call's, gives the rate
NET = f"`medclf predict` per image, start-up taken off ({CLI_LARGE:,}-image file − 1-image file)"
MODELS = {  # model -> training settings: a short training, enough for real weights
    "torch-cnn": {"epochs": 1},
    "torch-ffn": {"epochs": 2},
    "sklearn-logreg": {},
}
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
    "OPENBLAS_NUM_THREADS": str(THREADS),
}


def plain_torch(run_dir: Path):
    """The baseline a PyTorch user writes: the weights into the model class, eval, softmax."""
    from medclf.models.registry import MODELS as SPECS
    from medclf.models.registry import builder

    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    h, w = metrics["image_shape"]
    image = SPECS[config["model"]].inputs == "image"
    model = builder(config["model"])(
        config, (1, h, w) if image else (h * w,), len(metrics["class_names"])
    )
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    model.eval()

    def proba(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images)
        x = x.unsqueeze(1).float() / 127.5 - 1 if image else x.flatten(1).float() / 256
        with torch.inference_mode():
            out = [torch.softmax(model(x[i : i + 256]), dim=1) for i in range(0, len(x), 256)]
        return torch.cat(out).numpy()

    return proba


def plain_sklearn(run_dir: Path):
    """The fitted estimator loaded once (skops, its own types trusted), pixels / 256."""
    import skops.io as sio

    path = run_dir / "model.skops"
    estimator = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    return lambda images: estimator.predict_proba(images.reshape(len(images), -1) / 256)


def onnx_session(run_dir: Path, out: Path):
    """The exported graph under onnxruntime, or the one line that says why there is none."""
    import onnxruntime as ort

    done = subprocess.run(
        ["medclf", "export", "onnx", str(run_dir), "--out", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["export failed"])[-1]
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    return (lambda images: session.run(None, {"images": images})[0]), None


def cli_call(run_dir: Path, npz: Path, n_classes: int) -> tuple[float, np.ndarray]:
    """Wall seconds of one ``medclf predict`` and the probabilities it printed (4 decimals)."""
    start = time.perf_counter()
    done = subprocess.run(
        ["medclf", "predict", str(run_dir), str(npz)],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    rows = done.stdout.strip().splitlines()[1:]  # after the header
    return seconds, np.array([[float(v) for v in row.split()[-n_classes:]] for row in rows])


def rate(fn, images: np.ndarray, seconds: float = 0.1) -> float:
    """images/s over as many calls as fit in ``seconds`` (at least one)."""
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn(images)
        calls += 1
    return calls * len(images) / elapsed


def alternate(contenders: dict, images: np.ndarray, rounds: int) -> dict[str, float]:
    """Median images/s of each contender; the order rotates every round."""
    names, rates = list(contenders), {name: [] for name in contenders}
    for name in names:
        contenders[name](images)  # warm-up
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rates[name].append(rate(contenders[name], images))
    return {name: statistics.median(v) for name, v in rates.items()}


def bench_model(model: str, data: Path, images: np.ndarray, tmp: Path, rounds: int, cli_reps):
    run_dir = tmp / model
    medclf.train(model, dataset=str(data), out=run_dir, **MODELS[model])
    torch.set_num_threads(THREADS)  # training set its own count (1 for small batches)
    threadpool_limits(THREADS)
    run = medclf.open_run(run_dir)
    n_classes = len(run.metrics["class_names"])
    baseline = plain_sklearn(run_dir) if model.startswith("sklearn") else plain_torch(run_dir)
    onnx, why_not = onnx_session(run_dir, tmp / f"{model}.onnx")
    contenders = {"plain loop (baseline)": baseline, "Run.predict_proba": run.predict_proba}
    if onnx is not None:
        contenders["ONNX Runtime"] = onnx
    # the same probabilities from every contender, on the 256 images
    sample = images[:256]
    ref = baseline(sample)
    diffs = {name: float(np.abs(fn(sample) - ref).max()) for name, fn in contenders.items()}
    same_class = bool((run.predict(sample) == ref.argmax(axis=1)).all())
    npz = {b: tmp / f"{model}-{b}.npz" for b in (*BATCHES, CLI_LARGE)}
    for b in npz:  # the 256 test images, repeated for the large file
        np.savez(npz[b], images=np.resize(images, (b, *images.shape[1:])))
    cli_diff = float(np.abs(cli_call(run_dir, npz[256], n_classes)[1] - ref).max())
    print(
        f"{model}: max |p - baseline| over 256 images: "
        + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items() if k != "plain loop (baseline)")
        + f", CLI {cli_diff:.1e} (printed to 4 decimals); Run.predict classes = argmax: "
        f"{same_class}" + (f"; no ONNX graph: {why_not}" if why_not else ""),
        flush=True,
    )
    contenders["Run.predict"] = run.predict
    results = {b: alternate(contenders, images[:b], rounds) for b in BATCHES}
    cli = {b: [] for b in npz}
    for _ in range(cli_reps):  # the files alternate
        for b in npz:
            cli[b].append(cli_call(run_dir, npz[b], n_classes)[0])
    wall = {b: statistics.median(cli[b]) for b in npz}
    for b in BATCHES:
        results[b]["`medclf predict` (wall, with start-up)"] = b / wall[b]
    net = wall[CLI_LARGE] - wall[1]  # start-up (and the 1 image) taken off
    results[256][NET] = (CLI_LARGE - 1) / net if net > 0 else float("nan")
    return results, diffs, cli_diff, wall


def per_second(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def main():
    parser = argparse.ArgumentParser()
    # ../shared/data beside the repository, wherever it is run from
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"
    parser.add_argument("--data", default=str(real))
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per figure")
    parser.add_argument("--cli-repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    data = Path(args.data)
    if not data.is_file():
        print(f"skipped: {data} is absent; give the genuine PneumoniaMNIST with --data FILE")
        return
    torch.set_num_threads(THREADS)
    threadpool_limits(THREADS)
    with np.load(data) as f:
        images = f["test_images"][:256]
    print(
        f"machine: {machine()}; torch {torch.__version__}; {THREADS} threads; "
        f"load before: {os.getloadavg()[0]:.2f}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            results, *_ = bench_model(model, data, images, Path(tmp), args.rounds, args.cli_repeats)
            rows.append((model, results))
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print()
    print(
        "| model | contender | batch 1: images/s | vs baseline | batch 256: images/s "
        "| vs baseline |"
    )
    print("|---|---|---|---|---|---|")
    for model, results in rows:
        base = {b: results[b]["plain loop (baseline)"] for b in BATCHES}
        for name in dict.fromkeys([*results[1], *results[256]]):
            cells = []
            for b in BATCHES:
                v = results[b].get(name)
                cells += ["—", "—"] if v is None else [per_second(v), f"{v / base[b]:.3g}×"]
            print(f"| {model} | {name} | " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
