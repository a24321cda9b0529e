"""ROC, precision-recall, reliability and confusion figures of a run, from its saved
predictions (medclf.metrics.curve_data: scikit-learn's curve points, the ECE's own bins)."""

from __future__ import annotations

from pathlib import Path

from medclf.errors import ConfigError, DataError, MedclfError
from medclf.metrics import curve_data
from medclf.run.folder import PREDICTIONS


def run_curves(run_dir, split: str = "test") -> dict:
    """The curve data of one saved split of a finished run (curve_data's dict, with its run,
    split and title)."""
    from medclf.report.evaluate import saved_split

    meta, labels, scores = saved_split(run_dir, split)
    try:
        data = curve_data(meta["task"], labels, scores, meta["class_names"])
    except MedclfError as err:
        raise DataError(f"{Path(run_dir) / PREDICTIONS}: {err}") from err
    title = meta.get("title") if isinstance(meta.get("title"), str) else str(run_dir)
    return {"run": str(run_dir), "split": str(split), "title": title, **data}


ALL = ("roc", "pr", "reliability", "confusion", "curves")


def draw_curves(data: dict, out_dir, names=ALL) -> dict[str, Path]:
    """roc, pr, reliability, confusion and curves (all four side by side), or only ``names``,
    as PNG and PDF in ``out_dir`` (created; it must not be a file); name -> PNG path."""
    from medclf.plots import curve_figures, save_figure

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file; give a folder for the figures")
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{data['title']} — {data['split']} split"
    figures = curve_figures(data, title, names)
    return {name: save_figure(fig, out_dir / f"{name}.png") for name, fig in figures.items()}


def plot_run(run_dir, out_dir, split: str = "test", names=ALL) -> dict:
    """run_curves, drawn into ``out_dir``: the data, with ``figures`` (name -> PNG path)."""
    data = run_curves(run_dir, split)
    return {**data, "figures": draw_curves(data, out_dir, names)}
