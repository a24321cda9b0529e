"""`medclf train` end to end on a synthetic file: progress, run folder, errors."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import Killed, kill_after
from medclf.cli import cli
from medclf.models.numpy_models import load_model


def train(*args):
    return CliRunner().invoke(cli, ["train", *[str(a) for a in args]])


@pytest.mark.parametrize("model", ["numpy-perceptron", "numpy-logreg", "numpy-mlp"])
def test_numpy_models_write_a_complete_run_folder(tmp_path, synth_file, model):
    out = tmp_path / model
    result = train(model, "--dataset", synth_file, "--epochs", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert "epoch   2" in result.output and "test accuracy" in result.output
    assert "synthetic" in result.output
    for name in (
        "config.json",
        "env.json",
        "history.json",
        "history.csv",
        "metrics.json",
        "model.npz",
        "accuracy.png",
    ):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == model and config["seed"] == 42 and config["dtype"] == "float64"
    history = json.loads((out / "history.json").read_text())
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(history) == len(rows) == 2
    assert float(rows[1]["val_acc"]) == pytest.approx(history[1]["val_acc"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_split"] == "study" and metrics["n_test"] == 529 and metrics["synthetic"]
    # the saved model reproduces the recorded test accuracy
    from medclf.data.features import make_features
    from medclf.data.load import load_dataset

    f = make_features(load_dataset(synth_file), bias=model != "numpy-mlp")
    assert load_model(out / "model.npz").score(f.X_test, f.y_test) == metrics["test_acc"]


def test_mlp_flags_and_quiet(tmp_path, synth_file):
    out = tmp_path / "mlp"
    result = train(
        "numpy-mlp",
        "--dataset",
        synth_file,
        "--epochs",
        1,
        "--hidden-size",
        16,
        "--lr",
        0.01,
        "--dtype",
        "float32",
        "--test-split",
        "official",
        "--quiet",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "epoch" not in result.output
    model = load_model(out / "model.npz")
    assert model.weights_[0].shape == (16, 784) and model.weights_[0].dtype == np.float32
    assert json.loads((out / "metrics.json").read_text())["n_test"] == 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["numpy-perceptron", "--lr", "0.1"], "has no setting 'lr'"),
        (["numpy-logreg", "--lr", "-1"], "lr == -1.0, must be > 0"),
        (["numpy-mlp", "--epochs", "0"], "epochs == 0"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, synth_file, args, message):
    result = train(*args, "--dataset", synth_file, "--out", tmp_path / "x")
    assert result.exit_code == 2 and message in result.output  # a usage error, as click's
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("model", ["numpy-logreg", "numpy-mlp"])
def test_numpy_run_killed_and_resumed_equals_uninterrupted(tmp_path, synth_file, model):
    from medclf.data.load import load_dataset
    from medclf.errors import ConfigError
    from medclf.models.config import make_config
    from medclf.run.lifecycle import run_job as run_numpy

    ds = load_dataset(synth_file)
    config = make_config(model, epochs=3, **({"hidden_size": 16} if model == "numpy-mlp" else {}))
    whole = run_numpy(config, ds, tmp_path / "whole", quiet=True)

    with pytest.raises(Killed):
        run_numpy(config, ds, tmp_path / "killed", quiet=True, after_epoch=kill_after(2))
    assert (tmp_path / "killed" / "checkpoint.npz").exists()
    with pytest.raises(ConfigError, match="pass --resume"):
        run_numpy(config, ds, tmp_path / "killed", quiet=True, resume=False)
    resumed = run_numpy(config, ds, tmp_path / "killed", quiet=True)
    assert resumed["test_acc"] == whole["test_acc"]
    a, b = (load_model(tmp_path / d / "model.npz") for d in ("whole", "killed"))
    for key, value in a.params().items():
        np.testing.assert_array_equal(b.params()[key], value)
    h = [json.loads((tmp_path / d / "history.json").read_text()) for d in ("whole", "killed")]
    assert [r["train_loss"] for r in h[0]] == [r["train_loss"] for r in h[1]]
    assert not (tmp_path / "killed" / "checkpoint.npz").exists()
