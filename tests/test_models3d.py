"""3D models (issue 21): MedMNIST v2's ResNets +3D / +2.5D / +ACS and medclf's small 3D CNN,
their convolutions checked against plain Conv3d definitions, the refusal of data of the wrong
dimensionality, and 3D runs that train, resume, predict from .npz volumes and export to ONNX.
Networks are checked on 8^3-16^3 volumes; runs on a few synthetic 28^3 volumes (the size the
config allows), with a class-dependent cube or slab in each."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from conftest import Killed, kill_after
from medclf import api
from medclf.cli import cli
from medclf.data.load import read_npz
from medclf.data.registry import DatasetInfo, get_info
from medclf.errors import ConfigError, DataError
from medclf.models.config import make_config
from medclf.models.registry import BENCHMARK_ZOOS, MODELS, PRESETS, builder
from medclf.models.torch_models.resnet import ResNet18
from medclf.models.torch_models.volumes import ACSConv, acs_split, to_3d
from medclf.models.training import torch_engine as engine
from medclf.models.training.augment import SAFE_AUGMENT, augment
from medclf.run.lifecycle import check_task, run_job
from medclf.run.predict import predict_run

VOLUME_MODELS = sorted(m for m, s in MODELS.items() if s.inputs == "volume")
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def adrenal_info(size=28, n=(1188, 98, 298)):
    """AdrenalMNIST3D as MedMNIST v3.0.2 describes it (until the data registry has it)."""
    md5 = "bbd3c5a5576322bc4cdfea780653b1ce"
    splits = dict(zip(("train", "val", "test"), n, strict=True))
    return DatasetInfo(
        "adrenalmnist3d", md5, "binary-class", ("normal", "hyperplasia"), 1, splits, size, dims=3
    )


def volumes(n, side=28, seed=0):
    """(n, D, H, W) uint8 noise with a bright cube (class 1) or a bright slab (class 0)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 60, (n, side, side, side)).astype(np.uint8)
    c, r = side // 2, side // 4
    for i in np.flatnonzero(y):
        x[i, c - r : c + r, c - r : c + r, c - r : c + r] += 150
    for i in np.flatnonzero(1 - y):
        x[i, c - r : c + r, :, c - 1 : c + 1] += 150
    return x, y[:, None].astype(np.uint8)


@pytest.fixture(scope="module")
def volume_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vol") / "adrenal-like.npz"
    arrays = {}
    for split, n, seed in (("train", 24, 1), ("val", 8, 2), ("test", 10, 3)):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = volumes(n, seed=seed)
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="module")
def dataset(volume_file):
    return read_npz(volume_file, adrenal_info(n=(24, 8, 10)))


def tiny(model="torch-cnn3d", **kw):
    settings = {"width": 4, "epochs": 2, "batch_size": 8, "select": "val_auc", **kw}
    return make_config(model, dataset="adrenal-like.npz", test_split="official", **settings)


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "cnn3d"
    run_job(tiny(), dataset, run_dir, quiet=True, threads=1)
    return run_dir


# --- the networks -------------------------------------------------------------------------


@pytest.mark.parametrize("model", VOLUME_MODELS)
def test_each_volume_model_maps_a_batch_of_volumes_to_logits(model):
    config = dict(MODELS[model].defaults, width=4)
    net = builder(model)(config, (1, 8, 8, 8), 3).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 8, 8, 8))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert not any(isinstance(m, nn.Conv2d | nn.BatchNorm2d) for m in net.modules())


def convs_of(net):
    return [m for m in net.modules() if isinstance(m, nn.Conv3d | ACSConv)]


