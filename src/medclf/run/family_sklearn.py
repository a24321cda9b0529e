"""Classic scikit-learn baselines (medclf.models.classic) as a family of the run lifecycle.

A classic model is fitted once: its history is one record, so selection and early stopping
have nothing to choose, and there is no checkpoint. The model file is written with skops, the
field's pickle-free format for scikit-learn objects, and read back only if every type in it is
one medclf itself writes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from medclf.data.features import inputs_of, make_features
from medclf.errors import ConfigError, DataError
from medclf.files import atomic_path
from medclf.metrics import MULTI_LABEL, medmnist_acc
from medclf.models import classic
from medclf.models.training.history import record
from medclf.run.family import Family, missing_model
from medclf.run.folder import MODEL_SKOPS, environment, kept
from medclf.run.onnx_graph import OPSET, flat_nodes, input_info, need, output_info, serialise

# Every type beyond skops's own defaults that medclf's sklearn models write (each model, each
# task it supports; tests/test_classic.py checks the list against freshly written files). Full
# names only: a prefix such as "builtins." would trust exec, eval and getattr too.
TRUSTED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # sklearn-hgb
    "sklearn.metrics._dist_metrics.EuclideanDistance64",  # sklearn-knn on few PCA components
    "sklearn.neighbors._kd_tree.KDTree",  # sklearn-knn on few PCA components
    "sklearn.tree._tree.Tree",  # sklearn-rf
)
# skl2onnx 1.20 converts these within 1e-6 (single-label tasks). Not the others: kNN with distance
# weights differs by ~0.02 in probability, HGB fails to convert (scikit-learn 1.9), the SVM's
# softmax of decision values has no skl2onnx graph, and multi-label forests give per-label lists.
SKLEARN_MODELS = ("sklearn-logreg", "sklearn-rf")


def load_model_file(path: Path, config: dict | None = None):
    """A skops file medclf wrote; a file holding any other type is refused before it loads, and
    one whose estimator is not laid out as medclf builds ``config``'s model (the same classes,
    step by step) is refused after."""
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
        raise DataError(
            f"{path} is not a model file that medclf wrote ({type(err).__name__}); "
            "train the run again"
        ) from err
    if not isinstance(model, BaseEstimator):  # a trusted part alone, such as a KD-tree
        raise DataError(
            f"{path} holds a {type(model).__name__}, not a scikit-learn model; train the run again"
        )
    if config is not None and layout(model) != layout(expected_estimator(config)):
        raise DataError(
            f"{path} is not the {config.get('model')} that config.json names (another "
            "estimator or pipeline); train the run again"
        )
    try:
        check_structures(model)
    except Exception as err:  # a check failed, or the arrays were not even arrays
        why = ascii(str(err))[1:-1][:200]
        raise DataError(f"{path} is not a model medclf wrote ({why}); train the run again") from err
    return model


def layout(estimator) -> tuple:
    """The estimator's classes, a pipeline's step by step: what a file must match."""
    from sklearn.pipeline import Pipeline

    if type(estimator) is Pipeline:
        return (Pipeline, tuple(layout(step) for _, step in estimator.steps))
    return (type(estimator),)


def expected_estimator(config: dict) -> BaseEstimator:
    """The unfitted estimator medclf builds for ``config`` (config.json, checked by the caller)."""
    name = config["model"]
    return classic.build_classic(name, {k: config[k] for k in classic.CLASSIC[name]}, 0)


# The trusted types above are Cython trees whose node arrays scikit-learn indexes without bounds
# checks (skops leaves them untrusted for this reason): a crafted child or feature index reads
# or writes outside memory. Every tree is checked, or rebuilt, before the model is used.


def check_structures(model: BaseEstimator) -> None:
    """Raise ValueError unless every tree reachable from ``model`` indexes only within its
    arrays; KD-trees are rebuilt from the estimator's own training data instead."""
    from sklearn.ensemble._forest import BaseForest
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import (
        BaseHistGradientBoosting,
    )
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.neighbors import KDTree
    from sklearn.neighbors._base import NeighborsBase
    from sklearn.svm._base import BaseLibSVM
    from sklearn.tree import BaseDecisionTree
    from sklearn.tree._tree import Tree

    checked = set()  # ids of the trees that were checked or rebuilt
    for est in reachable_estimators(model):
        if isinstance(est, BaseLibSVM) and hasattr(est, "support_vectors_"):
            check_svm(est)
        if isinstance(est, BaseForest):  # trees take X as the forest validated it
            n = n_features(est)
            if any(n_features(tree) != n for tree in est.estimators_):
                raise ValueError("a forest's trees disagree on the number of features")
        if isinstance(est, BaseDecisionTree) and hasattr(est, "tree_"):  # not a template
            check_tree(est.tree_, n_features(est))
            checked.add(id(est.tree_))
        if isinstance(est, BaseHistGradientBoosting):
            if est._preprocessor is not None:  # categorical features: medclf writes none
                raise ValueError("a categorical gradient boosting model")
            for predictors in est._predictors:
                for predictor in predictors:
                    check_predictor(predictor, n_features(est))
                    checked.add(id(predictor))
        if isinstance(est, NeighborsBase) and isinstance(getattr(est, "_tree", None), KDTree):
            # As NeighborsBase._fit builds it: the file's tree arrays are never used, only
            # compared (from numpy) with the rebuilt ones, which a file medclf wrote equals.
            params = est.effective_metric_params_ or {}
            tree = KDTree(est._fit_X, est.leaf_size, metric=est.effective_metric_, **params)
            pairs = zip(est._tree.get_arrays(), tree.get_arrays(), strict=True)
            if not all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in pairs):
                raise ValueError("a KD-tree that its own training data does not build")
            est._tree = tree
            checked.add(id(tree))
    for obj in reachable(model):
        if isinstance(obj, (Tree, TreePredictor, KDTree)) and id(obj) not in checked:
            raise ValueError(f"a {type(obj).__name__} outside the estimator that uses it")


