"""`medclf explain`: which pixels drove a saved model's answer on the images of a saved split.

Gradient methods go through Captum (the ``explain`` extra) on the run's network as a float64
torch module (``Family.network``: the PyTorch models themselves, the NumPy models rebuilt as the
same Linear/ReLU layers): Grad-CAM on the last convolution layer, saliency (|gradient|),
integrated gradients from a black image. The linear models (a network that is one Linear layer)
also give their class weight images, exact: the gradient of a class's score, the same for every
image. Which methods a model can do comes from its network's structure, never from its name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclf.data.features import inputs_of, select_test
from medclf.errors import ConfigError, DataError
from medclf.files import check_parent
from medclf.metrics import MULTI_LABEL
from medclf.models.registry import MODELS
from medclf.run.families import family_of
from medclf.run.family import Family
from medclf.run.predict import check_run

METHODS = ("gradcam", "saliency", "integrated-gradients", "weights")
MAX_IMAGES = 32  # one figure a reader can take in; more images: several calls
SPLITS = ("test", "val", "test_official")
SUFFIXES = (".png", ".pdf")


def conv_layer(network):
    """The last convolution layer (any dimension), Grad-CAM's layer; None if there is none."""
    from torch import nn

    convs = [m for m in network.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    return convs[-1] if convs else None


def linear_layer(network):
    """The network's one Linear layer where it is nothing else (a linear model); else None."""
    from torch import nn

    leaves = [m for m in network.modules() if not list(m.children())]
    return leaves[0] if len(leaves) == 1 and isinstance(leaves[0], nn.Linear) else None


def methods_of(network) -> tuple[str, ...]:
    """The methods this network can do, its default first."""
    conv, linear = conv_layer(network) is not None, linear_layer(network) is not None
    return (
        *(("gradcam",) if conv else ()),
        *(("weights",) if linear else ()),
        "saliency",
        "integrated-gradients",
    )


def explainable_models() -> list[str]:
    return [m for m in MODELS if family_of(m).network.__func__ is not Family.network.__func__]


def check_output(out) -> Path:
    """FILE.png or FILE.pdf whose folder exists; the other format is written beside it."""
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"cannot write {out}: end the name in .png or .pdf (both are written)")
    check_parent(out.with_suffix(".png"))
    check_parent(out.with_suffix(".pdf"))
    return out.with_suffix(".png")


def split_images(config: dict, metrics: dict, labels: np.ndarray, split: str) -> np.ndarray:
    """The split's images from the run's data file, checked against the saved labels."""
    from medclf.data.load import load_dataset

    dataset = load_dataset(config["dataset"], size=config.get("size"))
    chosen = {
        "test": lambda: select_test(dataset, metrics.get("test_split", "auto")),
        "val": lambda: dataset.val,
        "test_official": lambda: dataset.test,
    }[split]()
    saved = np.asarray(labels).reshape(len(labels), -1)
    if chosen.labels.reshape(len(chosen.labels), -1).shape != saved.shape or not np.array_equal(
        chosen.labels.reshape(len(chosen.labels), -1), saved
    ):
        raise DataError(
            f"{config['dataset']} no longer holds the {split} images the run was scored on "
            "(other labels or image count); explain the run with the data it was trained on"
        )
    return chosen.images


def pick_indices(labels: np.ndarray, n_images: int, multi_label: bool) -> list[int]:
    """n_images of the split, taking the classes in turn (file order within each class), so
    that a binary split shows both classes and not just the first rows of one."""
    if multi_label:
        return list(range(min(n_images, len(labels))))
    queues = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picks: list[int] = []
    while len(picks) < min(n_images, len(labels)):
        for q in queues:
            if q and len(picks) < n_images:
                picks.append(int(q.pop(0)))
    return picks


def attribute(network, X, targets, method: str, baseline):
    """(n, *input shape) attributions; Grad-CAM's at its layer's resolution, (n, 1, *cells)."""
    import torch

    t = torch.as_tensor(targets)
    if method == "weights":  # no Captum needed: d score_c / d x = W[c], for every x
        return linear_layer(network).weight.detach()[t].numpy()
    try:
        from captum.attr import IntegratedGradients, LayerGradCam, Saliency
    except ImportError as err:
        raise ConfigError(
            f"{method} needs Captum; install it with pip install -c constraints.txt "
            "'medclf[explain]'"
        ) from err
    X = X.clone().requires_grad_(True)
    if method == "saliency":
        return Saliency(network).attribute(X, target=t, abs=True).detach().numpy()
    if method == "integrated-gradients":
        ig = IntegratedGradients(network)
        return ig.attribute(X, baselines=baseline, target=t, n_steps=64).detach().numpy()
    cam = LayerGradCam(network, conv_layer(network))
    return cam.attribute(X, target=t, relu_attributions=True).detach().numpy()


def to_image_space(attr: np.ndarray, image_shape, inputs: str, method: str) -> np.ndarray:
    """Attributions over the model's inputs -> one value per pixel (voxel): channels summed;
    flat inputs reshaped (the linear models' constant-1 column dropped); Grad-CAM's cells
    upsampled to the image (bilinear, trilinear for volumes)."""
    image_shape = tuple(image_shape)
    if inputs != "image":
        n_pixels = int(np.prod(image_shape))
        attr = attr[:, :n_pixels].reshape(len(attr), *image_shape)
        return attr.sum(axis=-1) if is_color(image_shape) else attr
    spatial = image_shape[:-1] if is_color(image_shape) else image_shape
    if method == "gradcam":
        import torch
        import torch.nn.functional as F

        mode = "trilinear" if len(spatial) == 3 else "bilinear"
        up = F.interpolate(torch.from_numpy(attr), size=spatial, mode=mode, align_corners=False)
        attr = up.numpy()
    return attr.sum(axis=1)


