"""Synthetic MedMNIST-like data for tests and offline demos.

Each image is a smooth random texture plus class-dependent structure: a bright horizontal band
(a "retinal layer") whose presence is linearly visible, and a pair of blobs whose signs agree or
disagree (an XOR that no linear model can read). With 4 classes, class c sets band = c % 2 and
agree = c // 2; a weak brightness cue leaks a little of `agree` so a linear model does clearly
better than chance, while a small MLP, which can read the XOR, does clearly better still.

A 3D look-alike (MedMNIST3D, (n, D, H, W) volumes) carries the same two cues in 3D: a bright tube
whose orientation is the class's first bit (along the depth axis, so an axial slice shows a dot;
or along the height axis, a line), and two blobs at different depths whose signs agree or not
(the second bit). Tube and blobs sit at a random offset in each volume, so a convolution, which
follows them, reads the class far better than a model of fixed voxel positions does.
"""

from __future__ import annotations

import json
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from medclf.data.load import META_KEY
from medclf.data.registry import SPLITS, DatasetInfo, get_info
from medclf.errors import ConfigError, SettingError
from medclf.files import atomic_path
from medclf.limits import MAX_SEED

CHUNK_BYTES = 1 << 27


def split_class_counts(info: DatasetInfo, split: str, scale: float) -> np.ndarray:
    """Per-class image counts of one synthetic split, with the real class proportions.

    The test split keeps its full size when the study subset needs it (the subset takes the
    first k images of each class).
    """
    published = info.class_counts.get(split) or info.class_counts.get("train")
    weights = np.asarray(published if published else [1] * info.n_classes, dtype=float)
    total = info.n_samples[split]
    if not (split == "test" and info.study_test_counts):
        total = max(int(round(total * scale)), info.n_classes)
    counts = np.floor(weights / weights.sum() * total).astype(int)
    counts[np.argsort(-weights)[: total - counts.sum()]] += 1  # hand out the rounding remainder
    return np.maximum(counts, 1)


def _patterns(size: int) -> np.ndarray:
    """(3, size, size) float: band, left blob, right blob."""
    r, c = np.mgrid[0:size, 0:size] / size
    band = np.exp(-(((r - 0.35) / 0.06) ** 2))
    left = np.exp(-(((r - 0.65) ** 2 + (c - 0.3) ** 2) / 0.012))
    right = np.exp(-(((r - 0.65) ** 2 + (c - 0.7) ** 2) / 0.012))
    return np.stack([band, left, right])


