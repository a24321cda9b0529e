"""Read a MedMNIST ``.npz`` (by registry name or path), validate it, and return a Dataset.

The MedMNIST layout: keys ``{train,val,test}_images`` (N, H, W) or (N, H, W, C) uint8 (MedMNIST3D:
(N, D, H, W) volumes) and
``{train,val,test}_labels`` (N, 1) integers ((N, L) 0/1 for multi-label tasks). Files written by
``medclf data synth`` carry one more key, ``medclf_meta`` (a JSON string), that MedMNIST's own
loader ignores. Nothing is ever unpickled.

Images stay uint8 (memory-mapped where the file stores them uncompressed) until a caller forms a
batch or features from them, so loading needs about the file's uncompressed size at most.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.lib import format as fmt

from medclf.data.errors import MetaError, TooManyClassesError, UnreadableError
from medclf.data.fetch import dataset_path, file_md5, find_cached, synthetic_path
from medclf.data.registry import REGISTRY, SIZED, SPLITS, DatasetInfo, get_info
from medclf.errors import (
    DataError,
    DTypeError,
    EmptySplitError,
    LabelRangeError,
    LengthMismatchError,
    MissingKeyError,
    NotAZipError,
    SettingError,
    ShapeError,
    did_you_mean,
)

META_KEY = "medclf_meta"
MAX_CLASSES = 1000  # for files of unknown dataset, whose class count comes from the labels
STATS_PIXELS = 1 << 22  # pixels per chunk of pixel_stats
MEMORY_SHARE = 0.8  # of physical memory that inflated (compressed) arrays may take


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (n, H, W), (n, H, W, C) or, for volumes, (n, D, H, W) uint8
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


def load_dataset(
    name_or_path: str | os.PathLike, root: str | os.PathLike | None = None, size: int | None = None
) -> Dataset:
    """Load a dataset from the cache by registry name (at image side ``size``, default 28), or
    from a local ``.npz`` path (its size is read from the file; a ``size`` that contradicts it
    is refused).

    A name whose file is not cached yet is an error that says how to download it; loading never
    touches the network. A genuine file in MedMNIST's own cache (``~/.medmnist``) is used too.
    """
    text = str(name_or_path)
    if text.lower() in REGISTRY:
        size = 28 if size is None else size
        info = get_info(text, size)
        path = find_cached(info, root)
        if path is not None:
            return read_npz(path, info)
        path = dataset_path(info, root)
        if path.exists():
            file_md5(path)  # an unreadable file is called unreadable, not damaged
            raise DataError(
                f"{path} does not have the MD5 of {info.key}; run "
                f"'medclf data download {info.name}{_size_flag(size)}' to fetch it again"
            )
        synthetic = synthetic_path(info.name, root)
        hint = (
            f", or use the synthetic look-alike 'medclf reproduce' made: {synthetic}"
            if size == 28 and synthetic.is_file()
            else ""
        )
        raise DataError(
            f"{info.key} is not downloaded yet ({path} is missing); run "
            f"'medclf data download {info.name}{_size_flag(size)}' or pass the path of a local "
            f".npz{hint}"
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(
            f"'{text}' is neither a dataset name nor an existing file"
            f"{did_you_mean(text.lower(), REGISTRY)}; give one of "
            f"{', '.join(REGISTRY)} or the path of a MedMNIST .npz"
        )
    dataset = read_npz(path)
    info = dataset.info
    if size is not None and size != info.size:
        raise SettingError(
            f"{path} holds {info.cube} {'volumes' if info.dims == 3 else 'images'}, but the size "
            f"given is {size}; drop --size (a file's size is read from it) or give the matching "
            "file"
        )
    return dataset


def _size_flag(size: int) -> str:
    return "" if size == 28 else f" --size {size}"


def read_npz(path: Path, info: DatasetInfo | None = None) -> Dataset:
    arrays = read_arrays(path)
    meta = _meta(arrays, path)
    info = info or _guess_info(path, meta, arrays)
    splits = {split: _read_split(arrays, split, info, path) for split in SPLITS}
    return Dataset(info=info, source=str(path), synthetic=bool(meta.get("synthetic")), **splits)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, without unpickling and without more than one copy in memory.

    Members stored uncompressed (``np.savez``) are memory-mapped (copy-on-write, so callers may
    write without touching the file); compressed ones (MedMNIST's own files) are inflated once,
    straight into their array. Each header is checked against the member's size first, so a
    header that declares an absurd shape is refused before anything is allocated.
    """
    if path.is_dir():
        raise UnreadableError(f"{path} is a folder, not a .npz file; give the path of the file")
    if path.exists() and not path.is_file():  # reading a device or a pipe may never end
        raise UnreadableError(
            f"{path} is not a regular file (a device or a pipe); give the path of a .npz file"
        )
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise NotAZipError(
            f"{path} is not a zip archive (.npz), so it is damaged or not a MedMNIST file; "
            "download it again or point to the right file"
        ) from None
    except OSError as err:
        raise UnreadableError(
            f"{path} cannot be read ({err.strerror or err}); fix its permissions (chmod u+r) "
            "or point to a readable copy"
        ) from err
    arrays, budget = {}, MEMORY_SHARE * memory_bytes()
    with zf:
        for member in zf.infolist():
            if member.filename.endswith(".npy"):
                array = _read_member(path, zf, member, budget)
                if not isinstance(array, np.memmap):
                    budget -= array.nbytes
                arrays[member.filename[: -len(".npy")]] = array
    return arrays


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _read_member(
    path: Path, zf: zipfile.ZipFile, member: zipfile.ZipInfo, budget: float
) -> np.ndarray:
    key = member.filename[: -len(".npy")]
    try:
        with zf.open(member) as f:
            version = fmt.read_magic(f)
            v1 = version == (1, 0)
            shape, fortran, dtype = (
                fmt.read_array_header_1_0 if v1 else fmt.read_array_header_2_0
            )(f)
            header = f.tell()
        if dtype.hasobject:
            raise DTypeError(
                f"{key} in {path} holds Python objects, which medclf never unpickles; store "
                "uint8 images and integer labels"
            )
        need = math.prod(shape) * dtype.itemsize
        if header + need != member.file_size:
            raise ShapeError(
                f"{key} in {path} declares shape {shape} ({need:,} bytes) but holds "
                f"{member.file_size - header:,} bytes, so the file is damaged; download it again"
            )
        if member.compress_type == zipfile.ZIP_STORED and need and not member.flag_bits & 1:
            return np.memmap(
                path,
                dtype,
                mode="c",
                offset=_data_offset(path, member) + header,
                shape=shape,
                order="F" if fortran else "C",
            )
        if need > budget:  # a compressed member is inflated into memory: refuse it first
            raise DataError(
                f"{key} in {path} inflates to {need / 2**30:.1f} GiB, more than this machine's "
                f"memory can hold beside the rest of the file ({memory_bytes() / 2**30:.0f} GiB "
                "in all); use a smaller --size, or store the file uncompressed (np.savez) so "
                "medclf can memory-map it"
            )
        with zf.open(member) as f:
            return fmt.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as err:
        raise NotAZipError(f"{path} is truncated or corrupt ({err}); download it again") from err


