"""ONNX export of a finished run folder: one graph from uint8 images to probabilities.

The graph's input ``images`` is uint8 pixels (n, H, W) or (n, H, W, C), as MedMNIST stores them;
its output ``probabilities`` is (n, K): a softmax over classes, or one sigmoid per label for the
multi-label task. The input scaling the model was trained with is inside the graph, so a user
needs onnxruntime alone. PyTorch networks go through ``torch.onnx.export`` (its TorchScript
exporter: the dynamo one needs onnxscript), the NumPy models become the same MatMul/Add/Relu/
Softmax graph built with ``onnx.helper`` (in the model's own float dtype), and the scikit-learn
baselines that skl2onnx converts exactly go through skl2onnx.

Before a file is written, onnxruntime runs the graph on the run's test split and its
probabilities must match medclf's (``predictions.npz``) within ``TOLERANCE``; a graph that does not
is refused and no file is left behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclf.data.features import select_test
from medclf.data.load import load_dataset
from medclf.errors import DataError
from medclf.files import atomic_path, check_parent
from medclf.models.numpy_models.base import softmax
from medclf.run.families import family_for
from medclf.run.folder import MODEL_ONNX, PREDICTIONS
from medclf.run.onnx_graph import need
from medclf.run.outputs import load_predictions
from medclf.run.predict import check_run, predict_run

TOLERANCE = 1e-5  # max |probability difference| between onnxruntime and medclf
RANDOM_IMAGES = 256  # checked on random images when the dataset file is gone


def export_onnx(run_dir, out=None) -> dict:
    """Write the run's model as ONNX (default ``RUN/model.onnx``) once onnxruntime matches
    medclf's probabilities; returns the path, the largest difference and what it was checked on."""
    for module in ("onnx", "onnxruntime"):
        need(module)
    run_dir = Path(run_dir)
    config, metrics = check_run(run_dir)
    out = check_parent(Path(out) if out else run_dir / MODEL_ONNX)
    model_bytes = family_for(config).onnx_graph(run_dir, config, metrics)
    images, expected, checked_on = reference(run_dir, config, metrics)
    got = run_onnx(model_bytes, images)
    if got.shape != expected.shape:
        raise DataError(
            f"the ONNX graph of {run_dir} gives shape {got.shape}, medclf "
            f"{expected.shape}; no file written"
        )
    delta = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if not delta <= TOLERANCE:  # NaN fails too
        raise DataError(
            f"the ONNX graph of {run_dir} differs from medclf's probabilities by "
            f"{delta:.2g} on {checked_on} (limit {TOLERANCE:g}); no file written"
        )
    with atomic_path(out) as tmp:
        tmp.write_bytes(model_bytes)
    return {
        "path": str(out),
        "max_delta": delta,
        "checked_on": checked_on,
        "input_shape": ["n", *metrics["image_shape"]],
        "outputs": len(metrics["class_names"]),
    }


def run_onnx(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """onnxruntime's probabilities for uint8 images, float64."""
    ort = need("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"images": images})[0].astype(np.float64)


# --- what medclf computes ------------------------------------------------------------------


def reference(run_dir: Path, config: dict, metrics: dict):
    """(test images, their test_scores from predictions.npz, a description); when the dataset
    file is gone or changed, random images and the probabilities medclf computes for them now."""
    source = metrics.get("dataset_source")
    try:
        preds = load_predictions(run_dir)
        scores, labels = preds["test_scores"], preds["test_labels"]
    except Exception as err:  # missing, cut short, no such key
        raise DataError(
            f"{run_dir / PREDICTIONS} is missing or damaged; train the run again "
            "with 'medclf train'"
        ) from err
    if not np.isfinite(scores).all():
        raise DataError(
            f"{run_dir} holds a diverged model (non-finite scores); train it again "
            "with a smaller --lr"
        )
    why = f"the dataset file {source} is gone"
    if isinstance(source, str) and Path(source).is_file():
        dataset = load_dataset(source, size=config.get("size", 28))
        test = select_test(dataset, metrics.get("test_split") or config["test_split"])
        same = test.labels.shape == labels.shape and (test.labels == labels).all()
        if same and test.images.shape[1:] == tuple(metrics["image_shape"]):
            return test.images, scores, f"the {len(labels)} test images of {source}"
        why = f"the dataset file {source} no longer holds the run's test split"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (RANDOM_IMAGES, *metrics["image_shape"]), dtype=np.uint8)
    proba = medclf_proba(run_dir, config, len(metrics["class_names"]), images)
    return images, proba, f"{RANDOM_IMAGES} random images ({why})"


def medclf_proba(run_dir: Path, config: dict, n_classes: int, images) -> np.ndarray:
    """medclf's probabilities; for the perceptron, the softmax of its decision values."""
    _, proba = predict_run(run_dir, images)
    if proba is None:
        _, decision = family_for(config).outputs(run_dir, *check_run(run_dir), images)
        proba = softmax(decision)
    return proba
