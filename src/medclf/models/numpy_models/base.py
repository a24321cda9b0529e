"""What the three from-scratch models share: input checks, the epoch loop, prediction, files.

scikit-learn estimators (``BaseEstimator`` + ``ClassifierMixin``): the constructor only stores
hyperparameters, ``epochs`` included; learned state ends in ``_`` and is created by ``fit``.
``fit`` starts afresh (parameters, shuffling RNG, history) unless ``warm_start=True`` and the
model is fitted; ``partial_fit`` trains one more epoch. Labels may be anything sortable
(``classes_``); with ``n_classes=K`` they must be the ints 0..K-1 and ``classes_`` is
``arange(K)``, as in the study. Subclasses provide ``_init_params``, ``_epoch_compiled``
(numba), ``_epoch_numpy`` (the plain formulation, the reference the compiled loop must match)
and ``_decision`` (one score per class).
"""

from __future__ import annotations

import json
import time
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from medclf.errors import ConfigError, DataError, InputError, MedclfError
from medclf.files import atomic_path
from medclf.models.training.history import record

DTYPES = {"float32": np.float32, "float64": np.float64}
ENGINES = ("numba", "numpy")
CHUNK = 16384  # rows per matrix product when predicting, to bound memory
PROGRESS_EVERY = 8192  # examples between progress reports


class ModelInputError(InputError, ValueError):
    """Bad X or y: one line for the CLI (InputError), a ValueError for scikit-learn."""


class ModelParamError(ConfigError, InvalidParameterError):
    """A bad hyperparameter: one line for the CLI (ConfigError), scikit-learn's error type."""


POSITIVE_INT = Interval(Integral, 1, None, closed="left")
POSITIVE = Interval(Real, 0, None, closed="neither")  # finite: inf and NaN are refused
NON_NEGATIVE = Interval(Real, 0, None, closed="left")
FINITE = Interval(Real, None, None, closed="neither")


