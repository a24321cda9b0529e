"""medclf robustness: MedMNIST-C's corruptions, each checked against its definition, and the
command on runs of every family (the clean row is the run's own test result)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import medclf
from conftest import medmnist_arrays, write_npz
from medclf.cli import cli
from medclf.data import corruptions as mc

REAL = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_real = pytest.mark.skipif(
    not (REAL / "breastmnist.npz").is_file(),
    reason="the genuine MedMNIST files in ../shared/data are absent",
)
OUTPUTS = ("robustness.csv", "robustness.json", "robustness.png", "robustness.pdf")


def rgb(value=128, n=4, side=28):
    return np.full((n, side, side, 3), value, dtype=np.uint8)


def smooth_images(n=6, side=28, seed=0):
    """Gray images with structure (a gradient and a bright disk), so blurs and noise show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side]
    out = []
    for _ in range(n):
        cy, cx = rng.integers(8, side - 8, 2)
        disk = ((y - cy) ** 2 + (x - cx) ** 2 < 25) * 120
        out.append(np.clip(40 + 3 * x + disk, 0, 255))
    return np.array(out, dtype=np.uint8)


# --- the corruptions against their definitions ---------------------------------------------------


def test_gaussian_noise_std_is_the_severity_parameter():
    rng = np.random.default_rng(0)
    out = mc.gaussian_noise(rgb(128, 50), 0.08, rng).astype(float)
    # truncation to uint8 lowers the mean by ~0.5; the spread is the parameter x 255
    assert np.std(out - 128) == pytest.approx(0.08 * 255, rel=0.03)


def test_gray_images_mix_the_per_channel_noise_as_pillow_does():
    # MedMNIST-C corrupts RGB and converts to L: independent channel noise is averaged
    gray = np.full((50, 28, 28), 128, dtype=np.uint8)
    out = mc.corrupt(gray, "pneumoniamnist", "gaussian_noise", 5, seed=0).astype(float)
    mixed = 0.08 * 255 * np.sqrt(0.299**2 + 0.587**2 + 0.114**2)
    assert out.shape == gray.shape and np.std(out) == pytest.approx(mixed, rel=0.05)


def test_to_gray_is_pillows_conversion():
    x = np.random.default_rng(1).integers(0, 256, (3, 9, 11, 3), dtype=np.uint8)
    pil = np.stack([np.asarray(Image.fromarray(img).convert("L")) for img in x])
    assert np.array_equal(mc.to_gray(x), pil)


def test_speckle_noise_grows_with_the_pixel():
    out = mc.speckle_noise(np.concatenate([rgb(50, 40), rgb(200, 40)]), 0.1, mc.rng_for(0, "s", 1))
    dark, bright = np.std(out[:40].astype(float)), np.std(out[40:].astype(float))
    assert dark == pytest.approx(0.1 * 50, rel=0.1) and bright == pytest.approx(0.1 * 200, rel=0.1)


def test_impulse_noise_flips_that_fraction_to_black_or_white():
    out = mc.impulse_noise(rgb(128, 50), 0.1, np.random.default_rng(0))
    flipped = (out == 0) | (out == 255)
    assert flipped.mean() == pytest.approx(0.1, abs=0.01)
    assert set(np.unique(out[~flipped])) == {128}
    assert (out[flipped] == 255).mean() == pytest.approx(0.5, abs=0.05)


def test_shot_noise_is_poisson_of_the_photon_count():
    mult, p = 100, 0.5
    out = mc.shot_noise(
        np.full((50, 28, 28, 3), 0.5 * 255, dtype=np.uint8), mult, np.random.default_rng(0)
    )
    unit = out / 255.0
    # Poisson(p * mult) / mult has variance p / mult (pixel 127 is p = 0.498)
    assert np.var(unit) == pytest.approx(p / mult, rel=0.08)


