"""Figures as files, drawn through matplotlib's object API (``Figure``, not pyplot): no
backend is chosen or forced, no pyplot state is touched, so importing medclf in a notebook
leaves its inline plots alone. A ``Figure`` renders itself to any file format with no display.
"""

from __future__ import annotations

import os
import sys
import textwrap
from contextlib import ExitStack
from pathlib import Path

import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

from medclf.errors import ConfigError
from medclf.files import atomic_path, check_parent

# Slide resolution: matplotlib's own default is 100 dpi and medclf saved at 120, so a 5.5 x 3.6 in
# figure came out about 644 x 472 pixels, too coarse for a slide.
DPI = 200


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, layout=None, **kwargs):
    """``(fig, axes)`` like ``pyplot.subplots``, on a ``Figure`` that pyplot does not manage
    (in a notebook, show it by leaving ``fig`` as a cell's last value, once the inline backend
    is on: ``%matplotlib inline`` or any pyplot call before)."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, out: str | os.PathLike, dpi: int = DPI) -> Path:
    """Save atomically: render to a temporary name in the same folder, then rename. The format
    comes from the suffix; a .png gets its PDF beside it (slides and print), both at ``dpi``. The
    folder must exist (a typo must not create folders). A figure that pyplot manages is closed
    afterwards, as before."""
    formats = sorted(fig.canvas.get_supported_filetypes())
    try:
        if Path(out).suffix.lower().lstrip(".") not in formats:
            raise ConfigError(
                f"cannot draw {out}: '{Path(out).suffix or 'no suffix'}' is not a "
                f"figure format; end the name in .{', .'.join(formats)}"
            )
        check_parent(out)
        targets = [Path(out)]
        if Path(out).suffix.lower() == ".png":
            targets.append(check_parent(Path(out).with_suffix(".pdf")))
        with ExitStack() as stack:  # every file renamed into place only once all are drawn
            for target in targets:
                tmp = stack.enter_context(atomic_path(target))
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


# --- curves and calibration (data: medclf.metrics.curve_data) --------------------------------

CURVE_FIGURES = ("roc", "pr", "reliability", "confusion")


def _legend(ax, n: int) -> None:
    ax.legend(fontsize=7 if n <= 6 else 5, loc="lower right" if n <= 12 else "best")


def draw_roc(ax, data: dict) -> None:
    """One ROC curve per class (per label; the positive class of a binary task)."""
    drawn = [c for c in data["curves"] if c["roc"]]
    for c in drawn:
        roc = c["roc"]
        ax.plot(roc["fpr"], roc["tpr"], lw=1.2, label=f"{c['name'][:28]} (AUC {roc['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("ROC", fontsize=9)
    ax.grid(alpha=0.3)
    if drawn:
        _legend(ax, len(drawn))


def draw_pr(ax, data: dict) -> None:
    """One precision-recall curve per class (label), with its share of positives as chance."""
    drawn = [c for c in data["curves"] if c["roc"]]
    for i, c in enumerate(drawn):
        pr = c["pr"]
        label = f"{c['name'][:28]} (AP {pr['average_precision']:.3f})"
        ax.plot(pr["recall"], pr["precision"], lw=1.2, color=f"C{i}", label=label)
        ax.axhline(c["positives"] / c["n"], color=f"C{i}", lw=0.6, ls=":")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("precision-recall (dotted: chance)", fontsize=9)
    ax.grid(alpha=0.3)
    if drawn:
        _legend(ax, len(drawn))


def draw_reliability(ax, data: dict) -> None:
    """Accuracy against mean confidence per ECE bin (marker area ~ images in the bin)."""
    for i, r in enumerate(data["reliability"]):
        points = [
            (c, a, n)
            for c, a, n in zip(r["confidence"], r["accuracy"], r["count"], strict=True)
            if n
        ]
        if not points:
            continue
        conf, acc, count = map(np.asarray, zip(*points, strict=True))
        label = f"{r['name'][:28]} (ECE {r['ece']:.3f})"
        ax.plot(conf, acc, color=f"C{i}", lw=1, label=label)
        ax.scatter(conf, acc, s=8 + 60 * count / count.max(), color=f"C{i}", zorder=3)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="confidence (mean per bin)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("reliability (dotted: calibrated)", fontsize=9)
    ax.grid(alpha=0.3)
    _legend(ax, len(data["reliability"]))


def draw_confusion(ax, data: dict) -> None:
    """True (rows) against predicted (columns) classes; per label TN FP FN TP for multi-label."""
    matrix = np.asarray(data["confusion_matrix"])
    names = [n[:24] for n in data["class_names"]]
    if matrix.ndim == 3:  # multi-label: one [[tn, fp], [fn, tp]] per label
        matrix = matrix.reshape(len(matrix), 4)
        columns, rows, xlabel, ylabel = ["TN", "FP", "FN", "TP"], names, "", "label"
    else:
        columns, rows = (
            [str(i) for i in range(len(names))],
            [f"{i}: {n}" for i, n in enumerate(names)],
        )
        xlabel, ylabel = "predicted class", "true class"
    ax.imshow(matrix, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(columns)), columns, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    top = matrix.max() if matrix.size else 0
    size = 8 if matrix.shape[0] * matrix.shape[1] <= 64 else 5
    for (i, j), v in np.ndenumerate(matrix):
        color = "white" if v > top / 2 else "black"
        ax.text(j, i, f"{v:,}", ha="center", va="center", color=color, fontsize=size)
    ax.set_title("confusion", fontsize=9)


DRAWERS = {
    "roc": draw_roc,
    "pr": draw_pr,
    "reliability": draw_reliability,
    "confusion": draw_confusion,
}


def curve_figures(data: dict, title: str = "", names=(*CURVE_FIGURES, "curves")) -> dict:
    """name -> Figure for each of ``names``: CURVE_FIGURES alone, "curves" all four side by
    side."""
    k = len(data["class_names"])
    figures = {}
    for name in names:
        if name == "curves":
            fig, axes = subplots(1, 4, figsize=(18, 4.6), layout="constrained")
            for ax, draw in zip(axes, DRAWERS.values(), strict=True):
                draw(ax, data)
            width = 140
        else:
            side = min(3.2 + 0.35 * k, 9) if name == "confusion" else 4.6
            fig, ax = subplots(figsize=(side + 0.6, side), layout="constrained")
            DRAWERS[name](ax, data)
            width = 70
        if title:
            fig.suptitle(textwrap.fill(title, width), fontsize=8)
        figures[name] = fig
    return figures


# --- attribution maps (data: medclf.report.explain) ------------------------------------------

SIGNED = ("weights", "integrated-gradients")  # a sign to show: diverging colours around 0


def attribution_scale(attr: np.ndarray, method: str) -> dict:
    """The colour map and limits of one attribution map: per map, its largest |value|."""
    top = float(np.abs(attr).max()) or 1.0
    if method in SIGNED:
        return {"cmap": "RdBu_r", "vmin": -top, "vmax": top}
    return {"cmap": "inferno", "vmin": 0.0, "vmax": top}


def attribution_rgb(attr: np.ndarray, method: str) -> np.ndarray:
    """An attribution map (any shape) as uint8 RGB colours (shape + (3,)), on
    attribution_figure's scale for it: slice a volume's colours, not its values, to keep it."""
    import matplotlib

    scale = attribution_scale(attr, method)
    span = scale["vmax"] - scale["vmin"]
    unit = np.clip((np.asarray(attr, float) - scale["vmin"]) / span, 0, 1)
    rgba = matplotlib.colormaps[scale["cmap"]](unit, bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def named_slices(volume: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """mid_slices with each slice's name and index: [("axial z=14", ...), ...]."""
    where = [f"z={volume.shape[0] // 2}", f"y={volume.shape[1] // 2}", f"x={volume.shape[2] // 2}"]
    return [(f"{v} {at}", s) for v, at, s in zip(VIEWS, where, mid_slices(volume), strict=True)]