class NumpyClassifier(ClassifierMixin, BaseEstimator):
    kind = "numpy-model"
    has_proba = False
    # checked by fit, as scikit-learn's own estimators do (BaseEstimator._validate_params)
    _parameter_constraints: dict = {
        "epochs": [POSITIVE_INT],
        "warm_start": ["boolean"],
        "n_classes": [Interval(Integral, 1, None, closed="left"), None],
        "dtype": [StrOptions(set(DTYPES))],
        "seed": [Interval(Integral, 0, None, closed="left")],
        "engine": [StrOptions(set(ENGINES))],
    }

    def __init__(
        self,
        *,
        epochs=20,
        warm_start=False,
        n_classes=None,
        dtype="float64",
        seed=42,
        engine="numba",
    ):
        self.epochs = epochs
        self.warm_start = warm_start
        self.n_classes = n_classes
        self.dtype = dtype
        self.seed = seed
        self.engine = engine

    # --- hyperparameters and inputs --------------------------------------------------------

    def _check_params(self):
        """Every hyperparameter against ``_parameter_constraints``; bool is not an int here."""
        try:
            self._validate_params()
        except InvalidParameterError as err:
            raise ModelParamError(str(err)) from None
        for name, rules in self._parameter_constraints.items():
            value = getattr(self, name)
            if isinstance(value, bool) and "boolean" not in rules:
                model = type(self).__name__
                raise ModelParamError(f"The {name!r} parameter of {model} is a number, not {value}")

    @property
    def np_dtype(self):
        return DTYPES[self.dtype]

    @property
    def n_features_(self) -> int:
        return self.n_features_in_

    @property
    def n_classes_(self) -> int:
        return len(self.classes_)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")

    def _check_X(self, X, reset=False) -> np.ndarray:
        shape = getattr(X, "shape", ())
        if (
            not reset
            and hasattr(self, "n_features_in_")
            and len(shape) == 2
            and shape[1] != self.n_features_in_
        ):
            raise ModelInputError(
                f"X has {shape[1]} features but the model was built for {self.n_features_in_}; "
                "use the same features (and bias column) as in training"
            )
        # reset (fit's first look): validate and count only, no conversion; then convert once
        kind = {"dtype": "numeric"} if reset else {"dtype": self.np_dtype, "order": "C"}
        try:
            return validate_data(self, X, reset=reset, **kind)
        except ValueError as err:  # one line: the first and the advice (no array dump)
            lines = str(err).splitlines()
            raise ModelInputError(" ".join(lines[:1] + lines[1:][-1:])) from err

    def _encode(self, y, n) -> np.ndarray:
        """Labels as row indices into ``classes_`` (int64)."""
        try:
            y = column_or_1d(y, warn=True)
        except ValueError as err:
            raise ModelInputError(str(err)) from err
        if len(y) != n:
            raise ModelInputError(f"y has {len(y)} labels for {n} examples")
        if self.n_classes is not None:
            if not np.issubdtype(y.dtype, np.integer):
                raise ModelInputError(
                    f"y has dtype {y.dtype}; with n_classes given, labels "
                    "are the ints 0..n_classes-1"
                )
            if len(y) and (y.min() < 0 or y.max() >= self.n_classes_):
                raise ModelInputError(
                    f"labels range from {y.min()} to {y.max()}, outside 0..{self.n_classes_ - 1}; "
                    "pass n_classes or fix the labels"
                )
            return y.astype(np.int64)
        idx = np.searchsorted(self.classes_, y).clip(max=self.n_classes_ - 1)
        unknown = self.classes_[idx] != y
        if unknown.any():
            raise ModelInputError(
                f"label {y[unknown][0]!r} is not one of the classes "
                f"{self.classes_.tolist()} the model was built for"
            )
        return idx.astype(np.int64)

    def _start(self, X, y, y_val=None, classes=None) -> None:
        """Fresh parameters, shuffling RNG and history (what ``fit`` does unless warm)."""
        self._check_params()
        self._check_X(X, reset=True)
        if y is None:
            raise ModelInputError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        check_classification_targets(y)
        if self.n_classes is not None:
            self.classes_ = np.arange(int(self.n_classes))
        else:
            seen = [np.asarray(a).ravel() for a in (y, y_val, classes) if a is not None]
            self.classes_ = np.unique(classes if classes is not None else np.concatenate(seen))
        self.rng_ = np.random.default_rng(self.seed)
        self.history_ = []
        self._init_params(self.rng_)

    # --- training --------------------------------------------------------------------------

    def fit(
        self,
        X,
        y,
        epochs=None,
        X_val=None,
        y_val=None,
        callback=None,
        progress=None,
        train_acc=True,
    ):
        """Train for ``epochs`` passes (None: the constructor's), reshuffled each epoch from
        ``seed``; afresh unless ``warm_start`` and already fitted (then training continues, its
        history and RNG too: a checkpoint loaded by ``load_model`` continues this way).

        ``callback(model, record)`` runs after each epoch with its history record (and
        ``model.val_scores_``, the class scores of ``X_val`` behind its val_loss and val_acc);
        returning True stops training (early stopping, checkpoints and progress plug in here).
        ``progress(n)`` is told each time n more examples of the epoch are trained.
        ``train_acc=False`` measures training accuracy after the last epoch only (a pass over
        the whole training split costs a quarter of an MLP epoch).
        """
        self._check_params()
        epochs = self.epochs if epochs is None else epochs
        if isinstance(epochs, bool) or not isinstance(epochs, Integral) or epochs < 1:
            raise ModelParamError(f"epochs == {epochs!r}, must be an integer >= 1")
        if not (self.warm_start and self.__sklearn_is_fitted__()):
            self._start(X, y, y_val)
        return self._train(X, y, int(epochs), X_val, y_val, callback, progress, train_acc)

    def partial_fit(self, X, y, classes=None):
        """One more epoch (shuffled as ``fit`` shuffles): k calls train as ``fit`` with
        ``epochs=k`` does. ``classes``: every label, on the first call, if ``y`` lacks some."""
        self._check_params()
        if not self.__sklearn_is_fitted__():
            self._start(X, y, classes=classes)
        return self._train(X, y, 1, None, None, None, None, True)

    def _train(self, X, y, epochs, X_val, y_val, callback, progress, train_acc):
        X = self._check_X(X)
        y = self._encode(y, len(X))
        if X_val is not None:
            X_val = self._check_X(X_val)
            y_val = self._encode(y_val, len(X_val))
        self.history_ = getattr(self, "history_", [])
        for epoch in range(epochs):
            start = time.perf_counter()
            train_loss = self._epoch_in_chunks(X, y, self.rng_.permutation(len(X)), progress)
            seconds = time.perf_counter() - start
            val_loss, val_acc = None, None
            if X_val is not None:  # scored once: the callback reads them as val_scores_
                self.val_scores_ = self._scores_checked(X_val)
                val_loss, val_acc = self._loss_and_accuracy(self.val_scores_, y_val)
            last = epoch == epochs - 1
            acc = self._evaluate(X, y)[1] if train_acc or last else None
            rec = record(len(self.history_) + 1, train_loss, acc, val_loss, val_acc, seconds)
            self.history_.append(rec)
            if callback is not None and callback(self, rec):
                break
        return self

    def train_epoch(self, X, y, order=None) -> float | None:
        """Exactly one pass over (X, y) in ``order`` (default: the given order), starting the
        model first if unfitted; no history record, no shuffling.

        Returns the mean training loss over the pass (None for the perceptron).
        """
        if not self.__sklearn_is_fitted__():
            self._start(X, y)
        X = self._check_X(X)
        y = self._encode(y, len(X))
        order = np.arange(len(X)) if order is None else np.asarray(order, dtype=np.int64)
        if order.ndim != 1 or (len(order) and (order.min() < 0 or order.max() >= len(X))):
            raise ModelInputError(f"order must be a 1-D array of row indices in 0..{len(X) - 1}")
        return self._pass(X, y, order)

    def _pass(self, X, y, order) -> float | None:
        """One pass on inputs already checked (fit checks once, not once per slice)."""
        if self.engine == "numba" and getattr(self, "batch_size", 1) == 1:
            return self._epoch_compiled(X, y, order)
        return self._epoch_numpy(X, y, order)

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

    def _decision(self, X) -> np.ndarray:  # (n, n_classes), on checked inputs
        raise NotImplementedError

    def _scores_checked(self, X) -> np.ndarray:
        return np.concatenate(
            [self._decision(X[i : i + CHUNK]) for i in range(0, max(len(X), 1), CHUNK)]
        )

    def _scores(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self._scores_checked(self._check_X(X))

    def class_scores(self, X) -> np.ndarray:
        """One score per class, (n, n_classes_): what the run family and predict read."""
        return self._scores(X)

    def decision_function(self, X) -> np.ndarray:
        """scikit-learn's shape: (n,) for two classes (> 0 means ``classes_[1]``), else
        (n, n_classes_)."""
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X) -> np.ndarray:
        scores = self._scores(X)
        return self.classes_[scores.argmax(axis=1)]

    @available_if(lambda self: self.has_proba)
    def predict_proba(self, X) -> np.ndarray:
        return softmax(self._scores(X))

    def score(self, X, y, sample_weight=None) -> float:
        return float(np.average(self.predict(X) == column_or_1d(y), weights=sample_weight))

    def evaluate(self, X, y) -> tuple[float | None, float]:
        """(mean cross-entropy or None, accuracy) on a whole split."""
        check_is_fitted(self)
        X = self._check_X(X)
        return self._evaluate(X, self._encode(y, len(X)))

    def _evaluate(self, X, y) -> tuple[float | None, float]:
        return self._loss_and_accuracy(self._scores_checked(X), y)

    def _loss_and_accuracy(self, scores, y) -> tuple[float | None, float]:
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
        loaded from this checkpoint continues exactly where it stopped. ``warm_start`` is not
        written: ``load_model`` sets it to whether the file holds training state.
        """
        check_is_fitted(self)
        path = Path(path)
        params = {k: v for k, v in self.get_params().items() if k != "warm_start"}
        meta = {
            "kind": self.kind,
            "params": params,
            "n_classes": self.n_classes_,
            "n_features": self.n_features_in_,
            "classes": self.classes_.tolist(),
        }
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
    wrote (not an .npz, missing keys, object arrays, wrong shapes) raises DataError.

    A checkpoint (saved with ``training_state=True``) loads with ``warm_start=True``, so
    ``fit(X, y, epochs_left, ...)`` continues it: same weights, history and shuffling RNG."""
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
        reason = {
            "EOFError": "empty or cut short",
            "BadZipFile": "not a zip archive, or cut short",
        }.get(reason, reason)
    reason = "pickled data, which medclf never loads" if "pickled" in reason else reason
    reason = reason.splitlines()[0][:80] if reason else "empty"
    raise DataError(
        f"{path} is not a model file that medclf wrote ({reason}); delete it and "
        "train the run afresh"
    )


