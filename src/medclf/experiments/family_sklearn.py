"""Classic scikit-learn baselines (medclf.classic) as a family of the run lifecycle.

A classic model is fitted once: its history is one record, so selection and early stopping
have nothing to choose, and there is no checkpoint. The model file is written with skops, the
field's pickle-free format for scikit-learn objects, and read back only if every type in it is
one medclf itself writes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from medclf import classic
from medclf.data.features import inputs_of, make_features
from medclf.errors import DataError
from medclf.experiments.store import environment
from medclf.files import atomic_path
from medclf.training.history import record

# Every type beyond skops's own defaults that medclf's sklearn models write (each model, each
# task it supports; tests/test_classic.py checks the list against freshly written files). Full
# names only: a prefix such as "builtins." would trust exec, eval and getattr too.
TRUSTED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # sklearn-hgb
    "sklearn.metrics._dist_metrics.EuclideanDistance64",  # sklearn-knn on few PCA components
    "sklearn.neighbors._kd_tree.KDTree",  # sklearn-knn on few PCA components
    "sklearn.tree._tree.Tree",  # sklearn-rf
)


def load_model_file(path: Path):
    """A skops file medclf wrote; a file holding any other type is refused before it loads."""
    import skops.io as sio

    try:
        foreign = sorted(set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
        if foreign:
            names = ascii(", ".join(foreign))[1:-1][:300]  # a name in a hostile file may hold \n
            raise DataError(
                f"{path} holds types medclf never writes ({names}); train the run again"
            )
        model = sio.load(path, trusted=list(TRUSTED_TYPES))
    except DataError:
        raise
    except Exception as err:  # not a zip, cut short, not skops
        raise DataError(f"{path} is not a model file that medclf wrote ({type(err).__name__}); "
                        "train the run again") from err  # fmt: skip
    if not isinstance(model, BaseEstimator):  # a trusted part alone, such as a KD-tree
        raise DataError(
            f"{path} holds a {type(model).__name__}, not a scikit-learn model; train the run again"
        )
    return model


class SklearnTrainer:
    checkpoint_file, model_file, best_file = None, "model.skops", None

    def __init__(self, config: dict, dataset, threads: int | None = None):
        self.config, self.task = config, dataset.info.task
        self.threads = threads or 1
        self.n_classes = dataset.info.n_classes
        self.features = f = make_features(dataset, config["test_split"], np.float32,
                                          inputs="flat")  # fmt: skip
        name = config["model"]
        classic.check_task(name, self.task)
        classic.check_size(name, len(f.y_train), f.n_features)
        settings = {k: config[k] for k in classic.CLASSIC[name]}
        if settings.get("pca_components"):  # PCA cannot keep more components than images
            settings["pca_components"] = min(settings["pca_components"], *f.X_train.shape)
        self.model = classic.build_classic(name, settings, config["seed"], self.threads)
        self.history: list[dict] = []

    def resume(self, path: Path) -> None:  # never called: no checkpoint
        raise NotImplementedError

    def fit(self, on_epoch, progress, train_acc: bool) -> None:
        from medclf.metrics import medmnist_acc

        f = self.features
        start = time.perf_counter()
        classic.fit_classic(self.model, f.X_train, f.y_train, self.threads)
        seconds = time.perf_counter() - start
        progress(len(f.y_train))
        val = self.scores(self.model, f.X_val)
        tr_acc = self.accuracy(self.model, f.X_train, f.y_train) if train_acc else None
        rec = record(1, None, tr_acc, self.log_loss(f.y_val, val),
                     medmnist_acc(self.task, f.y_val, val), seconds)  # fmt: skip
        self.history.append(rec)
        on_epoch(rec)

    def log_loss(self, y, scores) -> float | None:
        from sklearn.metrics import log_loss

        if self.task.startswith("multi-label"):
            return None
        return float(log_loss(y, scores, labels=range(self.n_classes)))

    def inputs(self, images: np.ndarray) -> np.ndarray:
        return inputs_of(images, "flat", np.float32)

    def scores(self, model, X) -> np.ndarray:
        p = classic.classic_scores(model, X, self.task, self.n_classes)
        if self.task.startswith("multi-label"):
            return p
        return p / p.sum(axis=1, keepdims=True)  # float32 models sum to 1 only within 1e-7

    def accuracy(self, model, X, y) -> float:
        from medclf.metrics import medmnist_acc

        return medmnist_acc(self.task, y, self.scores(model, X))

    def save_checkpoint(self, path: Path) -> None:
        pass

    def save_best(self, path: Path) -> None:
        pass

    def load_best(self, path: Path):
        return self.model

    def save_model(self, model, path: Path) -> None:
        import skops.io as sio

        with atomic_path(path) as tmp:
            sio.dump(model, tmp)

    def extra_metrics(self, model) -> dict:
        return {}

    def environment(self) -> dict:
        import sklearn

        return environment(threads=self.threads, device="cpu", sklearn=sklearn.__version__)