def attribution_figure(images, attributions, captions, method: str, title: str = ""):
    """Per image: the image, then its attribution over it; a volume (D, H, W) as its three
    middle slices, each with its attribution. ``attributions[i]`` has the image's spatial shape
    ((H, W) for an (H, W, 3) image). Colour scale per image: its largest |value|."""
    volumes = attributions[0].ndim == 3
    per_row = 1 if volumes else min(len(images), 4)
    pairs = 3 if volumes else 1
    rows = -(-len(images) // per_row)
    fig, axes = subplots(
        rows,
        2 * pairs * per_row,
        figsize=(2 * pairs * per_row * 1.45, rows * 1.85 + 0.5),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (image, attr) in enumerate(zip(images, attributions, strict=True)):
        r, c0 = divmod(i, per_row)
        scale = attribution_scale(attr, method)
        shown = named_slices(image) if volumes else [("", image)]
        maps = named_slices(attr) if volumes else [("", attr)]
        for k, ((where, img), (_, a)) in enumerate(zip(shown, maps, strict=True)):
            left, right = axes[r, 2 * pairs * c0 + 2 * k], axes[r, 2 * pairs * c0 + 2 * k + 1]
            gray = {"cmap": "gray", "vmin": 0, "vmax": 255} if img.ndim == 2 else {}
            left.imshow(img, **gray)
            right.imshow(img if img.ndim == 2 else img.mean(axis=-1), cmap="gray", alpha=0.6)
            right.imshow(a, **scale, alpha=0.65)
            left.set_title(f"{captions[i] if k == 0 else ''}\n{where}".strip(), fontsize=6)
            empty = "" if np.abs(attr).max() > 0 else ": 0 everywhere"  # Grad-CAM: no evidence
            right.set_title(f"{where or method}{empty}", fontsize=6)
    fig.suptitle(textwrap.fill(f"{method}: {title}", 110), fontsize=8)
    return fig
