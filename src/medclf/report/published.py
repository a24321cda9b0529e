"""The study's published numbers (protocol.md), in one table the report reads."""

from __future__ import annotations

# (question, model, settings that identify the run, reported test accuracy)
STUDY_RESULTS = [
    ("Q1.1a", "numpy-perceptron", {}, 0.3422),
    ("Q1.1b", "numpy-logreg", {"lr": 0.01}, 0.5784),
    ("Q1.1b", "numpy-logreg", {"lr": 0.001}, 0.5936),
    ("Q1.2b", "numpy-mlp", {"lr": 0.001}, 0.7505),
    ("Q2.1", "torch-logreg", {"lr": 0.001}, 0.6503),
    ("Q2.1", "torch-logreg", {"lr": 0.01}, 0.6200),
    ("Q2.1", "torch-logreg", {"lr": 0.1}, 0.5577),
    ("Q2.2a", "torch-ffn", {"batch_size": 16}, 0.7788),
    ("Q2.2b", "torch-ffn", {"lr": 0.1}, 0.7788),
    ("Q2.2c", "torch-ffn", {"batch_size": 256, "dropout": 0.2}, 0.8034),
]

# The study's own selections, which the report's code-made selections are compared with.
STUDY_SELECTIONS = {
    "Q2.1 best learning rate (final validation accuracy)": "lr=0.01",
    "Q2.2b best / worst (validation accuracy)": "lr=0.1 / lr=1.0",
    "Q2.2c best / worst": "dropout=0.2 / default",
    "Q2.2c overfitting without regularisation": "yes",
}

# MedMNIST v2 baselines on OCTMNIST's official 1,000-image test split (AUC, ACC).
MEDMNIST_BASELINES = [
    ("ResNet-18 (28)", 0.943, 0.743), ("ResNet-18 (224)", 0.958, 0.763),
    ("ResNet-50 (28)", 0.952, 0.762), ("ResNet-50 (224)", 0.958, 0.776),
    ("auto-sklearn", 0.887, 0.595), ("AutoKeras", 0.955, 0.763),
    ("Google AutoML Vision", 0.963, 0.771),
]  # fmt: skip
