"""Class probabilities from any run folder, for PNG images or an .npz of images.

Nothing here trusts the run folder or the inputs: each file is checked and a bad one gives one
DataError that names it; nothing is ever unpickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclf.errors import ConfigError, DataError
from medclf.metrics import MULTI_LABEL  # metrics.json "task": one sigmoid per label
from medclf.models.config import check_config
from medclf.models.numpy_models.base import softmax
from medclf.models.registry import MODELS
from medclf.run.families import FAMILIES, family_for
from medclf.run.folder import CONFIG, METRICS, damaged, has_metrics, read_object

MODES = ("L", "LA", "RGB", "RGBA")  # after converting palette and 1-bit images


def check_images(images: np.ndarray, image_shape, source: str = "the images") -> np.ndarray:
    """uint8 images of the model's shape, (n, *image_shape); one image alone gets n = 1."""
    if images.shape == tuple(image_shape):  # one image alone
        images = images[None]
    if images.size == 0:
        raise DataError(f"{source} are empty; give at least one image")
    if images.dtype != np.uint8:
        raise DataError(
            f"{source} have dtype {images.dtype}, expected uint8 pixels 0-255; "
            "convert with images.astype(np.uint8)"
        )
    if images.shape[1:] != tuple(image_shape) or len(images) == 0:
        raise DataError(
            f"{source} have shape {images.shape}, but the model expects "
            f"(n, {', '.join(map(str, image_shape))}); resize or convert them first"
        )
    return images


def read_images(paths, image_shape) -> tuple[np.ndarray, list[str]]:
    """(n, *image_shape) uint8 and a name per image; each file checked against the shape."""
    images, names = [], []
    for path in map(Path, paths):
        if path.is_dir():
            raise DataError(
                f"{path} is a folder; give PNG images or .npz files of images (e.g. {path}/*.png)"
            )
        if not path.exists():
            raise DataError(f"{path} does not exist; give PNG images or an .npz of images")
        is_npz = path.suffix.lower() == ".npz"
        batch = _read_npz(path) if is_npz else _read_png(path, image_shape)[None]
        if batch.shape[1:] != tuple(image_shape):
            raise DataError(
                f"{path} holds images of shape {batch.shape[1:]}, but the model expects "
                f"{tuple(image_shape)}; resize or convert them first"
            )
        images.append(batch)
        names += [f"{path.name}[{i}]" for i in range(len(batch))] if is_npz else [path.name]
    return np.concatenate(images), names


def _read_png(path: Path, image_shape) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # a truncated file fails here, not later
            if img.mode in ("P", "PA", "1"):
                img = img.convert(
                    "RGBA"
                    if "transparency" in img.info or img.mode == "PA"
                    else "L"
                    if img.mode == "1"
                    else "RGB"
                )
            mode = img.mode
            if mode not in MODES:
                raise DataError(f"{path} has mode {mode}; save it as 8-bit grayscale (L) or RGB")
            pixels = np.asarray(img, dtype=np.uint8)
    except UnidentifiedImageError as err:
        raise DataError(f"{path} is not an image file; give PNG images or an .npz") from err
    except DataError:
        raise
    except Exception as err:  # truncated or damaged image data
        if isinstance(err, OSError) and err.errno is not None:
            raise  # an environment fault: the CLI names it
        raise DataError(f"{path} is a damaged or truncated image ({err}); save it again") from err
    if mode in ("LA", "RGBA"):  # matplotlib writes RGBA: fine when fully opaque
        if pixels[..., -1].min() < 255:
            raise DataError(
                f"{path} has transparent pixels; save it without transparency "
                "(opaque grayscale or RGB)"
            )
        pixels = pixels[..., :-1] if mode == "RGBA" else pixels[..., 0]
    gray_rgba = mode == "RGBA" and (pixels == pixels[..., :1]).all()
    if len(image_shape) == 2 and gray_rgba:
        pixels = pixels[..., 0]  # matplotlib saves a grayscale picture as opaque gray RGBA
    return pixels


