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


def test_ensemble_adds_the_ensemble_of_each_models_seeds_as_a_row(tmp_path, tiny_files):
    import numpy as np
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "bench"
    args = ["benchmark", "--out", out, "--seeds", 2, "--ensemble", "--dataset", tiny_files[0]]
    args += ["--model", "numpy-logreg", "--auto", "--budget", "1h"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert len(rows) == 4
    for model in ("numpy-logreg",):
        seeds = [r for r in rows if r["model"] == model]
        (ens,) = [r for r in rows if r["model"] == f"{model} ensemble"]
        assert ens["status"] == "done" and ens["seed"] == "42+43"
        assert ens["members"].split() == [r["key"] for r in seeds]
        scores = [
            np.load(out / "runs" / r["key"] / "predictions.npz")["test_scores"] for r in seeds
        ]
        labels = np.load(out / "runs" / seeds[0]["key"] / "predictions.npz")["test_labels"]
        mean = np.mean(scores, axis=0)
        assert float(ens["test_auc"]) == pytest.approx(roc_auc_score(labels.ravel(), mean[:, 1]))
    md = (out / "benchmark.md").read_text()
    (line,) = [x for x in md.splitlines() if x.startswith("| numpy-logreg ensemble (fast)")]
    assert line.split("|")[5].strip().startswith("[")  # the test ACC's 95 % interval
    assert f"`{ens['members'].split()[0]}`" in md and "an ensemble" in md
    made = (out / "runs" / ens["key"] / "metrics.json").stat().st_mtime_ns
    again = CliRunner().invoke(cli, [str(a) for a in args])
    assert again.exit_code == 0, again.output
    assert (out / "runs" / ens["key"] / "metrics.json").stat().st_mtime_ns == made  # reused
    check_auto(out, rows, md)


def check_auto(out, rows, md):
    """The "medclf (auto)" row: its numbers are its pick's, and its pick is the same when every
    candidate's test labels are permuted (the choice never reads the test split)."""
    import numpy as np

    from medclf.experiments.auto import pick

    (auto,) = [r for r in rows if r["model"] == "medclf (auto)"]
    metrics = json.loads((out / "runs" / auto["key"] / "metrics.json").read_text())
    assert auto["status"] == "done" and float(auto["test_auc"]) == metrics["test_auc"]
    assert auto["picked"] in md and "medclf (auto)" in md and auto["why"] in md
    grid = [r for r in rows if r["model"] == "numpy-logreg"]
    before = pick(grid, out, 3600)
    assert before["chosen"] == (auto["members"].split() or [auto["key"]])
    rng = np.random.default_rng(0)
    for r in grid:
        path = out / "runs" / r["key"] / "predictions.npz"
        arrays = dict(np.load(path))
        arrays["test_labels"] = rng.permutation(arrays["test_labels"])
        arrays["test_scores"] = rng.permutation(arrays["test_scores"])
        np.savez(path, **arrays)
    assert pick(grid, out, 3600) == before


@pytest.mark.parametrize("budget", ["0", "1e9", "abc", "-5m", "25h", "5x"])
def test_bad_budgets_are_refused_before_training(tmp_path, tiny_files, budget):
    out = tmp_path / "bench"
    args = ["benchmark", "--out", str(out), "--auto", "--budget", budget]
    result = CliRunner().invoke(cli, [*args, "--dataset", str(tiny_files[0])])
    assert result.exit_code == 2 and "not a time from 1 s to 24 h" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_budgets_and_greedy_selection_on_validation(tmp_path):
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from medclf.experiments.auto import admitted, choose, parse_budget
    from medclf.models.config import make_config

    assert [parse_budget(t) for t in ("10m", "90s", "1.5h", "600")] == [600, 90, 5400, 600]
    rows = []  # the dearer model listed first: the budget buys the cheaper one only
    for key, model in (("dear", "torch-cnn"), ("cheap", "numpy-logreg"), ("mid", "torch-ffn")):
        (tmp_path / "runs" / key).mkdir(parents=True)
        (tmp_path / "runs" / key / "config.json").write_text(json.dumps(make_config(model)))
        rows.append({"key": key, "status": "done", "seconds": 5.0})
    assert [r["key"] for r in admitted(rows, tmp_path, 11)] == ["cheap", "mid"]
    assert [r["key"] for r in admitted(rows, tmp_path, 4)] == []
    rows[1]["seconds"] = 50.0  # the cheapest by the registry took longest: passed over
    assert [r["key"] for r in admitted(rows, tmp_path, 11)] == ["mid", "dear"]
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    noisy = [np.clip(y + rng.normal(0, s, 200), 0, 1) for s in (0.9, 1.0, 1.1, 3.0)]
    candidates = {f"r{i}": ("binary-class", y, np.c_[1 - p, p]) for i, p in enumerate(noisy)}
    chosen, score, single = choose(candidates)
    aucs = {k: roc_auc_score(y, s[:, 1]) for k, (_, _, s) in candidates.items()}
    assert chosen[0] == max(aucs, key=aucs.get) and single == pytest.approx(max(aucs.values()))
    mean = np.mean([candidates[k][2][:, 1] for k in chosen], axis=0)
    assert len(chosen) > 1 and score == pytest.approx(roc_auc_score(y, mean)) and score > single
    for k in candidates:  # greedy: no single addition to the pick raises its AUC further
        if k not in chosen:
            more = np.mean([candidates[c][2][:, 1] for c in [*chosen, k]], axis=0)
            assert roc_auc_score(y, more) <= score


def test_ensemble_of_one_seed_is_refused_before_training(tmp_path, tiny_files):
    out = tmp_path / "bench"
    args = ["benchmark", "--out", str(out), "--seeds", "1", "--ensemble"]
    result = CliRunner().invoke(cli, [*args, "--dataset", str(tiny_files[0])])
    assert result.exit_code != 0 and "two seeds or more" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