def _data_offset(path: Path, member: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: after its local header, name and extra field."""
    with open(path, "rb") as f:
        f.seek(member.header_offset)
        local = f.read(30)
    if local[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header of {member.filename}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return member.header_offset + 30 + name_len + extra_len


def _meta(arrays: dict, path: Path) -> dict:
    if META_KEY not in arrays:
        return {}
    raw = arrays.pop(META_KEY)
    try:
        meta = json.loads(str(raw[()])) if raw.shape == () and raw.dtype.kind == "U" else None
    except (ValueError, RecursionError):  # not JSON, or nested too deeply
        meta = None
    if not isinstance(meta, dict):
        raise MetaError(
            f"{META_KEY} in {path} is not a JSON object (string); remove that key or rewrite "
            "the file with 'medclf data synth'"
        )
    return meta


def _guess_info(path: Path, meta: dict, arrays: dict) -> DatasetInfo:
    """Registry entry of a local file: from its metadata, its file name, or its contents.

    A MedMNIST file name (``adrenalmnist3d.npz``, ``breastmnist_64.npz``) names the dataset and
    the size; contents of another size or dimensionality are refused rather than reread as
    something else (a 28-voxel volume is never 28 channels of a 28x28 image)."""
    images = arrays.get("train_images")
    dims, side = _layout(images)
    like = meta.get("like")
    if isinstance(like, str) and like.lower() in REGISTRY:
        return _named_info(path, like.lower(), dims, side, claimed=None)
    name, claimed = _name_and_size(path.stem)
    if name in REGISTRY:
        return _named_info(path, name, dims, side, claimed)
    labels = [arrays.get(f"{s}_labels") for s in SPLITS]
    tops = [int(a.max()) for a in labels if a is not None and a.size and a.dtype.kind in "iu"]
    n_classes = 1 + max(tops, default=0)
    if n_classes > MAX_CLASSES:
        raise TooManyClassesError(
            f"the labels of {path} go up to {n_classes - 1:,}, which would make {n_classes:,} "
            f"classes, but medclf reads at most {MAX_CLASSES:,} from a file of unknown dataset; "
            "fix the labels, or name the file after its MedMNIST dataset (e.g. octmnist.npz)"
        )
    if dims == 3 and len(set(images.shape[1:4])) > 1:
        raise ShapeError(
            f"train_images in {path} holds volumes of shape {images.shape[1:]}, but medclf reads "
            "cubic volumes (depth = height = width), as MedMNIST3D stores them; resample them "
            "to a cube"
        )
    channels = images.shape[3] if dims == 2 and images.ndim == 4 else 1
    return DatasetInfo(
        name=path.stem,
        md5="",
        task="binary-class" if n_classes == 2 else "multi-class",  # MedMNIST's names
        labels=tuple(str(c) for c in range(max(n_classes, 1))),
        channels=channels,
        n_samples={s: 0 for s in SPLITS},
        size=side,
        licence="unknown",
        dims=dims or 2,
    )


def _layout(images: np.ndarray | None) -> tuple[int | None, int]:
    """(dims, side) of a file's images: (n, H, W) and (n, H, W, C) with C of 1, 3 or 4 are 2D;
    (n, D, H, W) with any other last axis, and (n, D, H, W, C), are 3D (MedMNIST3D stores no
    channel axis). dims is None where the images are missing or no image at all (the split
    check names that)."""
    if images is None or images.ndim < 3:
        return None, 28
    volume = images.ndim > 4 or (images.ndim == 4 and images.shape[3] not in (1, 3, 4))
    return (3 if volume else 2), images.shape[1]


def _name_and_size(stem: str) -> tuple[str, int | None]:
    """``adrenalmnist3d_64`` -> ('adrenalmnist3d', 64); ``breastmnist`` -> ('breastmnist', 28);
    a stem that is no MedMNIST file name gives its first word and None."""
    name, _, suffix = stem.lower().partition("_")
    if not suffix:
        return name, 28
    return name, int(suffix) if suffix.isdigit() else None


def _named_info(path: Path, name: str, dims: int | None, side: int, claimed: int | None):
    """The entry of dataset ``name`` at the file's size, once the file's contents agree with
    the dataset's dimensionality and with the size its name claims (None: no claim)."""
    info = REGISTRY[name]
    shape = "volumes" if dims == 3 else "images"
    if dims not in (None, info.dims):
        raise ShapeError(
            f"{path} holds {dims}D {shape}, but {name} is a {info.kind} dataset; give the "
            f"{info.kind} file of {name}, or name the file after the dataset it holds"
        )
    if dims and claimed != side and {claimed, side} <= set(info.sizes):  # else the shape check
        cube = "x".join([str(side)] * dims)
        raise ShapeError(
            f"{path} is named as {name} at size {claimed} but holds {cube} {shape}, so it is "
            f"the wrong file or misnamed; rename it {name}"
            f"{'' if side == 28 else f'_{side}'}.npz or give the size-{claimed} file"
        )
    return SIZED.get((name, side), info)


def pixel_stats(images: np.ndarray, chunk: int | None = None) -> tuple[float, float, int, int]:
    """Mean, sd, min and max of uint8 pixels, a chunk of images at a time (no float copy of
    the whole array). The default chunk holds about 4M pixels (bincount counts them as 8-byte
    integers), so a 64-voxel volume split never needs GBs for its statistics."""
    chunk = chunk or max(1, STATS_PIXELS // max(1, math.prod(images.shape[1:])))
    total = sq = 0.0
    lo, hi = 255, 0
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk]
        values = np.bincount(block.ravel(), minlength=256)
        levels = np.arange(256, dtype=np.float64)
        total += values @ levels
        sq += values @ levels**2
        present = np.flatnonzero(values)
        lo, hi = min(lo, int(present[0])), max(hi, int(present[-1]))
    n = images.size
    mean = total / n
    return mean, float(np.sqrt(max(sq / n - mean**2, 0.0))), lo, hi


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