def _read_npz(path: Path) -> np.ndarray:
    if not path.is_file():  # a device or a pipe: reading it may never end
        raise DataError(f"{path} is not a regular file (a device or a pipe); give an .npz file")
    try:
        npz = np.load(path, allow_pickle=False)
    except OSError as err:
        if err.errno is not None:
            raise  # an environment fault: the CLI names it
        npz = None
    except Exception:  # not a zip, cut short, pickled
        npz = None
    if isinstance(npz, np.ndarray):
        raise DataError(
            f"{path} is a plain .npy array, not an .npz archive; save it with "
            "numpy.savez(path, images=array)"
        )
    if npz is None:
        raise DataError(
            f"{path} is not a readable .npz archive (damaged, cut short or pickled); "
            "save the images with numpy.savez(path, images=array)"
        )
    with npz:
        key = next((k for k in ("images", "test_images") if k in npz.files), None)
        if key is None:
            raise DataError(
                f"{path} has no 'images' or 'test_images' key; store the images under 'images'"
            )
        try:
            images = npz[key]
        except Exception as err:  # object array, damaged member, absurd header
            raise DataError(
                f"{path}: the '{key}' array cannot be read ({type(err).__name__}); "
                "save plain uint8 images with numpy.savez"
            ) from err
    if images.dtype != np.uint8:
        raise DataError(f"{path}: images have dtype {images.dtype}, expected uint8 pixels")
    if images.ndim not in (3, 4):
        raise DataError(
            f"{path}: '{key}' has shape {images.shape}, expected images as "
            "(n, height, width) or (n, height, width, channels)"
        )
    if len(images) == 0:
        raise DataError(f"{path} holds no images ('{key}' is empty); give at least one image")
    return images


# --- the run folder ------------------------------------------------------------------------


def check_run(run_dir) -> tuple[dict, dict]:
    """config.json and metrics.json of a finished run folder, both checked."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a folder; give a run folder that 'medclf train' wrote")
    if not has_metrics(run_dir):
        raise DataError(
            f"{run_dir} is not a finished run folder (no metrics.json); train one "
            "with 'medclf train'"
        )
    config = read_object(run_dir / CONFIG)
    metrics = read_object(run_dir / METRICS)
    if "family" in config:  # a run made of runs (an ensemble) names its family itself
        family, trained = config["family"], {spec.family for spec in MODELS.values()}
        if not isinstance(family, str) or family not in FAMILIES or family in trained:
            made = ", ".join(f for f in FAMILIES if f not in trained)
            raise damaged(run_dir / CONFIG, f"'family' is not one of {made}")
    elif not isinstance(config.get("model"), str) or config["model"] not in MODELS:
        raise damaged(run_dir / CONFIG, f"'model' is not one of {', '.join(MODELS)}")
    try:
        check_config(config)
    except (ConfigError, TypeError) as err:
        raise damaged(run_dir / CONFIG, str(err)) from err
    names, shape = metrics.get("class_names"), metrics.get("image_shape")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise damaged(run_dir / METRICS, "'class_names' is not a list of names")
    if not (
        isinstance(shape, list)
        and len(shape) in (2, 3)
        and all(isinstance(n, int) and 1 <= n <= 4096 for n in shape)
    ):
        raise damaged(run_dir / METRICS, "'image_shape' is not an image shape")
    return config, metrics


def predict_run(
    run_dir, images: np.ndarray, checked: tuple[dict, dict] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(predicted classes, probabilities or None for the perceptron). For a multi-label run
    (metrics.json "task"), one sigmoid per label and a 0/1 row of predicted labels.
    ``checked``: check_run's (config, metrics) where the caller has them already."""
    run_dir = Path(run_dir)
    config, metrics = checked or check_run(run_dir)
    kind, values = family_for(config).outputs(run_dir, config, metrics, images)
    multi_label = metrics.get("task") == MULTI_LABEL
    if kind == "proba":  # probabilities already
        if multi_label:
            return (values > 0.5).astype(np.int64), values
        return values.argmax(axis=1), values
    if not np.isfinite(values).all():
        raise DataError(
            f"the model in {run_dir} gives non-finite outputs (its training "
            "diverged); train it again with a smaller --lr"
        )
    if multi_label:
        proba = np.exp(-np.logaddexp(0, -values))  # sigmoid, without overflow
        return (proba >= 0.5).astype(np.int64), proba
    if kind == "decision":  # no probabilities (the perceptron)
        return values.argmax(axis=1), None
    proba = softmax(values)
    return proba.argmax(axis=1), proba
