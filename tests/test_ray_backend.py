"""The Ray backend: a grid on a real local Ray cluster (started here, on 127.0.0.1) gives the
same numbers per run key as the local backend; a run whose worker dies is reported failed, the
others finish, and a rerun redoes only it (from the checkpoint its worker left in OUT)."""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import pytest
from click.testing import CliRunner

from medclf.cli import cli
from medclf.errors import ConfigError

MODELS = ("torch-logreg", "numpy-logreg")
FAULTS = Path(__file__).parent / "ray_fault"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU Ray head on 127.0.0.1 in its own process group (`ray start --block`), stopped by
    killing that group (not `ray stop`, which stops every Ray on this machine). Its workers load
    tests/ray_fault/sitecustomize.py, which reads MEDCLF_TEST_KILL: a file naming the run keys
    to kill after epoch 1."""
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    if ray_cli is None:
        pytest.skip("the ray command is not installed beside this Python")
    folder = Path(tempfile.mkdtemp(prefix="rt"))  # short: Ray's socket paths are limited
    kill_file, port = folder / "kill", free_port()
    cmd = [
        ray_cli,
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={folder / 'ray'}",
        f"--dashboard-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    # Ray >= 2.5x: token authentication; a driver given an address must send this token
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # tests/ray_fault/sitecustomize.py: the workers' fault injection, outside medclf
    path = os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **auth, "MEDCLF_TEST_KILL": str(kill_file), "PYTHONPATH": path}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # up once its GCS port answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"ray start did not come up (exit {proc.poll()})")
                time.sleep(0.3)
        yield {"address": f"127.0.0.1:{port}", "kill_file": kill_file, "auth": auth}
    finally:
        with suppress(ProcessLookupError):  # SIGTERM drains for up to 30 s: kill the group
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    from medclf.data.synthetic import write_synthetic

    folder = tmp_path_factory.mktemp("ray-data")
    return (
        write_synthetic(folder / "breastmnist.npz", "breastmnist", 0.1, 0),
        write_synthetic(folder / "other.npz", "breastmnist", 0.1, 1),
    )


def args_of(out: Path, files) -> list[str]:
    return [
        "benchmark",
        "--out",
        str(out),
        "--seeds",
        "1",
        "--workers",
        "2",
        *[a for m in MODELS for a in ("--model", m)],
        *[a for f in files for a in ("--dataset", str(f))],
    ]


def on_ray(out: Path, files, cluster) -> subprocess.CompletedProcess:
    """The CLI as a Ray driver in its own process (Ray keeps per-process state)."""
    cmd = [
        sys.executable,
        "-m",
        "medclf.cli",
        *args_of(out, files),
        "--backend",
        "ray",
        "--address",
        cluster["address"],
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **cluster["auth"]}
    )


def rows_of(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in csv.DictReader((out / "results.csv").open())}


def numbers(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    return {
        "test_acc": metrics["test_acc"],
        "test_auc": metrics["test_auc"],
        "history": [{k: v for k, v in r.items() if k != "seconds"} for r in history],
    }


@pytest.fixture(scope="module")
def runs(cluster, tiny_files, tmp_path_factory):
    """The grid on the local backend, then on Ray with one run's worker killed."""
    from medclf.experiments.benchmark import grid

    top = tmp_path_factory.mktemp("ray-runs")
    local = CliRunner().invoke(cli, args_of(top / "local", tiny_files))
    assert local.exit_code == 0, local.output
    victim = next(e["key"] for e in grid([tiny_files[1]], ["torch-logreg"], "fast", 1))
    cluster["kill_file"].write_text(victim + "\n")
    try:
        first = on_ray(top / "ray", tiny_files, cluster)
    finally:
        cluster["kill_file"].unlink()
    return {
        "local": top / "local",
        "ray": top / "ray",
        "victim": victim,
        "first": first,
        "after_first": rows_of(top / "ray"),
    }


def test_a_killed_worker_fails_its_run_only(runs):
    assert runs["first"].returncode == 1, runs["first"].stderr
    rows = runs["after_first"]
    assert len(rows) == 4
    assert rows[runs["victim"]]["status"] == "failed"
    assert "Worker" in rows[runs["victim"]]["error"]  # WorkerCrashedError: the process died
    assert all(r["status"] == "done" for k, r in rows.items() if k != runs["victim"])
    # the worker saw OUT (one machine: shared), so epoch 1's checkpoint is there to resume
    assert (runs["ray"] / "runs" / runs["victim"] / "checkpoint.pt").is_file()
    assert not (runs["ray"] / "runs" / runs["victim"] / "metrics.json").exists()


