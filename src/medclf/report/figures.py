"""The study's 18 figures, as data: which run (or which selection), which series."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from medclf.plots import save_figure, subplots

# (number, question, title, how the run is chosen, series)
#   chosen by: {"model": ..., settings...} to match a run, or ("best"|"worst", question)
#   series: "accuracy" (train & val), "loss" (train & val), "val_acc", "train_loss"
FIGURES = [
    (
        1,
        "Q1.1a",
        "Perceptron training and validation accuracy",
        {"model": "numpy-perceptron"},
        "accuracy",
    ),
    (
        2,
        "Q1.1b",
        "Logistic regression accuracy, η = 0.01",
        {"model": "numpy-logreg", "lr": 0.01, "init_std": 0.0},
        "accuracy",
    ),
    (
        3,
        "Q1.1b",
        "Logistic regression accuracy, η = 0.001",
        {"model": "numpy-logreg", "lr": 0.001, "init_std": 0.0},
        "accuracy",
    ),
    (4, "Q1.2b", "MLP accuracy, η = 0.001", {"model": "numpy-mlp", "seed": 42}, "accuracy"),
    (5, "Q1.2b", "MLP training loss, η = 0.001", {"model": "numpy-mlp", "seed": 42}, "train_loss"),
    (
        6,
        "Q2.1",
        "Training and validation loss, η = 0.1",
        {"model": "torch-logreg", "lr": 0.1},
        "loss",
    ),
    (7, "Q2.1", "Validation accuracy, η = 0.1", {"model": "torch-logreg", "lr": 0.1}, "val_acc"),
    (
        8,
        "Q2.1",
        "Training and validation loss, η = 0.01",
        {"model": "torch-logreg", "lr": 0.01},
        "loss",
    ),
    (9, "Q2.1", "Validation accuracy, η = 0.01", {"model": "torch-logreg", "lr": 0.01}, "val_acc"),
    (
        10,
        "Q2.1",
        "Training and validation loss, η = 0.001",
        {"model": "torch-logreg", "lr": 0.001},
        "loss",
    ),
    (
        11,
        "Q2.1",
        "Validation accuracy, η = 0.001",
        {"model": "torch-logreg", "lr": 0.001},
        "val_acc",
    ),
    (
        12,
        "Q2.2a",
        "Training and validation loss, batch size 16",
        {"model": "torch-ffn", "batch_size": 16, "lr": 0.1},
        "loss",
    ),
    (
        13,
        "Q2.2a",
        "Training and validation loss, batch size 1024",
        {"model": "torch-ffn", "batch_size": 1024},
        "loss",
    ),
    (14, "Q2.2b", "Training and validation loss, best learning rate", ("best", "Q2.2b"), "loss"),
    (15, "Q2.2b", "Training and validation loss, worst learning rate", ("worst", "Q2.2b"), "loss"),
    (16, "Q2.2c", "Training and validation loss, worst configuration", ("worst", "Q2.2c"), "loss"),
    (17, "Q2.2c", "Training and validation loss, best configuration", ("best", "Q2.2c"), "loss"),
]

SERIES = {
    "accuracy": (("train_acc", "training accuracy"), ("val_acc", "validation accuracy")),
    "loss": (("train_loss", "training loss"), ("val_loss", "validation loss")),
    "val_acc": (("val_acc", "validation accuracy"),),
    "train_loss": (("train_loss", "training loss"),),
}


def curve_figure(history: list[dict], series: str, title: str, subtitle: str = ""):
    fig, ax = subplots(figsize=(6, 3.8))
    epochs = [r["epoch"] for r in history]
    for key, label in SERIES[series]:
        values = [r.get(key) for r in history]
        if all(v is not None for v in values):
            ax.plot(epochs, values, marker="o" if len(epochs) <= 40 else None, ms=3, label=label)
    is_acc = series in ("accuracy", "val_acc")
    ax.set(xlabel="epoch", ylabel="accuracy" if is_acc else "loss")
    ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def save_both(fig, out_dir: Path, stem: str) -> Path:
    """PNG (for the report) and PDF (for print), as save_figure writes every PNG; returns the
    PNG path."""
    return save_figure(fig, Path(out_dir) / f"{stem}.png")


def convexity_figure(logreg: list[dict], mlp: list[dict]):
    """Q1.2a: final training loss per seed/initialisation, logistic regression vs MLP."""
    fig, axes = subplots(1, 2, figsize=(9, 3.6))
    for ax, runs, name in (
        (axes[0], logreg, "logistic regression (random inits)"),
        (axes[1], mlp, "MLP (seeds)"),
    ):
        for r in runs:
            h = r["history"]
            ax.plot(
                [x["epoch"] for x in h],
                [x["train_loss"] for x in h],
                label=f"seed {r['config']['seed']}",
            )
        ax.set(xlabel="epoch", ylabel="training loss", title=name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Q1.2a: convex (same loss from any start) vs non-convex")
    fig.tight_layout()
    return fig
