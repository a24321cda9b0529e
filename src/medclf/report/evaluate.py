"""`medclf evaluate` and `medclf runs`: metrics recomputed from saved predictions, and run
folders as one table. Nothing here trusts a number in metrics.json that it can recompute."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclf.errors import DataError, MedclfError
from medclf.metrics import task_metrics
from medclf.models.config import COMMON, DEFAULTS
from medclf.run import folder
from medclf.run.folder import (
    CONFIG,
    PREDICTIONS,
    is_unfinished,
    read_json_or_none,
    read_metrics,
    run_folders_below,
)
from medclf.run.outputs import load_predictions
from medclf.stats import METRICS, RESAMPLES, bootstrap_interval, compare_runs

HEADLINE = ("acc", "auc", "balanced_acc", "macro_f1", "ece", "mae", "qwk")


def read_predictions(run_dir) -> dict:
    """predictions.npz of a run folder, every array a plain numeric one, or one DataError."""
    path = Path(run_dir) / PREDICTIONS
    if not path.is_file():
        raise DataError(
            f"{path} is missing; give the folder of a run finished by 'medclf train' "
            "or 'medclf reproduce'"
        )
    return load_predictions(run_dir)  # refuses, in one line, a file medclf did not write


def _text(value, default: str = "") -> str:
    return value if isinstance(value, str) else default


def saved_split(run_dir, split: str = "test") -> tuple[dict, np.ndarray, np.ndarray]:
    """metrics.json (its task and class names checked) and one saved split's labels and scores."""
    run_dir = Path(run_dir)
    meta = read_metrics(run_dir)
    if meta is None or not (run_dir / PREDICTIONS).is_file():
        raise DataError(
            f"{run_dir} has no readable metrics.json and {PREDICTIONS}; give the "
            "folder of a run finished by 'medclf train' or 'medclf reproduce'"
        )
    task, names = meta.get("task"), meta.get("class_names")
    named = isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    if not isinstance(task, str) or not named:
        raise DataError(
            f"{run_dir / folder.METRICS} lacks the task or class names (written by "
            "an older medclf, or damaged); train the run again"
        )
    preds = read_predictions(run_dir)
    saved = sorted(k.removesuffix("_scores") for k in preds if k.endswith("_scores"))
    split = str(split)
    if f"{split}_scores" not in preds or f"{split}_labels" not in preds:
        raise DataError(f"{run_dir} has no saved '{split}' split; it has {', '.join(saved)}")
    return meta, preds[f"{split}_labels"], preds[f"{split}_scores"]


