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

import importlib
import io
import warnings
from pathlib import Path

import numpy as np

from medclf.errors import ConfigError, DataError
from medclf.files import atomic_path, check_parent
from medclf.models.registry import MODELS
from medclf.run.predict import MULTI_LABEL, check_run

TOLERANCE = 1e-5  # max |probability difference| between onnxruntime and medclf
OPSET = 17
EXTRA = 'pip install -e ".[onnx]"'
# skl2onnx 1.20 converts these within 1e-6 (single-label tasks). Not the others: kNN with distance
# weights differs by ~0.02 in probability, HGB fails to convert (scikit-learn 1.9), the SVM's
# softmax of decision values has no skl2onnx graph, and multi-label forests give per-label lists.
SKLEARN_MODELS = ("sklearn-logreg", "sklearn-rf")
RANDOM_IMAGES = 256  # checked on random images when the dataset file is gone


def need(module: str):
    """Import an optional package of the onnx extra, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"ONNX export needs the optional onnx extra ({module} is missing); "
                          f"install it with {EXTRA}") from err  # fmt: skip


def export_onnx(run_dir, out=None) -> dict:
    """Write the run's model as ONNX (default ``RUN/model.onnx``) once onnxruntime matches
    medclf's probabilities; returns the path, the largest difference and what it was checked on."""
    for module in ("onnx", "onnxruntime"):
        need(module)
    run_dir = Path(run_dir)
    config, metrics = check_run(run_dir)
    out = check_parent(Path(out) if out else run_dir / "model.onnx")
    family = MODELS[config["model"]].family
    if family == "sklearn":
        model_bytes = sklearn_graph(run_dir, config, metrics)
    elif family == "numpy":
        model_bytes = numpy_graph(run_dir, config, metrics)
    else:
        model_bytes = torch_graph(run_dir, config, metrics)
    images, expected, checked_on = reference(run_dir, config, metrics)
    got = run_onnx(model_bytes, images)
    if got.shape != expected.shape:
        raise DataError(f"the ONNX graph of {run_dir} gives shape {got.shape}, medclf "
                        f"{expected.shape}; no file written")  # fmt: skip
    delta = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if not delta <= TOLERANCE:  # NaN fails too
        raise DataError(f"the ONNX graph of {run_dir} differs from medclf's probabilities by "
                        f"{delta:.2g} on {checked_on} (limit {TOLERANCE:g}); no file written")
    with atomic_path(out) as tmp:
        tmp.write_bytes(model_bytes)
    return {"path": str(out), "max_delta": delta, "checked_on": checked_on,
            "input_shape": ["n", *metrics["image_shape"]],
            "outputs": len(metrics["class_names"])}  # fmt: skip


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
    from medclf.data.features import select_test
    from medclf.data.load import load_dataset
    from medclf.run.outputs import load_predictions

    source = metrics.get("dataset_source")
    try:
        preds = load_predictions(run_dir)
        scores, labels = preds["test_scores"], preds["test_labels"]
    except Exception as err:  # missing, cut short, no such key
        raise DataError(f"{run_dir}/predictions.npz is missing or damaged; train the run again "
                        "with 'medclf train'") from err  # fmt: skip
    if not np.isfinite(scores).all():
        raise DataError(f"{run_dir} holds a diverged model (non-finite scores); train it again "
                        "with a smaller --lr")  # fmt: skip
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
    from medclf.models.numpy_models.base import softmax
    from medclf.run.predict import _numpy_logits, predict_run

    _, proba = predict_run(run_dir, images)
    if proba is None:
        proba = softmax(_numpy_logits(run_dir, config, images, n_classes)[0])
    return proba


# --- graphs --------------------------------------------------------------------------------


def _input(metrics: dict):
    from onnx import TensorProto, helper

    shape = ["n", *metrics["image_shape"]]
    return helper.make_tensor_value_info("images", TensorProto.UINT8, shape)


def _output(n_outputs: int, elem_type):
    from onnx import helper

    return helper.make_tensor_value_info("probabilities", elem_type, ["n", n_outputs])