@pytest.mark.parametrize(
    ("kind", "kernel"), [("3d", lambda k: (k, k, k)), ("2.5d", lambda k: (1, k, k))]
)
def test_3d_and_25d_resnets_have_the_kernels_acsconv_defines(kind, kernel):
    flat = ResNet18(1, 2, stem="cifar")
    net = to_3d(ResNet18(1, 2, stem="cifar"), kind)
    flat_convs = [m for m in flat.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs_of(net)) == len(flat_convs) == 20  # stem + 16 block convs + 3 projections
    for c2, c3 in zip(flat_convs, convs_of(net), strict=True):
        k = c2.kernel_size[0]
        assert isinstance(c3, nn.Conv3d) and c3.kernel_size == kernel(k)
        assert c3.weight.shape == (c2.out_channels, c2.in_channels, *kernel(k))
        assert c3.stride == (c2.stride[0],) * 3
    # MedMNIST's ResNet-18+3D: 33.1 M weights = the 2D net's, each k x k kernel k times deeper
    n3d = sum(p.numel() for p in net.parameters())
    n2d = sum(p.numel() for p in flat.parameters())
    deeper = sum(c.weight.numel() * (c.kernel_size[0] - 1) for c in flat_convs)
    assert n3d == n2d + (deeper if kind == "3d" else 0)


def test_acs_splits_the_output_channels_as_acsconv_does():
    assert [acs_split(n) for n in (64, 65, 66, 1, 2)] == [
        (22, 21, 21),
        (22, 22, 21),
        (22, 22, 22),
        (1, 0, 0),
        (1, 1, 0),
    ]
    net = to_3d(ResNet18(1, 2, stem="cifar"), "acs")
    convs = convs_of(net)
    assert len(convs) == 20 and all(isinstance(c, ACSConv) for c in convs)
    for c in convs:
        a, cor, s = (w.shape for w in c.kernels())
        k = c.weight.shape[-1]
        assert a[2:] == (1, k, k) and cor[2:] == (k, 1, k) and s[2:] == (k, k, 1)
        assert (a[0], cor[0], s[0]) == acs_split(c.weight.shape[0])