def evaluate_run(run_dir, split: str = "test", resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Every metric of one saved split of a finished run, recomputed from its predictions, with
    95 % bootstrap intervals of ACC and AUC over its images (``resamples`` 0: none).
    metrics.json gives the task and class names (checked); the rest of it only labels."""

    meta, labels, scores = saved_split(run_dir, split)
    task = meta["task"]
    try:
        metrics = task_metrics(task, labels, scores, meta["class_names"])
        ci = intervals(task, labels, scores, resamples, seed) if resamples else {}
    except MedclfError as err:
        raise DataError(f"{Path(run_dir) / PREDICTIONS}: {err}") from err
    return {
        "run": str(run_dir),
        "split": str(split),
        "task": task,
        "dataset": _text(meta.get("dataset_name"), "?"),
        "synthetic": meta.get("synthetic") is True,
        "title": _text(meta.get("title")),
        **metrics,
        "intervals": ci,
    }


def intervals(task: str, labels, scores, resamples: int, seed: int) -> dict:
    """ACC's and AUC's bootstrap intervals over the split's images."""
    return {
        m: bootstrap_interval(task, labels, scores, m, seed=seed, resamples=resamples)
        for m in METRICS
    }


def paired_comparison(
    run_a, run_b, split: str = "test", seed: int = 0, resamples: int = RESAMPLES
) -> dict:
    """The paired tests of two runs scored on the same images (same task, split and labels)."""
    (meta_a, labels, a), (meta_b, labels_b, b) = (saved_split(r, split) for r in (run_a, run_b))
    if meta_a["task"] != meta_b["task"] or not np.array_equal(labels, labels_b):
        raise DataError(
            f"{run_a} and {run_b} were not scored on the same {split} images (another task, "
            "labels or image count); compare runs of the same dataset file"
        )
    try:
        tests = compare_runs(meta_a["task"], labels, a, b, seed=seed, resamples=resamples)
    except MedclfError as err:
        raise DataError(f"{run_a} vs {run_b}: {err}") from err
    return {
        "a": str(run_a),
        "b": str(run_b),
        "split": str(split),
        "n": int(len(labels)),
        "tests": tests,
    }


def interval_text(result: dict, key: str) -> str:
    value = fmt(result.get(key), 0).strip()
    ci = result.get("intervals", {}).get(key)
    if not ci or ci["low"] is None:
        return f"{key} {value}"
    return f"{key} {value} [{ci['low']:.4f}, {ci['high']:.4f}]"


def compare_text(c: dict) -> str:
    """Two runs' paired tests as lines a reader can check."""
    lines = [f"A = {c['a']}", f"B = {c['b']}", f"{c['split']} split, {c['n']:,} images, paired:"]
    for metric, tests in c["tests"].items():
        boot = tests["bootstrap"]
        span = "undefined" if boot["low"] is None else f"[{boot['low']:+.4f}, {boot['high']:+.4f}]"
        lines.append(f"  {metric} A - B {boot['difference']:+.4f}, 95 % paired bootstrap {span}")
        if "delong" in tests:
            d = tests["delong"]
            lines.append(f"    DeLong: z {d['z']:+.3f}, p {d['p_value']:.4g}")
        if "mcnemar" in tests:
            m = tests["mcnemar"]
            lines.append(
                f"    McNemar (exact): only A right {m['only_a_right']}, only B right "
                f"{m['only_b_right']}, p {m['p_value']:.4g}"
            )
    lines.append(
        "A p-value above 0.05, or an interval that holds 0: these images show no difference "
        "between the two runs at the 5 % level."
    )
    return "\n".join(lines)


def fmt(value, width: int = 8) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>{width}.4f}" if isinstance(value, float) else f"{value:>{width}}"


