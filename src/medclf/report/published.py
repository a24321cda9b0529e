"""The study's published numbers (protocol.md), in one table the report reads."""

from __future__ import annotations

from medclf.report.medmnist_v2 import MEDMNIST_V2

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
    "Q2.2c best / worst (final validation accuracy)": "dropout=0.2 / default (the study "
    "names no criterion; its best has the best test accuracy)",
    "Q2.2c best / worst (test accuracy)": "dropout=0.2 / default",
    "Q2.2c overfitting without regularisation": "yes",
}

# MedMNIST v2 baselines on OCTMNIST's official 1,000-image test split (method, AUC, ACC), from the
# one sourced table in medmnist_v2.py (an earlier copy here had v1's auto-sklearn ACC, 0.595).
MEDMNIST_BASELINES = [(m, s.auc, s.acc) for m, s in MEDMNIST_V2["octmnist"].items()]