def check_svm(est) -> None:
    """An SVC whose arrays have the sizes libsvm's C code reads them at (it takes the support
    vector counts per class and the coefficient shapes on trust)."""
    from sklearn.svm import SVC

    if (
        type(est) is not SVC
        or est._sparse
        or est.kernel not in ("linear", "poly", "rbf", "sigmoid")
    ):
        raise ValueError("an SVM other than medclf's dense SVC")
    k, n = len(est.classes_), n_features(est)
    sv, counts = est.support_vectors_, est._n_support
    arrays = (sv, counts, est._dual_coef_, est._intercept_, est._probA, est._probB, est.support_)
    if not all(isinstance(a, np.ndarray) for a in arrays) or k < 2:
        raise ValueError("an SVM without its arrays")
    pairs = k * (k - 1) // 2
    sized = (
        sv.ndim == 2
        and sv.shape[1] == n
        and sv.dtype == np.float64
        and counts.shape == (k,)
        and counts.dtype == np.int32
        and (counts >= 0).all()
        and int(counts.sum()) == len(sv)
        and est._dual_coef_.shape == (k - 1, len(sv))
        and est._dual_coef_.dtype == np.float64
        and est._intercept_.shape == (pairs,)
        and all(p.shape in ((0,), (pairs,)) for p in (est._probA, est._probB))
        and est.support_.shape == (len(sv),)
        and np.isfinite(float(est._gamma))
    )
    if not sized:
        raise ValueError("an SVM whose arrays do not match its support vectors and classes")


def n_features(est) -> int:
    """The width predict validates X against (without n_features_in_ it checks none)."""
    n = getattr(est, "n_features_in_", None)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"a {type(est).__name__} without its number of features")
    return int(n)


def check_tree(tree, n: int) -> None:
    """A scikit-learn Tree whose nodes index within it and within X's ``n`` features."""
    from sklearn.tree._tree import Tree

    if not isinstance(tree, Tree):
        raise ValueError("a decision tree without a Tree")
    # The node arrays are views of node_count nodes over memory of capacity nodes.
    if not 1 <= tree.node_count == tree.capacity or tree.n_features != n:
        raise ValueError("a tree whose node count does not match its arrays")
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    if tree.value.shape != (tree.node_count, tree.n_outputs, tree.max_n_classes):
        raise ValueError("a tree whose values do not match its nodes")
    check_nodes(left != -1, left, right, feature, n)


