"""How a set of runs executes: one small interface (``Executor.run(todo, out, root, collect)``)
and its two peers, the local process pool and Ray. Both end in medclf.experiments.worker.run_one,
which owns each run folder (lock, finished, failed); the runner only picks one.

Ray: each run is one Ray task, on any node of a cluster. No shared filesystem is needed. The
driver owns each run's folder (medclf.files.run_lock) while the run is in flight; the task
trains into a temporary folder on its node, seeded with the driver's checkpoint where the
driver holds an unfinished run, and returns the finished folder's files as bytes; the driver
writes them under OUT, each file atomically, metrics.json last. Where a node sees the driver's
OUT (a shared filesystem: the task finds the driver's marker file), the task also copies each
epoch's checkpoint there, so a run interrupted mid-way resumes from its last epoch on a rerun,
on any node. A task that fails or whose worker or node is lost fails that run only (no retry);
a rerun redoes it.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import socket
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Protocol, runtime_checkable

from medclf.errors import ConfigError
from medclf.experiments.worker import (
    claim,
    failed,
    jobs,
    run_job_of,
    run_one,
    threads_for,
    watch_parent,
)
from medclf.files import atomic_path
from medclf.run.folder import (
    PARTIAL,
    entry_dir,
    has_metrics,
    is_unfinished,
    read_files,
    write_files,
)

BACKENDS = ("local", "ray")


def import_ray(address: str | None = None):
    """Ray, or a one-line error naming the extra; a HOST:PORT ``address`` must answer."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            '--backend ray needs Ray, an optional extra: pip install -e ".[ray]" '
            '(or pip install "ray>=2.9")'
        ) from None
    host, _, port = (address or "").rpartition(":")
    if host and port.isdigit():  # Ray retries a dead address for minutes: ask once, quickly
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as err:
            raise ConfigError(
                f"cannot reach the Ray cluster at {address} ({err.strerror or err}); "
                "start it with 'ray start --head' or fix --address"
            ) from None
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
        raise ConfigError(
            f"cannot start or join {where} ({first}); check --address "
            "(auto or HOST:PORT of 'ray start --head')"
        ) from None
    return True


def mirror(run_dir: Path, shared: Path | None):
    """After each epoch: copy the checkpoint to the driver's (shared) run folder."""

    def after_epoch(record):
        if shared is not None:
            for name, data in read_files(run_dir, PARTIAL).items():
                with atomic_path(shared / name) as tmp:
                    tmp.write_bytes(data)

    return after_epoch


def train_task(entry: dict, out: str, marker: str, threads: int, root, seed: dict) -> tuple:
    """Ray task: train one run in a temporary folder; return (result, files of the folder)."""
    shared_out = Path(out) / marker
    shared = entry_dir(out, entry) if shared_out.is_file() else None
    with tempfile.TemporaryDirectory(prefix="medclf-ray-") as tmp:
        run_dir = entry_dir(tmp, entry)
        run_dir.mkdir(parents=True)
        for name, data in seed.items():
            (run_dir / name).write_bytes(data)
        result = run_one(entry, tmp, threads, root, after_epoch=mirror(run_dir, shared))
        done = has_metrics(run_dir) and result["status"] != "failed"
        return result, read_files(run_dir) if done else {}


def run_ray(todo: list[dict], out: Path, workers: int, root, address, collect) -> None:
    """Run ``todo`` as Ray tasks, each asking for its threads' CPUs (and a GPU where its config
    says cuda); ``collect(result)`` each as it ends."""
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
                run_dir, config = entry_dir(out, entry), entry["config"]
                skip = claim(entry, run_dir, locks, root)
                if skip is not None:
                    collect(skip)
                    continue
                seed = read_files(run_dir, PARTIAL) if is_unfinished(run_dir) else {}
                threads = threads_for(config, workers)
                gpus = 1 if str(config.get("device", "cpu")).startswith("cuda") else 0
                ref = task.options(num_cpus=threads, num_gpus=gpus, max_retries=0).remote(
                    entry, str(out.resolve()), marker, threads, root, seed
                )
                pending[ref] = (entry, time.perf_counter())
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                entry, start = pending.pop(ready[0])
                try:
                    result, files = ray.get(ready[0])
                    write_files(entry_dir(out, entry), files)
                except (ray.exceptions.RayError, OSError) as err:  # worker/node lost, disk
                    result = failed(entry, err, start)
                collect(result)
    finally:
        for ref in pending:  # interrupted: stop what still runs
            with suppress(Exception):
                ray.cancel(ref, force=True)
        (out / marker).unlink(missing_ok=True)
        if started:
            ray.shutdown()


@runtime_checkable
class Executor(Protocol):
    """Runs ``todo`` (runner entries not yet finished) with results in OUT; calls
    ``collect(result)`` for each as it ends."""

    def check(self) -> None:
        """Refuse, before anything runs, what cannot run (a missing extra, a dead address)."""

    def run(self, todo: list[dict], out: Path, root, collect) -> None: ...


class LocalExecutor:
    """This machine: ``workers`` spawned processes (one run at a time in this process where
    there is one worker or one run)."""

    def __init__(self, workers: int = 1):
        self.workers = workers

    def check(self) -> None:
        pass

    def run(self, todo: list[dict], out: Path, root, collect) -> None:
        work = jobs(todo)  # runs a family fits as one (a stacked sweep) are one job
        if self.workers <= 1 or len(work) <= 1:
            for job in work:
                threads = threads_for(job[0]["config"], 1)
                for result in run_job_of(job, str(out), threads, root):
                    collect(result)
            return
        context = multiprocessing.get_context("spawn")  # no forked torch/numba state
        with ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=watch_parent, initargs=(os.getpid(),)
        ) as pool:
            futures = [
                pool.submit(
                    run_job_of, j, str(out), threads_for(j[0]["config"], self.workers), root
                )
                for j in work
            ]
            for future in as_completed(futures):
                for result in future.result():
                    collect(result)


class RayExecutor:
    """A Ray cluster at ``address`` (None: a local Ray instance), ``workers`` runs at a time."""

    def __init__(self, workers: int = 1, address: str | None = None):
        self.workers, self.address = workers, address

    def check(self) -> None:
        import_ray(self.address)

    def run(self, todo: list[dict], out: Path, root, collect) -> None:
        if todo:
            workers = self.workers if len(todo) > 1 else 1
            run_ray(todo, out, workers, root, self.address, collect)


def executor(backend: str, workers: int = 1, address: str | None = None) -> Executor:
    """The executor of ``backend``: "local" (this machine) or "ray" (a cluster at ``address``)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend '{backend}' is unknown; choose local or ray")
    if backend == "ray":
        return RayExecutor(workers, address)
    return LocalExecutor(workers)