def _smooth_noise(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Low-frequency texture: coarse noise upsampled by repetition and box-blurred."""
    coarse = rng.standard_normal((n, size // 4 + 1, size // 4 + 1))
    fine = coarse.repeat(4, axis=1).repeat(4, axis=2)[:, :size, :size]
    return (fine + np.roll(fine, 1, 1) + np.roll(fine, 1, 2) + np.roll(fine, (1, 1), (1, 2))) / 4


def make_images(rng: np.random.Generator, labels: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """uint8 images for ``labels``, made a chunk at a time so that the float work arrays stay
    near ``CHUNK_BYTES`` (every 28x28 split fits in one chunk)."""
    per_image = info.size**info.dims * 8  # float64 work arrays of one channel
    per_chunk = max(1, CHUNK_BYTES // per_image)
    out = np.empty((len(labels), *info.image_shape), np.uint8)
    make = _make_volume_chunk if info.dims == 3 else _make_chunk
    for start in range(0, len(labels), per_chunk):
        stop = start + per_chunk
        out[start:stop] = make(rng, labels[start:stop], info)
    return out


def _make_chunk(rng: np.random.Generator, labels: np.ndarray, info: DatasetInfo) -> np.ndarray:
    n, size = len(labels), info.size
    band, left, right = _patterns(size)
    band_on = (labels % 2).astype(float)
    agree = (labels // 2 % 2).astype(float)
    u = rng.choice([-1.0, 1.0], n)
    v = np.where(agree == 1, u, -u)
    strength = rng.uniform(0.6, 1.4, n)  # varying contrast keeps the task from being trivial
    img = 95 + 22 * _smooth_noise(rng, n, size)
    img += (40 * band_on * strength)[:, None, None] * band
    img += (45 * u * strength)[:, None, None] * left + (45 * v * strength)[:, None, None] * right
    img += (2 * agree + 3 * (labels // 4))[:, None, None]  # weak linear cue; extra classes shift
    img += rng.normal(0, 18, img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if info.channels > 1:
        img = np.repeat(img[..., None], info.channels, axis=-1)
    return img


def _smooth_noise_3d(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Low-frequency 3D texture: coarse noise upsampled by repetition and box-blurred."""
    coarse = rng.standard_normal((n, *(size // 4 + 1,) * 3))
    fine = coarse.repeat(4, 1).repeat(4, 2).repeat(4, 3)[:, :size, :size, :size]
    return sum(np.roll(fine, shift, axis) for shift, axis in ((0, 1), (1, 1), (1, 2), (1, 3))) / 4


def _make_volume_chunk(
    rng: np.random.Generator, labels: np.ndarray, info: DatasetInfo
) -> np.ndarray:
    n, size = len(labels), info.size
    z, y, x = (g / size for g in np.ogrid[0:size, 0:size, 0:size])
    along_h = (labels % 2 == 1)[:, None, None, None]  # the tube's axis: depth (0) or height (1)
    agree = (labels // 2 % 2).astype(float)
    a, b, shift = (
        rng.uniform(lo, hi, (n, 1, 1, 1)) for lo, hi in ((0.3, 0.7),) * 2 + ((-0.1, 0.1),)
    )
    across = np.where(along_h, z, y)  # the coordinate across the tube that is not x
    tube = np.exp(-((across - a) ** 2 + (x - b) ** 2) / 0.006)
    u = rng.choice([-1.0, 1.0], n)
    v = np.where(agree == 1, u, -u)
    near = np.exp(-((z - 0.3) ** 2 + (y - 0.3 - shift) ** 2 + (x - 0.3) ** 2) / 0.01)
    far = np.exp(-((z - 0.7) ** 2 + (y - 0.7 - shift) ** 2 + (x - 0.7) ** 2) / 0.01)
    strength = rng.uniform(0.6, 1.4, (n, 1, 1, 1))  # varying contrast keeps it from trivial
    vol = 95 + 22 * _smooth_noise_3d(rng, n, size) + 60 * strength * tube
    vol += 45 * strength * (u[:, None, None, None] * near + v[:, None, None, None] * far)
    vol += (2 * agree + 3 * (labels // 4))[:, None, None, None]  # weak linear cue, as in 2D
    vol += rng.normal(0, 18, vol.shape)
    return np.clip(np.rint(vol), 0, 255).astype(np.uint8)


def synthesize(
    like: str, scale: float = 0.05, seed: int = 0, size: int = 28
) -> dict[str, np.ndarray]:
    """Arrays of a synthetic file in the MedMNIST layout of dataset ``like`` at side ``size``."""
    number = isinstance(scale, Real) and not isinstance(scale, bool)
    if not (number and 0 < scale <= 1):
        raise SettingError(f"scale == {scale!r}, must be in (0, 1]; 1 gives the real split sizes")
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed <= MAX_SEED:
        raise SettingError(f"seed == {seed!r}, must be an integer in 0..{MAX_SEED}")
    info = get_info(like, size)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        counts = split_class_counts(info, split, scale)
        labels = np.repeat(np.arange(info.n_classes), counts)
        labels = rng.permutation(labels)  # shuffled like a real file
        if info.multi_label:
            label_matrix = (rng.random((len(labels), info.n_classes)) < 0.1).astype(np.uint8)
            label_matrix[np.arange(len(labels)), labels] = 1
        else:
            label_matrix = labels.astype(np.uint8)[:, None]
        arrays[f"{split}_images"] = make_images(rng, labels, info)
        arrays[f"{split}_labels"] = label_matrix
    meta = {"synthetic": True, "like": info.name, "size": size, "scale": scale, "seed": seed}
    arrays[META_KEY] = np.array(json.dumps(meta))
    return arrays


def write_synthetic(
    out: str | os.PathLike, like: str, scale: float = 0.05, seed: int = 0, size: int = 28
) -> Path:
    """Write a synthetic ``.npz`` atomically (temporary name, then rename)."""
    out = Path(out)
    if out.suffix != ".npz":
        raise ConfigError(f"output '{out}' must end in .npz so numpy and MedMNIST can read it")
    arrays = synthesize(like, scale, seed, size)
    with atomic_path(out) as tmp:
        np.savez_compressed(tmp, **arrays)
    return out
