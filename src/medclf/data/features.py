"""From uint8 images to the model inputs the study used.

Pixels are flattened and divided by 256 (not 255), as in the study; the NumPy linear models add
a constant-1 column instead of a separate bias. The test split is either the official one or the
study's subset that mirrors the training class mix (see ``DatasetInfo.study_test_counts``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medclf.data.load import Dataset, Split
from medclf.errors import ConfigError, DataError

TEST_SPLITS = ("auto", "study", "official")


def to_features(images: np.ndarray, dtype=np.float64, bias: bool = False) -> np.ndarray:
    """(n, H, W[, C]) or volumes (n, D, H, W) uint8 -> (n, H*W*C or D*H*W [+1]) ``dtype``,
    pixel / 256, optional 1-column last (C order: a volume's voxels depth-major)."""
    X = images.reshape(len(images), -1).astype(dtype)
    X /= 256
    if bias:
        X = np.hstack([X, np.ones((len(X), 1), dtype=dtype)])
    return X


def to_images(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """(n, H, W[, C]) uint8 -> (n, C, H, W) ``dtype`` in [-1, 1]: pixel / 255 normalised with
    mean 0.5 and sd 0.5, as MedMNIST's experiments feed their convolutional networks."""
    X = channels_first(images).astype(dtype)
    X /= 127.5
    X -= 1
    return np.ascontiguousarray(X)


def channels_first(images: np.ndarray) -> np.ndarray:
    """(n, H, W[, C]) -> (n, C, H, W), still uint8: scaled a batch at a time by the engine."""
    X = images[:, None] if images.ndim == 3 else np.moveaxis(images, -1, 1)
    return np.ascontiguousarray(X)


def inputs_of(images: np.ndarray, inputs: str, dtype) -> np.ndarray:
    """The model inputs a registry entry asks for: ``flat``, ``flat+bias`` or ``image``
    (``image-uint8``: the same images, channels first, left uint8)."""
    if inputs == "image-uint8":
        return channels_first(images)
    if inputs == "image":
        return to_images(images, dtype)
    return to_features(images, dtype, bias=inputs == "flat+bias")


def study_test_indices(labels: np.ndarray, counts: tuple[int, ...]) -> np.ndarray:
    """Rows of the first ``counts[c]`` images of each class c, in file order, class by class."""
    picks = []
    for c, k in enumerate(counts):
        rows = np.flatnonzero(labels == c)[:k]
        if len(rows) < k:
            raise DataError(
                f"the test split has only {len(rows)} images of class {c}, but the study subset "
                f"needs {k}; use --test-split official"
            )
        picks.append(rows)
    return np.concatenate(picks)


def resolve_test_split(dataset: Dataset, test_split: str = "auto") -> str:
    """'auto' means the study subset where the registry defines one, else the official split."""
    if test_split not in TEST_SPLITS:
        raise ConfigError(f"test split '{test_split}' is unknown; choose one of {TEST_SPLITS}")
    if test_split == "auto":
        return "study" if dataset.info.study_test_counts else "official"
    if test_split == "study" and not dataset.info.study_test_counts:
        raise ConfigError(f"{dataset.name} has no study test subset; use --test-split official")
    return test_split


def select_test(dataset: Dataset, test_split: str = "auto") -> Split:
    """The test images and labels the chosen test split holds."""
    if resolve_test_split(dataset, test_split) == "official":
        return dataset.test
    rows = study_test_indices(dataset.test.labels, dataset.info.study_test_counts)
    return Split(images=dataset.test.images[rows], labels=dataset.test.labels[rows])


@dataclass(frozen=True)
class Features:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    test_split: str  # "study" or "official"

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


def make_features(
    dataset: Dataset,
    test_split: str = "auto",
    dtype=np.float64,
    bias: bool = False,
    inputs: str | None = None,
) -> Features:
    """Train/val/test inputs and labels, ready for any model of medclf. ``inputs`` (a registry
    entry's ``flat``, ``flat+bias`` or ``image``) overrides ``bias``."""
    inputs = inputs or ("flat+bias" if bias else "flat")
    test = select_test(dataset, test_split)
    return Features(
        inputs_of(dataset.train.images, inputs, dtype),
        dataset.train.labels,
        inputs_of(dataset.val.images, inputs, dtype),
        dataset.val.labels,
        inputs_of(test.images, inputs, dtype),
        test.labels,
        resolve_test_split(dataset, test_split),
    )
