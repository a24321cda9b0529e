"""`medclf benchmark`: a grid through the reproduce runner, results.csv and both reports,
resumption after a kill, failed runs shown as failed; presets as data."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from medclf.cli import cli
from medclf.experiments.benchmark import grid
from medclf.models.registry import PRESETS


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    from medclf.data.synthetic import write_synthetic

    folder = tmp_path_factory.mktemp("bench-data")
    return (
        write_synthetic(folder / "breastmnist.npz", "breastmnist", 0.1, 0),
        write_synthetic(folder / "chestmnist.npz", "chestmnist", 0.005, 1),
    )


def rows_of(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "results.csv").open()))


def test_benchmark_writes_results_and_reports_and_marks_failures(tmp_path, tiny_files, monkeypatch):
    from medclf.run import family_torch

    def boom(self, *args, **kwargs):
        raise RuntimeError("boom in training")

    monkeypatch.setattr(family_torch.TorchTrainer, "fit", boom)  # every torch run fails
    out = tmp_path / "bench"
    args = [
        "benchmark",
        "--out",
        out,
        "--seeds",
        2,
        "--model",
        "torch-logreg",
        "--model",
        "numpy-logreg",
        "--dataset",
        tiny_files[0],
    ]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1, result.output  # failed runs: a non-zero exit
    rows = rows_of(out)
    assert list(rows[0])[:10] == [
        "dataset",
        "model",
        "preset",
        "seed",
        "status",
        "val_acc",
        "val_auc",
        "test_acc",
        "test_auc",
        "seconds",
    ]
    assert len(rows) == 4
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["model"] for r in failed} == {"torch-logreg"} and len(failed) == 2
    assert "boom in training" in failed[0]["error"]
    done = [r for r in rows if r["status"] == "done"]
    for row in done:  # each number comes from the run folder's own metrics.json
        metrics = json.loads((out / "runs" / row["key"] / "metrics.json").read_text())
        assert float(row["test_auc"]) == pytest.approx(metrics["test_auc"])
    md = (out / "benchmark.md").read_text()
    assert "synthetic" in md and "failed" in md
    html = (out / "benchmark.html").read_text()
    assert "<table" in html and "http://" not in html.split("<body")[0]
    assert (out / "benchmark.png").stat().st_size > 1000
    # each finished model's curves, drawn from its first run's predictions and inlined
    curves = sorted(out.glob("curves/*/curves.png"))
    assert len(curves) == 1 and curves[0].parent.name in {r["key"] for r in done}
    assert "## Curves and calibration" in md and md.count("](curves/") == len(curves)
    assert 'src="curves/' not in html and html.count("data:image/png") == 1 + len(curves)


def test_a_killed_benchmark_resumes_without_redoing_finished_runs(tmp_path, tiny_files):
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        "-m",
        "medclf.cli",
        "benchmark",
        "--out",
        str(out),
        "--seeds",
        "3",
        "--model",
        "torch-ffn",
        "--dataset",
        str(tiny_files[0]),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("runs/*/metrics.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = list(out.glob("runs/*/metrics.json"))
    assert first, "no run finished before the kill"
    stamps = {p: p.stat().st_mtime_ns for p in first}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # not redone
    rows = rows_of(out)
    assert len(rows) == 3 and all(r["status"] == "done" for r in rows)


def test_presets_are_data_and_the_grid_is_keyed_by_config():
    entries = grid(["a.npz"], ["torch-cnn", "numpy-logreg"], "paper", 2)
    assert len(entries) == 4 and len({e["key"] for e in entries}) == 4
    cnn = entries[0]["config"]
    for key, value in PRESETS["paper"]["torch-cnn"].items():
        assert cnn[key] == value
    assert cnn["select"] == "val_auc" and [e["seed"] for e in entries[:2]] == [42, 43]
    assert entries[2]["config"]["select"] == "val_auc"  # models without a preset too


def test_the_progress_bar_counts_a_model_without_epochs_as_one(tmp_path):
    # scikit-learn configs have no "epochs": the default zoo's sklearn-svm once broke the bar
    from medclf.experiments.runner import EpochBar

    entries = grid(["a.npz"], ["sklearn-svm", "torch-ffn"], "fast", 1)
    bar = EpochBar(entries, tmp_path, progress=False)
    try:
        assert bar.bar.total == 1 + entries[1]["config"]["epochs"]
        bar.end({**entries[0], "status": "done"})
        assert bar.done[entries[0]["key"]] == 1
    finally:
        bar.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "'nope' is not one of"),
        (["--preset", "slow"], "'slow' is not one of"),
        (["--seeds", "0"], "0 is not in the range"),
    ],
)
def test_bad_benchmark_options_are_one_line(tmp_path, tiny_files, args, message):
    result = CliRunner().invoke(
        cli, ["benchmark", "--dataset", str(tiny_files[0]), "--out", str(tmp_path / "b"), *args]
    )
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_benchmark_logs_its_runs_to_mlflow(tmp_path, tiny_files):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'ml.db'}"
    result = CliRunner().invoke(
        cli,
        [
            "benchmark",
            "--dataset",
            str(tiny_files[0]),
            "--model",
            "numpy-logreg",
            "--seeds",
            "2",
            "--out",
            str(tmp_path / "b"),
            "--mlflow",
            store,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "logged 2 run folder(s) to MLflow" in result.output
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("medclf").experiment_id])
    keys = {r.data.tags["medclf.run_key"] for r in runs}
    assert keys == {row["key"] for row in rows_of(tmp_path / "b")}


def test_a_dataset_named_twice_runs_once_and_bad_grids_fail_before_training(tmp_path, tiny_files):
    out = tmp_path / "twice"
    result = CliRunner().invoke(
        cli,
        [
            "benchmark",
            "--dataset",
            str(tiny_files[0]),
            "--dataset",
            str(tiny_files[0]),
            "--model",
            "numpy-logreg",
            "--seeds",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(rows_of(out)) == 1
    for args, message in (
        (["--dataset", str(tmp_path / "missing.npz")], "is neither a dataset name nor"),
        (["--dataset", str(tiny_files[1]), "--model", "numpy-logreg"], "cannot learn"),
    ):
        bad = CliRunner().invoke(cli, ["benchmark", *args, "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 1 and message in bad.output and "Traceback" not in bad.output
        assert len(bad.output.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()  # refused before any folder or training


def bench(out: Path, *datasets, model: str = "sklearn-logreg"):
    args = ["benchmark", "--out", str(out), "--model", model, "--seeds", "1"]
    for dataset in datasets:
        args += ["--dataset", str(dataset)]
    return CliRunner().invoke(cli, args)


def test_a_data_file_replaced_in_place_is_trained_again_not_reported_stale(tmp_path):
    import hashlib

    from medclf.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "b.npz", "breastmnist", 0.3, 0)
    assert bench(tmp_path / "out", data).exit_code == 0
    old = rows_of(tmp_path / "out")[0]
    write_synthetic(data, "breastmnist", 0.3, 5)  # the same path, other images
    fresh = bench(tmp_path / "fresh", data)  # the oracle: the new file in a new --out
    assert fresh.exit_code == 0, fresh.output
    new = rows_of(tmp_path / "fresh")[0]
    assert new["test_auc"] != old["test_auc"]  # else this test could not tell stale from new
    again = bench(tmp_path / "out", data)
    assert again.exit_code == 0, again.output
    [line] = [x for x in again.output.splitlines() if "training again" in x]
    assert "has changed since it was trained" in line and "its folder is replaced" in line
    [row] = rows_of(tmp_path / "out")
    assert (row["test_auc"], row["test_acc"]) == (new["test_auc"], new["test_acc"])
    md5 = hashlib.md5(data.read_bytes()).hexdigest()
    metrics = json.loads((tmp_path / "out" / "runs" / row["key"] / "metrics.json").read_text())
    assert metrics["data_md5"] == row["data_md5"] == md5
    # unchanged now: reused, not trained a third time
    stamp = (tmp_path / "out" / "runs" / row["key"] / "metrics.json").stat().st_mtime_ns
    third = bench(tmp_path / "out", data)
    assert third.exit_code == 0 and "training again" not in third.output
    assert (tmp_path / "out" / "runs" / row["key"] / "metrics.json").stat().st_mtime_ns == stamp


def test_a_run_from_before_the_data_md5_was_recorded_is_trained_again(tmp_path):
    from medclf.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "b.npz", "breastmnist", 0.1, 0)
    assert bench(tmp_path / "out", data).exit_code == 0
    [row] = rows_of(tmp_path / "out")
    path = tmp_path / "out" / "runs" / row["key"] / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["data_md5"]  # as an older medclf wrote it
    path.write_text(json.dumps({**metrics, "test_auc": 0.123}))
    again = bench(tmp_path / "out", data)
    assert "before medclf recorded its data's MD5" in again.output
    [row] = rows_of(tmp_path / "out")
    assert float(row["test_auc"]) != 0.123 and "data_md5" in json.loads(path.read_text())


def test_train_resume_on_replaced_data_trains_again(tmp_path):
    from medclf import api
    from medclf.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "b.npz", "breastmnist", 0.3, 0)
    settings = {"dataset": str(data), "epochs": 1, "out": tmp_path / "run", "resume": True}
    first = api.train("numpy-logreg", **settings).metrics
    write_synthetic(data, "breastmnist", 0.3, 5)
    oracle = api.train("numpy-logreg", **{**settings, "out": tmp_path / "fresh"}).metrics
    assert oracle["test_auc"] != first["test_auc"]
    again = api.train("numpy-logreg", **settings).metrics
    assert again["test_auc"] == oracle["test_auc"] and again["data_md5"] == oracle["data_md5"]


def test_a_row_is_one_data_file_whatever_its_spelling(tmp_path, monkeypatch):
    from medclf.data.synthetic import write_synthetic

    monkeypatch.chdir(tmp_path)
    whole = write_synthetic(tmp_path / "breast.npz", "breastmnist", 0.2, 0)
    quarter = write_synthetic(tmp_path / "quarter.npz", "breastmnist", 0.05, 0)
    (tmp_path / "other").mkdir()
    namesake = write_synthetic(tmp_path / "other" / "breast.npz", "breastmnist", 0.2, 3)
    (tmp_path / "link.npz").symlink_to(whole)
    result = bench(
        tmp_path / "out", "breast.npz", "./breast.npz", whole, "link.npz", quarter, namesake
    )
    assert result.exit_code == 0, result.output
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 3 and len({r["key"] for r in rows}) == 3  # one row per file
    assert [r["dataset"] for r in rows] == ["breastmnist"] * 3
    assert [r["data_file"] for r in rows] == [str(whole), str(quarter), str(namesake)]
    labels = [r["file"] for r in rows]
    assert len(set(labels)) == 3 and labels[1] == "quarter.npz"
    assert all(
        r["data_md5"][:8] in label
        for r, label in zip(rows, labels, strict=True)
        if label.startswith("breast.npz")
    )
    md = (tmp_path / "out" / "benchmark.md").read_text()
    for label in labels:
        assert f"## breastmnist — {label} — synthetic" in md


def test_a_file_of_another_size_runs_at_its_own_size(tmp_path):
    """The size is in the data: a 64x64 file by path needs no --size, and a contradicting one
    is refused in one line (benchmark and tune alike)."""
    from medclf.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "b64.npz", "breastmnist", 0.05, 0, size=64)
    out = tmp_path / "bench"
    args = ["--dataset", str(data), "--model", "sklearn-logreg", "--seeds", "1"]
    result = CliRunner().invoke(cli, ["benchmark", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (config,) = [json.loads(p.read_text()) for p in out.glob("runs/*/config.json")]
    assert config["size"] == 64
    for command in (
        ["benchmark", *args, "--out", str(tmp_path / "b2")],
        [
            "tune",
            "--dataset",
            str(data),
            "--model",
            "sklearn-logreg",
            "--trials",
            "1",
            "--out",
            str(tmp_path / "t2"),
        ],
    ):
        bad = CliRunner().invoke(cli, [*command, "--size", "28"])
        assert bad.exit_code == 2 and "64x64" in bad.output, bad.output
        assert "Traceback" not in bad.output
    tuned = CliRunner().invoke(
        cli,
        [
            "tune",
            "--dataset",
            str(data),
            "--model",
            "sklearn-logreg",
            "--trials",
            "1",
            "--out",
            str(tmp_path / "t"),
        ],
    )
    assert tuned.exit_code == 0, tuned.output
    assert json.loads((tmp_path / "t" / "best_config.json").read_text())["size"] == 64