def _expected_shapes(kind: str, params: dict, n_features: int, n_classes: int) -> dict:
    """Array name -> shape that ``save`` writes for this model (written independently of the
    models' own ``_init_params``)."""
    if kind != "numpy-mlp":
        return {"W": (n_classes, n_features)}
    sizes = [n_features, *params.get("hidden_sizes", (200,)), n_classes]
    return {
        **{f"W{l}": (sizes[l + 1], sizes[l]) for l in range(len(sizes) - 1)},
        **{f"b{l}": (sizes[l + 1],) for l in range(len(sizes) - 1)},
    }


def _rebuild(meta, arrays: dict[str, np.ndarray]):
    from medclf.models.numpy_models import KINDS

    if not isinstance(meta, dict) or meta.get("kind") not in KINDS:
        raise ValueError("no known model kind in 'meta'")
    n_classes, n_features = meta["n_classes"], meta["n_features"]
    if not all(isinstance(n, int) and n >= 1 for n in (n_classes, n_features)):
        raise ValueError("bad n_classes or n_features in 'meta'")
    params = dict(meta["params"])
    if "hidden_sizes" in params:
        params["hidden_sizes"] = tuple(params["hidden_sizes"])
    model = KINDS[meta["kind"]](**params, warm_start="rng" in meta)
    model._check_params()
    classes = np.asarray(meta.get("classes", range(n_classes)))
    if classes.shape != (n_classes,):
        raise ValueError("'classes' does not list n_classes labels")
    expected = _expected_shapes(model.kind, model.get_params(), n_features, n_classes)
    for key in sorted({*expected, *arrays}):
        shape = arrays[key].shape if key in arrays else None
        if shape != expected.get(key):
            raise ValueError(f"array '{key}' has shape {shape}, expected {expected.get(key)}")
        if not np.issubdtype(arrays[key].dtype, np.floating):
            raise ValueError(f"array '{key}' has dtype {arrays[key].dtype}, expected floats")
    model.classes_, model.n_features_in_ = classes, n_features
    model.rng_ = np.random.default_rng(model.seed)
    model.history_ = []
    if "rng" in meta:  # a checkpoint: fit continues it (warm_start=True above)
        model.rng_.bit_generator.state = meta["rng"]
        if not isinstance(meta["history"], list):
            raise ValueError("'history' is not a list")
        model.history_ = meta["history"]
    model.set_params_arrays(arrays)
    return model
