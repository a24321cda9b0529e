"""Class probabilities from any run folder, for PNG images or an .npz of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclf.data.features import to_features
from medclf.errors import DataError
from medclf.experiments.store import read_json

MODES = {"L": 1, "RGB": 3}


def read_images(paths, image_shape) -> tuple[np.ndarray, list[str]]:
    """(n, *image_shape) uint8 and a name per image; each file checked against the shape."""
    images, names = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path} does not exist; give PNG images or an .npz of images")
        batch = _read_npz(path) if path.suffix == ".npz" else _read_png(path)[None]
        if batch.shape[1:] != tuple(image_shape):
            raise DataError(
                f"{path} holds images of shape {batch.shape[1:]}, but the model expects "
                f"{tuple(image_shape)}; resize or convert them first"
            )
        images.append(batch)
        names += (
            [f"{path.name}[{i}]" for i in range(len(batch))]
            if path.suffix == ".npz"
            else [path.name]
        )
    return np.concatenate(images), names


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in MODES:
                raise DataError(f"{path} has mode {img.mode}; save it as 8-bit grayscale (L) or "
                                "RGB")  # fmt: skip
            return np.asarray(img, dtype=np.uint8)
    except UnidentifiedImageError as err:
        raise DataError(f"{path} is not an image file; give PNG images or an .npz") from err


def _read_npz(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        key = next((k for k in ("images", "test_images") if k in npz.files), None)
        if key is None:
            raise DataError(f"{path} has no 'images' or 'test_images' key; store the images "
                            "under 'images'")  # fmt: skip
        images = npz[key]
    if images.dtype != np.uint8:
        raise DataError(f"{path}: images have dtype {images.dtype}, expected uint8 pixels")
    return images


def predict_run(run_dir, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(predicted classes, class probabilities or None for the perceptron)."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json")
    model_name = config["model"]
    if model_name.startswith("numpy-"):
        from medclf.experiments.jobs import LINEAR_NUMPY
        from medclf.numpy_models import load_model

        model = load_model(run_dir / "model.npz")
        X = to_features(images, model.np_dtype, bias=model_name in LINEAR_NUMPY)
        if model.has_proba:
            proba = model.predict_proba(X)
            return proba.argmax(axis=1), proba
        return model.predict(X), None
    import torch

    from medclf.torch_models import build_torch_model

    metrics = read_json(run_dir / "metrics.json")
    X = torch.from_numpy(to_features(images, np.float32))
    model = build_torch_model(config, X.shape[1], len(metrics["class_names"]))
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        proba = torch.softmax(model(X), dim=1).numpy()
    return proba.argmax(axis=1), proba
