"""MLflow tracking: a run folder logged to a local store and read back with MlflowClient."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys

import pytest
from click.testing import CliRunner

from medclf.cli import cli

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before any import of mlflow
needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None,
    reason='needs the mlflow extra: pip install -e ".[mlflow]"',
)
STORES = ["folder", "sqlite"]
TRAIN_OUTPUT = []  # what `medclf train ... --mlflow` printed


def medclf(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished torch-logreg run folders (the second a copy under another name)."""
    top = tmp_path_factory.mktemp("runs")
    medclf("data", "synth", "--like", "octmnist", "--scale", "0.01", "--out", top / "synth.npz")
    out = medclf(
        "train",
        "torch-logreg",
        "--dataset",
        top / "synth.npz",
        "--epochs",
        2,
        "--quiet",
        "--out",
        top / "all" / "a",
        "--mlflow",
        top / "train-store",
    )
    shutil.copytree(top / "all" / "a", top / "all" / "b")
    TRAIN_OUTPUT.append(out)
    return top / "all"


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory):
    """One SQLite store for the module: creating its tables takes MLflow seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/m.db"


@pytest.fixture(scope="module", params=STORES)
def store(request, tmp_path_factory, sqlite_uri):
    if request.param == "sqlite":
        return sqlite_uri
    return str(tmp_path_factory.mktemp("folder") / "mlruns")


@pytest.fixture
def offline(monkeypatch):
    """Every attempt to open an internet connection is recorded and refused."""
    attempts = []
    connect = socket.socket.connect

    def refuse(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("network refused by the test")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def client(uri):
    from mlflow.tracking import MlflowClient

    from medclf.experiments.tracking import _store_uri

    return MlflowClient(tracking_uri=_store_uri(uri))


def all_runs(uri, name="medclf"):
    c = client(uri)
    experiment = c.get_experiment_by_name(name)
    return c.search_runs([experiment.experiment_id]) if experiment else []


def artifact_files(c, run_id, path=None):
    files = []
    for info in c.list_artifacts(run_id, path):
        files += artifact_files(c, run_id, info.path) if info.is_dir else [info.path]
    return files


@needs_mlflow
def test_logged_run_reads_back_with_everything(runs, store, offline):
    from medclf.experiments.tracking import log_run_folder

    run_dir = runs / "a"
    run_id = log_run_folder(run_dir, store)
    assert offline == []
    c = client(store)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"

    config = json.loads((run_dir / "config.json").read_text())
    expected = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    assert run.data.params == expected

    history = json.loads((run_dir / "history.json").read_text())
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "val_auc"):
        points = sorted((m.step, m.value) for m in c.get_metric_history(run_id, key))
        assert points == [(rec["epoch"], pytest.approx(rec[key])) for rec in history], key

    metrics = json.loads((run_dir / "metrics.json").read_text())
    logged = run.data.metrics
    assert logged["test_acc"] == pytest.approx(metrics["test_acc"])
    assert logged["test_auc"] == pytest.approx(metrics["test_auc"])
    assert logged["selected_val_auc"] == pytest.approx(metrics["val_auc"])
    for name in ("balanced_acc", "macro_f1", "ece"):
        assert logged[f"test_{name}"] == pytest.approx(metrics["metrics"]["test"][name])

    files = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
    assert "model.pt" in files and "predictions.npz" in files and "confusion.png" in files
    assert sorted(artifact_files(c, run_id)) == files

    env = json.loads((run_dir / "env.json").read_text())
    from medclf.data.fetch import file_md5

    tags = run.data.tags
    assert tags["medclf.run_key"] == "a" and tags["medclf.run_dir"] == str(run_dir.resolve())
    assert tags["medclf.model"] == "torch-logreg" and tags["medclf.dataset"] == "octmnist"
    assert tags["medclf.data"] == "synthetic" and tags["medclf.status"] == "done"
    assert tags["medclf.dataset_md5"] == file_md5(runs.parent / "synth.npz")
    assert tags["medclf.torch_version"] == env["torch"]
    assert tags["medclf.precision"] == env["precision"]  # what ran, beside the param asked
    assert tags["medclf.numpy_version"] == env["numpy"]
    assert tags["medclf.machine"] == env["machine"]

    assert log_run_folder(run_dir, store) == run_id  # idempotent
    assert [r.info.run_id for r in all_runs(store)] == [run_id]


@needs_mlflow
def test_train_logs_its_run_with_mlflow_option(runs):
    last = TRAIN_OUTPUT[0].strip().splitlines()[-1]
    assert last.startswith("MLflow run ")
    run_id = last.split()[2]
    run = client(str(runs.parent / "train-store")).get_run(run_id)
    assert run.data.tags["medclf.run_key"] == "a" and run.data.metrics["test_auc"] > 0


@needs_mlflow
def test_export_logs_every_run_below_a_folder(runs, sqlite_uri):
    out = medclf("export", "mlflow", runs, "--uri", sqlite_uri, "--experiment", "exported")
    assert "2 run(s)" in out
    logged = all_runs(sqlite_uri, "exported")
    assert sorted(r.data.tags["medclf.run_key"] for r in logged) == ["a", "b"]
    medclf("export", "mlflow", runs / "b", "--uri", sqlite_uri, "--experiment", "exported")
    assert len(all_runs(sqlite_uri, "exported")) == 2


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    (tmp_path / "run" / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    result = CliRunner().invoke(cli, ["export", "mlflow", str(tmp_path), "--uri", "x"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and 'pip install -e ".[mlflow]"' in lines[0], result.output


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("bogus://x", "has a scheme medclf does not log to"),
        ("sqlite:///{runs}/a/metrics.json", "exists and is not an SQLite database"),
        ("sqlite:////no/such/folder/m.db", "does not exist; create it"),
        ("{runs}/a/metrics.json", "is a file, not a folder"),
    ],
)
def test_a_store_mlflow_cannot_open_is_refused_before_anything(runs, tmp_path, uri, message):
    uri = uri.format(runs=runs)
    for args in (
        ["export", "mlflow", str(runs / "a"), "--uri", uri],
        [
            "train",
            "torch-logreg",
            "--dataset",
            str(runs.parent / "synth.npz"),
            "--out",
            str(tmp_path / "never"),
            "--mlflow",
            uri,
        ],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "never").exists()  # refused before training
