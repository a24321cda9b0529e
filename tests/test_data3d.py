"""MedMNIST3D data: volumes (n, D, H, W) uint8 read, validated, fetched, drawn and synthesised."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from medclf import api
from medclf.cli import cli
from medclf.data import fetch, load, registry
from medclf.data.features import make_features
from medclf.data.load import load_dataset
from medclf.data.synthetic import synthesize
from medclf.errors import DataError, ShapeError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GENUINE = SHARED / "adrenalmnist3d.npz"


def volumes(n=(6, 3, 4), side=12, n_classes=2, seed=0, channels=None):
    """Arrays in MedMNIST3D's layout, written by hand: (N, D, H, W) uint8, (N, 1) uint8."""
    rng = np.random.default_rng(seed)
    shape = (side,) * 3 if channels is None else (side, side, channels)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % n_classes).astype(np.uint8)[:, None]
    return arrays


def save(path, arrays, compressed=True):
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def one_line_failure(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_a_file_of_volumes_is_read_as_volumes_not_as_channels(tmp_path):
    ds = load_dataset(save(tmp_path / "myvolumes.npz", volumes(side=12)))
    assert ds.info.dims == 3 and ds.info.channels == 1
    assert ds.info.image_shape == (12, 12, 12) and ds.train.images.shape == (6, 12, 12, 12)
    rgb = load_dataset(save(tmp_path / "mycolour.npz", volumes(side=12, channels=3)))
    assert rgb.info.dims == 2 and rgb.info.channels == 3  # a colour image stays an image


def test_volumes_named_as_a_2d_dataset_are_one_line(tmp_path):
    path = save(tmp_path / "breastmnist.npz", volumes(side=28))
    assert "holds 3D volumes, but breastmnist is a 2D dataset" in one_line_failure(
        ["data", "info", str(path)]
    )


def test_images_named_as_a_3d_dataset_are_one_line(tmp_path):
    arrays = {k: v[:, 0] if k.endswith("images") else v for k, v in volumes(side=28).items()}
    path = save(tmp_path / "adrenalmnist3d.npz", arrays)  # (n, 28, 28): 2D images
    assert "holds 2D images, but adrenalmnist3d is a 3D dataset" in one_line_failure(
        ["data", "info", str(path)]
    )


@pytest.mark.parametrize(("name", "side"), [("adrenalmnist3d", 64), ("adrenalmnist3d_64", 28)])
def test_a_volume_file_named_at_the_other_size_is_one_line(tmp_path, name, side):
    path = save(tmp_path / f"{name}.npz", volumes(n=(2, 2, 2), side=side))
    message = one_line_failure(["data", "info", str(path)])
    assert f"holds {side}x{side}x{side} volumes" in message and "rename it" in message


def test_the_same_name_check_holds_for_2d_files(tmp_path):
    arrays = {k: v[:, 0] if k.endswith("images") else v for k, v in volumes(side=64).items()}
    path = save(tmp_path / "breastmnist.npz", arrays)  # 64x64 images under the 28 name
    message = one_line_failure(["data", "info", str(path)])
    assert "named as breastmnist at size 28 but holds 64x64 images" in message


def test_the_right_name_and_size_load_and_the_size_flag_is_checked(tmp_path):
    path = save(tmp_path / "vesselmnist3d_64.npz", volumes(n=(2, 2, 2), side=64))
    ds = load_dataset(path)
    assert ds.info.name == "vesselmnist3d" and ds.info.size == 64 and ds.info.dims == 3
    assert ds.info.md5 == registry.MD5S["vesselmnist3d"][1]
    result = CliRunner().invoke(cli, ["data", "info", str(path), "--size", "28"])
    assert result.exit_code != 0 and "holds 64x64x64 volumes" in result.output


def test_wrong_depth_for_the_named_dataset_is_one_line(tmp_path):
    arrays = volumes(side=28)
    arrays["val_images"] = arrays["val_images"][:, :20]  # (n, 20, 28, 28)
    path = save(tmp_path / "nodulemnist3d.npz", arrays)
    message = one_line_failure(["data", "info", str(path)])
    assert "(20, 28, 28), expected (28, 28, 28) for nodulemnist3d" in message


def test_a_truncated_synthetic_volume_file_is_one_line(tmp_path):
    path = tmp_path / "fracture.npz"
    result = CliRunner().invoke(
        cli, ["data", "synth", "--like", "fracturemnist3d", "--out", str(path), "--scale", "0.02"]
    )
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    assert "download it again" in one_line_failure(["data", "info", str(cut)])


def test_a_compressed_split_too_big_for_memory_is_refused_before_inflating(tmp_path, monkeypatch):
    path = save(tmp_path / "organmnist3d.npz", volumes(n=(40, 2, 2), side=28, n_classes=11))
    monkeypatch.setattr(load, "memory_bytes", lambda: 600_000)  # 480 kB for inflated arrays

    def inflated(*args, **kwargs):
        raise AssertionError("inflated before the memory check")

    monkeypatch.setattr(load.fmt, "read_array", inflated)
    with pytest.raises(DataError, match="train_images in .* inflates to .* store the file unc"):
        load_dataset(path)
    (tmp_path / "stored").mkdir()
    stored = save(tmp_path / "stored" / "organmnist3d.npz", volumes(n=(40, 2, 2), side=28), False)
    ds = load_dataset(stored)  # uncompressed: memory-mapped, so it needs no memory to load
    assert isinstance(ds.train.images, np.memmap) and ds.train.images.shape == (40, 28, 28, 28)


def test_data_info_names_the_task_and_the_volumes(tmp_path):
    path = tmp_path / "nodule.npz"
    api.synthesize("nodulemnist3d", path, scale=0.02)
    out = CliRunner().invoke(cli, ["data", "info", str(path)]).output
    assert "task binary-class" in out and "(28, 28, 28) uint8 (3D, one channel), 2 classes" in out
    assert "benign" in out and "malignant" in out and "volumes" in out


def test_synthetic_volumes_have_class_dependent_3d_structure():
    arrays = synthesize("vesselmnist3d", scale=0.1, seed=3)
    vol, labels = arrays["train_images"].astype(float), arrays["train_labels"][:, 0]
    assert vol.shape[1:] == (28, 28, 28) and arrays["train_images"].dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1}
    meta = json.loads(str(arrays[load.META_KEY]))
    assert meta["synthetic"] is True and meta["like"] == "vesselmnist3d"
    # A tube along the depth axis averages, over depth, into one bright spot; one along the
    # height axis does so over height. Which projection peaks higher reads the class.
    peak = [
        (vol.mean(axis=a) - vol.mean(axis=(1, 2, 3))[:, None, None]).max(axis=(1, 2))
        for a in (1, 2)
    ]
    guess = (peak[1] > peak[0]).astype(int)
    assert (guess == labels).mean() > 0.9


