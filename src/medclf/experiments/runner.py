"""Run a set of configs: skip finished runs, resume unfinished ones, run the rest in parallel
worker processes, and collect everything in one tidy table (runs_table: OUT/runs.csv).

A run's folder is ``OUT/runs/KEY`` where KEY hashes its full config, so resumption and
deduplication need no bookkeeping: a folder with metrics.json is finished (reused only where
its recorded data MD5 is that of the file the config names now; else its folder is replaced),
one with a checkpoint continues from it. Several ``medclf reproduce`` may share one OUT: a run
folder is owned by one process at a time (medclf.files.run_lock); a run another live process
holds is skipped and reported as running there. Workers exit when the main process dies.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from pathlib import Path

from tqdm.auto import tqdm

from medclf.errors import ConfigError
from medclf.experiments.dataid import config_data_change, data_file, data_md5
from medclf.experiments.specs import PER_EPOCH_TRAIN_ACC, estimated_cost
from medclf.experiments.store import read_json, write_json
from medclf.files import RunLockedError, run_lock
from medclf.model_registry import MODELS

RESULT_FIELDS = ("status", "train_acc", "val_acc", "test_acc", "best_val_acc", "seconds",
                 "error")  # fmt: skip
FINISHED = ("done", "diverged")  # statuses of a run that is not trained again


def threads_for(config: dict, workers: int) -> int:
    """Small batches: one thread (two single-thread runs side by side beat one two-thread run);
    large batches and NumPy's BLAS evaluation: the cores left per worker."""
    if config.get("batch_size", 1) <= 64:
        return 1
    return max(1, (os.cpu_count() or 1) // workers)


def finished_run(run_dir: Path, config: dict) -> dict | None:
    """The metrics of a finished run of ``config`` in ``run_dir``, whatever data it had; None
    if it must (re)run, including when its config.json or metrics.json is missing or damaged."""
    try:
        if read_json(run_dir / "config.json") != config:
            return None
        metrics = read_json(run_dir / "metrics.json")
    except (OSError, ValueError):  # missing, unreadable or not JSON
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") in FINISHED else None


def finished(run_dir: Path, config: dict, root=None) -> dict | None:
    """finished_run, where the run was trained on the file its config names now."""
    metrics = finished_run(run_dir, config)
    return metrics if metrics and config_data_change(metrics, config, root) is None else None


def replace_stale(run_dir: Path, why: str) -> None:
    """A finished run of other data is no result: remove its files (unless another live
    process holds the folder: it decides) and say so."""
    from medclf.experiments.lifecycle import clear_run_files

    try:
        with run_lock(run_dir):
            clear_run_files(run_dir)
    except RunLockedError:
        return
    print(f"{run_dir}: training again, as {why}; its folder is replaced", file=sys.stderr)


def watch_parent(parent: int, every: float = 0.5) -> None:
    """Worker initializer: a daemon thread ends this worker once ``parent`` is gone (kill -9
    of ``medclf reproduce`` must not leave its workers training for nobody)."""

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


@lru_cache(maxsize=2)
def _dataset(name: str, root: str | None, size: int = 28, md5: str | None = None):
    """The dataset, loaded once per file content (``md5``: a file replaced meanwhile is read
    again)."""
    from medclf.data.load import load_dataset

    return load_dataset(name, root, size=size)


def run_one(entry: dict, out: str, threads: int, root: str | None = None,
            after_epoch=None) -> dict:  # fmt: skip
    """Train one run in this process, owning its folder; never raises: a failure becomes a
    failed result, a run another live process holds a ``running`` one. ``after_epoch``: see
    run_job (the Ray backend copies checkpoints with it)."""
    from threadpoolctl import threadpool_limits

    config, run_dir = entry["config"], Path(out) / "runs" / entry["key"]
    start = time.perf_counter()
    try:
        from medclf.experiments.lifecycle import run_job

        with run_lock(run_dir):
            done = finished(run_dir, config, root)  # finished by another process meanwhile
            if done:
                return {**entry, **done, "note": "finished by another process"}
            write_json(run_dir / "config.json", config)  # a running run says what it is
            with threadpool_limits(threads):
                size = config.get("size", 28)
                path = data_file(str(config["dataset"]), root, size)
                dataset = _dataset(config["dataset"], root, size, path and data_md5(path))
                options = {} if MODELS[config["model"]].family == "numpy" else {"threads": threads}
                # per-epoch training accuracy only where a figure plots it; else once at the end
                per_epoch = bool(set(entry["questions"]) & PER_EPOCH_TRAIN_ACC)
                metrics = run_job(config, dataset, run_dir, quiet=True, train_acc=per_epoch,
                                  after_epoch=after_epoch, **options)  # fmt: skip
        return {**entry, **metrics, "status": metrics.get("status", "done")}
    except RunLockedError as err:
        return {**entry, "status": "running", "error": f"running in pid {err.pid}"}
    except Exception as err:  # reported in the table; the other runs go on
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        return {**entry, "status": "failed", "error": message,
                "seconds": time.perf_counter() - start}  # fmt: skip


def epochs_done(run_dir: Path) -> int:
    """Epochs an unfinished run has behind it, read from its checkpoint (0 if none)."""
    import json

    import numpy as np

    npz, pt = run_dir / "checkpoint.npz", run_dir / "checkpoint.pt"
    try:
        if npz.exists():
            with np.load(npz, allow_pickle=False) as data:
                return len(json.loads(str(data["meta"])).get("history", []))
        if pt.exists():
            import torch

            return len(torch.load(pt, weights_only=True)["history"])
    except Exception:  # replaced or half-read while we looked: next time
        pass
    return 0


class EpochBar:
    """One progress bar in epochs over every run, fed by polling each run's checkpoint (so
    workers need not report anything): it moves while a run trains, not only when it ends."""

    def __init__(self, todo: list[dict], out: Path, progress: bool, every: float = 1.0):
        # a model fitted once (scikit-learn: no "epochs") counts as one epoch
        self.runs = {e["key"]: (out / "runs" / e["key"], e["config"].get("epochs", 1))
                     for e in todo}  # fmt: skip
        self.done = {key: epochs_done(path) for key, (path, _) in self.runs.items()}
        self.seen: dict[str, int] = {}  # checkpoint mtimes already read
        self.lock, self.stop, self.every = threading.Lock(), threading.Event(), every
        total = sum(epochs for _, epochs in self.runs.values())
        # smoothing=0: the ETA follows the mean rate, as runs' epochs differ in cost
        self.bar = tqdm(total=total, initial=sum(self.done.values()), unit="epoch",
                        disable=not (progress and todo), desc=f"{len(todo)} runs",
                        smoothing=0, dynamic_ncols=True)  # fmt: skip
        self.thread = threading.Thread(target=self.poll, daemon=True, name="epoch-bar")
        if progress and todo:
            self.thread.start()

    def set(self, key: str, epochs: int) -> None:
        with self.lock:
            if key in self.runs and epochs > self.done[key]:
                self.bar.update(epochs - self.done[key])
                self.done[key] = epochs

    def poll(self) -> None:
        while not self.stop.wait(self.every):
            for key, (path, _) in self.runs.items():
                for name in ("checkpoint.npz", "checkpoint.pt"):
                    try:
                        mtime = (path / name).stat().st_mtime_ns
                    except OSError:
                        continue
                    if self.seen.get(key) != mtime:
                        self.seen[key] = mtime
                        self.set(key, epochs_done(path))

    def end(self, result: dict) -> None:
        """A run ended: count all its epochs (early stops and skips included), say how."""
        self.set(result["key"], self.runs[result["key"]][1])
        why = result.get("error") or result.get("note")
        status = result["status"] + (f" ({why})" if why else "")
        with self.lock:
            self.bar.write(f"{', '.join(result['questions'])} {result['key']}: {status}")

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.bar.close()


def run_all(entries: list[dict], out: Path, workers: int = 2, root=None, progress: bool = True,
            backend: str = "local", address: str | None = None) -> list[dict]:  # fmt: skip
    """Run every entry not yet finished; return one result per entry, in entry order.
    ``backend``: "local" (this machine's processes) or "ray" (a Ray cluster at ``address``;
    None starts a local one; see medclf.experiments.backends)."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"backend '{backend}' is unknown; choose local or ray")
    if backend == "ray":
        from medclf.experiments.backends import import_ray

        import_ray(address)  # a missing extra or dead address is said before anything runs
    out = Path(out)
    results: dict[str, dict] = {}
    todo = []
    for entry in entries:
        run_dir = out / "runs" / entry["key"]
        done = finished_run(run_dir, entry["config"])
        why = done and config_data_change(done, entry["config"], root)
        if done and not why:
            results[entry["key"]] = {**entry, **done}
            continue
        if why:
            replace_stale(run_dir, why)
        todo.append(entry)
    todo.sort(key=lambda e: -estimated_cost(e["config"]))  # longest first balances workers
    bar = EpochBar(todo, out, progress)

    def collect(result):
        results[result["key"]] = result
        bar.end(result)

    try:
        if backend == "ray" and todo:
            from medclf.experiments.backends import run_ray

            run_ray(todo, out, workers if len(todo) > 1 else 1, root, address, collect)
        elif workers <= 1 or len(todo) <= 1:
            for entry in todo:
                collect(run_one(entry, str(out), threads_for(entry["config"], 1), root))
        else:
            context = multiprocessing.get_context("spawn")  # no forked torch/numba state
            with ProcessPoolExecutor(workers, mp_context=context, initializer=watch_parent,
                                     initargs=(os.getpid(),)) as pool:  # fmt: skip
                futures = [pool.submit(run_one, e, str(out), threads_for(e["config"], workers),
                                       root) for e in todo]  # fmt: skip
                for future in as_completed(futures):
                    collect(future.result())
    finally:
        bar.close()
    return [results[e["key"]] for e in entries]


def runs_table(results: list[dict]) -> str:
    """One row per run: questions, key, every config field, the results."""
    config_keys = sorted({k for r in results for k in r["config"]})
    fields = ["questions", "key", *config_keys, *RESULT_FIELDS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in results:
        row = {"questions": " ".join(r["questions"]), "key": r["key"], **r["config"]}
        row.update({k: r.get(k, "") for k in RESULT_FIELDS})
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()
