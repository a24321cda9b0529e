"""One entry of a set of runs, trained in this process: the step every executor
(medclf.experiments.executors) ends in. It owns the run folder while it trains (the lock),
skips a run finished meanwhile, and turns any failure into a result; those three answers are
written here only, for the local pool and for Ray alike."""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path

from threadpoolctl import threadpool_limits

from medclf.data.load import load_dataset
from medclf.experiments.specs import PER_EPOCH_TRAIN_ACC, estimated_cost
from medclf.models.registry import MODELS
from medclf.run.dataid import data_file, data_md5
from medclf.run.families import family_of
from medclf.run.folder import (
    CONFIG,
    RunLockedError,
    entry_dir,
    finished,
    run_lock,
    write_json,
)
from medclf.run.lifecycle import run_group, run_job


def threads_for(config: dict, workers: int) -> int:
    """Small batches: one thread (two single-thread runs side by side beat one two-thread run);
    large batches and NumPy's BLAS evaluation: the cores left per worker."""
    if config.get("batch_size", 1) <= 64:
        return 1
    return max(1, (os.cpu_count() or 1) // workers)


def watch_parent(parent: int, every: float = 0.5) -> None:
    """Worker initializer: a daemon thread ends this worker once ``parent`` is gone (kill -9
    of ``medclf reproduce`` must not leave its workers training for nobody)."""

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


@lru_cache(maxsize=2)
def cached_dataset(name: str, root: str | None, size: int = 28, md5: str | None = None):
    """The dataset, loaded once per file content (``md5``: a file replaced meanwhile is read
    again)."""
    return load_dataset(name, root, size=size)


def claim(entry: dict, run_dir: Path, locks: ExitStack, root=None) -> dict | None:
    """Own ``run_dir`` (its lock, held until ``locks`` closes); a result where there is nothing
    to train: another live process holds it ("running"), or it is finished already (on the
    data file its config names now)."""
    try:
        locks.enter_context(run_lock(run_dir))
    except RunLockedError as err:
        return {**entry, "status": "running", "error": f"running in pid {err.pid}"}
    done = finished(run_dir, entry["config"], root)  # finished by another process meanwhile
    return {**entry, **done, "note": "finished by another process"} if done else None


def failed(entry: dict, err: BaseException, start: float) -> dict:
    """A run that raised (or whose worker was lost): reported in the table; the others go on."""
    first = (str(err).strip().splitlines() or [""])[0]
    error = f"{type(err).__name__}: {first}"
    return {**entry, "status": "failed", "error": error, "seconds": time.perf_counter() - start}


def stack_key(config: dict) -> str | None:
    """The key runs fitted as one share (Family.stack_key); None: the run goes alone. Only a
    registry entry that names ``stack`` settings loads its family here."""
    if not MODELS[config["model"]].stack:
        return None
    return family_of(config["model"]).stack_key(config)


def jobs(todo: list[dict]) -> list[list[dict]]:
    """``todo`` as jobs: the entries that share a stack key (their dataset file among it)
    together, every other entry alone; the costliest first (estimated_cost summed), so that
    workers end together."""
    groups: dict = {}
    for n, entry in enumerate(todo):
        key = stack_key(entry["config"])
        groups.setdefault(n if key is None else key, []).append(entry)
    cost = {id(g): sum(estimated_cost(e["config"]) for e in g) for g in groups.values()}
    return sorted(groups.values(), key=lambda g: -cost[id(g)])  # stable: ties keep todo's order


def run_job_of(entries: list[dict], out: str, threads: int, root: str | None = None) -> list:
    """One job of ``jobs``: a lone entry as run_one trains it, a stack through run_group."""
    if len(entries) == 1:
        return [run_one(entries[0], out, threads, root)]
    return run_stack(entries, out, threads, root)


def run_stack(entries: list[dict], out: str, threads: int, root: str | None = None) -> list:
    """Entries of one stack key trained in this process as one (medclf.run.lifecycle.run_group),
    owning their folders; like run_one, never raises: one result per entry. Where the group
    fails (one damaged checkpoint, say), each run is trained alone with run_one, from its own
    checkpoint, so that a failure is that run's only."""
    results: dict[str, dict] = {}
    try:
        with ExitStack() as locks:
            todo = []
            for entry in entries:
                skip = claim(entry, entry_dir(out, entry), locks, root)
                if skip is not None:
                    results[entry["key"]] = skip
                else:
                    write_json(entry_dir(out, entry) / CONFIG, entry["config"])
                    todo.append(entry)
            if todo:
                metrics = train_group(todo, out, threads, root)
                for entry, m in zip(todo, metrics, strict=True):
                    results[entry["key"]] = {**entry, **m, "status": m.get("status", "done")}
    except Exception:  # the locks are released: each run alone says what failed
        for entry in entries:
            if entry["key"] not in results or results[entry["key"]]["status"] != "running":
                results[entry["key"]] = run_one(entry, out, threads, root)
    return [results[e["key"]] for e in entries]


def train_group(todo: list[dict], out: str, threads: int, root) -> list[dict]:
    config = todo[0]["config"]
    with threadpool_limits(threads):
        dataset = entry_dataset(config, root)
        return run_group(
            [e["config"] for e in todo],
            dataset,
            [entry_dir(out, e) for e in todo],
            [per_epoch_train_acc(e) for e in todo],
            quiet=True,
            **family_options(config, threads),
        )


def family_options(config: dict, threads: int) -> dict:
    """The thread count, for a family that takes one."""
    return {"threads": threads} if "threads" in family_of(config["model"]).options else {}


def entry_dataset(config: dict, root):
    size = config.get("size", 28)
    path = data_file(str(config["dataset"]), root, size)
    return cached_dataset(config["dataset"], root, size, path and data_md5(path))


def per_epoch_train_acc(entry: dict) -> bool:
    """Per-epoch training accuracy only where a figure plots it; else once at the end."""
    plotted = bool(set(entry["questions"]) & PER_EPOCH_TRAIN_ACC)
    return entry.get("train_acc", plotted)


def run_one(entry: dict, out: str, threads: int, root: str | None = None, after_epoch=None) -> dict:
    """Train one run in this process, owning its folder; never raises: a failure becomes a
    failed result, a run another live process holds a ``running`` one. ``after_epoch``: see
    run_job (the Ray executor copies checkpoints with it). An entry's ``train_acc`` says whether
    to measure training accuracy every epoch (default: where a study figure plots it)."""
    config, run_dir = entry["config"], entry_dir(out, entry)
    start = time.perf_counter()
    try:
        with ExitStack() as locks:
            skip = claim(entry, run_dir, locks, root)
            if skip is not None:
                return skip
            write_json(run_dir / CONFIG, config)  # a running run says what it is
            with threadpool_limits(threads):
                dataset = entry_dataset(config, root)
                metrics = run_job(
                    config,
                    dataset,
                    run_dir,
                    quiet=True,
                    train_acc=per_epoch_train_acc(entry),
                    after_epoch=after_epoch,
                    **family_options(config, threads),
                )
        return {**entry, **metrics, "status": metrics.get("status", "done")}
    except Exception as err:  # reported in the table; the other runs go on
        return failed(entry, err, start)