def test_gaussian_blur_kernel_is_torchvisions():
    # torchvision: sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8; k = 11 gives sigma 2.0
    k = mc.gaussian_kernel(11)
    t = np.arange(-5, 6)
    assert k.sum() == pytest.approx(1) and np.allclose(k, k[::-1])
    assert k[6] / k[5] == pytest.approx(np.exp(-0.5 / 2.0**2))
    # an impulse spreads to the outer product of the kernel (away from the edges)
    x = np.zeros((1, 28, 28, 3), dtype=np.uint8)
    x[0, 14, 14] = 255
    out = mc.gaussian_blur(x, 11, None)[0, 9:20, 9:20, 0]
    assert np.array_equal(out, np.rint(255 * np.outer(k, k)).astype(np.uint8))
    assert (t**2 * k).sum() < 2.0**2  # truncated at 5 taps a side: less than sigma^2


def test_motion_blur_follows_imagemagicks_kernel():
    kernel, offsets = mc.motion_kernel(5, 5, 0)
    assert len(kernel) == 11 and kernel.sum() == pytest.approx(1)
    assert kernel[0] > kernel[-1]  # one-sided Gaussian from the pixel itself
    assert offsets == [(0, j) for j in range(11)]  # angle 0: along the row
    _, diagonal = mc.motion_kernel(5, 5, 45)
    assert diagonal[-1] == (7, 7)  # ceil(10 sin 45 - 0.5)
    assert all(dy == dx for dy, dx in diagonal)
    # a vertical bar spreads along rows only, never down a column
    x = rgb(0, 1)
    x[0, :, 14] = 255
    out = mc.motion_blur(x, (5, 5), np.random.default_rng(0))
    assert (out[0] == out[0, :1]).all()


def test_contrast_and_brightness_are_pillows_enhancers():
    x = rgb(100, 1)
    x[0, :, 14:] = 200  # mean 150
    low = mc.contrast(x, 0.5, None)
    assert set(np.unique(low)) == {125, 175}  # mean + 0.5 (x - mean)
    assert set(np.unique(mc.brightness(x, 1.4, None))) == {140, 255}  # 280 clipped


def test_gamma_is_torchvisions_lookup_table():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, -1)
    out = mc.gamma(x, 1.6, None)
    expected = (255.999 * (np.arange(256) / 255) ** 1.6).astype(np.uint8)
    assert np.array_equal(out[0, ..., 0].ravel(), expected)


def test_pixelate_makes_blocks():
    x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 3), dtype=np.uint8)
    out = mc.pixelate(x, 0.5, None)  # 28 -> 14 -> 28: 2x2 blocks
    assert (out[:, ::2, ::2] == out[:, 1::2, 1::2]).all()
    assert not np.array_equal(out, x)


def test_every_table_entry_has_five_severities():
    for dataset, table in mc.TABLE.items():
        assert set(table) == set(mc.ALEXNET[dataset][1]), dataset
        for name, params in table.items():
            assert len(params) == 5, (dataset, name)
            assert name in mc.FUNCTIONS or name in mc.NOT_IMPLEMENTED, name


@pytest.mark.parametrize("dataset", ["breastmnist", "pneumoniamnist", "dermamnist", "octmnist"])
def test_each_corruption_keeps_uint8_is_seeded_and_grows_with_severity(dataset):
    gray = smooth_images()
    images = np.repeat(gray[..., None], 3, -1) if dataset == "dermamnist" else gray
    for name in mc.corruptions_of(dataset):
        if name in mc.NOT_IMPLEMENTED:
            continue
        one, five = (mc.corrupt(images, dataset, name, s, seed=3) for s in (1, 5))
        assert one.dtype == np.uint8 and one.shape == images.shape, name
        assert np.array_equal(one, mc.corrupt(images, dataset, name, 1, seed=3)), name
        change = [np.abs(c.astype(float) - images).mean() for c in (one, five)]
        assert change[0] < change[1], (name, change)


def test_the_seed_changes_random_corruptions():
    x = smooth_images()
    a, b = (mc.corrupt(x, "pneumoniamnist", "shot_noise", 3, seed=s) for s in (0, 1))
    assert not np.array_equal(a, b)


def test_summary_is_medmnistc_be_and_rbe():
    alex_clean, alex = mc.ALEXNET["breastmnist"]
    errors = {"pixelate": [0.2, 0.4], "motion_blur": [0.3, 0.3]}
    s = mc.summary(0.1, errors, "breastmnist")
    be = np.mean([0.3 / alex["pixelate"], 0.3 / alex["motion_blur"]])
    rbe = np.mean([0.2 / (alex[c] - alex_clean) for c in ("pixelate", "motion_blur")])
    assert s["be"] == pytest.approx(be) and s["rbe"] == pytest.approx(rbe)


