"""Several writers, interruptions, leftovers: unique temporary names, one owner per run folder,
two reproductions on one --out, workers that die with their parent."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medclf.errors import MedclfError
from medclf.experiments.runner import run_all
from medclf.experiments.specs import expand
from medclf.files import RunLockedError, atomic_path, run_lock
from medclf.run.folder import finished


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_two_writers_of_one_file_never_share_a_temporary_name(tmp_path):
    target = tmp_path / "model.npz"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.suffix == second.suffix == ".npz"
        np.savez(first, w=np.zeros(1000))
        np.savez(second, w=np.ones(3))
    # the outer writer renamed last: its file is in place, whole, and nothing is left over
    with np.load(target) as data:
        assert data["w"].shape == (1000,)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_run_lock_names_a_live_owner_and_is_released(tmp_path, sleeper):
    run = tmp_path / "run"
    with run_lock(run) as lock:
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(RunLockedError):  # not re-entrant, even in the same process
            with run_lock(run):
                pass
    assert not lock.exists()
    lock.write_text(f"{sleeper}\n")
    with pytest.raises(MedclfError, match=f"process {sleeper}") as caught:
        with run_lock(run):
            pass
    assert caught.value.pid == sleeper
    assert lock.read_text().strip() == str(sleeper)  # a live owner's lock is left alone


def test_run_lock_takes_over_a_dead_owners_lock(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"{dead_pid()}\n")
    with run_lock(run) as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert sorted(p.name for p in run.iterdir()) == []


def test_a_run_held_by_another_process_is_skipped_not_failed(tmp_path, sleeper):
    entry = expand([("Q2.1", "torch-logreg", {})], "/nonexistent.npz", quick=True)[0]
    run = tmp_path / "runs" / entry["key"]
    run.mkdir(parents=True)
    (run / ".lock").write_text(f"{sleeper}\n")
    [result] = run_all([entry], tmp_path, workers=1, progress=False)
    assert result["status"] == "running" and result["error"] == f"running in pid {sleeper}"


def test_a_damaged_or_missing_config_means_unfinished(tmp_path):
    config = {"model": "numpy-logreg", "seed": 42}
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "done"}))
    assert finished(tmp_path, config) is None  # config.json missing
    (tmp_path / "config.json").write_text('{"model": "numpy-lo')
    assert finished(tmp_path, config) is None  # damaged
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert finished(tmp_path, config) == {"status": "done"}
    (tmp_path / "metrics.json").write_text("[1, 2")
    assert finished(tmp_path, config) is None


def reproduce_cmd(data: Path, out: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "medclf.cli",
        "reproduce",
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--quick",
        *args,
    ]


@pytest.fixture(scope="module")
def bigger_synth(tmp_path_factory):
    """Runs long enough (about a second each) for two processes to overlap."""
    from medclf.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synth") / "synth.npz", "octmnist", 0.1, 0)


def whole(path: Path) -> bool:
    """Every file medclf writes can be read back completely."""
    if path.suffix in (".json",):
        json.loads(path.read_text())
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            [data[k] for k in data.files]
    elif path.suffix == ".pt":
        import torch

        torch.load(path, weights_only=True)
    elif path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            image.load()
    return True


def test_two_reproductions_on_one_out_run_every_run_exactly_once(tmp_path, bigger_synth):
    out = tmp_path / "out"
    only = ["--only", "Q2.2b", "--only", "Q2.1", "--workers", "1"]
    procs = [
        subprocess.Popen(
            reproduce_cmd(bigger_synth, out, *only),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trained = []  # one key per run a process trained (not skipped, not found finished)
    for text in outputs:
        lines = [line.partition(": ") for line in text.splitlines()]
        trained.append([key.rsplit(" ", 1)[-1] for key, _, status in lines if status == "done"])
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 7 and sorted(trained[0] + trained[1]) == runs, outputs
    assert trained[0] and trained[1], "the two processes did not overlap"
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if ".tmp" in p.name or p.name.startswith(".lock")]
    assert all(whole(p) for p in files)
    for run in runs:
        metrics = json.loads((out / "runs" / run / "metrics.json").read_text())
        assert metrics["status"] == "done"
        history = json.loads((out / "runs" / run / "history.json").read_text())
        assert [r["epoch"] for r in history] == list(range(1, len(history) + 1))


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_exit_when_reproduce_is_killed(tmp_path, bigger_synth):
    out = tmp_path / "out"
    main = subprocess.Popen(
        reproduce_cmd(bigger_synth, out, "--only", "Q2.2b", "--workers", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("runs/*/.lock")):  # a worker is training
            assert main.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        workers = descendants(main.pid)
        assert workers and all(running(p) for p in workers)
        main.send_signal(signal.SIGKILL)
        main.wait()
        deadline = time.monotonic() + 15
        while any(running(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in workers if running(p)]
        for pid in left:  # do not leave them behind even when the test fails
            os.kill(pid, signal.SIGKILL)
        assert left == []
    finally:
        main.kill()
        main.wait()
    # the next reproduction takes over the dead workers' locks and finishes every run
    rerun = subprocess.run(
        reproduce_cmd(bigger_synth, out, "--only", "Q2.2b", "--workers", "1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(list(out.glob("runs/*/metrics.json"))) == 4
    assert not list(out.glob("runs/*/.lock"))
