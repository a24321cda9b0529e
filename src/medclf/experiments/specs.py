"""Every run of the study as data: one row per run, tagged with its question.

A row is (question id, model, overrides of the defaults in medclf.models.config). Rows that
expand to
the same config (the default network of Q2.2a and Q2.2b) are run once: runs are keyed by a hash
of their full config.
"""

from __future__ import annotations

import hashlib
import json

from medclf.models.config import make_config
from medclf.models.registry import MODELS

STUDY = [
    ("Q1.1a", "numpy-perceptron", {}),
    ("Q1.1b", "numpy-logreg", {"lr": 0.01}),
    ("Q1.1b", "numpy-logreg", {"lr": 0.001}),
    ("Q1.2b", "numpy-mlp", {"lr": 0.001, "hidden_size": 200}),
    ("Q2.1", "torch-logreg", {"lr": 0.001, "batch_size": 16}),
    ("Q2.1", "torch-logreg", {"lr": 0.01, "batch_size": 16}),
    ("Q2.1", "torch-logreg", {"lr": 0.1, "batch_size": 16}),
    ("Q2.2a", "torch-ffn", {"batch_size": 16}),
    ("Q2.2a", "torch-ffn", {"batch_size": 1024}),
    ("Q2.2b", "torch-ffn", {"lr": 1.0}),
    ("Q2.2b", "torch-ffn", {"lr": 0.1}),
    ("Q2.2b", "torch-ffn", {"lr": 0.01}),
    ("Q2.2b", "torch-ffn", {"lr": 0.001}),
    ("Q2.2c", "torch-ffn", {"batch_size": 256, "epochs": 150}),
    ("Q2.2c", "torch-ffn", {"batch_size": 256, "epochs": 150, "l2": 0.0001}),
    ("Q2.2c", "torch-ffn", {"batch_size": 256, "epochs": 150, "dropout": 0.2}),
]

# Q1.2a shown rather than argued: logistic regression from random initialisations (convex: the
# same loss) against the MLP from several seeds (non-convex: different losses).
CONVEXITY_SEEDS = (42, 43, 44)
CONVEXITY = [
    ("Q1.2a", "numpy-logreg", {"lr": 0.001, "init_std": 0.1, "seed": s}) for s in CONVEXITY_SEEDS
] + [("Q1.2a", "numpy-mlp", {"lr": 0.001, "seed": s}) for s in CONVEXITY_SEEDS]

# The settings each question sweeps: how its runs are named in the report.
SWEPT = {
    "Q1.1b": ("lr",),
    "Q1.2a": ("seed",),
    "Q2.1": ("lr",),
    "Q2.2a": ("batch_size",),
    "Q2.2b": ("lr",),
    "Q2.2c": ("l2", "dropout"),
}

# Questions whose figures plot training accuracy per epoch (Figures 1-4).
PER_EPOCH_TRAIN_ACC = {"Q1.1a", "Q1.1b", "Q1.2b"}

QUESTIONS = ("Q1.1a", "Q1.1b", "Q1.2a", "Q1.2b", "Q2.1", "Q2.2a", "Q2.2b", "Q2.2c")

# --quick: a slice of the data and a few epochs, to try the tool in under two minutes.
QUICK = {"train_fraction": 0.08, "epochs": 3, "long_epochs": 6}


def run_key(config: dict) -> str:
    """Short stable hash of a full config: the run's identity and folder name."""
    text = json.dumps(config, sort_keys=True)
    return f"{config['model']}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def expand(rows, dataset: str, seeds: int = 1, quick: bool = False, only=None) -> list[dict]:
    """Configs for the rows (each with ``questions``: the ids that use it), deduplicated.

    ``seeds`` repeats every run with seeds 42, 43, ...; the set of runs is fixed up front.
    """
    runs: dict[str, dict] = {}
    for qid, model, overrides in rows:
        if only and qid not in only:
            continue
        base_seed = overrides.get("seed", 42)
        for k in range(seeds):
            settings = {"dataset": dataset, **overrides, "seed": base_seed + k}
            if quick:  # a slice of the data and few epochs: other configs, other keys
                long = settings.get("epochs", 20) > 20
                settings["epochs"] = QUICK["long_epochs"] if long else QUICK["epochs"]
                settings["train_fraction"] = QUICK["train_fraction"]
            config = make_config(model, **settings)
            key = run_key(config)
            entry = runs.setdefault(key, {"key": key, "config": config, "questions": []})
            if qid not in entry["questions"]:
                entry["questions"].append(qid)
    return list(runs.values())


def estimated_cost(config: dict) -> float:
    """Rough seconds per run on one core (the registry's cost per epoch), to start the longest
    runs first."""
    spec = MODELS[config["model"]]
    large = spec.large_batch_cost is not None and config.get("batch_size", 0) >= 256
    # dropout draws a mask per hidden layer and step: 1.6x the epoch time of Q2.2c's network
    masks = 1.6 if config.get("dropout") else 1.0
    return (spec.large_batch_cost if large else spec.cost) * config.get("epochs", 1) * masks