# --- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def breast_file(tmp_path_factory):
    arrays = medmnist_arrays(n=(80, 20, 60), n_classes=2, seed=4)
    return write_npz(tmp_path_factory.mktemp("data") / "breastmnist.npz", arrays)


@pytest.fixture(scope="module")
def logreg_run(breast_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "logreg"
    return medclf.train("numpy-logreg", dataset=str(breast_file), epochs=2, out=out).path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def clean_equals_run(run_dir, result):
    test = json.loads((Path(run_dir) / "metrics.json").read_text())["metrics"]["test"]
    clean = result["rows"][0]
    assert (clean["corruption"], clean["severity"]) == ("none", 0)
    for k in ("acc", "auc", "balanced_acc"):
        assert clean[k] == pytest.approx(test[k], abs=1e-9), k


def test_cli_writes_the_table_figure_and_summary(logreg_run, tmp_path):
    result = invoke("robustness", logreg_run, "--out", tmp_path / "r", "--severities", "1-2")
    assert result.exit_code == 0, result.output
    assert "MedMNIST-C-style, not the official protocol" in result.output
    assert "rBE" in result.output
    rows = read_csv(tmp_path / "r" / "robustness.csv")
    assert list(rows[0]) == ["corruption", "severity", "acc", "auc", "balanced_acc"]
    assert (rows[0]["corruption"], rows[0]["severity"]) == ("none", "0")
    assert len(rows) == 1 + 7 * 2  # BreastMNIST's seven corruptions, two severities
    meta = json.loads((tmp_path / "r" / "robustness.json").read_text())
    assert meta["protocol"] == "MedMNIST-C-style" and meta["image_size"] == 28
    assert "not the official protocol" in meta["protocol_note"]
    assert meta["severities"] == [1, 2]
    with Image.open(tmp_path / "r" / "robustness.png") as png:
        assert min(png.info["dpi"]) >= 150
    assert (tmp_path / "r" / "robustness.pdf").read_bytes()[:4] == b"%PDF"


def test_clean_row_is_the_runs_own_test_result(logreg_run, tmp_path):
    result = medclf.api.robustness(logreg_run, tmp_path, "1", corruptions=["pixelate"])
    clean_equals_run(logreg_run, result)
    assert [r["corruption"] for r in result["rows"]] == ["none", "pixelate"]


def test_same_seed_same_table(logreg_run, tmp_path):
    a, b, c = (
        medclf.api.robustness(logreg_run, tmp_path / k, "3", seed=s, corruptions=["speckle_noise"])
        for k, s in (("a", 5), ("b", 5), ("c", 6))
    )
    assert a["rows"] == b["rows"]
    scores = [(r["auc"]) for r in (a["rows"][1], c["rows"][1])]
    assert scores[0] != scores[1]


def one_line_error(result, code=1):
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "Traceback" not in result.output


def copy_run(run_dir, to):
    import shutil

    return Path(shutil.copytree(run_dir, to))


@pytest.mark.parametrize("severities", ["0", "6", "3-1", "abc", "1-", ""])
def test_bad_severities_are_usage_errors(logreg_run, tmp_path, severities):
    result = invoke("robustness", logreg_run, "--out", tmp_path, "--severities", severities)
    one_line_error(result, 2)
    assert "severities" in result.output and not any(tmp_path.iterdir())


def test_bad_runs_and_outputs_are_refused_in_one_line(logreg_run, breast_file, tmp_path):
    out = tmp_path / "out"
    no_model = copy_run(logreg_run, tmp_path / "no_model")
    (no_model / "model.npz").unlink()
    no_preds = copy_run(logreg_run, tmp_path / "no_preds")
    (no_preds / "predictions.npz").unlink()
    damaged = copy_run(logreg_run, tmp_path / "damaged")
    (damaged / "metrics.json").write_text("{not json")
    three_d = copy_run(logreg_run, tmp_path / "three_d")
    meta = json.loads((three_d / "metrics.json").read_text())
    meta.update(dataset_name="adrenalmnist3d", image_shape=[28, 28, 28])
    (three_d / "metrics.json").write_text(json.dumps(meta))
    other = copy_run(logreg_run, tmp_path / "other")
    meta = json.loads((other / "metrics.json").read_text())
    (other / "metrics.json").write_text(json.dumps({**meta, "dataset_name": "mydata"}))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        ((no_model,), "model.npz"),
        ((no_preds,), "predictions.npz"),
        ((damaged,), "damaged"),
        ((three_d,), "3D"),
        ((other,), "MedMNIST-C has no corruptions for 'mydata'"),
        ((logreg_run, "--corruption", "fog"), "'fog' is not one of MedMNIST-C's"),
        ((logreg_run, "--corruption", "gaussian_noise"), "not one of MedMNIST-C's"),
        ((tmp_path / "missing",), "not a folder"),
    ]
    for args, says in cases:
        result = invoke("robustness", *args, "--out", out)
        one_line_error(result)
        assert says in result.output, result.output
        assert not out.exists(), args
    one_line_error(invoke("robustness", logreg_run, "--out", a_file / "sub"))
    one_line_error(invoke("robustness", logreg_run, "--out", a_file), 2)  # a file as --out
    assert not any((Path(logreg_run) / name).exists() for name in OUTPUTS)