def test_synthetic_look_alike_of_every_3d_dataset_at_either_size():
    for name in ("organmnist3d", "nodulemnist3d", "adrenalmnist3d", "synapsemnist3d"):
        a = synthesize(name, scale=0.01, seed=0)
        info = registry.get_info(name)
        assert a["train_images"].shape[1:] == (28, 28, 28)
        assert a["train_labels"].max() == info.n_classes - 1
    big = synthesize("fracturemnist3d", scale=0.01, size=64)
    assert big["test_images"].shape[1:] == (64, 64, 64)
    with pytest.raises(DataError, match=r"no 128x128x128 files; choose a size of 28, 64"):
        synthesize("fracturemnist3d", scale=0.01, size=128)


def test_synthetic_3d_file_is_labelled_synthetic(tmp_path):
    path = api.synthesize("adrenalmnist3d", tmp_path / "a.npz", scale=0.02)
    ds = load_dataset(path)
    assert ds.synthetic and ds.display_name == "adrenalmnist3d (synthetic)" and ds.info.dims == 3
    # AdrenalMNIST3D's class mix is the genuine file's (929 / 259 in train)
    assert np.bincount(ds.train.labels).tolist() == [19, 5]


def test_flat_features_of_volumes_are_their_voxels_in_order(tmp_path):
    arrays = volumes(n=(5, 3, 4), side=10)
    ds = load_dataset(save(tmp_path / "tiny3d.npz", arrays))
    assert ds.info.dims == 3
    f = make_features(ds, inputs="flat")
    assert f.X_train.shape == (5, 1000) and f.X_test.shape == (4, 1000)
    v = arrays["train_images"][2]
    assert f.X_train[2, 1 * 100 + 2 * 10 + 3] == v[1, 2, 3] / 256  # depth, height, width