def _flat_nodes(n_features: int, np_dtype, name: str) -> tuple[list, list]:
    """Nodes from ``images`` to ``name``: (n, n_features) pixels / 256 in ``np_dtype``."""
    from onnx import helper, numpy_helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
    inits = [numpy_helper.from_array(np.array([-1, n_features], np.int64), "flat_shape"),
             numpy_helper.from_array(np.array(256, np_dtype), "pixel_scale")]  # fmt: skip
    nodes = [helper.make_node("Cast", ["images"], ["pixels"], to=elem),
             helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"]),
             helper.make_node("Div", ["flat", "pixel_scale"], [name])]  # fmt: skip
    return nodes, inits


def _serialise(graph, opsets) -> bytes:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=opsets, producer_name="medclf")
    model.ir_version = min(model.ir_version, 9)  # readable by onnxruntime >= 1.16
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def numpy_graph(run_dir: Path, config: dict, metrics: dict) -> bytes:
    """The NumPy model as MatMul/Add(/Relu) layers and a Softmax, in its own dtype. The linear
    models' constant-1 column becomes the last column of W added as a bias (same numbers)."""
    from onnx import helper, numpy_helper

    from medclf.run.predict import _numpy_logits

    n_classes = len(metrics["class_names"])
    probe = np.zeros((1, *metrics["image_shape"]), np.uint8)
    _numpy_logits(run_dir, config, probe, n_classes)  # checks the file against the run
    from medclf.models.numpy_models import load_model

    model = load_model(run_dir / "model.npz")
    dtype = model.np_dtype
    n_pixels = int(np.prod(metrics["image_shape"]))
    if config["model"] == "numpy-mlp":
        layers = list(zip(model.weights_, model.biases_, strict=True))
    else:
        layers = [(model.W_[:, :-1], model.W_[:, -1])]
    nodes, inits = _flat_nodes(n_pixels, dtype, "a0")
    for l, (W, b) in enumerate(layers):
        inits += [numpy_helper.from_array(np.ascontiguousarray(W.T, dtype), f"W{l}"),
                  numpy_helper.from_array(np.asarray(b, dtype), f"b{l}")]  # fmt: skip
        last = l == len(layers) - 1
        nodes += [helper.make_node("MatMul", [f"a{l}", f"W{l}"], [f"m{l}"]),
                  helper.make_node("Add", [f"m{l}", f"b{l}"], ["logits" if last else f"z{l}"])]
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{l}"], [f"a{l + 1}"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(nodes, config["model"], [_input(metrics)],
                              [_output(n_classes, elem)], inits)  # fmt: skip
    return _serialise(graph, [helper.make_opsetid("", OPSET)])


def torch_graph(run_dir: Path, config: dict, metrics: dict) -> bytes:
    """The network wrapped with its input scaling and its softmax/sigmoid, exported with
    torch.onnx's TorchScript exporter (dynamo=False: no onnxscript needed)."""
    import torch

    from medclf.run.family_torch import build_network
    from medclf.run.predict import _torch_logits

    shape, n_classes = metrics["image_shape"], len(metrics["class_names"])
    probe = np.zeros((1, *shape), np.uint8)
    _torch_logits(run_dir, config, probe, n_classes)  # checks the file against the run
    image_inputs = MODELS[config["model"]].inputs == "image"
    state = torch.load(run_dir / "model.pt", weights_only=True, map_location="cpu")
    input_shape = ((1 if len(shape) == 2 else shape[2], shape[0], shape[1]) if image_inputs
                   else (int(np.prod(shape)),))  # fmt: skip
    network = build_network(config, input_shape, n_classes)
    network.load_state_dict({k: v.float() for k, v in state.items()})
    multi_label = metrics.get("task") == MULTI_LABEL
    wrapped = _probabilities_module()(network, image_inputs, multi_label).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (torch.from_numpy(probe),), buffer, dynamo=False,
                          input_names=["images"], output_names=["probabilities"],
                          dynamic_axes={"images": {0: "n"}, "probabilities": {0: "n"}},
                          opset_version=OPSET)  # fmt: skip
    return buffer.getvalue()