def test_ray_runs_match_local_runs_per_key(runs):
    keys = [k for k in rows_of(runs["local"]) if k != runs["victim"]]
    assert len(keys) == 3
    for key in keys:
        ray_dir, local_dir = runs["ray"] / "runs" / key, runs["local"] / "runs" / key
        assert numbers(ray_dir) == numbers(local_dir), key
        assert sorted(p.name for p in ray_dir.iterdir() if not p.name.startswith(".")) == sorted(
            p.name for p in local_dir.iterdir() if not p.name.startswith(".")
        )


def test_a_rerun_redoes_only_the_failed_run(runs, cluster, tiny_files):
    import torch

    stamps = {p: p.stat().st_mtime_ns for p in runs["ray"].glob("runs/*/metrics.json")}
    assert len(stamps) == 3
    victim = runs["ray"] / "runs" / runs["victim"]
    epoch_1 = torch.load(victim / "checkpoint.pt", weights_only=True)["history"]
    assert len(epoch_1) == 1
    again = on_ray(runs["ray"], tiny_files, cluster)
    assert again.returncode == 0, again.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # not redone
    rows = rows_of(runs["ray"])
    assert all(r["status"] == "done" for r in rows.values())
    assert numbers(victim) == numbers(runs["local"] / "runs" / runs["victim"])  # resumed right
    history = json.loads((victim / "history.json").read_text())
    assert history[0]["seconds"] == epoch_1[0]["seconds"]  # resumed, not started afresh
    assert not (victim / "checkpoint.pt").exists() and not list(victim.glob(".*.tmp*"))


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from medclf.experiments.runner import run_all

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[ray\]"') as err:
        run_all([], tmp_path, backend="ray")
    assert "\n" not in str(err.value)


def test_a_dead_address_is_one_line_at_once(tmp_path):
    from medclf.experiments.runner import run_all

    pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    start = time.monotonic()
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster at 127.0.0.1:") as err:
        run_all([], tmp_path, backend="ray", address=f"127.0.0.1:{free_port()}")
    assert "\n" not in str(err.value) and time.monotonic() - start < 10


def test_tune_runs_its_trials_on_ray(cluster, tiny_files, tmp_path):
    pytest.importorskip("optuna", reason="medclf tune needs the tune extra")
    out = tmp_path / "tune"
    cmd = [
        sys.executable,
        "-m",
        "medclf.cli",
        "tune",
        "--dataset",
        str(tiny_files[0]),
        "--model",
        "torch-logreg",
        "--trials",
        "3",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--backend",
        "ray",
        "--workers",
        "2",
        "--address",
        cluster["address"],
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=180, env={**os.environ, **cluster["auth"]}
    )
    assert done.returncode == 0, done.stderr + done.stdout
    trials = list(csv.DictReader((out / "trials.csv").open()))
    assert len(trials) == 3 and all(t["state"] == "COMPLETE" for t in trials)
    for t in trials:  # each trial's value is the kept epoch's val_auc of its own run folder
        metrics = json.loads((Path(t["run_dir"]) / "metrics.json").read_text())
        assert float(t["value"]) == pytest.approx(metrics["val_auc"])
    assert json.loads((out / "best_config.json").read_text())["model"] == "torch-logreg"


def test_a_3d_run_on_ray_matches_the_local_one(cluster, tmp_path):
    """Issue 21 §4: volumes go through the Ray backend unchanged."""
    from medclf.data.synthetic import write_synthetic

    volumes = write_synthetic(tmp_path / "adrenalmnist3d.npz", "adrenalmnist3d", 0.04, 1)
    args = ["benchmark", "--seeds", "1", "--model", "torch-logreg", "--dataset", str(volumes)]
    local = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    cmd = [sys.executable, "-m", "medclf.cli", *args, "--out", str(tmp_path / "ray")]
    cmd += ["--backend", "ray", "--address", cluster["address"]]
    env = {**os.environ, **cluster["auth"]}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    (key,) = rows_of(tmp_path / "ray")
    ray_run, local_run = tmp_path / "ray" / "runs" / key, tmp_path / "local" / "runs" / key
    assert json.loads((ray_run / "metrics.json").read_text())["image_shape"] == [28, 28, 28]
    assert numbers(ray_run) == numbers(local_run)
