"""The run folder, shared by every model family.

    RUN_DIR/
      config.json    the full config (model, dataset, hyperparameters, seed, dtype, ...)
      env.json       machine, library versions, threads, device
      history.json   one record per epoch (medclf.training.history.FIELDS)
      history.csv    the same as a table
      metrics.json   status, the selected epoch, ACC/AUC and every metric (medclf.metrics) of
                     each saved split, test split, seconds, dataset facts
      predictions.npz  labels and scores (probabilities) of val and test (pickle-free)
      {flag}_{split}@{run}.csv   MedMNIST's standard result files, for its own evaluator
      model.npz | model.pt   the selected model (NumPy: no pickle; PyTorch: state dict)
      accuracy.png, loss.png, confusion.png
      checkpoint.*, best.*   while a run is unfinished: the last and the best epoch

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

from medclf.files import atomic_path
from medclf.training.history import FIELDS


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


def history_csv(history: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in FIELDS} for r in history)
    return out.getvalue()


def environment(**extra) -> dict:
    import numpy

    from medclf import __version__

    env = {"medclf": __version__, "python": platform.python_version(),
           "platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "numpy": numpy.__version__}  # fmt: skip
    for name in ("torch", "numba"):
        try:
            env[name] = __import__(name).__version__
        except ImportError:
            env[name] = None
    return {**env, **extra}


def save_run(run_dir: Path, config: dict, history: list[dict], metrics: dict, env: dict) -> Path:
    """Write everything but the model; then draw the plots."""
    from medclf.report.plots import history_figures

    run_dir = Path(run_dir)
    write_json(run_dir / "config.json", config)
    write_json(run_dir / "env.json", env)
    write_json(run_dir / "history.json", history)
    write_text(run_dir / "history.csv", history_csv(history))
    history_figures(history, run_dir, title=metrics.get("title", config["model"]))
    confusion_png(run_dir, metrics)
    write_json(run_dir / "metrics.json", metrics)  # last: its presence marks a finished run
    return run_dir


def confusion_png(run_dir: Path, metrics: dict) -> None:
    """The test confusion matrix of the selected model (single-label tasks)."""
    from medclf.report.plots import confusion_figure, save_figure

    matrix = metrics.get("metrics", {}).get("test", {}).get("confusion_matrix")
    if matrix is None or metrics.get("task", "").startswith("multi-label"):
        return
    title = f"{metrics.get('title', '')}\ntest split ({metrics.get('test_split')})"
    save_figure(confusion_figure(matrix, metrics["class_names"], title), run_dir / "confusion.png")


def load_run(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    return {name: read_json(run_dir / f"{name}.json")
            for name in ("config", "env", "history", "metrics")
            if (run_dir / f"{name}.json").exists()}  # fmt: skip