def centred_3d_kernel(conv: ACSConv) -> torch.Tensor:
    """The Conv3d kernel an ACS convolution equals: each part's 2D kernel laid in the middle
    plane across its axis, zeros elsewhere (an oracle independent of ACSConv.forward)."""
    w = conv.weight
    o, i, k, _ = w.shape
    full = torch.zeros(o, i, k, k, k)
    a, c, _ = conv.split
    full[:a, :, k // 2] = w[:a]
    full[a : a + c, :, :, k // 2] = w[a : a + c]
    full[a + c :, :, :, :, k // 2] = w[a + c :]
    return full


@pytest.mark.parametrize(("kernel", "stride", "side"), [(3, 1, 9), (3, 2, 9), (3, 2, 8), (1, 2, 7)])
def test_acs_convolution_equals_conv3d_with_each_kernel_flat_on_its_axis(kernel, stride, side):
    torch.manual_seed(0)
    conv = ACSConv(3, 7, kernel, stride, kernel // 2, bias=True)
    nn.init.normal_(conv.bias)
    x = torch.randn(2, 3, side, side + 1, side + 2)
    want = F.conv3d(x, centred_3d_kernel(conv), conv.bias, stride, kernel // 2)
    torch.testing.assert_close(conv(x), want, rtol=1e-4, atol=1e-5)


def test_25d_convolution_convolves_each_slice_with_one_2d_kernel():
    torch.manual_seed(0)
    conv = to_3d(nn.Sequential(nn.Conv2d(2, 5, 3, padding=1)), "2.5d")[0]
    x = torch.randn(1, 2, 6, 9, 9)
    slices = [F.conv2d(x[:, :, d], conv.weight[:, :, 0], conv.bias, padding=1) for d in range(6)]
    torch.testing.assert_close(conv(x), torch.stack(slices, 2), rtol=1e-4, atol=1e-5)


def test_channels_last_3d_gives_the_same_logits():
    torch.manual_seed(0)
    net = builder("torch-cnn3d")(dict(MODELS["torch-cnn3d"].defaults, width=4), (1, 12, 12, 12), 2)
    x = torch.randn(3, 1, 12, 12, 12)
    plain = engine.logits_of(net, x.clone())
    assert engine.memory_format(net, x) == torch.channels_last_3d
    fast = engine.logits_of(net, x)
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


# --- augmentation -------------------------------------------------------------------------


def test_3d_flips_mirror_whole_volumes_along_their_own_axis():
    x = torch.arange(5 * 6 * 7, dtype=torch.float32).reshape(1, 1, 5, 6, 7).repeat(64, 1, 1, 1, 1)
    for op, axis in (("dflip", 2), ("vflip", 3), ("hflip", 4)):
        out = augment(x, (op,), torch.Generator().manual_seed(0))
        flipped = (out == x.flip(axis)).flatten(1).all(1)
        same = (out == x).flatten(1).all(1)
        assert (flipped | same).all() and 10 < flipped.sum() < 54, op  # per volume, about half
    with pytest.raises(ConfigError, match="volumes"):
        augment(torch.zeros(2, 1, 5, 5), ("dflip",), torch.Generator())


def test_every_3d_dataset_has_label_safe_flips_and_a_reason():
    from medclf.models.training.augment import AUGMENT_REASONS

    names = ("organ", "nodule", "adrenal", "fracture", "vessel", "synapse")
    for name in (f"{n}mnist3d" for n in names):
        assert set(SAFE_AUGMENT[name]) <= {"hflip", "vflip", "dflip"} and AUGMENT_REASONS[name]
    assert "hflip" not in SAFE_AUGMENT["organmnist3d"]  # left/right organ labels


# --- dimensionality: refused in one line before training ----------------------------------


@pytest.mark.parametrize("model", ["torch-cnn", "torch-resnet18"])
def test_a_2d_model_given_volumes_is_refused(model, dataset):
    config = make_config(model, dataset="adrenal-like.npz")
    with pytest.raises(ConfigError, match="takes 2D images, but adrenalmnist3d holds 3D") as e:
        check_task(config, dataset)
    assert "\n" not in str(e.value) and "torch-cnn3d" in str(e.value)


def test_a_3d_model_given_images_is_refused_in_one_line_by_the_cli(tmp_path):
    from conftest import medmnist_arrays, write_npz

    path = write_npz(tmp_path / "breastmnist.npz", medmnist_arrays((20, 6, 6), n_classes=2))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["train", "torch-cnn3d", "--dataset", str(path), "--out", str(out), "--epochs", "1"]
    )
    assert result.exit_code == 1, result.output
    assert "torch-cnn3d takes 3D volumes, but breastmnist holds 2D images" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_flat_models_take_both_and_every_entry_says_which():
    info2 = get_info("breastmnist")
    for name, spec in MODELS.items():
        assert set(spec.dims) <= {2, 3} and spec.dims, name
        assert (3 in spec.dims) == (spec.inputs != "image"), name
        assert (2 in spec.dims) == (spec.inputs != "volume"), name
    assert info2.dims == 2


# --- benchmark zoo and presets ------------------------------------------------------------


def test_the_default_benchmark_zoo_follows_the_datas_dimensionality(volume_file, monkeypatch):
    from medclf.experiments import benchmark

    monkeypatch.setattr(
        benchmark, "load_dataset", lambda d, root, size: read_npz(Path(d), adrenal_info())
    )
    files = benchmark.data_files([str(volume_file)], None, None, None)
    entries = benchmark.grid(list(files), None, "fast", 1, files=files)
    assert [e["model"] for e in entries] == list(BENCHMARK_ZOOS[3])
    assert entries[0]["config"]["epochs"] == PRESETS["fast"]["torch-cnn3d"]["epochs"]
    with pytest.raises(ConfigError, match="takes 2D images"):
        benchmark.data_files([str(volume_file)], ["torch-cnn"], None, None)


def test_3d_presets_are_data_for_every_volume_model():
    for model in VOLUME_MODELS:
        assert PRESETS["paper"][model]["batch_size"] == 32  # MedMNIST3D's train script
        make_config(model, **PRESETS["paper"][model])
    assert all(dims in BENCHMARK_ZOOS for dims in (2, 3))
    for model in BENCHMARK_ZOOS[3]:
        assert 3 in MODELS[model].dims
        make_config(model, **PRESETS["fast"].get(model, {}))


# --- runs: train, predict from .npz volumes, resume, ONNX ---------------------------------


def test_a_3d_run_learns_the_synthetic_structure(finished):
    metrics = api.open_run(finished).metrics
    assert metrics["image_shape"] == [28, 28, 28] and metrics["task"] == "binary-class"
    assert metrics["test_auc"] > 0.9  # a cube against a slab


def test_predict_from_an_npz_of_volumes_equals_the_saved_test_scores(finished, volume_file):
    run = api.open_run(finished)
    names, classes, proba = run.predict_files([volume_file])
    saved = np.load(finished / "predictions.npz")["test_scores"]
    assert len(names) == 10 and names[0] == "adrenal-like.npz[0]"
    np.testing.assert_allclose(proba, saved, rtol=0, atol=1e-6)
    assert (classes == saved.argmax(1)).all()


def test_volumes_of_the_wrong_depth_are_refused_in_one_line(finished, tmp_path):
    path = tmp_path / "thin.npz"
    np.savez(path, test_images=volumes(2)[0][:, :27])
    with pytest.raises(DataError, match=r"shape \(27, 28, 28\).*expects \(28, 28, 28\)") as e:
        api.open_run(finished).predict_files([path])
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match=r"shape \(2, 28, 27, 28\)") as e:
        api.open_run(finished).predict(volumes(2)[0][:, :, :27])
    assert "\n" not in str(e.value)


def test_a_killed_3d_run_resumes_to_the_same_numbers(dataset, tmp_path):
    config = tiny(epochs=3, augment="auto")
    whole = run_job(config, dataset, tmp_path / "whole", quiet=True, threads=1)
    with pytest.raises(Killed):
        run_job(config, dataset, tmp_path / "cut", quiet=True, threads=1, after_epoch=kill_after(1))
    resumed = run_job(config, dataset, tmp_path / "cut", quiet=True, threads=1)
    assert resumed["val_auc"] == whole["val_auc"]
    losses = [
        [r["train_loss"] for r in api.open_run(tmp_path / d).history] for d in ("whole", "cut")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 3
    a = np.load(tmp_path / "whole" / "predictions.npz")["test_scores"]
    b = np.load(tmp_path / "cut" / "predictions.npz")["test_scores"]
    np.testing.assert_array_equal(a, b)


def test_onnx_export_of_a_3d_run_matches_torch(finished, volume_file):
    pytest.importorskip("onnxruntime")
    from medclf.run.export_onnx import run_onnx

    done = api.export_onnx(finished, finished / "m.onnx")
    assert done["input_shape"] == ["n", 28, 28, 28]
    images = np.load(volume_file)["val_images"]
    _, torch_proba = predict_run(finished, images)
    onnx_proba = run_onnx((finished / "m.onnx").read_bytes(), images)
    np.testing.assert_allclose(onnx_proba, torch_proba, rtol=0, atol=1e-5)


# --- the genuine file ---------------------------------------------------------------------


@pytest.mark.skipif(
    not (SHARED / "adrenalmnist3d.npz").is_file(),
    reason="the genuine adrenalmnist3d.npz is not in ../shared/data",
)
def test_one_epoch_on_genuine_adrenalmnist3d(tmp_path):
    data = read_npz(SHARED / "adrenalmnist3d.npz", adrenal_info()).head(0.1)
    config = make_config(
        "torch-cnn3d", dataset=data.source, epochs=1, width=4, select="val_auc", seed=42
    )
    metrics = run_job(config, data, tmp_path / "run", quiet=True, threads=1)
    assert metrics["image_shape"] == [28, 28, 28] and metrics["n_test"] == 298
    assert 0 <= metrics["test_auc"] <= 1
