"""Run a set of configs: skip finished runs, resume unfinished ones, run the rest with an
executor (medclf.experiments.executors: local processes or Ray), and collect everything in one
tidy table (runs_csv: OUT/runs.csv).

A run's folder is ``OUT/runs/KEY`` (or the entry's own ``folder``: a search's trial), where KEY
hashes its full config, so resumption and deduplication need no bookkeeping: a folder with
metrics.json is finished (reused only where its recorded data MD5 is that of the file the
config names now; else its folder is replaced), one with a checkpoint continues from it.
Several ``medclf reproduce`` may share one OUT: a run folder is owned by one process at a time
(medclf.files.run_lock); a run another live process holds is skipped and reported as running
there. Workers exit when the main process dies.
"""

from __future__ import annotations

import csv
import io
import sys
import threading
from pathlib import Path

from tqdm.auto import tqdm

from medclf.experiments.executors import executor
from medclf.experiments.specs import estimated_cost
from medclf.run.dataid import config_data_change
from medclf.run.folder import (
    CHECKPOINTS,
    RunLockedError,
    clear,
    entry_dir,
    epochs_done,
    finished_run,
    run_lock,
)

RESULT_FIELDS = ("status", "train_acc", "val_acc", "test_acc", "best_val_acc", "seconds", "error")


def replace_stale(run_dir: Path, why: str) -> None:
    """A finished run of other data is no result: remove its files (unless another live
    process holds the folder: it decides) and say so."""
    try:
        with run_lock(run_dir):
            clear(run_dir)
    except RunLockedError:
        return
    print(f"{run_dir}: training again, as {why}; its folder is replaced", file=sys.stderr)


class EpochBar:
    """One progress bar in epochs over every run, fed by polling each run's checkpoint (so
    workers need not report anything): it moves while a run trains, not only when it ends."""

    def __init__(self, todo: list[dict], out: Path, progress: bool, every: float = 1.0):
        # a model fitted once (scikit-learn: no "epochs") counts as one epoch
        self.runs = {e["key"]: (entry_dir(out, e), e["config"].get("epochs", 1)) for e in todo}
        self.done = {key: epochs_done(path) for key, (path, _) in self.runs.items()}
        self.seen: dict[str, int] = {}  # checkpoint mtimes already read
        self.lock, self.stop, self.every = threading.Lock(), threading.Event(), every
        total = sum(epochs for _, epochs in self.runs.values())
        # smoothing=0: the ETA follows the mean rate, as runs' epochs differ in cost
        self.bar = tqdm(
            total=total,
            initial=sum(self.done.values()),
            unit="epoch",
            disable=not (progress and todo),
            desc=f"{len(todo)} runs",
            smoothing=0,
            dynamic_ncols=True,
        )
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
                for name in CHECKPOINTS:
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


def run_all(
    entries: list[dict],
    out: Path,
    workers: int = 2,
    root=None,
    progress: bool = True,
    backend: str = "local",
    address: str | None = None,
) -> list[dict]:
    """Run every entry not yet finished; return one result per entry, in entry order.
    ``backend``: "local" (this machine's processes) or "ray" (a Ray cluster at ``address``;
    None starts a local one); see medclf.experiments.executors."""
    run = executor(backend, workers, address)
    run.check()  # a missing extra or dead address is said before anything runs
    out = Path(out)
    results: dict[str, dict] = {}
    todo = []
    for entry in entries:
        run_dir = entry_dir(out, entry)
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
        run.run(todo, out, root, collect)
    finally:
        bar.close()
    return [results[e["key"]] for e in entries]


def runs_csv(results: list[dict]) -> str:
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