def single_run_text(result: dict) -> str:
    """Headline metrics, the per-class table and the confusion matrix of one run."""
    data = f"{result['dataset']}{' (synthetic)' if result['synthetic'] else ''}"
    lines = [
        f"{result['run']}: {result['title']}",
        f"{result['split']} split of {data}, {result['n']:,} images, task {result['task']}",
        "  ".join(interval_text(result, k) for k in HEADLINE if k in result),
    ]
    for name, reason in result.get("undefined", {}).items():
        lines.append(f"  {name} undefined: {reason}")
    if result.get("intervals"):
        ci = result["intervals"]["acc"]
        lines.append(
            f"  [..]: {ci['confidence']:.0%} {ci['method']}, {ci['resamples']} "
            f"resamples, seed {ci['seed']}"
        )
    width = max(len(c["name"]) for c in result["per_class"]) + 2
    lines.append(f"\n{'class':{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for c in result["per_class"]:
        lines.append(
            f"{c['name']:{width}}{fmt(c['precision'], 10)}{fmt(c['recall'], 10)}"
            f"{fmt(c['f1'], 10)}{fmt(c['support'], 10)}"
        )
    lines += ["", *confusion_text(result)]
    return "\n".join(lines)


def confusion_text(result: dict) -> list[str]:
    matrix = result["confusion_matrix"]
    if result["task"].startswith("multi-label"):  # one 2x2 [[tn, fp], [fn, tp]] per label
        lines = ["confusion per label (tn fp fn tp):"]
        for c, m in zip(result["per_class"], matrix, strict=True):
            lines.append(f"  {c['name']:24} {m[0][0]:>7} {m[0][1]:>7} {m[1][0]:>7} {m[1][1]:>7}")
        return lines
    k = len(matrix)
    cell = max(7, max(len(f"{v:,}") for row in matrix for v in row) + 2)
    lines = [
        "confusion matrix (rows: true class, columns: predicted class):",
        "true\\pred" + "".join(f"{j:>{cell}}" for j in range(k)),
    ]
    for i, row in enumerate(matrix):
        lines.append(f"{i:>9}" + "".join(f"{v:>{cell},}" for v in row))
    return lines


def comparison_text(results: list[dict]) -> str:
    """Several runs side by side, one row each."""
    width = max(len(r["run"]) for r in results) + 2
    keys = [k for k in HEADLINE if any(k in r for r in results)]
    lines = [f"{'run':{width}}{'dataset':16}{'split':6}" + "".join(f"{k:>13}" for k in keys)]
    for r in results:
        data = r["dataset"] + ("*" if r["synthetic"] else "")
        lines.append(
            f"{r['run']:{width}}{data:16}{r['split']:6}" + "".join(fmt(r.get(k), 13) for k in keys)
        )
    if any(r["synthetic"] for r in results):
        lines.append("* synthetic data")
    return "\n".join(lines)


# --- medclf runs -----------------------------------------------------------------------------

RUN_COLUMNS = (
    "run",
    "model",
    "dataset",
    "settings",
    "status",
    "epoch",
    "val_acc",
    "val_auc",
    "test_acc",
    "test_auc",
)
HIDDEN = ("model", "dataset", "test_split", "dtype", "train_fraction")


def key_settings(config: dict) -> str:
    """The settings where the run differs from its model's defaults (medclf.models.config)."""
    defaults = {**COMMON, **DEFAULTS.get(str(config.get("model")), {})}
    shown = (  # a list (an ensemble's members) by its length: the table stays one line a run
        f"{k}={len(v) if isinstance(v, list) else v}"
        for k, v in config.items()
        if k not in HIDDEN and defaults.get(k) != v
    )
    return " ".join(shown) or "defaults"


def find_runs(top) -> list[Path]:
    """Every folder under ``top`` (itself included) that holds a run's config.json."""
    top = Path(top)
    if not top.is_dir():
        raise DataError(f"{top} is not a folder; give the folder that holds run folders")
    return run_folders_below(top, CONFIG)


def run_row(run_dir: Path, top: Path) -> dict:
    config = read_json_or_none(run_dir / CONFIG)
    config = config if isinstance(config, dict) else {}
    metrics = read_metrics(run_dir)
    if metrics is None:
        status = "unfinished" if is_unfinished(run_dir) else "no metrics"
        metrics = {}
    else:
        status = str(metrics.get("status", "done"))
    name = str(run_dir.relative_to(top)) if run_dir != top else run_dir.name
    data = str(metrics.get("dataset_name") or Path(str(config.get("dataset", "?"))).stem)
    return {
        "run": name,
        "model": config.get("model", "?"),
        "dataset": data + ("*" if metrics.get("synthetic") else ""),
        "settings": key_settings(config),
        "status": status,
        "epoch": metrics.get("selected_epoch"),
        **{k: number(metrics.get(k)) for k in ("val_acc", "val_auc", "test_acc", "test_auc")},
    }


def number(value) -> float | None:
    """A metric as shown and sorted: a finite number, else None (a damaged file says "high")."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
    return float(value) if ok and abs(value) != float("inf") else None


def list_runs(top, sort: str = "run") -> list[dict]:
    top = Path(top)
    rows = [run_row(d, top) for d in find_runs(top)]
    numeric = sort in ("val_acc", "val_auc", "test_acc", "test_auc", "epoch")
    if numeric:  # best first; runs without the number last
        rows.sort(key=lambda r: (r[sort] is None, -(r[sort] or 0)))
    else:
        rows.sort(key=lambda r: str(r[sort]))
    return rows


def runs_text(rows: list[dict]) -> str:
    if not rows:
        return "no run folders found"
    widths = {c: max(len(c), *(len(cell_text(r[c])) for r in rows)) + 2 for c in RUN_COLUMNS}
    lines = ["".join(f"{c:<{widths[c]}}" for c in RUN_COLUMNS).rstrip()]
    lines += [
        "".join(f"{cell_text(r[c]):<{widths[c]}}" for c in RUN_COLUMNS).rstrip() for r in rows
    ]
    if any(r["dataset"].endswith("*") for r in rows):
        lines.append("* synthetic data")
    return "\n".join(lines)


def cell_text(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
