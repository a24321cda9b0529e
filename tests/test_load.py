import numpy as np
import pytest

from conftest import medmnist_arrays, write_npz
from medclf.data.load import load_dataset
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


def test_loads_a_format_exact_file(octmnist_file):
    ds = load_dataset(octmnist_file)
    raw = np.load(octmnist_file)
    assert ds.name == "octmnist" and not ds.synthetic
    assert ds.class_names[0] == "choroidal neovascularization"
    for split in ("train", "val", "test"):
        s = ds.split(split)
        assert s.images.dtype == np.uint8 and s.images.shape[1:] == (28, 28)
        assert s.labels.dtype == np.int64 and s.labels.ndim == 1
        np.testing.assert_array_equal(s.images, raw[f"{split}_images"])
        np.testing.assert_array_equal(s.labels, raw[f"{split}_labels"][:, 0])


def test_load_by_name_reads_the_cache(tmp_path, octmnist_file):
    with pytest.raises(DataError, match="not downloaded yet.*medclf data download octmnist"):
        load_dataset("octmnist", root=tmp_path / "empty")
    # A file under the registry name but with the wrong MD5 is refused, not trusted.
    with pytest.raises(DataError, match="does not have the MD5"):
        load_dataset("octmnist", root=octmnist_file.parent)


def test_missing_path_names_both_choices(tmp_path):
    with pytest.raises(DataError, match="neither a dataset name nor an existing file"):
        load_dataset(tmp_path / "nope.npz")


def _broken(tmp_path, **changes):
    arrays = medmnist_arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return write_npz(tmp_path / "octmnist.npz", arrays)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"val_labels": None}, MissingKeyError, "no key 'val_labels'"),
        ({"train_images": np.zeros((40, 28, 28), np.float32)}, DTypeError, "dtype float32"),
        ({"test_labels": np.zeros((1000, 1), np.float64)}, DTypeError, "expected integers"),
        ({"train_images": np.zeros((40, 32, 32), np.uint8)}, ShapeError, r"\(32, 32\)"),
        ({"train_images": np.zeros((40, 28, 28, 3), np.uint8)}, ShapeError, "expected"),
        ({"train_labels": np.zeros((39, 1), np.uint8)}, LengthMismatchError, "40 images but 39"),
        ({"val_labels": np.full((12, 1), 4, np.uint8)}, LabelRangeError, r"0\.\.3"),
        (
            {"val_images": np.zeros((0, 28, 28), np.uint8),
             "val_labels": np.zeros((0, 1), np.uint8)},
            EmptySplitError, "val split .* is empty",
        ),
    ],
)  # fmt: skip
def test_each_bad_input_gets_its_own_clear_error(tmp_path, changes, error, message):
    path = _broken(tmp_path, **changes)
    with pytest.raises(error, match=message):
        load_dataset(path)


def test_not_a_zip(tmp_path):
    path = tmp_path / "octmnist.npz"
    path.write_text("<html>503 Service Unavailable</html>")
    with pytest.raises(NotAZipError, match="not a zip archive"):
        load_dataset(path)


def test_truncated_file(tmp_path, octmnist_file):
    data = octmnist_file.read_bytes()
    path = tmp_path / "cut" / "octmnist.npz"
    path.parent.mkdir()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NotAZipError):
        load_dataset(path)


def test_loading_never_unpickles(tmp_path):
    arrays = medmnist_arrays()
    arrays["train_labels"] = np.array([object()] * 40, dtype=object)
    path = write_npz(tmp_path / "octmnist.npz", arrays)
    with pytest.raises(NotAZipError, match="Object arrays cannot be loaded"):
        load_dataset(path)
