"""medclf explain: attribution maps checked on hand-made models that look at one pixel region
only (each method must light up that region and nothing else), the linear models' weight
images against their saved weights, 3D volumes, and bad input refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from medclf.cli import cli
from medclf.report.explain import attribute, methods_of, to_image_space

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
real_data = pytest.mark.skipif(
    not (REAL / "pneumoniamnist.npz").exists(),
    reason="the genuine MedMNIST files in ../shared/data are absent",
)


def medclf(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class Region(nn.Module):
    """Class 1's score is the sum of a conv layer's outputs over one region of the image (the
    mask applied before the layer, so nothing outside the region reaches it); class 0's is
    its negative. A stride-2 conv: Grad-CAM's map is coarser than the image, as in real nets."""

    def __init__(self, mask: torch.Tensor, dims: int):
        super().__init__()
        self.register_buffer("mask", mask)
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv = conv(1, 2, 2, stride=2, bias=False).double()
        nn.init.constant_(self.conv.weight, 0.5)

    def forward(self, x):
        s = self.conv(x * self.mask).flatten(1).sum(1)
        return torch.stack([-s, s], 1)


def region_case(dims: int, side: int = 12):
    inside = (slice(None), slice(None), *[slice(4, 8)] * dims)
    mask = torch.zeros((1, 1, *(side,) * dims), dtype=torch.float64)
    mask[inside] = 1
    x = torch.rand((3, 1, *(side,) * dims), generator=torch.Generator().manual_seed(0))
    return Region(mask, dims).eval(), x.double() * 0.5 + 0.5, inside[1:]  # positive pixels


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("method", ["gradcam", "saliency", "integrated-gradients"])
def test_each_method_lights_up_the_region_the_model_looks_at(dims, method):
    net, X, inside = region_case(dims)
    assert "gradcam" in methods_of(net) and "weights" not in methods_of(net)
    raw = attribute(net, X, np.ones(len(X), int), method, -torch.ones_like(X))
    maps = to_image_space(raw, X.shape[2:], "image", method)
    assert maps.shape == (3, *X.shape[2:])  # one value per pixel (voxel)
    region = maps[(slice(None), *inside[1:])]
    assert (region > 0).all()  # the whole region lights up
    assert np.abs(maps).max() == np.abs(region).max()
    # nothing else: exactly, for the gradients; Grad-CAM's 2x2 cells are upsampled
    # (bilinear), which blurs them into the pixels next to the region, no further
    margin = 2 if method == "gradcam" else 0
    near = (slice(None), *[slice(4 - margin, 8 + margin)] * dims)
    far = np.abs(maps).copy()
    far[near] = 0
    assert far.max() == 0


def test_a_linear_models_weight_image_is_its_weights():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Linear(28 * 28 + 1, 3)).double()
    assert methods_of(linear)[0] == "weights" and "gradcam" not in methods_of(linear)
    X = torch.rand(4, 28 * 28 + 1, dtype=torch.float64)
    raw = attribute(linear, X, np.array([0, 2, 1, 2]), "weights", None)
    maps = to_image_space(raw, (28, 28), "flat+bias", "weights")
    W = linear[0].weight.detach().numpy()
    assert np.array_equal(maps[1], W[2, :-1].reshape(28, 28))  # bias column dropped, exact
    assert np.array_equal(maps[2], W[1, :-1].reshape(28, 28))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_file):
    top = tmp_path_factory.mktemp("explain")
    settings = {
        "torch-cnn": ("--epochs", 1, "--width", 4),
        "numpy-logreg": ("--epochs", 1),
        "torch-ffn": ("--epochs", 1, "--hidden-size", 16),
        "sklearn-logreg": (),
    }
    for model, extra in settings.items():
        result = medclf(
            "train", model, "--dataset", synth_file, *extra, "--quiet", "--out", top / model
        )
        assert result.exit_code == 0, result.output
    return top


def test_cnn_explained_with_every_method(tmp_path, runs):
    for method in ("gradcam", "saliency", "integrated-gradients"):
        out = tmp_path / f"{method}.png"
        result = medclf(
            "explain", runs / "torch-cnn", "--method", method, "--images", 3, "--out", out
        )
        assert result.exit_code == 0, result.output
        with Image.open(out) as image:
            assert min(image.info["dpi"]) >= 150
        assert out.with_suffix(".pdf").stat().st_size > 1000
    result = medclf(
        "explain", runs / "torch-cnn", "--index", 5, "--index", 0, "--out", tmp_path / "i.pdf"
    )
    assert result.exit_code == 0 and "gradcam" in result.output  # the conv net's default
    assert (tmp_path / "i.png").is_file()


def test_numpy_logreg_weight_images_are_its_saved_weights(runs):
    import medclf.api as api
    from medclf.models.numpy_models import load_model

    result = api.explain(runs / "numpy-logreg", images=6)
    W = load_model(runs / "numpy-logreg" / "model.npz").W_
    assert result["method"] == "weights"
    for attr, c in zip(result["attributions"], result["targets"], strict=True):
        assert np.array_equal(attr, W[c, :-1].reshape(28, 28))
    # the classes in turn: six images of a four-class split show every class
    labels = result["labels"].reshape(-1)
    assert set(labels) == {0, 1, 2, 3}
    assert list(result["targets"]) == list(
        api.open_run(runs / "numpy-logreg").predict(result["images"])
    )


