"""Run a set of configs: skip finished runs, resume unfinished ones, run the rest in parallel
worker processes, and collect everything in one tidy table (runs.csv).

A run's folder is ``OUT/runs/KEY`` where KEY hashes its full config, so resumption and
deduplication need no bookkeeping: a folder with metrics.json is finished, one with a
checkpoint continues from it.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from pathlib import Path

from tqdm.auto import tqdm

from medclf.experiments.specs import PER_EPOCH_TRAIN_ACC, estimated_cost
from medclf.experiments.store import read_json, write_text

RESULT_FIELDS = ("status", "train_acc", "val_acc", "test_acc", "best_val_acc", "seconds",
                 "error")  # fmt: skip


def threads_for(config: dict, workers: int) -> int:
    """Small batches: one thread (two single-thread runs side by side beat one two-thread run);
    large batches and NumPy's BLAS evaluation: the cores left per worker."""
    if config.get("batch_size", 1) <= 64:
        return 1
    return max(1, (os.cpu_count() or 1) // workers)


def finished(run_dir: Path, config: dict) -> dict | None:
    path = run_dir / "metrics.json"
    if path.exists() and read_json(run_dir / "config.json") == config:
        metrics = read_json(path)
        return metrics if metrics.get("status") == "done" else None
    return None


@lru_cache(maxsize=2)
def _dataset(name: str, root: str | None):
    from medclf.data.load import load_dataset

    return load_dataset(name, root)


def run_one(entry: dict, out: str, threads: int, root: str | None = None) -> dict:
    """Train one run in this process; never raises: a failure becomes a failed result."""
    from threadpoolctl import threadpool_limits

    from medclf.experiments.jobs import run_job

    config, run_dir = entry["config"], Path(out) / "runs" / entry["key"]
    start = time.perf_counter()
    try:
        with threadpool_limits(threads):
            dataset = _dataset(config["dataset"], root)
            options = {} if config["model"].startswith("numpy-") else {"threads": threads}
            # per-epoch training accuracy only where a figure plots it; else once at the end
            per_epoch = bool(set(entry["questions"]) & PER_EPOCH_TRAIN_ACC)
            metrics = run_job(config, dataset, run_dir, quiet=True, train_acc=per_epoch,
                              **options)  # fmt: skip
        return {**entry, **metrics, "status": "done"}
    except Exception as err:  # reported in the table; the other runs go on
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        return {**entry, "status": "failed", "error": message,
                "seconds": time.perf_counter() - start}  # fmt: skip


def run_all(entries: list[dict], out: Path, workers: int = 2, root=None,
            progress: bool = True) -> list[dict]:  # fmt: skip
    """Run every entry not yet finished; return one result per entry, in entry order."""
    out = Path(out)
    results: dict[str, dict] = {}
    todo = []
    for entry in entries:
        done = finished(out / "runs" / entry["key"], entry["config"])
        if done:
            results[entry["key"]] = {**entry, **done, "status": "done"}
        else:
            todo.append(entry)
    todo.sort(key=lambda e: -estimated_cost(e["config"]))  # longest first balances workers
    bar = tqdm(total=round(sum(estimated_cost(e["config"]) for e in todo)), disable=not progress,
               desc=f"{len(todo)} runs", unit="s of work", dynamic_ncols=True)  # fmt: skip

    def collect(result):
        results[result["key"]] = result
        bar.update(round(estimated_cost(result["config"])))
        status = result["status"] + ("" if result["status"] == "done" else f" ({result['error']})")
        bar.write(f"{', '.join(result['questions'])} {result['key']}: {status}")

    if workers <= 1 or len(todo) <= 1:
        for entry in todo:
            collect(run_one(entry, str(out), threads_for(entry["config"], 1), root))
    else:
        context = multiprocessing.get_context("spawn")  # no forked torch/numba state
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(run_one, e, str(out), threads_for(e["config"], workers), root)
                       for e in todo]  # fmt: skip
            for future in as_completed(futures):
                collect(future.result())
    bar.close()
    ordered = [results[e["key"]] for e in entries]
    write_text(out / "runs.csv", runs_table(ordered))
    return ordered


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
