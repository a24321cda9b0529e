"""Issue 21 §4: a 3D run goes through everything a 2D run does, unchanged: run folder, evaluate,
runs, the Python API, tune, MLflow, ensemble and ONNX (Ray: tests/test_ray_backend.py).
Synthetic AdrenalMNIST3D look-alike volumes (28³, a few dozen), one or two epochs."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from medclf import api
from medclf.cli import cli

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


def medclf(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    top = tmp_path_factory.mktemp("three-d")
    return api.synthesize("adrenalmnist3d", top / "adrenalmnist3d.npz", scale=0.04, seed=1)


@pytest.fixture(scope="module")
def runs(volumes):
    top = volumes.parent / "runs"
    cnn = api.train("torch-cnn3d", dataset=str(volumes), epochs=1, out=top / "cnn3d", seed=42)
    flat = api.train("torch-logreg", dataset=str(volumes), epochs=2, out=top / "logreg", seed=42)
    flat2 = api.train("torch-logreg", dataset=str(volumes), epochs=2, out=top / "logreg2", seed=7)
    return {"cnn3d": cnn, "logreg": flat, "logreg2": flat2, "top": top}


def test_a_3d_run_folder_records_volumes_and_evaluates_like_sklearn(runs):
    for name in ("cnn3d", "logreg"):
        run = runs[name]
        metrics = json.loads((run.path / "metrics.json").read_text())
        assert metrics["image_shape"] == [28, 28, 28]
        saved = np.load(run.path / "predictions.npz")
        labels, scores = saved["test_labels"].ravel(), saved["test_scores"]
        assert run.evaluate("test")["auc"] == pytest.approx(roc_auc_score(labels, scores[:, 1]))


def test_runs_lists_the_3d_runs(runs):
    rows = {r["run"]: r for r in api.list_runs(runs["top"])}
    assert {"cnn3d", "logreg", "logreg2"} <= {os.path.basename(k) for k in rows}


def test_the_api_predicts_volumes_as_saved(runs, volumes):
    from medclf.data.load import load_dataset

    test = load_dataset(volumes).split("test")
    for name in ("cnn3d", "logreg"):
        saved = np.load(runs[name].path / "predictions.npz")["test_scores"]
        probs = runs[name].predict_proba(test.images)
        assert np.allclose(probs, saved, atol=1e-5)


def test_a_ragged_list_of_volumes_is_refused_naming_the_volume_shape(runs):
    from medclf.errors import InputError

    volume = np.zeros((28, 28, 28), np.uint8)
    with pytest.raises(InputError, match=r"one uint8 array \(n, 28, 28, 28\) \("):
        runs["cnn3d"].predict([volume, volume[:3]])


def test_a_3d_ensemble_and_its_onnx_graph(runs, tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra")
    out = runs["top"] / "ensemble"
    ensemble = api.ensemble([runs["logreg"].path, runs["logreg2"].path], out)
    a = np.load(runs["logreg"].path / "predictions.npz")["test_scores"]
    b = np.load(runs["logreg2"].path / "predictions.npz")["test_scores"]
    assert np.allclose(np.load(out / "predictions.npz")["test_scores"], (a + b) / 2)
    assert api.export_onnx(ensemble.path, tmp_path / "e.onnx")["max_delta"] < 1e-4
    exported = api.export_onnx(runs["cnn3d"].path, tmp_path / "c.onnx")
    assert exported["max_delta"] < 1e-4 and exported["input_shape"] == ["n", 28, 28, 28]


def test_tune_searches_a_3d_model(volumes, tmp_path):
    pytest.importorskip("optuna", reason="medclf tune needs the tune extra")
    args = ["--model", "torch-logreg", "--trials", 2, "--epochs", 1, "--out", tmp_path / "tune"]
    medclf("tune", "--dataset", volumes, *args)
    trials = list(csv.DictReader((tmp_path / "tune" / "trials.csv").open()))
    assert len(trials) == 2 and all(t["state"] == "COMPLETE" for t in trials)
    for t in trials:  # each trial's value is its own 3D run's kept val_auc
        metrics = json.loads((Path(t["run_dir"]) / "metrics.json").read_text())
        assert metrics["image_shape"] == [28, 28, 28]
        assert float(t["value"]) == pytest.approx(metrics["val_auc"])


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="needs the mlflow extra")
def test_3d_runs_log_to_mlflow(runs, tmp_path):
    from mlflow.tracking import MlflowClient

    from medclf.experiments.tracking import _store_uri

    uri = str(tmp_path / "mlruns")
    logged = api.export_mlflow([runs["cnn3d"].path, runs["logreg"].path], uri)
    assert len(logged) == 2
    client = MlflowClient(tracking_uri=_store_uri(uri))
    for _, run_id in logged:
        params = client.get_run(run_id).data.params
        assert params["model"] in ("torch-cnn3d", "torch-logreg")
