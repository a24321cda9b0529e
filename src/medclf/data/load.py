"""Read a MedMNIST ``.npz`` (by registry name or path), validate it, and return a Dataset.

The MedMNIST layout: keys ``{train,val,test}_images`` (N, H, W) or (N, H, W, C) uint8 and
``{train,val,test}_labels`` (N, 1) integers ((N, L) 0/1 for multi-label tasks). Files written by
``medclf data synth`` carry one more key, ``medclf_meta`` (a JSON string), that MedMNIST's own
loader ignores. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from medclf.data.fetch import dataset_path, md5_matches
from medclf.data.registry import REGISTRY, SPLITS, DatasetInfo, get_info
from medclf.errors import (
    DataError,
    DTypeError,
    EmptySplitError,
    LabelRangeError,
    LengthMismatchError,
    MissingKeyError,
    NotAZipError,
    ShapeError,
)

META_KEY = "medclf_meta"


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (n, H, W) or (n, H, W, C) uint8
    labels: np.ndarray  # (n,) int64, or (n, L) int64 for multi-label tasks

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    source: str  # path of the file read
    synthetic: bool = False

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.labels

    def split(self, name: str) -> Split:
        return getattr(self, name)

    def head(self, fraction: float) -> Dataset:
        """The first ``fraction`` of the train and val splits (the test split stays whole, so
        the study subset still exists). Used for quick trial runs."""
        if fraction >= 1:
            return self

        def cut(s: Split) -> Split:
            n = max(1, int(len(s) * fraction))
            return Split(s.images[:n], s.labels[:n])

        return replace(self, train=cut(self.train), val=cut(self.val))

    @property
    def display_name(self) -> str:
        return f"{self.name} (synthetic)" if self.synthetic else self.name


def load_dataset(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset from the cache by registry name, or from a local ``.npz`` path.

    A name whose file is not cached yet is an error that says how to download it; loading never
    touches the network.
    """
    text = str(name_or_path)
    if text.lower() in REGISTRY:
        info = get_info(text)
        path = dataset_path(info, root)
        if not path.exists():
            raise DataError(
                f"{info.name} is not downloaded yet ({path} is missing); run "
                f"'medclf data download {info.name}' or pass the path of a local .npz"
            )
        if not md5_matches(path, info):
            raise DataError(
                f"{path} does not have the MD5 of {info.name}; run "
                f"'medclf data download {info.name}' to fetch it again"
            )
        return read_npz(path, info)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(
            f"'{text}' is neither a dataset name nor an existing file; give one of "
            f"{', '.join(REGISTRY)} or the path of a MedMNIST .npz"
        )
    return read_npz(path)


def read_npz(path: Path, info: DatasetInfo | None = None) -> Dataset:
    if not zipfile.is_zipfile(path):
        raise NotAZipError(
            f"{path} is not a zip archive (.npz), so it is damaged or not a MedMNIST file; "
            "download it again or point to the right file"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise NotAZipError(f"{path} is truncated or corrupt ({err}); download it again") from err
    meta = json.loads(str(arrays.pop(META_KEY))) if META_KEY in arrays else {}
    info = info or _guess_info(path, meta, arrays)
    splits = {split: _read_split(arrays, split, info, path) for split in SPLITS}
    return Dataset(info=info, source=str(path), synthetic=bool(meta.get("synthetic")), **splits)


def _guess_info(path: Path, meta: dict, arrays: dict) -> DatasetInfo:
    """Registry entry of a local file: from its metadata, its file name, or its contents."""
    like = meta.get("like") or path.stem.split("_")[0].lower()
    if like in REGISTRY:
        return REGISTRY[like]
    labels = [arrays.get(f"{s}_labels") for s in SPLITS]
    n_classes = 1 + max((int(a.max()) for a in labels if a is not None and a.size), default=0)
    images = arrays.get("train_images")
    shape = images.shape if images is not None else (0, 28, 28)
    return DatasetInfo(
        name=path.stem, md5="", task="multi-class",
        labels=tuple(str(c) for c in range(max(n_classes, 1))),
        channels=shape[3] if len(shape) == 4 else 1,
        n_samples={s: 0 for s in SPLITS}, size=shape[1] if len(shape) > 1 else 28,
        licence="unknown",
    )  # fmt: skip


def _read_split(arrays: dict, split: str, info: DatasetInfo, path: Path) -> Split:
    images, labels = (_require(arrays, f"{split}_{kind}", path) for kind in ("images", "labels"))
    if images.dtype != np.uint8:
        raise DTypeError(
            f"{split}_images in {path} has dtype {images.dtype}, expected uint8 pixels 0-255; "
            "convert with images.astype(np.uint8) when writing the file"
        )
    if images.shape[1:] != info.image_shape:
        raise ShapeError(
            f"{split}_images in {path} has images of shape {images.shape[1:]}, expected "
            f"{info.image_shape} for {info.name}; resize them or choose the matching dataset"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DTypeError(
            f"{split}_labels in {path} has dtype {labels.dtype}, expected integers; "
            "store class indices as integers"
        )
    labels = _label_matrix(labels, info, split, path)
    if len(images) != len(labels):
        raise LengthMismatchError(
            f"{split} split of {path} has {len(images)} images but {len(labels)} labels; "
            "every image needs exactly one label row"
        )
    if len(images) == 0:
        raise EmptySplitError(f"{split} split of {path} is empty; every split needs images")
    top = 1 if info.multi_label else info.n_classes - 1
    if labels.min() < 0 or labels.max() > top:
        raise LabelRangeError(
            f"{split}_labels in {path} holds values from {labels.min()} to {labels.max()}, "
            f"but {info.name} labels must lie in 0..{top}; fix the labels or the dataset name"
        )
    return Split(images=images, labels=labels)


def _require(arrays: dict, key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise MissingKeyError(
            f"{path} has no key '{key}' (it has {', '.join(sorted(arrays)) or 'none'}); a "
            "MedMNIST file holds train/val/test _images and _labels, so download it again"
        )
    return arrays[key]


def _label_matrix(labels: np.ndarray, info: DatasetInfo, split: str, path: Path) -> np.ndarray:
    width = info.n_classes if info.multi_label else 1
    if labels.ndim == 1 and width == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape[1] != width:
        raise ShapeError(
            f"{split}_labels in {path} has shape {labels.shape}, expected (n, {width}); "
            "store one row of labels per image"
        )
    labels = labels.astype(np.int64)
    return labels if info.multi_label else labels[:, 0]
