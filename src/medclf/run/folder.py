"""The run folder: the one module that knows its file names, the statuses of a finished run,
how its JSON and arrays are read and written (atomically), its lock, and where the runs of a
set of runs (OUT/runs/KEY) and a search's trials (OUT/trials/trial-NNNN) live.

    RUN_DIR/
      config.json    the full config (model, dataset, hyperparameters, seed, dtype, ...)
      env.json       machine, library versions, threads, device
      history.json   one record per epoch (medclf.models.training.history.FIELDS)
      history.csv    the same as a table
      metrics.json   status, the selected epoch, ACC/AUC and every metric (medclf.metrics) of
                     each saved split, test split, seconds, dataset facts
      predictions.npz  labels and scores (probabilities) of val and test (pickle-free)
      {flag}_{split}@{run}.csv   MedMNIST's standard result files, for its own evaluator
      model.npz | model.pt | model.skops   the selected model (no pickle)
      accuracy.png, loss.png, confusion.png   and each one's PDF beside it
      robustness.csv/.json/.png/.pdf   medclf robustness's results, where it wrote them here
      checkpoint.*, best.*   while a run is unfinished: the last and the best epoch
      .lock          while a process owns the folder (medclf.files.run_lock)

metrics.json is written last: its presence, with a finished status, marks a finished run.
Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from medclf.errors import DataError
from medclf.files import RunLockedError, atomic_path, run_lock
from medclf.models.training.history import FIELDS
from medclf.version import __version__

__all__ = ["RunLockedError", "run_lock"]  # the lock, re-exported: a run folder's owner

CONFIG, ENV, HISTORY, HISTORY_CSV = "config.json", "env.json", "history.json", "history.csv"
METRICS, PREDICTIONS = "metrics.json", "predictions.npz"
MODEL_FILES = MODEL_NPZ, MODEL_PT, MODEL_SKOPS = ("model.npz", "model.pt", "model.skops")
CHECKPOINTS = CHECKPOINT_NPZ, CHECKPOINT_PT = ("checkpoint.npz", "checkpoint.pt")  # last epoch
BESTS = BEST_NPZ, BEST_PT = ("best.npz", "best.pt")  # an unfinished run's best epoch so far
MODEL_ONNX = "model.onnx"  # medclf export onnx's default output (not the run's: never cleared)
LEFTOVERS = (*CHECKPOINTS, *BESTS)  # removed once a run has finished (or was pruned)
PARTIAL = (CONFIG, *LEFTOVERS)  # the files of an unfinished run: enough to continue it
FIGURES = ("accuracy.png", "loss.png", "confusion.png")
# medclf robustness's outputs, in the run folder by default: a retrained run's are stale
ROBUSTNESS = ("robustness.csv", "robustness.json", "robustness.png", "robustness.pdf")
FIGURE_PDFS = tuple(name.replace(".png", ".pdf") for name in FIGURES)  # save_figure's
RUN_FILES = (CONFIG, ENV, HISTORY, HISTORY_CSV, METRICS, PREDICTIONS)  # every run's
RUN_FILES += (
    *MODEL_FILES,
    *LEFTOVERS,
    *FIGURES,
    *FIGURE_PDFS,
    *ROBUSTNESS,
)  # family, unfinished, drawn
FINISHED = ("done", "diverged")  # statuses of a finished run: it is not trained again
RUNS, TRIALS = "runs", "trials"


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def json_safe(obj):
    """NaN and infinity are not JSON: a number that is not finite is written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> Path:
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False)
    return write_text(path, text + "\n")


def read_json(path: Path):
    """A JSON file; ValueError where it is not JSON, nested too deeply to parse included."""
    try:
        return json.loads(Path(path).read_text())
    except RecursionError as err:
        raise ValueError(f"{path} is nested too deeply to be a file medclf wrote") from err


def read_json_or_none(path: Path):
    """The file's JSON, or None where it is missing or damaged."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def damaged(path: Path, why: str) -> DataError:
    return DataError(f"{path} is damaged ({why}); train the run again with 'medclf train'")


def read_object(path: Path) -> dict:
    """A JSON object a finished run must have; a missing or damaged file is one DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path} is missing, so {path.parent} is not a complete run folder; "
            "train the run again with 'medclf train'"
        )
    try:
        obj = json.loads(path.read_text())
    except (ValueError, RecursionError) as err:  # not JSON, not text, nested too deeply
        raise damaged(path, "not valid JSON") from err
    if not isinstance(obj, dict):
        raise damaged(path, "not a JSON object")
    return obj


def read_metrics(run_dir: Path) -> dict | None:
    """metrics.json as a dict, or None where it is missing, not a file or damaged."""
    path = Path(run_dir) / METRICS
    obj = read_json_or_none(path) if path.is_file() else None
    return obj if isinstance(obj, dict) else None


def is_finished(metrics) -> bool:
    return isinstance(metrics, dict) and metrics.get("status") in FINISHED


def finished_run(run_dir: Path, config: dict) -> dict | None:
    """The metrics of a finished run of ``config`` in ``run_dir``, whatever data it had; None
    if it must (re)run, including when its config.json or metrics.json is missing or damaged."""
    run_dir = Path(run_dir)
    if read_json_or_none(run_dir / CONFIG) != config:
        return None
    metrics = read_json_or_none(run_dir / METRICS)
    return metrics if is_finished(metrics) else None


