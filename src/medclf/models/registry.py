"""Every model medclf trains, one entry each: its family, its default settings, the tasks it
supports, the inputs it takes, its builder and its rough cost. Adding a model is adding an
entry and its builder (and, for a new architecture, its class); nothing else branches on model
names.

Families (medclf.run.families: how a family trains, saves, loads and exports): ``numpy`` — the
from-scratch models of the study, trained one example at a time; ``torch`` — PyTorch networks,
trained by medclf's engine; ``sklearn`` — classic scikit-learn baselines on pixels, fitted once.
Inputs: ``flat`` — pixels flattened and divided by 256 (the study's features; ``bias`` adds the
constant-1 column of the study's linear NumPy models); ``image`` — (C, H, W) pixels scaled to
[-1, 1] (MedMNIST's mean 0.5, sd 0.5 normalisation); ``volume`` — a 3D dataset's (D, H, W)
voxels as (1, D, H, W), scaled as ``image``.
Dims: the data a model accepts, 2 (images), 3 (volumes) or both (flat models read flattened
voxels as they read flattened pixels).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

SINGLE_LABEL = ("binary-class", "multi-class", "ordinal-regression")
ALL_TASKS = (*SINGLE_LABEL, "multi-label, binary-class")


@dataclass(frozen=True)
class ModelSpec:
    family: str  # "numpy", "torch" or "sklearn"
    defaults: dict
    about: str
    tasks: tuple[str, ...] = ALL_TASKS
    inputs: str = "flat"  # "flat", "flat+bias", "image" or "volume"
    # "module:function" that makes the model, with its family's arguments: numpy (config,
    # n_classes), torch (config, input_shape, n_outputs), sklearn (settings, seed, threads).
    # A path, imported on first use: the registry stays light (no torch, no scikit-learn).
    build: str = ""
    cost: float = 5.0  # rough seconds per epoch on one core, to start the longest runs first
    large_batch_cost: float | None = None  # the same at batch_size >= 256, where it differs
    # False: fitting never draws from the config's seed, so every seed gives the same model
    # (a benchmark trains it once); decided from what the estimator does with its seed.
    uses_seed: bool = True
    dims: tuple[int, ...] = (2,)  # the DatasetInfo.dims it accepts: 2 images, 3 volumes
    # Settings in which runs of one sweep may differ and still be fitted as one stacked model
    # (same data, batch order and shapes; the family's stack_key decides); (): never stacked.
    stack: tuple[str, ...] = ()


def builder(model: str) -> Callable:
    """The function that makes ``model`` (its entry's ``build``)."""
    module, name = MODELS[model].build.split(":")
    return getattr(importlib.import_module(module), name)


NUMPY = "medclf.models.numpy_models.build:"
TORCH = "medclf.models.torch_models.build:"
SKLEARN = "medclf.models.classic:"
FLAT = (2, 3)  # flat models read a volume's voxels flattened, as an image's pixels


# Conv nets: MedMNIST v2's protocol (Adam, lr 0.001, batch 128, 100 epochs, lr x 0.1 at 50 % and
# 75 %) unless a preset says otherwise; see PRESETS.
PAPER = {
    "epochs": 100,
    "lr": 0.001,
    "batch_size": 128,
    "optimizer": "adam",
    "l2": 0.0,
    "schedule": "paper",
    "augment": "none",
}

# The conv nets' numerics and graph mode (medclf.models.training.precision; torch.compile):
# float32 and eager unless asked, as every run before these settings existed.
CONV = {"precision": "fp32", "compile": False}
# MedMNIST v2's 3D protocol (experiments/MedMNIST3D): the same, at batch 32.
PAPER_3D = {**PAPER, "batch_size": 32}

MODELS: dict[str, ModelSpec] = {
    # Q1: from scratch, one example at a time, float64 for fidelity to the study.
    "numpy-perceptron": ModelSpec(
        "numpy",
        {"epochs": 20, "dtype": "float64"},
        "the study's multi-class perceptron (NumPy, from scratch)",
        SINGLE_LABEL,
        "flat+bias",
        build=NUMPY + "perceptron",
        dims=FLAT,
        cost=0.5,
    ),
    "numpy-logreg": ModelSpec(
        "numpy",
        {
            "epochs": 20,
            "lr": 0.01,
            "batch_size": 1,
            "dtype": "float64",
            "init_std": 0.0,
        },  # the study starts from W = 0
        "multinomial logistic regression by SGD (NumPy, from scratch)",
        SINGLE_LABEL,
        "flat+bias",
        build=NUMPY + "logistic_regression",
        dims=FLAT,
        cost=0.6,
    ),
    "numpy-mlp": ModelSpec(
        "numpy",
        {
            "epochs": 20,
            "lr": 0.001,
            "hidden_size": 200,
            "layers": 1,
            "batch_size": 1,
            "dtype": "float64",
        },
        "multi-layer perceptron with hand-written backprop (NumPy)",
        SINGLE_LABEL,
        build=NUMPY + "mlp",
        dims=FLAT,
        cost=4.6,
    ),
    # Q2: PyTorch; the feed-forward defaults are Table 1 of the assignment.
    "torch-logreg": ModelSpec(
        "torch",
        {"epochs": 20, "lr": 0.01, "batch_size": 16, "l2": 0.0, "optimizer": "sgd"},
        "logistic regression (PyTorch)",
        build=TORCH + "logistic_regression",
        dims=FLAT,
        cost=1.5,
        # a convex loss: a stacked run's rounding differences stay rounding differences (the
        # study's numbers unchanged to 5 digits). Not torch-ffn: at batch 16 and lr 0.1 its
        # training amplifies them into another trajectory within an epoch (docs/benchmarks.md)
        stack=("lr", "l2"),
    ),
    "torch-ffn": ModelSpec(
        "torch",
        {
            "epochs": 20,
            "lr": 0.1,
            "hidden_size": 200,
            "layers": 2,
            "dropout": 0.0,
            "batch_size": 16,
            "activation": "relu",
            "l2": 0.0,
            "optimizer": "sgd",
        },
        "feed-forward network (PyTorch)",
        build=TORCH + "feedforward",
        dims=FLAT,
        cost=4.5,
        large_batch_cost=1.9,
    ),
    # Convolutional networks on images.
    "torch-cnn": ModelSpec(
        "torch",
        {
            **PAPER,
            "epochs": 30,
            "width": 32,
            "dropout": 0.0,
            "schedule": "cosine",
            "augment": "auto",
            **CONV,
        },
        "medclf's small CNN for 28x28 on a CPU (PyTorch)",
        inputs="image",
        build=TORCH + "small_cnn",
        cost=20.0,
    ),
    "torch-resnet18": ModelSpec(
        "torch",
        {**PAPER, **CONV},
        "ResNet-18 as MedMNIST v2 trained it (PyTorch)",
        inputs="image",
        build=TORCH + "resnet18",
        cost=120.0,
    ),
    "torch-resnet50": ModelSpec(
        "torch",
        {**PAPER, **CONV},
        "ResNet-50 as MedMNIST v2 trained it (PyTorch)",
        inputs="image",
        build=TORCH + "resnet50",
        cost=300.0,
    ),
    # Networks on volumes (MedMNIST3D; medclf.models.torch_models.volumes): MedMNIST v2's 3D
    # ResNets, with its CIFAR-style stem, and a small 3D CNN of medclf's for a CPU.
    "torch-cnn3d": ModelSpec(
        "torch",
        {
            **PAPER,
            "epochs": 30,
            "batch_size": 32,
            "width": 16,
            "convs": 1,
            "dropout": 0.0,
            "schedule": "cosine",
            "augment": "auto",
            **CONV,
        },
        "medclf's small 3D CNN for 28x28x28 volumes on a CPU (PyTorch)",
        inputs="volume",
        build=TORCH + "small_cnn3d",
        cost=30.0,
        dims=(3,),
    ),
    **{
        f"torch-resnet{depth}-{kind}": ModelSpec(
            "torch",
            {**PAPER_3D, **CONV},
            f"ResNet-{depth}+{label} as MedMNIST v2 trained it on volumes (PyTorch)",
            inputs="volume",
            build=TORCH + f"resnet{depth}_{kind.replace('.', '')}",
            cost=cost * (1 if kind == "3d" else 0.4),
            dims=(3,),
        )
        for depth, cost in ((18, 3000.0), (50, 6000.0))
        for kind, label in (("3d", "3D"), ("2.5d", "2.5D"), ("acs", "ACS"))
    },
    # Classic baselines on pixels, the family auto-sklearn searches (medclf.models.classic: why each
    # default). kNN works on 50 PCA components; the SVM refuses training splits over 20,000.
    "sklearn-logreg": ModelSpec(
        "sklearn",
        {"C": 1.0, "max_iter": 1000},
        "logistic regression on standardised pixels (scikit-learn)",
        SINGLE_LABEL,
        build=SKLEARN + "logistic_regression",
        uses_seed=False,  # lbfgs is deterministic; random_state serves sag, saga, liblinear
        dims=FLAT,
    ),
    "sklearn-rf": ModelSpec(
        "sklearn",
        {"n_estimators": 300, "min_samples_leaf": 1},
        "random forest (scikit-learn)",
        build=SKLEARN + "random_forest",
        dims=FLAT,
    ),
    "sklearn-hgb": ModelSpec(
        "sklearn",
        {"max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 31},
        "histogram gradient boosting (scikit-learn)",
        SINGLE_LABEL,
        build=SKLEARN + "gradient_boosting",
        # its seed serves early stopping and feature subsampling (both off) and the bins'
        # subsample above 200,000 training images (MedMNIST's largest 2D split: 165,466)
        uses_seed=False,
        dims=FLAT,
    ),
    "sklearn-knn": ModelSpec(
        "sklearn",
        {"n_neighbors": 11, "pca_components": 50},
        "k nearest neighbours on PCA components (scikit-learn)",
        build=SKLEARN + "knn",
        dims=FLAT,
    ),
    "sklearn-svm": ModelSpec(
        "sklearn",
        {"C": 1.0, "gamma": "scale"},
        "RBF support vector machine (scikit-learn)",
        SINGLE_LABEL,
        build=SKLEARN + "svm",
        uses_seed=False,  # SVC draws from random_state only for probability=True (unused)
        dims=FLAT,
    ),
}


# Training recipes as data: a preset's overrides per model; every model of a benchmark keeps
# the epoch with the best validation AUC. `paper` is MedMNIST v2's protocol for its networks;
# `fast` is medclf's CPU recipe, chosen on validation splits (docs/benchmarks.md).
PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "torch-cnn": PAPER,
        "torch-resnet18": PAPER,
        "torch-resnet50": PAPER,
        **{m: PAPER_3D for m, spec in MODELS.items() if spec.inputs == "volume"},
    },
    "fast": {
        # chosen on the validation splits of BreastMNIST and PneumoniaMNIST, seed 42: see
        # docs/benchmarks.md, "Fast recipe (chosen on validation)". bf16 where the hardware
        # has it: within seed noise on the validation splits of the three genuine 2D files
        # at 3 seeds, 1.9-2.6x faster an epoch on AMX (docs/benchmarks.md, "bfloat16")
        "torch-cnn": {
            "epochs": 30,
            "lr": 0.002,
            "batch_size": 64,
            "optimizer": "adam",
            "schedule": "cosine",
            "augment": "none",
            "precision": "auto",
        },
        "torch-resnet18": {
            "epochs": 12,
            "lr": 0.002,
            "batch_size": 128,
            "optimizer": "adam",
            "schedule": "cosine",
            "augment": "auto",
        },
        "torch-resnet50": {
            "epochs": 12,
            "lr": 0.002,
            "batch_size": 128,
            "optimizer": "adam",
            "schedule": "cosine",
            "augment": "auto",
        },
        # chosen on AdrenalMNIST3D's validation split, seed 42: the label-safe 3D flips
        # (augment auto) gave val AUC 0.864 / ACC 0.847, none 0.855 / 0.541 (docs/benchmarks.md)
        "torch-cnn3d": {
            "epochs": 15,
            "lr": 0.002,
            "batch_size": 32,
            "optimizer": "adam",
            "schedule": "cosine",
            "augment": "auto",
        },
    },
}
# The default zoo of `medclf benchmark`, by the data's dimensionality (DatasetInfo.dims).
BENCHMARK_ZOOS = {
    2: ("torch-cnn", "sklearn-svm", "sklearn-hgb", "torch-ffn"),
    3: ("torch-cnn3d", "sklearn-svm", "sklearn-hgb", "torch-ffn"),
}


