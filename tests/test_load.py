import hashlib
import io
import tracemalloc
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import medmnist_arrays, write_npz
from medclf.cli import cli
from medclf.data import fetch, registry
from medclf.data.errors import MetaError, TooManyClassesError, UnreadableError
from medclf.data.load import META_KEY, load_dataset, pixel_stats
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
            {
                "val_images": np.zeros((0, 28, 28), np.uint8),
                "val_labels": np.zeros((0, 1), np.uint8),
            },
            EmptySplitError,
            "val split .* is empty",
        ),
    ],
)
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
    with pytest.raises(
        DTypeError, match="train_labels in .* holds Python objects, which medclf never unpickles"
    ):
        load_dataset(path)


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def no_medmnist_cache(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(fetch, "MEDMNIST_ROOT", tmp_path_factory.mktemp("no-medmnist"))


def _zip_with(path, arrays, raw_members):
    """An .npz of ``arrays`` plus members given as raw .npy bytes."""
    np.savez_compressed(path, **arrays)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf:
        for name, data in raw_members.items():
            zf.writestr(f"{name}.npy", data)
    return path


def test_header_declaring_an_absurd_shape_is_refused_before_allocating(tmp_path):
    arrays = medmnist_arrays()
    del arrays["train_images"]
    buf = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28)}
    np.lib.format.write_array_header_1_0(buf, header)
    path = _zip_with(tmp_path / "octmnist.npz", arrays, {"train_images": buf.getvalue() + b"x"})
    with pytest.raises(
        ShapeError,
        match=r"train_images in .* declares shape \(1000000000000, "
        r"28, 28\) \(784,000,000,000,000 bytes\) but holds 1 bytes, so the file "
        "is damaged",
    ):
        load_dataset(path)


@pytest.mark.parametrize("meta", [np.array("[1, 2]"), np.array("{not json"), np.array(7)])
def test_meta_that_is_not_a_json_object_is_one_line(tmp_path, meta):
    arrays = {**medmnist_arrays(), META_KEY: meta}
    path = write_npz(tmp_path / "octmnist.npz", arrays)
    with pytest.raises(MetaError, match="medclf_meta in .* is not a JSON object"):
        load_dataset(path)


@pytest.mark.parametrize("name", ["octmnist.npz", "mystery.npz"])
def test_string_labels_are_one_line(tmp_path, name):
    arrays = medmnist_arrays()
    arrays["train_labels"] = np.array(["normal"] * 40)[:, None]
    path = write_npz(tmp_path / name, arrays)
    with pytest.raises(DTypeError, match="train_labels in .* has dtype <U6, expected integers"):
        load_dataset(path)


def test_class_count_of_an_unknown_file_is_capped(tmp_path):
    arrays = medmnist_arrays()
    arrays["train_labels"] = arrays["train_labels"].astype(np.uint32)
    arrays["train_labels"][0] = 3_000_000
    path = write_npz(tmp_path / "mystery.npz", arrays)
    with pytest.raises(
        TooManyClassesError,
        match="go up to 3,000,000, which would make "
        "3,000,001 classes, but medclf reads at most 1,000",
    ):
        load_dataset(path)
    arrays["train_labels"][0] = 999
    ds = load_dataset(write_npz(tmp_path / "mystery.npz", arrays))
    assert ds.info.n_classes == 1000 and ds.info.licence == "unknown"