def _probabilities_module():
    import torch

    class Probabilities(torch.nn.Module):
        """uint8 images -> the network's inputs (medclf.data.features) -> probabilities."""

        def __init__(self, network, image_inputs: bool, multi_label: bool):
            super().__init__()
            self.network, self.image_inputs, self.multi_label = network, image_inputs, multi_label

        def forward(self, images):
            x = images.float()
            if self.image_inputs:  # (n, C, H, W) in [-1, 1], as to_images
                x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
                x = x / 127.5 - 1
            else:  # flattened pixels / 256, as to_features
                x = torch.flatten(x, 1) / 256
            logits = self.network(x)
            return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)

    return Probabilities


def sklearn_graph(run_dir: Path, config: dict, metrics: dict) -> bytes:
    """skl2onnx's graph of the fitted estimator behind the scaling nodes; classes the training
    split lacked get zero columns, as medclf.models.classic.classic_scores gives them."""
    from onnx import TensorProto, helper, numpy_helper

    from medclf.run.family_sklearn import load_model_file

    model = config["model"]
    if model not in SKLEARN_MODELS or metrics.get("task") == MULTI_LABEL:
        raise ConfigError(f"{model} on the task '{metrics.get('task')}' has no exact ONNX graph; "
                          f"of the scikit-learn models, {' and '.join(SKLEARN_MODELS)} on "
                          "single-label tasks export")  # fmt: skip
    skl2onnx = need("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType

    path = run_dir / "model.skops"
    if not path.is_file():
        raise DataError(f"{run_dir} has no model.skops; train the run again with 'medclf train'")
    estimator = load_model_file(path)
    n_pixels, n_classes = int(np.prod(metrics["image_shape"])), len(metrics["class_names"])
    classes = np.asarray(getattr(estimator, "classes_", []))
    if not (classes.ndim == 1 and np.issubdtype(classes.dtype, np.integer) and len(classes)
            and classes.min() >= 0 and classes.max() < n_classes):  # fmt: skip
        raise DataError(f"{path} does not fit metrics.json's {n_classes} classes; train the run "
                        "again")  # fmt: skip
    try:
        converted = skl2onnx.convert_sklearn(
            estimator, initial_types=[("features", FloatTensorType([None, n_pixels]))],
            options={"zipmap": False}, target_opset={"": OPSET, "ai.onnx.ml": 3})
    except Exception as err:  # an estimator or option skl2onnx cannot convert
        why = (str(err).splitlines() or [""])[0][:120]
        raise ConfigError(f"skl2onnx cannot convert {path} ({type(err).__name__}: {why}); "
                          "this model cannot be exported to ONNX") from err  # fmt: skip
    graph = converted.graph
    proba = graph.output[1].name  # skl2onnx: label, then probabilities
    for node in graph.node:  # free the name "probabilities" for the graph's output
        node.output[:] = [f"sklearn_{o}" if o == proba else o for o in node.output]
        node.input[:] = [f"sklearn_{i}" if i == proba else i for i in node.input]
    proba = f"sklearn_{proba}"
    nodes, inits = _flat_nodes(n_pixels, np.float32, "features")
    nodes += list(graph.node)
    inits += list(graph.initializer)
    scatter = np.zeros((len(classes), n_classes), np.float32)  # column j -> class classes_[j]
    scatter[np.arange(len(classes)), classes] = 1
    inits.append(numpy_helper.from_array(scatter, "class_columns"))
    nodes.append(helper.make_node("MatMul", [proba, "class_columns"], ["probabilities"]))
    new = helper.make_graph(nodes, model, [_input(metrics)],
                            [_output(n_classes, TensorProto.FLOAT)], inits)  # fmt: skip
    opsets = {o.domain: o.version for o in converted.opset_import}
    return _serialise(new, [helper.make_opsetid(d, v) for d, v in opsets.items()])