def test_a_numpy_model_that_looks_at_one_region_lights_it_up(tmp_path, runs):
    """End to end: the saved logistic regression's weights zeroed outside one region."""
    import shutil

    import medclf.api as api
    from medclf.models.numpy_models import load_model

    run = tmp_path / "region"
    shutil.copytree(runs / "numpy-logreg", run)
    model = load_model(run / "model.npz")
    keep = np.zeros((28, 28), bool)
    keep[5:12, 14:22] = True
    model.W_[:, :-1] *= keep.reshape(-1)
    model.save(run / "model.npz")
    for method in ("weights", "saliency", "integrated-gradients"):
        maps = api.explain(run, images=4, method=method)["attributions"]
        assert np.abs(maps[:, ~keep]).max() == 0 and np.abs(maps[:, keep]).max() > 0, method


def test_mlp_gets_saliency_and_refuses_gradcam(tmp_path, runs):
    result = medclf("explain", runs / "torch-ffn", "--images", 2, "--out", tmp_path / "f.png")
    assert result.exit_code == 0 and "saliency" in result.output
    result = medclf(
        "explain", runs / "torch-ffn", "--method", "gradcam", "--out", tmp_path / "g.png"
    )
    assert result.exit_code == 1 and "no convolution layer" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "g.png").exists()


def test_without_captum_explain_says_how_to_install_it(tmp_path, runs, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "captum", None)  # import captum raises ImportError
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    result = medclf("explain", runs / "torch-cnn", "--out", tmp_path / "x.png")
    one_line_refusal(result)
    assert "medclf[explain]" in result.output and not list(tmp_path.iterdir())


def one_line_refusal(result, code=1):
    assert result.exit_code == code, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, runs):
    cnn, out = runs / "torch-cnn", tmp_path / "x.png"
    cases = [
        (("--index", 10**6), 1, "out of range"),
        (("--images", 0), 2, "--images"),
        (("--images", 10**6), 2, "--images"),
        (("--method", "lime"), 2, "lime"),
        (("--images", 2, "--index", 1), 2, "not both"),
        (("--split", "train"), 2, "train"),
    ]
    for args, code, words in cases:
        result = medclf("explain", cnn, *args, "--out", out)
        one_line_refusal(result, code)
        assert words in result.output, result.output
    result = medclf("explain", runs / "sklearn-logreg", "--out", out)
    one_line_refusal(result)
    assert "no gradients" in result.output and "torch-cnn" in result.output
    for bad in (tmp_path / "missing" / "x.png", tmp_path / "x.txt"):
        one_line_refusal(medclf("explain", cnn, "--out", bad))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("damage", ["no predictions", "no model", "bad metrics", "no folder"])
def test_a_damaged_run_folder_is_one_line(tmp_path, runs, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "torch-cnn", run)
    if damage == "no predictions":
        (run / "predictions.npz").unlink()
    elif damage == "no model":
        (run / "model.pt").unlink()
    elif damage == "bad metrics":
        (run / "metrics.json").write_text("{not json")
    else:
        shutil.rmtree(run)
    result = medclf("explain", run, "--out", tmp_path / "x.png")
    one_line_refusal(result)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.pdf").exists()


def test_a_volume_is_drawn_as_its_middle_slices():
    from medclf.plots import attribution_figure

    net, X, _ = region_case(3)
    raw = attribute(net, X, np.ones(len(X), int), "gradcam", None)
    maps = to_image_space(raw, X.shape[2:], "image", "gradcam")
    volumes = (X[:, 0].numpy() * 255).astype(np.uint8)
    fig = attribution_figure(volumes, maps, ["a", "b", "c"], "gradcam", "3D")
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 3 * 3 * 2  # per volume, three slices, each with its map
    assert drawn[1].images[-1].get_array().shape == (12, 12)


@real_data
def test_pneumoniamnist_cnn_is_explained(tmp_path):
    import medclf.api as api

    run = tmp_path / "run"
    data = REAL / "pneumoniamnist.npz"
    api.train("torch-cnn", dataset=str(data), epochs=1, width=4, train_fraction=0.2, out=run)
    result = medclf("explain", run, "--images", 4, "--out", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert "gradcam" in result.output and (tmp_path / "p.pdf").is_file()


def test_an_ensemble_has_no_network_of_its_own_and_says_so(tmp_path, runs):
    ens = tmp_path / "ens"
    made = medclf("ensemble", runs / "torch-cnn", runs / "torch-ffn", "--out", ens)
    assert made.exit_code == 0, made.output
    result = medclf("explain", ens, "--out", tmp_path / "x.png")
    one_line_refusal(result)  # was a KeyError traceback: 'ensemble' is no registry model
    assert "no network of its own" in result.output and "member runs" in result.output
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.pdf").exists()