def test_unreadable_file_is_called_unreadable(tmp_path, octmnist_file, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(zipfile, "ZipFile", denied)  # root ignores chmod
    with pytest.raises(UnreadableError, match="cannot be read \\(Permission denied\\); fix its"):
        load_dataset(octmnist_file)


def test_folder_is_not_a_file(tmp_path):
    (tmp_path / "x.npz").mkdir()
    with pytest.raises(UnreadableError, match="x.npz is a folder, not a .npz file"):
        load_dataset(tmp_path / "x.npz")


def _register(monkeypatch, path, size=28):
    info = replace(registry.SIZED["octmnist", size], md5=hashlib.md5(path.read_bytes()).hexdigest())
    monkeypatch.setitem(registry.SIZED, ("octmnist", size), info)


def test_size_selects_the_medmnist_plus_file(tmp_path, monkeypatch):
    path = write_npz(tmp_path / "octmnist_64.npz", medmnist_arrays(size=64))
    _register(monkeypatch, path, 64)
    ds = load_dataset("octmnist", tmp_path, 64)
    assert ds.info.size == 64 and ds.train.images.shape[1:] == (64, 64)
    with pytest.raises(DataError, match="octmnist is not downloaded yet .*octmnist.npz is missing"):
        load_dataset("octmnist", tmp_path)
    with pytest.raises(DataError, match="'medclf data download octmnist --size 128'"):
        load_dataset("octmnist", tmp_path, size=128)
    assert load_dataset(path).info.size == 64  # by path: the size comes from the images


def test_file_in_the_medmnist_cache_is_used_after_its_md5_check(tmp_path, monkeypatch):
    medmnist = tmp_path / "dot-medmnist"
    medmnist.mkdir()
    monkeypatch.setattr(fetch, "MEDMNIST_ROOT", medmnist)
    path = write_npz(medmnist / "octmnist.npz", medmnist_arrays())
    with pytest.raises(DataError, match="not downloaded yet"):  # wrong MD5: not trusted
        load_dataset("octmnist", tmp_path / "cache")
    _register(monkeypatch, path)
    assert load_dataset("octmnist", tmp_path / "cache").source == str(path)


def test_offline_message_names_the_synthetic_file_reproduce_made(tmp_path):
    synthetic = fetch.synthetic_path("octmnist", tmp_path)
    synthetic.write_bytes(b"")
    with pytest.raises(
        DataError, match=f"use the synthetic look-alike 'medclf reproduce' made: {synthetic}"
    ):
        load_dataset("octmnist", tmp_path)


def _peak(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_loading_keeps_one_copy_at_most_and_maps_uncompressed_files(tmp_path):
    arrays = medmnist_arrays(n=(3000, 300, 300), size=64)
    size = sum(a.nbytes for a in arrays.values())  # ~14 MB
    np.savez(tmp_path / "stored.npz", **arrays)
    ds, peak = _peak(lambda: load_dataset(tmp_path / "stored.npz"))
    assert isinstance(ds.train.images, np.memmap) and ds.train.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.train.images, arrays["train_images"])
    assert peak < 0.05 * size, peak  # nothing but labels is read into memory
    ds.train.images[0, 0, 0] ^= 1  # copy-on-write: the file is never changed
    again = load_dataset(tmp_path / "stored.npz").train.images
    assert again[0, 0, 0] == arrays["train_images"][0, 0, 0]
    np.savez_compressed(tmp_path / "deflated.npz", **arrays)
    ds, peak = _peak(lambda: load_dataset(tmp_path / "deflated.npz"))
    assert not isinstance(ds.train.images, np.memmap)
    np.testing.assert_array_equal(ds.val.images, arrays["val_images"])
    assert peak < 1.2 * size, peak  # inflated once, straight into the arrays


def test_pixel_stats_match_numpy_without_a_float_copy():
    images = np.random.default_rng(1).integers(3, 250, (1000, 28, 28), dtype=np.uint8)
    mean, sd, lo, hi = pixel_stats(images, chunk=64)
    assert mean == pytest.approx(images.mean()) and sd == pytest.approx(images.std())
    assert (lo, hi) == (images.min(), images.max())


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_info_of_a_synthetic_file_claims_no_licence(synth_file):
    result = run("data", "info", synth_file)
    assert result.exit_code == 0, result.output
    assert "licence none (synthetic data made by medclf)" in result.output
    assert "CC BY" not in result.output


def test_info_and_show_take_a_size(tmp_path, monkeypatch):
    path = write_npz(tmp_path / "octmnist_64.npz", medmnist_arrays(size=64))
    _register(monkeypatch, path, 64)
    result = run("data", "info", "octmnist", "--root", tmp_path, "--size", 64)
    assert result.exit_code == 0 and "images   (64, 64) uint8, 4 classes" in result.output
    out = tmp_path / "grid.png"
    result = run("data", "show", "octmnist", "--root", tmp_path, "--size", 64, "--out", out)
    assert result.exit_code == 0, result.output
    result = run("data", "info", "octmnist", "--root", tmp_path, "--size", 32)
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_show_keeps_whole_class_names(tmp_path, monkeypatch):
    import matplotlib.figure

    labels, savefig = [], matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        labels.extend(ax.get_ylabel() for ax in fig.axes)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    arrays = medmnist_arrays(n_classes=8, size=28)
    path = write_npz(
        tmp_path / "bloodmnist.npz",
        {k: np.repeat(v[..., None], 3, -1) if "images" in k else v for k, v in arrays.items()},
    )
    assert run("data", "show", path, "--out", tmp_path / "g.png").exit_code == 0
    long = "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)"
    assert long in [" ".join(label.split()) for label in labels]


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no genuine MedMNIST files in {SHARED}")
def test_genuine_shared_file_loads_by_name_from_the_cache(tmp_path):
    import shutil

    shutil.copy(SHARED / "breastmnist.npz", tmp_path)
    ds = load_dataset("breastmnist", tmp_path)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [546, 78, 156]
    assert ds.train.images.shape[1:] == (28, 28) and not ds.synthetic


def test_unreadable_cached_file_is_not_called_damaged(tmp_path, octmnist_file, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fetch, "open", denied, raising=False)  # root ignores chmod
    with pytest.raises(UnreadableError, match="octmnist.npz cannot be read \\(Permission denied"):
        load_dataset("octmnist", octmnist_file.parent)


@pytest.mark.parametrize("n_classes,task", [(2, "binary-class"), (3, "multi-class")])
def test_an_unknown_file_of_two_classes_is_binary_as_medmnist_calls_it(tmp_path, n_classes, task):
    """A renamed binary file (e.g. a copy of AdrenalMNIST3D) has MedMNIST's binary task."""
    path = write_npz(tmp_path / "mystery.npz", medmnist_arrays(n_classes=n_classes, seed=3))
    assert load_dataset(path).info.task == task
