"""Figures as files, drawn through matplotlib's object API (``Figure``, not pyplot): no
backend is chosen or forced, no pyplot state is touched, so importing medclf in a notebook
leaves its inline plots alone. A ``Figure`` renders itself to any file format with no display.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

from medclf.errors import ConfigError
from medclf.files import atomic_path, check_parent


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """``(fig, axes)`` like ``pyplot.subplots``, on a ``Figure`` that pyplot does not manage
    (in a notebook, show it by leaving ``fig`` as a cell's last value)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, out: str | os.PathLike, dpi: int = 120) -> Path:
    """Save atomically: render to a temporary name in the same folder, then rename. The format
    comes from the suffix; the folder must exist (a typo must not create folders). A figure
    that pyplot manages is closed afterwards, as before."""
    formats = sorted(fig.canvas.get_supported_filetypes())
    try:
        if Path(out).suffix.lower().lstrip(".") not in formats:
            raise ConfigError(
                f"cannot draw {out}: '{Path(out).suffix or 'no suffix'}' is not a "
                f"figure format; end the name in .{', .'.join(formats)}"
            )
        check_parent(out)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        if "matplotlib.pyplot" in sys.modules:  # never import pyplot just to close
            sys.modules["matplotlib.pyplot"].close(fig)
    return Path(out)


def sample_grid(images, labels, class_names, per_class: int = 8, title: str = ""):
    """One row per class with its first ``per_class`` images."""
    n_classes = len(class_names)
    fig, axes = subplots(
        n_classes, per_class, figsize=(per_class * 0.9 + 2, n_classes * 0.95 + 0.5), squeeze=False
    )
    for c, row in enumerate(axes):
        picks = np.flatnonzero(labels == c)[:per_class]
        for ax, i in zip(row, [*picks, *[None] * per_class], strict=False):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            if i is not None:
                ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        row[0].set_ylabel(class_names[c][:22], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


VIEWS = ("axial", "coronal", "sagittal")


def mid_slices(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three orthogonal mid-slices of a (D, H, W) volume: axial (H, W) at the middle depth,
    coronal (D, W) at the middle height, sagittal (D, H) at the middle width."""
    d, h, w = (n // 2 for n in volume.shape)
    return volume[d], volume[:, h, :], volume[:, :, w]


def volume_grid(volumes, labels, class_names, per_class: int = 8, title: str = ""):
    """One row per class with its first ``per_class`` volumes, each as its three mid-slices
    (axial, coronal, sagittal), the class name at the left and the views named on top."""
    n_classes = len(class_names)
    fig, axes = subplots(
        n_classes,
        3 * per_class,
        figsize=(per_class * 2.1 + 2, n_classes * 0.85 + 0.8),
        squeeze=False,
        gridspec_kw={"wspace": 0.05, "hspace": 0.1},
    )
    for c, row in enumerate(axes):
        picks = [*np.flatnonzero(labels == c)[:per_class], *[None] * per_class][:per_class]
        for k, i in enumerate(picks):
            views = mid_slices(volumes[i]) if i is not None else (None,) * 3
            for j, (ax, view) in enumerate(zip(row[3 * k : 3 * k + 3], views, strict=True)):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.spines[:].set_visible(j == 0 and view is not None)  # a frame starts a volume
                if view is not None:
                    ax.imshow(view, cmap="gray", vmin=0, vmax=255)
                if c == 0:
                    ax.set_title(VIEWS[j], fontsize=6)
        label = textwrap.fill(class_names[c], 24)
        row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def history_figures(history: list[dict], out_dir, title: str = "") -> list[Path]:
    """accuracy.png (train and val accuracy) and loss.png (train and val loss) per epoch."""
    epochs = [r["epoch"] for r in history]
    paths = []
    for name, keys, ylabel in (
        ("accuracy", ("train_acc", "val_acc"), "accuracy"),
        ("loss", ("train_loss", "val_loss"), "loss"),
    ):
        series = [(k, [r.get(k) for r in history]) for k in keys]
        series = [(k, v) for k, v in series if all(x is not None for x in v)]
        if not series:
            continue
        fig, ax = subplots(figsize=(5.5, 3.6))
        for key, values in series:
            ax.plot(epochs, values, marker="o", ms=3, label=key.replace("_", " "))
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.set_title(title, fontsize=9)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
        paths.append(save_figure(fig, Path(out_dir) / f"{name}.png"))
    return paths


def confusion_figure(matrix, class_names, title: str = ""):
    """Counts of true (rows) against predicted (columns) classes, with the counts written in."""
    matrix = np.asarray(matrix)
    k = len(matrix)
    side = min(2.2 + 0.6 * k, 12)
    fig, ax = subplots(figsize=(side + 1.5, side))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = [f"{i}: {name}" for i, name in enumerate(class_names)]
    ax.set_xticks(range(k), [str(i) for i in range(k)])
    ax.set_yticks(range(k), ticks, fontsize=7)
    ax.set(xlabel="predicted class", ylabel="true class")
    top = matrix.max() if matrix.size else 0
    for i in range(k):
        for j in range(k):
            color = "white" if matrix[i, j] > top / 2 else "black"
            ax.text(j, i, f"{matrix[i, j]:,}", ha="center", va="center", color=color, fontsize=8)
    ax.set_title(textwrap.fill(title, 60), fontsize=8)
    return fig