def preset_settings(preset: str, model: str) -> dict:
    return {"select": "val_auc", **PRESETS[preset].get(model, {})}


# Search spaces of `medclf tune`, one per model, as plain data: setting -> ("log", lo, hi) |
# ("float", lo, hi) | ("int", lo, hi) | ("choice", (a, b, ...)). "log" samples on a log scale.
# Every key is a setting of its model; a model with nothing to tune would have {}.
L2S = (0.0, 1e-5, 1e-4, 1e-3)
SEARCH_SPACES: dict[str, dict[str, tuple]] = {
    "numpy-perceptron": {"epochs": ("int", 5, 50)},
    "numpy-logreg": {"lr": ("log", 1e-4, 0.1)},
    "numpy-mlp": {
        "lr": ("log", 1e-4, 0.1),
        "hidden_size": ("int", 32, 512),
        "layers": ("int", 1, 3),
    },
    "torch-logreg": {
        "lr": ("log", 1e-4, 1.0),
        "batch_size": ("choice", (16, 32, 64, 128)),
        "l2": ("choice", L2S),
        "optimizer": ("choice", ("sgd", "adam")),
    },
    "torch-ffn": {
        "lr": ("log", 1e-4, 1.0),
        "hidden_size": ("int", 32, 512),
        "layers": ("int", 1, 3),
        "dropout": ("float", 0.0, 0.5),
        "batch_size": ("choice", (16, 32, 64, 128)),
        "l2": ("choice", L2S),
        "activation": ("choice", ("relu", "tanh")),
        "optimizer": ("choice", ("sgd", "adam")),
    },
    "torch-cnn": {
        "lr": ("log", 1e-4, 1e-2),
        "width": ("choice", (16, 32, 64)),
        "dropout": ("float", 0.0, 0.5),
        "batch_size": ("choice", (32, 64, 128)),
        "l2": ("choice", L2S),
        "augment": ("choice", ("none", "auto")),
    },
    "torch-resnet18": {
        "lr": ("log", 1e-4, 1e-2),
        "batch_size": ("choice", (64, 128)),
        "l2": ("choice", L2S),
        "schedule": ("choice", ("paper", "cosine")),
    },
    "torch-resnet50": {
        "lr": ("log", 1e-4, 1e-2),
        "batch_size": ("choice", (64, 128)),
        "l2": ("choice", L2S),
        "schedule": ("choice", ("paper", "cosine")),
    },
    "torch-cnn3d": {
        "lr": ("log", 1e-4, 1e-2),
        "width": ("choice", (8, 16, 32)),
        "dropout": ("float", 0.0, 0.5),
        "batch_size": ("choice", (16, 32, 64)),
        "l2": ("choice", L2S),
        "augment": ("choice", ("none", "auto")),
    },
    # the 3D ResNets: the 2D ResNets' space at MedMNIST's 3D batch sizes
    **{
        f"torch-resnet{depth}-{kind}": {
            "lr": ("log", 1e-4, 1e-2),
            "batch_size": ("choice", (16, 32)),
            "l2": ("choice", L2S),
            "schedule": ("choice", ("paper", "cosine")),
        }
        for depth in (18, 50)
        for kind in ("3d", "2.5d", "acs")
    },
    "sklearn-logreg": {"C": ("log", 1e-3, 100.0)},
    "sklearn-rf": {"n_estimators": ("int", 50, 500), "min_samples_leaf": ("int", 1, 10)},
    "sklearn-hgb": {
        "learning_rate": ("log", 0.01, 0.5),
        "max_iter": ("int", 50, 400),
        "max_leaf_nodes": ("int", 8, 64),
    },
    "sklearn-knn": {"n_neighbors": ("int", 1, 50), "pca_components": ("choice", (0, 20, 50))},
    "sklearn-svm": {"C": ("log", 0.1, 100.0), "gamma": ("choice", ("scale", "auto"))},
}