def test_mid_slices_are_the_three_orthogonal_planes():
    from medclf.plots import mid_slices

    vol = np.arange(4 * 6 * 8).reshape(4, 6, 8)
    axial, coronal, sagittal = mid_slices(vol)
    assert axial.shape == (6, 8) and coronal.shape == (4, 8) and sagittal.shape == (4, 6)
    assert (axial == vol[2]).all() and (coronal == vol[:, 3]).all()
    assert (sagittal == vol[:, :, 4]).all()


def test_show_draws_three_labelled_mid_slices_per_volume_one_row_per_class(tmp_path):
    from PIL import Image

    arrays = volumes(n=(9, 3, 3), side=14, n_classes=3)
    path = save(tmp_path / "fracturemnist3d.npz", {**arrays})
    with pytest.raises(DataError):  # 14-voxel volumes are not FractureMNIST3D's 28
        load_dataset(path)
    path = save(tmp_path / "three.npz", arrays)
    fig = api.sample_figure(path, per_class=2)
    assert len(fig.axes) == 3 * 3 * 2  # classes x volumes x views
    top = [ax.get_title() for ax in fig.axes[:6]]
    assert top == ["axial", "coronal", "sagittal"] * 2
    first = np.flatnonzero(arrays["train_labels"][:, 0] == 1)[0]
    shown = fig.axes[6 + 1].get_images()[0].get_array()  # class 1, first volume, coronal
    np.testing.assert_array_equal(shown, arrays["train_images"][first][:, 7, :])
    assert [fig.axes[r * 6].get_ylabel() for r in range(3)] == ["0", "1", "2"]
    out = tmp_path / "show.png"
    result = CliRunner().invoke(cli, ["data", "show", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).info["dpi"][0] >= 149.9


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A mirror folder holding a small VesselMNIST3D look-alike registered with its MD5."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    path = save(folder / "vesselmnist3d.npz", volumes(n=(4, 2, 2), side=28))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    info = replace(registry.SIZED["vesselmnist3d", 28], md5=md5)
    monkeypatch.setitem(registry.SIZED, ("vesselmnist3d", 28), info)
    monkeypatch.setattr(fetch, "MEDMNIST_ROOT", tmp_path / "no-medmnist")
    monkeypatch.delenv(fetch.ENV_ROOT, raising=False)
    monkeypatch.delenv(fetch.ENV_MIRROR, raising=False)
    return folder


def test_a_3d_dataset_downloads_from_a_mirror_verifies_and_loads_by_name(
    tmp_path, mirror, monkeypatch
):
    root = tmp_path / "cache"
    result = CliRunner().invoke(
        cli, ["data", "download", "vesselmnist3d", "--root", str(root), "--mirror", str(mirror)]
    )
    assert result.exit_code == 0, result.output
    assert (root / "vesselmnist3d.npz").read_bytes() == (mirror / "vesselmnist3d.npz").read_bytes()
    assert fetch.verify(["vesselmnist3d"], root) == {"vesselmnist3d": "ok"}
    ds = load_dataset("vesselmnist3d", root)
    assert ds.info.dims == 3 and ds.train.images.shape == (4, 28, 28, 28)
    (mirror / "vesselmnist3d.npz").unlink()  # the cached copy is reused, the mirror not asked
    assert fetch.download("vesselmnist3d", root, mirror=str(mirror)) == root / "vesselmnist3d.npz"
    damaged = root / "vesselmnist3d.npz"
    genuine = damaged.read_bytes()
    damaged.write_bytes(genuine[:-10])
    message = one_line_failure(["data", "info", "vesselmnist3d", "--root", str(root)])
    assert "does not have the MD5 of vesselmnist3d" in message
    medmnist = tmp_path / "dot-medmnist"  # MedMNIST's own cache (~/.medmnist) is used too
    medmnist.mkdir()
    (medmnist / "vesselmnist3d.npz").write_bytes(genuine)
    monkeypatch.setattr(fetch, "MEDMNIST_ROOT", medmnist)
    ds = load_dataset("vesselmnist3d", tmp_path / "empty")
    assert ds.source == str(medmnist / "vesselmnist3d.npz") and ds.info.dims == 3


def test_a_3d_dataset_has_no_128_file(tmp_path):
    result = CliRunner().invoke(cli, ["data", "download", "adrenalmnist3d", "--size", "128"])
    assert result.exit_code == 1 and "no 128x128x128 files; choose a size of 28, 64" in (
        result.output
    )


@pytest.mark.skipif(not GENUINE.is_file(), reason=f"no genuine AdrenalMNIST3D file at {GENUINE}")
def test_genuine_adrenalmnist3d(tmp_path, monkeypatch):
    ds = load_dataset(GENUINE)
    assert ds.info.name == "adrenalmnist3d" and ds.info.task == "binary-class"
    assert ds.info.image_shape == (28, 28, 28) and ds.train.images.dtype == np.uint8
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [1188, 98, 298]
    for split, counts in registry.REGISTRY["adrenalmnist3d"].class_counts.items():
        assert tuple(np.bincount(ds.split(split).labels)) == counts
    # from a mirror folder into a cache, verified by MD5, then found by name
    monkeypatch.setattr(fetch, "MEDMNIST_ROOT", tmp_path / "no-medmnist")
    folder = tmp_path / "mirror"
    folder.mkdir()
    shutil.copy(GENUINE, folder)
    path = fetch.download("adrenalmnist3d", tmp_path / "cache", mirror=str(folder), progress=False)
    assert fetch.verify(["adrenalmnist3d"], tmp_path / "cache") == {"adrenalmnist3d": "ok"}
    assert load_dataset("adrenalmnist3d", tmp_path / "cache").source == str(path)
    big = SHARED / "adrenalmnist3d_64.npz"
    if big.is_file():  # data verify with no names checks every 3D dataset at 28 and 64
        shutil.copy(big, tmp_path / "cache")
        result = CliRunner().invoke(cli, ["data", "verify", "--root", str(tmp_path / "cache")])
        assert result.output.split() == ["adrenalmnist3d", "ok", "adrenalmnist3d_64", "ok"]
    shutil.copy(GENUINE, tmp_path / "adrenalmnist3d_64.npz")  # the 28 file under the 64 name
    with pytest.raises(ShapeError, match="named as adrenalmnist3d at size 64"):
        load_dataset(tmp_path / "adrenalmnist3d_64.npz")


def test_non_cubic_volumes_of_an_unknown_file_are_one_line(tmp_path):
    arrays = {k: v[:, :9] if k.endswith("images") else v for k, v in volumes(side=12).items()}
    path = save(tmp_path / "myvolumes.npz", arrays)  # (n, 9, 12, 12)
    assert "volumes of shape (9, 12, 12), but medclf reads cubic volumes" in one_line_failure(
        ["data", "info", str(path)]
    )


def test_voxel_statistics_take_a_few_megabytes_at_a_time(monkeypatch):
    import tracemalloc

    monkeypatch.setattr(load, "STATS_PIXELS", 1 << 16)
    vol = np.random.default_rng(0).integers(0, 256, (200, 16, 16, 16), dtype=np.uint8)
    tracemalloc.start()
    mean, sd, lo, hi = load.pixel_stats(vol)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < vol.nbytes  # counting all at once takes 8 bytes a voxel
    assert np.isclose(mean, vol.mean()) and np.isclose(sd, vol.std())
    assert (lo, hi) == (vol.min(), vol.max())
