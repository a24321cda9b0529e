"""What the three from-scratch models share: input checks, the epoch loop, prediction, files.

scikit-learn style: the constructor only stores hyperparameters; learned state ends in ``_``
and is created by ``fit`` / ``train_epoch``. Subclasses provide ``_init_params``,
``_epoch_compiled`` (numba) and ``_epoch_numpy`` (the plain formulation, the reference the
compiled loop must match), and ``decision_function``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from medclf.errors import ConfigError, DataError, InputError, MedclfError
from medclf.files import atomic_path
from medclf.train.history import record

DTYPES = {"float32": np.float32, "float64": np.float64}
ENGINES = ("numba", "numpy")
CHUNK = 16384  # rows per matrix product when predicting, to bound memory
PROGRESS_EVERY = 8192  # examples between progress reports


class NumpyClassifier:
    kind = "numpy-model"
    has_proba = False

    def __init__(self, *, n_classes=None, dtype="float64", seed=42, engine="numba"):
        self.n_classes = n_classes
        self.dtype = dtype
        self.seed = seed
        self.engine = engine

    # --- hyperparameters and inputs --------------------------------------------------------

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def _check_params(self):
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype == {self.dtype!r}, must be one of {list(DTYPES)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine == {self.engine!r}, must be one of {list(ENGINES)}")
        lr = getattr(self, "lr", 1.0)
        if not lr > 0:
            raise ConfigError(f"lr == {lr}, must be > 0")
        if getattr(self, "batch_size", 1) < 1:
            raise ConfigError(f"batch_size == {self.batch_size}, must be >= 1")

    @property
    def np_dtype(self):
        return DTYPES[self.dtype]

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2:
            raise InputError(f"X has shape {X.shape}, expected (n_examples, n_features)")
        if hasattr(self, "n_features_") and X.shape[1] != self.n_features_:
            raise InputError(
                f"X has {X.shape[1]} features but the model was built for {self.n_features_}; "
                "use the same features (and bias column) as in training"
            )
        if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X).all():
            raise InputError("X contains NaN, infinite or non-numeric values; clean the inputs")
        return np.ascontiguousarray(X, dtype=self.np_dtype)

    def _check_y(self, y, n) -> np.ndarray:
        y = np.asarray(y)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise InputError(f"y has shape {y.shape} and dtype {y.dtype}, expected ({n},) ints")
        if len(y) and (y.min() < 0 or y.max() >= self.n_classes_):
            raise InputError(
                f"labels range from {y.min()} to {y.max()}, outside 0..{self.n_classes_ - 1}; "
                "pass n_classes or fix the labels"
            )
        return y.astype(np.int64)

    def _setup(self, X, y, y_val=None):
        """Create the parameters on first use (state that exists after this ends in _)."""
        if hasattr(self, "n_features_"):
            return
        self._check_params()
        X = np.asarray(X)
        if X.ndim != 2:
            raise InputError(f"X has shape {X.shape}, expected (n_examples, n_features)")
        seen = [np.max(a) for a in (y, y_val) if a is not None and len(a)]
        self.n_classes_ = int(self.n_classes or (max(seen) + 1 if seen else 2))
        self.n_features_ = X.shape[1]
        self.rng_ = np.random.default_rng(self.seed)
        self._init_params(self.rng_)

    # --- training --------------------------------------------------------------------------

    def train_epoch(self, X, y, order=None) -> float | None:
        """Exactly one pass over (X, y) in ``order`` (default: the given order).

        Returns the mean training loss over the pass (None for the perceptron).
        """
        self._setup(X, y)
        X = self._check_X(X)
        y = self._check_y(y, len(X))
        order = np.arange(len(X)) if order is None else np.asarray(order, dtype=np.int64)
        if order.ndim != 1 or (len(order) and (order.min() < 0 or order.max() >= len(X))):
            raise InputError(f"order must be a 1-D array of row indices in 0..{len(X) - 1}")
        return self._pass(X, y, order)

    def _pass(self, X, y, order) -> float | None:
        """One pass on inputs already checked (fit checks once, not once per slice)."""
        if self.engine == "numba" and getattr(self, "batch_size", 1) == 1:
            return self._epoch_compiled(X, y, order)
        return self._epoch_numpy(X, y, order)

    def fit(self, X, y, epochs=20, X_val=None, y_val=None, callback=None, progress=None,
            train_acc=True):  # fmt: skip
        """Train for ``epochs`` passes, reshuffled each epoch from ``seed``.

        ``callback(model, record)`` runs after each epoch with its history record; returning
        True stops training (early stopping, checkpoints and progress plug in here).
        ``progress(n)`` is told each time n more examples of the epoch are trained.
        ``train_acc=False`` measures training accuracy after the last epoch only (a pass over
        the whole training split costs a quarter of an MLP epoch).
        """
        if int(epochs) < 1:
            raise ConfigError(f"epochs == {epochs}, must be >= 1")
        self._setup(X, y, y_val)
        X = self._check_X(X)
        y = self._check_y(y, len(X))
        if X_val is not None:
            X_val = self._check_X(X_val)
            y_val = self._check_y(y_val, len(X_val))
        self.history_ = getattr(self, "history_", [])
        for epoch in range(int(epochs)):
            start = time.perf_counter()
            train_loss = self._epoch_in_chunks(X, y, self.rng_.permutation(len(X)), progress)
            seconds = time.perf_counter() - start
            val_loss, val_acc = self.evaluate(X_val, y_val) if X_val is not None else (None, None)
            last = epoch == int(epochs) - 1
            acc = self.score(X, y) if train_acc or last else None
            rec = record(len(self.history_) + 1, train_loss, acc, val_loss, val_acc, seconds)
            self.history_.append(rec)
            if callback is not None and callback(self, rec):
                break
        return self

    def _epoch_in_chunks(self, X, y, order, progress):
        """One epoch as consecutive slices of ``order`` (whole minibatches), reporting progress
        between them; the same updates as one ``train_epoch`` call."""
        if progress is None:
            return self._pass(X, y, order)
        batch = getattr(self, "batch_size", 1)
        step = max(1, PROGRESS_EVERY // batch) * batch
        losses, sizes = [], []
        for start in range(0, len(order), step):
            part = order[start : start + step]
            losses.append(self._pass(X, y, part))
            sizes.append(len(part))
            progress(len(part))
        return None if losses[0] is None else float(np.dot(losses, sizes) / len(order))

    # --- prediction ------------------------------------------------------------------------

    def decision_function(self, X) -> np.ndarray:  # (n, n_classes)
        raise NotImplementedError

    def _scores(self, X) -> np.ndarray:
        X = self._check_X(X)
        return np.concatenate([self.decision_function(X[i : i + CHUNK])
                               for i in range(0, max(len(X), 1), CHUNK)])  # fmt: skip

    def predict(self, X) -> np.ndarray:
        return self._scores(X).argmax(axis=1)

    def predict_proba(self, X) -> np.ndarray:
        if not self.has_proba:
            raise AttributeError(f"{type(self).__name__} has no class probabilities")
        return softmax(self._scores(X))

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def evaluate(self, X, y) -> tuple[float | None, float]:
        """(mean cross-entropy or None, accuracy) on a whole split."""
        scores = self._scores(X)
        acc = float(np.mean(scores.argmax(axis=1) == y))
        if not self.has_proba:
            return None, acc
        return float(np.mean(log_sum_exp(scores) - scores[np.arange(len(y)), y])), acc

    # --- files -----------------------------------------------------------------------------

    def params(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def save(self, path, training_state: bool = False) -> Path:
        """Write parameters and hyperparameters to ``.npz`` (no pickle), atomically.

        ``training_state`` adds the history and the shuffling RNG's state, so that a run
        loaded from this checkpoint continues exactly where it stopped.
        """
        path = Path(path)
        meta = {"kind": self.kind, "params": self.get_params(), "n_classes": self.n_classes_,
                "n_features": self.n_features_}  # fmt: skip
        if training_state:
            meta["history"] = getattr(self, "history_", [])
            meta["rng"] = self.rng_.bit_generator.state
        with atomic_path(path) as tmp:
            np.savez(tmp, meta=np.array(json.dumps(meta)), **self.params())
        return path


def softmax(Z: np.ndarray) -> np.ndarray:
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def log_sum_exp(Z: np.ndarray) -> np.ndarray:
    top = Z.max(axis=1)
    return top + np.log(np.exp(Z - top[:, None]).sum(axis=1))


def load_model(path):
    """Rebuild a model saved by ``save``; never unpickles. A file that is not what ``save``
    wrote (not an .npz, missing keys, object arrays, wrong shapes) raises DataError."""
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a bare array, not an .npz archive")
        with npz:
            meta = json.loads(str(npz["meta"][()]))
            arrays = {k: npz[k] for k in npz.files if k != "meta"}
        return _rebuild(meta, arrays)
    except OSError as err:
        if err.errno is not None:  # unreadable file: the CLI names the fault
            raise
        reason = str(err)
    except KeyError as err:  # numpy says "meta is not a file in the archive"
        reason = f"no '{str(err.args[0]).split(' is not')[0].strip(chr(39))}'"
    except Exception as err:  # untrusted bytes: any failure means "not what medclf wrote"
        reason = str(err) if isinstance(err, ValueError | MedclfError) else type(err).__name__
        reason = {"EOFError": "empty or cut short", "BadZipFile": "not a zip archive, or cut "
                  "short"}.get(reason, reason)  # fmt: skip
    reason = "pickled data, which medclf never loads" if "pickled" in reason else reason
    reason = reason.splitlines()[0][:80] if reason else "empty"
    raise DataError(f"{path} is not a model file that medclf wrote ({reason}); delete it and "
                    "train the run afresh")  # fmt: skip


def _expected_shapes(kind: str, params: dict, n_features: int, n_classes: int) -> dict:
    """Array name -> shape that ``save`` writes for this model (written independently of the
    models' own ``_init_params``)."""
    if kind != "numpy-mlp":
        return {"W": (n_classes, n_features)}
    sizes = [n_features, *params.get("hidden_sizes", (200,)), n_classes]
    return {**{f"W{l}": (sizes[l + 1], sizes[l]) for l in range(len(sizes) - 1)},
            **{f"b{l}": (sizes[l + 1],) for l in range(len(sizes) - 1)}}  # fmt: skip


def _rebuild(meta, arrays: dict[str, np.ndarray]):
    from medclf.numpy_models import MODELS

    if not isinstance(meta, dict) or meta.get("kind") not in MODELS:
        raise ValueError("no known model kind in 'meta'")
    n_classes, n_features = meta["n_classes"], meta["n_features"]
    if not all(isinstance(n, int) and n >= 1 for n in (n_classes, n_features)):
        raise ValueError("bad n_classes or n_features in 'meta'")
    model = MODELS[meta["kind"]](**meta["params"])
    model._check_params()
    expected = _expected_shapes(model.kind, model.get_params(), n_features, n_classes)
    for key in sorted({*expected, *arrays}):
        shape = arrays[key].shape if key in arrays else None
        if shape != expected.get(key):
            raise ValueError(f"array '{key}' has shape {shape}, expected {expected.get(key)}")
        if not np.issubdtype(arrays[key].dtype, np.floating):
            raise ValueError(f"array '{key}' has dtype {arrays[key].dtype}, expected floats")
    model.n_classes_, model.n_features_ = n_classes, n_features
    model.rng_ = np.random.default_rng(model.seed)
    if "rng" in meta:
        model.rng_.bit_generator.state = meta["rng"]
        if not isinstance(meta["history"], list):
            raise ValueError("'history' is not a list")
        model.history_ = meta["history"]
    model.set_params_arrays(arrays)
    return model