def test_changed_data_is_refused(breast_file, tmp_path):
    data = tmp_path / "breastmnist.npz"
    data.write_bytes(Path(breast_file).read_bytes())
    run = medclf.train("numpy-logreg", dataset=str(data), epochs=1, out=tmp_path / "run").path
    write_npz(data, medmnist_arrays(n=(80, 20, 60), n_classes=2, seed=9))
    result = invoke("robustness", run, "--out", tmp_path / "r")
    one_line_error(result)
    assert "changed" in result.output and not (tmp_path / "r").exists()


@needs_real
@pytest.mark.parametrize("model", ["numpy-perceptron", "torch-logreg", "sklearn-logreg"])
def test_real_breastmnist_run_of_each_family(model, tmp_path):
    settings = {} if model.startswith("sklearn") else {"epochs": 2}
    data = str(REAL / "breastmnist.npz")
    run = medclf.train(model, dataset=data, out=tmp_path / "run", **settings).path
    result = medclf.api.robustness(run, tmp_path / "r", "1,5", corruptions=["brightness_down"])
    clean_equals_run(run, result)
    assert result["summary"]["rbe"] == pytest.approx(
        (
            np.mean([1 - r["balanced_acc"] for r in result["rows"][1:]])
            - result["summary"]["clean_error"]
        )
        / (mc.ALEXNET["breastmnist"][1]["brightness_down"] - mc.ALEXNET["breastmnist"][0])
    )


def test_clearing_a_run_folder_removes_its_stale_robustness(logreg_run, tmp_path):
    from medclf.run import folder

    run = copy_run(logreg_run, tmp_path / "run")
    medclf.api.robustness(run, None, "1", corruptions=["pixelate"])
    assert all((run / name).is_file() for name in OUTPUTS)
    folder.clear(run)  # what train --force does before another config's run
    assert not any((run / name).exists() for name in OUTPUTS)


def test_benchmark_robustness_adds_the_rbe_column(tmp_path):
    from medclf.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "breastmnist.npz", "breastmnist", 0.1, 0)
    out = tmp_path / "bench"
    args = ["benchmark", "--out", out, "--seeds", 1, "--model", "numpy-logreg", "--dataset", data]
    result = invoke(*args, "--robustness")
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "results.csv")
    for row in rows:
        meta = json.loads((out / "runs" / row["key"] / "robustness.json").read_text())
        assert float(row["robust_rbe"]) == pytest.approx(meta["summary"]["rbe"])
    assert "## Robustness (MedMNIST-C)" in (out / "benchmark.md").read_text()
    assert invoke(*args).exit_code == 0  # the same runs, reused, without --robustness
    assert "robust_rbe" not in read_csv(out / "results.csv")[0]
    assert "Robustness" not in (out / "benchmark.md").read_text()
