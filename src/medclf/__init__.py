"""medclf: classic and neural classifiers on MedMNIST, from scratch, in PyTorch and in
scikit-learn. The Python API (medclf.api) is reachable from here without importing the heavy
parts until they are used:

    import medclf
    run = medclf.train("torch-ffn", dataset="pneumoniamnist.npz", epochs=5)
    medclf.open_run(run.path).evaluate("test")["auc"]
"""

from medclf.version import __version__

API = (
    "Run",
    "open_run",
    "load_dataset",
    "make_config",
    "train",
    "ensemble",
    "reproduce",
    "benchmark",
    "evaluate",
    "curves",
    "explain",
    "compare",
    "list_runs",
    "tune",
    "export_onnx",
    "export_mlflow",
    "download",
    "verify",
    "synthesize",
    "sample_figure",
    "interval_answer",
    "interval_figure",
)
NUMPY_MODELS = ("Perceptron", "LogisticRegression", "MLP")
__all__ = ["__version__", *API, *NUMPY_MODELS]


def __getattr__(name: str):
    """Import on first use (PEP 562), so ``import medclf`` stays fast and side-effect free."""
    if name in API:
        from medclf import api

        return getattr(api, name)
    if name in NUMPY_MODELS:
        from medclf.models import numpy_models

        return getattr(numpy_models, name)
    raise AttributeError(f"module 'medclf' has no attribute {name!r}")
