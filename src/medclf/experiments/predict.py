"""Class probabilities from any run folder, for PNG images or an .npz of images.

Nothing here trusts the run folder or the inputs: each file is checked and a bad one gives one
DataError that names it; nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medclf.config import check_config
from medclf.data.features import inputs_of, to_features
from medclf.errors import ConfigError, DataError
from medclf.model_registry import MODELS

MODES = ("L", "LA", "RGB", "RGBA")  # after converting palette and 1-bit images
MULTI_LABEL = "multi-label, binary-class"  # metrics.json "task": one sigmoid per label


def check_images(images: np.ndarray, image_shape, source: str = "the images") -> np.ndarray:
    """uint8 images of the model's shape, (n, *image_shape); one image alone gets n = 1."""
    if images.shape == tuple(image_shape):  # one image alone
        images = images[None]
    if images.size == 0:
        raise DataError(f"{source} are empty; give at least one image")
    if images.dtype != np.uint8:
        raise DataError(f"{source} have dtype {images.dtype}, expected uint8 pixels 0-255; "
                        "convert with images.astype(np.uint8)")  # fmt: skip
    if images.shape[1:] != tuple(image_shape) or len(images) == 0:
        raise DataError(f"{source} have shape {images.shape}, but the model expects "
                        f"(n, {', '.join(map(str, image_shape))}); resize or convert them first")
    return images


def read_images(paths, image_shape) -> tuple[np.ndarray, list[str]]:
    """(n, *image_shape) uint8 and a name per image; each file checked against the shape."""
    images, names = [], []
    for path in map(Path, paths):
        if path.is_dir():
            raise DataError(f"{path} is a folder; give PNG images or .npz files of images "
                            f"(e.g. {path}/*.png)")  # fmt: skip
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
                img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else
                                  "L" if img.mode == "1" else "RGB")  # fmt: skip
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
            raise DataError(f"{path} has transparent pixels; save it without transparency "
                            "(opaque grayscale or RGB)")  # fmt: skip
        pixels = pixels[..., :-1] if mode == "RGBA" else pixels[..., 0]
    gray_rgba = mode == "RGBA" and (pixels == pixels[..., :1]).all()
    if len(image_shape) == 2 and gray_rgba:
        pixels = pixels[..., 0]  # matplotlib saves a grayscale picture as opaque gray RGBA
    return pixels


def _read_npz(path: Path) -> np.ndarray:
    try:
        npz = np.load(path, allow_pickle=False)
    except OSError as err:
        if err.errno is not None:
            raise  # an environment fault: the CLI names it
        npz = None
    except Exception:  # not a zip, cut short, pickled
        npz = None
    if isinstance(npz, np.ndarray):
        raise DataError(f"{path} is a plain .npy array, not an .npz archive; save it with "
                        "numpy.savez(path, images=array)")  # fmt: skip
    if npz is None:
        raise DataError(f"{path} is not a readable .npz archive (damaged, cut short or pickled); "
                        "save the images with numpy.savez(path, images=array)")  # fmt: skip
    with npz:
        key = next((k for k in ("images", "test_images") if k in npz.files), None)
        if key is None:
            raise DataError(f"{path} has no 'images' or 'test_images' key; store the images "
                            "under 'images'")  # fmt: skip
        try:
            images = npz[key]
        except Exception as err:  # object array, damaged member, absurd header
            raise DataError(f"{path}: the '{key}' array cannot be read ({type(err).__name__}); "
                            "save plain uint8 images with numpy.savez") from err  # fmt: skip
    if images.dtype != np.uint8:
        raise DataError(f"{path}: images have dtype {images.dtype}, expected uint8 pixels")
    if images.ndim not in (3, 4):
        raise DataError(f"{path}: '{key}' has shape {images.shape}, expected images as "
                        "(n, height, width) or (n, height, width, channels)")  # fmt: skip
    if len(images) == 0:
        raise DataError(f"{path} holds no images ('{key}' is empty); give at least one image")
    return images


# --- the run folder ------------------------------------------------------------------------


def _damaged(path: Path, why: str) -> DataError:
    return DataError(f"{path} is damaged ({why}); train the run again with 'medclf train'")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path} is missing, so {path.parent} is not a complete run folder; "
                        "train the run again with 'medclf train'")  # fmt: skip
    try:
        obj = json.loads(path.read_text())
    except (ValueError, RecursionError) as err:  # not JSON, not text, nested too deeply
        raise _damaged(path, "not valid JSON") from err
    if not isinstance(obj, dict):
        raise _damaged(path, "not a JSON object")
    return obj


