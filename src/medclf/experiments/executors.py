"""The Ray backend of the runner: each run is one Ray task, on any node of a cluster.

No shared filesystem is needed. The driver owns ``OUT/runs/KEY`` (medclf.files.run_lock) while
the run is in flight; the task trains into a temporary folder on its node, seeded with the
driver's checkpoint where the driver holds an unfinished run, and returns the finished folder's
files as bytes; the driver writes them under OUT, each file atomically, metrics.json last.
Where a node sees the driver's OUT (a shared filesystem: the task finds the driver's marker
file), the task also copies each epoch's checkpoint there, so a run interrupted mid-way
resumes from its last epoch on a rerun, on any node. A task that fails or whose worker or node
is lost fails that run only (no retry); a rerun redoes it.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path

from medclf.errors import ConfigError
from medclf.files import atomic_path
from medclf.run.folder import (
    PARTIAL,
    RunLockedError,
    finished,
    has_metrics,
    is_unfinished,
    read_files,
    run_dir_of,
    run_lock,
    write_files,
)


def import_ray(address: str | None = None):
    """Ray, or a one-line error naming the extra; a HOST:PORT ``address`` must answer."""
    try:
        import ray
    except ImportError:
        raise ConfigError('--backend ray needs Ray, an optional extra: pip install -e ".[ray]" '
                          '(or pip install "ray>=2.9")') from None  # fmt: skip
    host, _, port = (address or "").rpartition(":")
    if host and port.isdigit():  # Ray retries a dead address for minutes: ask once, quickly
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as err:
            raise ConfigError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}); "
                              "start it with 'ray start --head' or fix --address") from None
    return ray


def connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address`` ('auto' or HOST:PORT), or start a local Ray instance
    (None); True where this call started Ray (and must shut it down)."""
    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        if address is None:
            ray.init(num_cpus=os.cpu_count(), **options)
        else:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except Exception as err:  # ConnectionError, ValueError, RuntimeError, ...
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot start or join {where} ({first}); check --address "
                          "(auto or HOST:PORT of 'ray start --head')") from None  # fmt: skip
    return True


def mirror(run_dir: Path, shared: Path | None):
    """After each epoch: copy the checkpoint to the driver's (shared) run folder. Tests set
    MEDCLF_TEST_KILL to a file naming run keys whose worker dies after epoch 1."""
    kill = os.environ.get("MEDCLF_TEST_KILL")

    def after_epoch(record):
        if shared is not None:
            for name, data in read_files(run_dir, PARTIAL).items():
                with atomic_path(shared / name) as tmp:
                    tmp.write_bytes(data)
        if kill and record["epoch"] == 1 and Path(kill).is_file():
            if run_dir.name in Path(kill).read_text().split():
                os._exit(1)

    return after_epoch


def train_task(entry: dict, out: str, marker: str, threads: int, root, seed: dict) -> tuple:
    """Ray task: train one run in a temporary folder; return (result, files of the folder)."""
    from medclf.experiments.runner import run_one

    shared_out = Path(out) / marker
    shared = run_dir_of(out, entry["key"]) if shared_out.is_file() else None
    with tempfile.TemporaryDirectory(prefix="medclf-ray-") as tmp:
        run_dir = run_dir_of(tmp, entry["key"])
        run_dir.mkdir(parents=True)
        for name, data in seed.items():
            (run_dir / name).write_bytes(data)
        result = run_one(entry, tmp, threads, root, after_epoch=mirror(run_dir, shared))
        done = has_metrics(run_dir) and result["status"] != "failed"
        return result, read_files(run_dir) if done else {}


def run_ray(todo: list[dict], out: Path, workers: int, root, address, collect) -> None:
    """Run ``todo`` as Ray tasks, each asking for its threads' CPUs (and a GPU where its config
    says cuda); ``collect(result)`` each as it ends."""
    from medclf.experiments.runner import threads_for

    ray = import_ray(address)
    started = connect(ray, address)
    marker = f".medclf-ray-{secrets.token_hex(8)}"  # a node that sees it shares OUT
    out.mkdir(parents=True, exist_ok=True)
    (out / marker).write_text("medclf ray driver\n")
    task = ray.remote(train_task)
    pending: dict = {}
    try:
        with ExitStack() as locks:
            for entry in todo:
                run_dir, config = run_dir_of(out, entry["key"]), entry["config"]
                try:
                    locks.enter_context(run_lock(run_dir))
                except RunLockedError as err:
                    collect({**entry, "status": "running", "error": f"running in pid {err.pid}"})
                    continue
                done = finished(run_dir, config)
                if done:
                    collect({**entry, **done, "note": "finished by another process"})
                    continue
                seed = read_files(run_dir, PARTIAL) if is_unfinished(run_dir) else {}
                threads = threads_for(config, workers)
                gpus = 1 if str(config.get("device", "cpu")).startswith("cuda") else 0
                ref = task.options(num_cpus=threads, num_gpus=gpus, max_retries=0).remote(
                    entry, str(out.resolve()), marker, threads, root, seed)
                pending[ref] = (entry, time.perf_counter())
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                entry, start = pending.pop(ready[0])
                try:
                    result, files = ray.get(ready[0])
                    write_files(run_dir_of(out, entry["key"]), files)
                except (ray.exceptions.RayError, OSError) as err:  # worker/node lost, disk
                    first = (str(err).strip().splitlines() or [""])[0]
                    result = {**entry, "status": "failed", "seconds": time.perf_counter() - start,
                              "error": f"{type(err).__name__}: {first}"}  # fmt: skip
                collect(result)
    finally:
        for ref in pending:  # interrupted: stop what still runs
            with suppress(Exception):
                ray.cancel(ref, force=True)
        (out / marker).unlink(missing_ok=True)
        if started:
            ray.shutdown()