def is_color(image_shape) -> bool:
    """(H, W, 3): an RGB image; (D, H, W) volumes and (H, W) images have no channel axis."""
    return len(image_shape) == 3 and image_shape[-1] == 3


def explain_run(
    run_dir, split: str = "test", n_images: int = 8, indices=None, method: str | None = None
) -> dict:
    """The images of a saved split (``indices``, or ``n_images`` taking the classes in turn)
    with the model's attribution over each, its predicted and the true class (class names)."""
    from medclf.report.evaluate import saved_split

    run_dir = Path(run_dir)
    if method is not None and method not in METHODS:
        raise ConfigError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    if split not in SPLITS:
        raise ConfigError(f"explain shows the images of a split: {', '.join(SPLITS)}, not {split}")
    config, metrics = check_run(run_dir)
    model = config["model"]
    if "family" in config:  # a run made of runs (an ensemble): not a registry model
        raise ConfigError(
            f"{run_dir} is an {config['family']} of other runs, with no network of its own to "
            "attribute; explain each of its member runs (its config.json names them)"
        )
    if model not in explainable_models():
        raise ConfigError(
            f"{model} has no gradients to attribute (family {MODELS[model].family}); explain "
            f"works for runs of {', '.join(explainable_models())}"
        )
    meta, labels, _ = saved_split(run_dir, split)
    multi_label = meta["task"] == MULTI_LABEL
    if indices is None:
        if not 1 <= int(n_images) <= MAX_IMAGES:
            raise ConfigError(f"give 1 to {MAX_IMAGES} images, not {n_images}")
        indices = pick_indices(labels, int(n_images), multi_label)
    indices = [int(i) for i in indices]
    if not 1 <= len(indices) <= MAX_IMAGES:
        raise ConfigError(f"give 1 to {MAX_IMAGES} indices, not {len(indices)}")
    bad = [i for i in indices if not 0 <= i < len(labels)]
    if bad:
        raise ConfigError(
            f"index {bad[0]} is out of range: the {split} split has {len(labels)} images "
            f"(0-{len(labels) - 1})"
        )
    network = family_of(model).network(run_dir, config, metrics)
    can = methods_of(network)
    method = method or can[0]
    if method not in can:
        raise ConfigError(f"{model} cannot do {method} (no {NEEDS[method]}); use {', '.join(can)}")
    images = split_images(config, metrics, labels, split)[indices]
    checked = (config, metrics)
    return attributions(network, checked, images, labels[indices], method, indices, run_dir)


NEEDS = {
    "gradcam": "convolution layer",
    "weights": "single linear layer",
    "saliency": "gradient",
    "integrated-gradients": "gradient",
}


def attributions(network, checked, images, labels, method, indices, run_dir) -> dict:
    import torch

    from medclf.run.predict import predict_run

    config, metrics = checked
    model = config["model"]
    classes, proba = predict_run(run_dir, images, checked)
    multi_label = metrics.get("task") == MULTI_LABEL
    # the map explains the predicted class; for multi-label, the label with the top score
    targets = proba.argmax(axis=1) if multi_label else np.asarray(classes)
    inputs = MODELS[model].inputs
    X = torch.from_numpy(inputs_of(images, inputs, np.float64))
    black = torch.from_numpy(inputs_of(np.zeros_like(images[:1]), inputs, np.float64))
    attr = attribute(network, X, targets, method, black.expand_as(X))
    return {
        "model": model,
        "title": metrics.get("title", model),
        "method": method,
        "class_names": metrics["class_names"],
        "multi_label": multi_label,
        "indices": indices,
        "images": images,
        "attributions": to_image_space(attr, metrics["image_shape"], inputs, method),
        "labels": np.asarray(labels),
        "targets": targets,
        "probabilities": proba,  # None: the perceptron gives classes only
    }


def caption(result: dict, row: int) -> str:
    names, target = result["class_names"], int(result["targets"][row])
    p = None if result["probabilities"] is None else result["probabilities"][row]
    if result["multi_label"]:
        true = [names[j] for j in np.flatnonzero(result["labels"][row])] or ["none"]
        pred = [names[j] for j in np.flatnonzero(p > 0.5)] or ["none"]
        return (
            f"#{result['indices'][row]} pred {', '.join(pred)[:40]}\ntrue {', '.join(true)[:40]}"
            f"\nmap: {names[target][:30]}"
        )
    true = int(np.asarray(result["labels"][row]).reshape(-1)[0])
    mark = "right" if true == target else "WRONG"
    return (
        f"#{result['indices'][row]} {mark}\npred {names[target][:30]}"
        f"{'' if p is None else f' ({p[target]:.2f})'}"
        f"\ntrue {names[true][:30]}"
    )


def write_explanation(result: dict, out) -> Path:
    from medclf.plots import attribution_figure, save_figure

    png = check_output(out)
    captions = [caption(result, i) for i in range(len(result["indices"]))]
    fig = attribution_figure(
        result["images"], result["attributions"], captions, result["method"], result["title"]
    )
    return save_figure(fig, png)  # the PDF beside it