def finished(run_dir: Path, config: dict, root=None) -> dict | None:
    """finished_run, where the run was trained on the file its config names now."""
    # here, not at the top: dataid's medclf.data.fetch imports requests and pooch (~1 s,
    # measured), which the CLI need not pay to read the names above
    from medclf.run.dataid import config_data_change

    metrics = finished_run(run_dir, config)
    return metrics if metrics and config_data_change(metrics, config, root) is None else None


def has_metrics(run_dir: Path) -> bool:
    """metrics.json exists: the run ended (its status says how)."""
    return (Path(run_dir) / METRICS).is_file()


def is_unfinished(run_dir: Path) -> bool:
    """A checkpoint is on disk: the run stopped mid-way and can continue."""
    return any((Path(run_dir) / name).is_file() for name in CHECKPOINTS)


def run_dir_of(out, key: str) -> Path:
    """The folder of run ``key`` in a set of runs (reproduce, benchmark, tune on Ray)."""
    return Path(out) / RUNS / key


def entry_dir(out, entry: dict) -> Path:
    """The folder of a runner entry: its own ``folder`` (relative to OUT: a search's trial),
    else OUT/runs/KEY."""
    return Path(out) / entry["folder"] if "folder" in entry else run_dir_of(out, entry["key"])


def trial_dir(number: int) -> str:
    """A search's trial folder, relative to the search's OUT."""
    return f"{TRIALS}/trial-{number:04d}"


def run_folders_below(top: Path, marker: str = CONFIG) -> list[Path]:
    """Every folder at or below ``top`` that holds ``marker`` (config.json: any run;
    metrics.json: a run that ended)."""
    return sorted(p.parent for p in Path(top).rglob(marker) if p.parent.is_dir())


def remove_leftovers(run_dir: Path) -> None:
    """Drop the checkpoints of a run that ended (or will never be continued)."""
    for name in LEFTOVERS:
        (Path(run_dir) / name).unlink(missing_ok=True)


def clear(run_dir: Path) -> None:
    """Remove a run's files (only medclf's own, never anything else in the folder)."""
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for csv_file in run_dir.glob("*@*.csv"):
        csv_file.unlink()


_KEPT: dict[tuple, object] = {}  # loaded models, newest last
KEEP = 4  # models kept at once: a notebook's few runs, without holding every model in memory


def kept(path: Path, load, *key):
    """``load()``'s model for the file ``path``, loaded (and checked) once while the file stays
    the same (inode, size, mtime) and ``key`` (what else the model depends on) too, so that
    repeated predictions from one run do not read and rebuild its model every time."""
    st = Path(path).stat()
    k = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns, *key)
    if k not in _KEPT:
        model = load()
        if len(_KEPT) >= KEEP:
            del _KEPT[next(iter(_KEPT))]
        _KEPT[k] = model
    return _KEPT[k]


def save_arrays(path: Path, arrays: dict) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def load_arrays(path: Path) -> dict:
    """Every array of an .npz medclf wrote, pickle-free; any other file is one DataError."""
    if Path(path).exists() and not Path(path).is_file():  # a device or a pipe: may never end
        raise DataError(f"{path} is not a regular file (a device or a pipe); train the run again")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as err:  # not a zip, cut short, an object array: never unpickled
        if isinstance(err, OSError) and err.errno is not None:
            raise  # an environment fault: the CLI names it
        raise DataError(
            f"{path} cannot be read ({type(err).__name__}); train the run again"
        ) from err


def read_files(folder: Path, names=None) -> dict[str, bytes]:
    """The plain files of ``folder`` (only ``names`` where given), hidden ones left out."""
    return {
        p.name: p.read_bytes()
        for p in sorted(Path(folder).iterdir())
        if p.is_file() and not p.name.startswith(".") and (names is None or p.name in names)
    }


def write_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """A run's files into ``run_dir``: each atomically, metrics.json last; where they finish
    the run, its checkpoints are removed (as the lifecycle does)."""
    for name in sorted(files, key=lambda n: n == METRICS):
        with atomic_path(Path(run_dir) / name) as tmp:
            tmp.write_bytes(files[name])
    if METRICS in files:
        remove_leftovers(run_dir)


def epochs_done(run_dir: Path) -> int:
    """Epochs an unfinished run has behind it, read from its checkpoint (0 if none)."""
    npz, pt = (Path(run_dir) / name for name in CHECKPOINTS)
    try:
        if npz.exists():
            with np.load(npz, allow_pickle=False) as data:
                return len(json.loads(str(data["meta"])).get("history", []))
        if pt.exists():
            import torch  # only where a PyTorch run is in progress

            return len(torch.load(pt, weights_only=True)["history"])
    except Exception:  # replaced or half-read while we looked: next time
        pass
    return 0


def history_csv(history: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in FIELDS} for r in history)
    return out.getvalue()


def environment(**extra) -> dict:
    env = {
        "medclf": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
    }
    for name in ("torch", "numba"):
        try:
            env[name] = __import__(name).__version__
        except ImportError:
            env[name] = None
    return {**env, **extra}