def check_predictor(predictor, n: int) -> None:
    """A gradient boosting TreePredictor whose nodes index within it and within X."""
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    nodes = getattr(predictor, "nodes", None)
    if not (
        isinstance(predictor, TreePredictor)
        and isinstance(nodes, np.ndarray)
        and nodes.dtype == PREDICTOR_RECORD_DTYPE
        and nodes.ndim == 1
        and len(nodes) >= 1  # prediction starts at nodes[0]
    ):
        raise ValueError("a gradient boosting tree without its node array")
    if nodes["is_categorical"].any():  # bitset indices: medclf writes no categorical splits
        raise ValueError("a categorical split")
    internal = nodes["is_leaf"] == 0
    check_nodes(internal, nodes["left"], nodes["right"], nodes["feature_idx"], n, leaves=False)


def check_nodes(internal, left, right, feature, n: int, leaves: bool = True) -> None:
    """Children of each internal node come after it (scikit-learn appends them so, which also
    rules out cycles) and within the array; features are within X's ``n`` columns; leaves
    (with ``leaves``) have no children."""
    count = len(internal)
    i = np.flatnonzero(internal)
    for child in (left[i].astype(np.int64), right[i].astype(np.int64)):
        if not np.all((child > i) & (child < count)):
            raise ValueError("a tree node whose child is out of order or out of range")
    if not np.all((feature[i] >= 0) & (feature[i] < n)):
        raise ValueError("a tree node that splits on a feature X does not have")
    if leaves and not (np.all(left[~internal] == -1) and np.all(right[~internal] == -1)):
        raise ValueError("a tree leaf with children")


def reachable(model):
    """Every object reachable from ``model`` through attributes, containers and object arrays."""
    seen, stack = set(), [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.flat)
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())


def reachable_estimators(model):
    return [obj for obj in reachable(model) if isinstance(obj, BaseEstimator)]


class SklearnTrainer(Family):
    checkpoint_file, model_file, best_file = None, MODEL_SKOPS, None
    options = ("threads",)

    def __init__(self, config: dict, dataset, threads: int | None = None):
        self.config, self.task = config, dataset.info.task
        self.threads = threads or 1
        self.n_classes = dataset.info.n_classes
        self.features = f = make_features(dataset, config["test_split"], np.float32, inputs="flat")
        name = config["model"]
        classic.check_task(name, self.task)
        classic.check_size(name, len(f.y_train), f.n_features)
        settings = {k: config[k] for k in classic.CLASSIC[name]}
        if settings.get("pca_components"):  # PCA cannot keep more components than images
            settings["pca_components"] = min(settings["pca_components"], *f.X_train.shape)
        self.model = classic.build_classic(name, settings, config["seed"], self.threads)
        self.history: list[dict] = []

    def fit(self, on_epoch, progress, train_acc: bool) -> None:
        f = self.features
        start = time.perf_counter()
        classic.fit_classic(self.model, f.X_train, f.y_train, self.threads)
        seconds = time.perf_counter() - start
        progress(len(f.y_train))
        val = self.scores(self.model, f.X_val)
        tr_acc = self.accuracy(self.model, f.X_train, f.y_train) if train_acc else None
        rec = record(
            1,
            None,
            tr_acc,
            self.log_loss(f.y_val, val),
            medmnist_acc(self.task, f.y_val, val),
            seconds,
        )
        self.history.append(rec)
        on_epoch(rec, val)

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
        return medmnist_acc(self.task, y, self.scores(model, X))

    def save_model(self, model, path: Path) -> None:
        import skops.io as sio

        with atomic_path(path) as tmp:
            sio.dump(model, tmp)

    def environment(self) -> dict:
        import sklearn

        return environment(threads=self.threads, device="cpu", sklearn=sklearn.__version__)

    @classmethod
    def outputs(cls, run_dir: Path, config: dict, metrics: dict, images):
        return "proba", saved_proba(run_dir, config, metrics, images)

    @classmethod
    def onnx_graph(cls, run_dir: Path, config: dict, metrics: dict) -> bytes:
        return sklearn_graph(run_dir, config, metrics)


