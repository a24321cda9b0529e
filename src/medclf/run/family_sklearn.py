"""Classic scikit-learn baselines (medclf.models.classic) as a family of the run lifecycle.

A classic model is fitted once: its history is one record, so selection and early stopping
have nothing to choose, and there is no checkpoint. The model file is written with skops, the
field's pickle-free format for scikit-learn objects, and read back only if every type in it is
one medclf itself writes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from medclf.data.features import inputs_of, make_features
from medclf.errors import DataError
from medclf.files import atomic_path
from medclf.models import classic
from medclf.models.training.history import record
from medclf.run.folder import environment

# The only non-default types a medclf classic model file may hold (checked before loading).
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def load_model_file(path: Path):
    """A skops file medclf wrote; a file with any type outside scikit-learn/NumPy is refused."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
        foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
        if foreign:
            raise DataError(f"{path} holds types medclf never writes ({', '.join(foreign)}); "
                            "train the run again")  # fmt: skip
        return sio.load(path, trusted=untrusted)
    except DataError:
        raise
    except Exception as err:  # not a zip, cut short, not skops
        raise DataError(f"{path} is not a model file that medclf wrote ({type(err).__name__}); "
                        "train the run again") from err  # fmt: skip


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
