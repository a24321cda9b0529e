"""ONNX export: train tiny runs through the CLI, export them, run the file with onnxruntime
alone on the test images and compare with the run's saved probabilities."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is missing: pip install -e '.[onnx]'")
pytest.importorskip("onnx", reason="onnx is missing: pip install -e '.[onnx]'")

from medclf.cli import cli  # noqa: E402
from medclf.data.load import load_dataset  # noqa: E402
from medclf.data.synthetic import write_synthetic  # noqa: E402

TINY = {
    "numpy-logreg": ["--epochs", "1"],
    "numpy-mlp": ["--epochs", "1", "--hidden-size", "16"],
    "numpy-perceptron": ["--epochs", "1"],
    "torch-ffn": ["--epochs", "1", "--hidden-size", "16"],
    "torch-cnn": ["--epochs", "1", "--width", "8"],
    "sklearn-logreg": [],
}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    write_synthetic(root / "breast.npz", "breastmnist", 0.1, 0)
    write_synthetic(root / "chest.npz", "chestmnist", 0.005, 0)
    return root


def train(data, model, dataset="breast.npz", name=None):
    out = data / (name or model)
    if not (out / "metrics.json").exists():
        result = invoke(
            "train", model, "--dataset", data / dataset, "--out", out, "--quiet", *TINY[model]
        )
        assert result.exit_code == 0, result.output
    return out


def onnx_proba(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, outp.name) == ("images", "tensor(uint8)", "probabilities")
    return session.run(None, {"images": images})[0].astype(np.float64)


def check_export(run, dataset, spelling):
    out = run.parent / f"{run.name}.onnx"
    args = (
        ["export", run, "--format", "onnx", "--out", out]
        if spelling == "format"
        else ["export", "onnx", run, "--out", out]
    )
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 1 and "test images" in result.output
    images = load_dataset(dataset).test.images
    expected = np.load(run / "predictions.npz")["test_scores"]
    got = onnx_proba(out, images)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5
    assert np.allclose(onnx_proba(out, images[:1]), got[:1], atol=1e-6)  # any batch size
    return got


@pytest.mark.parametrize("model", list(TINY))
def test_export_matches_saved_probabilities(data, model):
    spelling = "format" if model.startswith("numpy") else "subcommand"
    got = check_export(train(data, model), data / "breast.npz", spelling)
    assert np.allclose(got.sum(axis=1), 1, atol=1e-5)  # a softmax


def test_multi_label_exports_sigmoids(data):
    run = train(data, "torch-ffn", "chest.npz", name="chest-ffn")
    got = check_export(run, data / "chest.npz", "subcommand")
    assert got.shape[1] == 14 and not np.allclose(got.sum(axis=1), 1)  # one sigmoid per label


def test_graph_that_disagrees_is_refused_and_nothing_written(data, tmp_path):
    run = shutil.copytree(train(data, "numpy-logreg"), tmp_path / "run")
    with np.load(run / "predictions.npz") as npz:
        preds = {k: npz[k] for k in npz.files}
    preds["test_scores"] = preds["test_scores"][:, ::-1].copy()  # not what the model gives
    np.savez(run / "predictions.npz", **preds)
    result = invoke("export", "onnx", run)
    assert result.exit_code == 1
    assert "no file written" in result.output and len(result.output.strip().splitlines()) == 1
    assert not [p for p in run.iterdir() if "onnx" in p.name]


def test_missing_dataset_checks_random_images(data, tmp_path):
    run = shutil.copytree(train(data, "numpy-mlp"), tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["dataset_source"] = str(tmp_path / "gone.npz")
    (run / "metrics.json").write_text(json.dumps(metrics))
    result = invoke("export", "onnx", run)
    assert result.exit_code == 0 and "random images" in result.output and "is gone" in result.output
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    from medclf.run.predict import predict_run

    assert np.abs(onnx_proba(run / "model.onnx", images) - predict_run(run, images)[1]).max() < 1e-5


@pytest.mark.parametrize("damage", ["model", "metrics", "missing"])
def test_damaged_run_folder_is_one_line(data, tmp_path, damage):
    run = shutil.copytree(train(data, "torch-ffn"), tmp_path / "run")
    if damage == "model":
        (run / "model.pt").write_bytes(b"not a state dict")
    elif damage == "metrics":
        (run / "metrics.json").write_text("{")
    else:
        (run / "model.pt").unlink()
    result = invoke("export", run, "--format", "onnx")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output and not (run / "model.onnx").exists()


def test_usage_errors_and_unsupported_models(data, tmp_path):
    run = train(data, "numpy-logreg")
    for args, words in [
        ((run,), "no --format"),
        ((run, "--format", "pdf"), "unknown format"),
        ((tmp_path / "none", "--format", "onnx"), "not a folder"),
    ]:
        result = invoke("export", *args)
        assert result.exit_code != 0 and words in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    svm = shutil.copytree(run, tmp_path / "svm")  # the config names a model without a graph
    config = json.loads((svm / "config.json").read_text())
    config = {
        k: v
        for k, v in config.items()
        if k in ("dataset", "size", "test_split", "seed", "train_fraction", "select", "patience")
    }
    (svm / "config.json").write_text(
        json.dumps({**config, "model": "sklearn-svm", "C": 1.0, "gamma": "scale"})
    )
    result = invoke("export", "onnx", svm)
    assert result.exit_code == 1 and "sklearn-logreg and sklearn-rf" in result.output


def test_missing_extra_is_one_line(data, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    result = invoke("export", "onnx", train(data, "numpy-logreg"))
    assert result.exit_code == 1 and 'pip install -e ".[onnx]"' in result.output