def check_run(run_dir) -> tuple[dict, dict]:
    """config.json and metrics.json of a finished run folder, both checked."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a folder; give a run folder that 'medclf train' wrote")
    if not (run_dir / "metrics.json").exists():
        raise DataError(f"{run_dir} is not a finished run folder (no metrics.json); train one "
                        "with 'medclf train'")  # fmt: skip
    config = _read_json(run_dir / "config.json")
    metrics = _read_json(run_dir / "metrics.json")
    if config.get("model") not in MODELS:
        raise _damaged(run_dir / "config.json", f"'model' is not one of {', '.join(MODELS)}")
    try:
        check_config(config)
    except (ConfigError, TypeError) as err:
        raise _damaged(run_dir / "config.json", str(err)) from err
    names, shape = metrics.get("class_names"), metrics.get("image_shape")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise _damaged(run_dir / "metrics.json", "'class_names' is not a list of names")
    if not (isinstance(shape, list) and len(shape) in (2, 3)
            and all(isinstance(n, int) and 1 <= n <= 4096 for n in shape)):  # fmt: skip
        raise _damaged(run_dir / "metrics.json", "'image_shape' is not an image shape")
    return config, metrics


def predict_run(run_dir, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(predicted classes, probabilities or None for the perceptron). For a multi-label run
    (metrics.json "task"), one sigmoid per label and a 0/1 row of predicted labels."""
    from medclf.numpy_models.base import softmax

    run_dir = Path(run_dir)
    config, metrics = check_run(run_dir)
    n_classes = len(metrics["class_names"])
    family = MODELS[config["model"]].family
    if family == "sklearn":  # probabilities already
        proba = _sklearn_proba(run_dir, config, metrics, images, n_classes)
        if metrics.get("task") == MULTI_LABEL:
            return (proba > 0.5).astype(np.int64), proba
        return proba.argmax(axis=1), proba
    if family == "numpy":
        logits, has_proba = _numpy_logits(run_dir, config, images, n_classes)
    else:
        logits, has_proba = _torch_logits(run_dir, config, images, n_classes), True
    if not np.isfinite(logits).all():
        raise DataError(f"the model in {run_dir} gives non-finite outputs (its training "
                        "diverged); train it again with a smaller --lr")  # fmt: skip
    if metrics.get("task") == MULTI_LABEL:
        proba = np.exp(-np.logaddexp(0, -logits))  # sigmoid, without overflow
        return (proba >= 0.5).astype(np.int64), proba
    if not has_proba:
        return logits.argmax(axis=1), None
    proba = softmax(logits)
    return proba.argmax(axis=1), proba


def _sklearn_proba(run_dir: Path, config: dict, metrics: dict, images, n_classes: int):
    from medclf.classic import classic_scores
    from medclf.experiments.family_sklearn import load_model_file

    path = run_dir / "model.skops"
    if not path.is_file():
        raise DataError(f"{run_dir} has no model.skops; train the run again with 'medclf train'")
    model = load_model_file(path)
    X = inputs_of(images, "flat", np.float32)
    try:
        return classic_scores(model, X, metrics.get("task", "multi-class"), n_classes)
    except (ValueError, AttributeError, IndexError) as err:
        raise DataError(f"{path} does not fit metrics.json ({err}); train the run again") from err


def _numpy_logits(run_dir: Path, config: dict, images, n_classes: int):
    from medclf.numpy_models import load_model

    path = run_dir / "model.npz"
    if not path.is_file():
        raise DataError(f"{run_dir} has no model.npz; train the run again with 'medclf train'")
    model = load_model(path)
    bias = MODELS[config["model"]].inputs == "flat+bias"
    n_features = int(np.prod(images.shape[1:])) + bias
    if model.kind != config["model"]:
        raise DataError(f"{path} holds a {model.kind}, but config.json says {config['model']}; "
                        "train the run again")  # fmt: skip
    if model.n_classes_ != n_classes:
        raise DataError(f"{path} gives {model.n_classes_} classes, but metrics.json names "
                        f"{n_classes}; train the run again")  # fmt: skip
    if model.n_features_ != n_features:
        raise DataError(f"{path} takes {model.n_features_} inputs, but metrics.json's image "
                        f"shape gives {n_features}; train the run again")  # fmt: skip
    X = to_features(images, model.np_dtype, bias=bias)
    return model._scores(X).astype(np.float64), model.has_proba


def _torch_logits(run_dir: Path, config: dict, images, n_classes: int) -> np.ndarray:
    import torch

    from medclf.experiments.family_torch import build_network, load_weights

    path = run_dir / "model.pt"
    if not path.is_file():
        raise DataError(f"{run_dir} has no model.pt; train the run again with 'medclf train'")
    try:
        state = load_weights(path)  # never unpickles code
    except OSError as err:
        if err.errno is not None:
            raise  # an environment fault: the CLI names it
        state = None
    except Exception:  # random bytes, cut short, a pickle of something else
        state = None
    if not (isinstance(state, dict) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise DataError(f"{path} is not a model file that medclf wrote (unreadable, cut short "
                        "or not a state dict); train the run again")  # fmt: skip
    X = torch.from_numpy(inputs_of(images, MODELS[config["model"]].inputs, np.float32))
    try:
        model = build_network(config, X.shape[1:], n_classes)
    except (KeyError, TypeError, ValueError) as err:
        raise _damaged(run_dir / "config.json", f"no valid {err}") from err
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    out = list(want)[-1]  # the output layer's bias: one entry per class
    if out in got and got[out] != want[out]:
        raise DataError(f"{path} gives {got[out][0] if got[out] else '?'} classes, but "
                        f"metrics.json names {n_classes}; train the run again")  # fmt: skip
    bad = next((k for k in sorted({*want, *got}) if want.get(k) != got.get(k)), None)
    if bad is not None:
        raise DataError(f"{path} does not fit config.json: '{bad}' has shape {got.get(bad)}, "
                        f"the config needs {want.get(bad)}; train the run again")  # fmt: skip
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    with torch.no_grad():
        return torch.cat([model(X[i : i + 1024]) for i in range(0, len(X), 1024)]).double().numpy()