def saved_proba(run_dir: Path, config: dict, metrics: dict, images):
    """The probabilities of the run's model.skops for uint8 images."""
    path = run_dir / SklearnTrainer.model_file
    if not path.is_file():
        raise missing_model(run_dir, SklearnTrainer.model_file)
    # loaded and checked once while the file is unchanged
    settings = json.dumps(config, sort_keys=True)
    model = kept(path, lambda: load_model_file(path, config), settings)
    n_classes = len(metrics["class_names"])
    X = inputs_of(images, "flat", np.float32)
    try:
        return classic.classic_scores(model, X, metrics.get("task", "multi-class"), n_classes)
    except (ValueError, AttributeError, IndexError) as err:
        raise DataError(f"{path} does not fit metrics.json ({err}); train the run again") from err


def sklearn_graph(run_dir: Path, config: dict, metrics: dict) -> bytes:
    """skl2onnx's graph of the fitted estimator behind the scaling nodes; classes the training
    split lacked get zero columns, as medclf.models.classic.classic_scores gives them."""
    from onnx import TensorProto, helper, numpy_helper

    model = config["model"]
    if model not in SKLEARN_MODELS or metrics.get("task") == MULTI_LABEL:
        raise ConfigError(
            f"{model} on the task '{metrics.get('task')}' has no exact ONNX graph; "
            f"of the scikit-learn models, {' and '.join(SKLEARN_MODELS)} on "
            "single-label tasks export"
        )
    skl2onnx = need("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType

    path = run_dir / SklearnTrainer.model_file
    if not path.is_file():
        raise missing_model(run_dir, SklearnTrainer.model_file)
    estimator = load_model_file(path, config)
    n_pixels, n_classes = int(np.prod(metrics["image_shape"])), len(metrics["class_names"])
    classes = np.asarray(getattr(estimator, "classes_", []))
    if not (
        classes.ndim == 1
        and np.issubdtype(classes.dtype, np.integer)
        and len(classes)
        and classes.min() >= 0
        and classes.max() < n_classes
    ):
        raise DataError(
            f"{path} does not fit metrics.json's {n_classes} classes; train the run again"
        )
    try:
        converted = skl2onnx.convert_sklearn(
            estimator,
            initial_types=[("features", FloatTensorType([None, n_pixels]))],
            options={"zipmap": False},
            target_opset={"": OPSET, "ai.onnx.ml": 3},
        )
    except Exception as err:  # an estimator or option skl2onnx cannot convert
        why = (str(err).splitlines() or [""])[0][:120]
        raise ConfigError(
            f"skl2onnx cannot convert {path} ({type(err).__name__}: {why}); "
            "this model cannot be exported to ONNX"
        ) from err
    graph = converted.graph
    proba = graph.output[1].name  # skl2onnx: label, then probabilities
    for node in graph.node:  # free the name "probabilities" for the graph's output
        node.output[:] = [f"sklearn_{o}" if o == proba else o for o in node.output]
        node.input[:] = [f"sklearn_{i}" if i == proba else i for i in node.input]
    proba = f"sklearn_{proba}"
    nodes, inits = flat_nodes(n_pixels, np.float32, "features")
    nodes += list(graph.node)
    inits += list(graph.initializer)
    scatter = np.zeros((len(classes), n_classes), np.float32)  # column j -> class classes_[j]
    scatter[np.arange(len(classes)), classes] = 1
    inits.append(numpy_helper.from_array(scatter, "class_columns"))
    nodes.append(helper.make_node("MatMul", [proba, "class_columns"], ["probabilities"]))
    new = helper.make_graph(
        nodes, model, [input_info(metrics)], [output_info(n_classes, TensorProto.FLOAT)], inits
    )
    opsets = {o.domain: o.version for o in converted.opset_import}
    return serialise(new, [helper.make_opsetid(d, v) for d, v in opsets.items()])
