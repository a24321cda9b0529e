"""Model families: every registered model has a complete family behind one checked interface
(medclf.run.family.Family), and a model added by one registry entry plus its family, both made
inside this test, trains, predicts, evaluates and exports through the public entry points."""

import inspect

import numpy as np
import pytest
from click.testing import CliRunner

import medclf
from medclf.cli import cli
from medclf.data.features import inputs_of, make_features
from medclf.metrics import medmnist_acc
from medclf.models.registry import MODELS, SINGLE_LABEL, ModelSpec, builder
from medclf.models.training.history import record
from medclf.run import families
from medclf.run.family import Family
from medclf.run.folder import BESTS, CHECKPOINTS, MODEL_FILES


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_registered_model_has_a_complete_family(model):
    family = families.family_of(model)
    assert issubclass(family, Family) and not inspect.isabstract(family), family
    assert family.model_file in MODEL_FILES
    assert family.checkpoint_file in (None, *CHECKPOINTS)
    assert family.best_file in (None, *BESTS)
    assert (family.checkpoint_file is None) == (family.best_file is None)
    assert set(family.options) <= {"device", "threads"}
    assert callable(builder(model)) and MODELS[model].cost > 0


def test_a_family_that_leaves_out_a_method_cannot_be_built():
    class Half(Family):  # no fit, no scores, no outputs...
        model_file = "model.npz"

        def __init__(self, config, dataset):
            pass

    assert inspect.isabstract(Half)
    with pytest.raises(TypeError):
        Half({}, None)


class PriorFamily(Family):
    """The toy: every image gets the training split's class frequencies (add-one smoothed)."""

    model_file = "model.npz"

    def __init__(self, config, dataset):
        self.task, self.n_classes = dataset.info.task, dataset.info.n_classes
        self.features = make_features(dataset, config["test_split"], np.float32, inputs="flat")
        self.history, self.model = [], None

    def fit(self, on_epoch, progress, train_acc):
        y = self.features.y_train.ravel()
        counts = np.bincount(y, minlength=self.n_classes) + 1.0
        self.model = (counts / counts.sum()).astype(np.float32)
        progress(len(y))
        val = self.scores(self.model, self.features.X_val)
        rec = record(1, val_acc=medmnist_acc(self.task, self.features.y_val, val))
        self.history.append(rec)
        on_epoch(rec, val)

    def inputs(self, images):
        return inputs_of(images, "flat", np.float32)

    def scores(self, model, X):
        return np.tile(model, (len(X), 1))

    def accuracy(self, model, X, y):
        return medmnist_acc(self.task, y, self.scores(model, X))

    def save_model(self, model, path):
        np.savez(path, prior=model)

    def environment(self):
        return {"device": "none"}

    @classmethod
    def outputs(cls, run_dir, config, metrics, images):
        with np.load(run_dir / cls.model_file) as npz:
            return "proba", np.tile(npz["prior"], (len(images), 1))

    @classmethod
    def onnx_graph(cls, run_dir, config, metrics):
        from onnx import TensorProto, helper, numpy_helper

        from medclf.run.onnx_graph import flat_nodes, input_info, output_info, serialise

        with np.load(run_dir / cls.model_file) as npz:
            prior = npz["prior"]
        pixels = int(np.prod(metrics["image_shape"]))
        nodes, inits = flat_nodes(pixels, np.float32, "x")
        zero = np.zeros((pixels, len(prior)), np.float32)
        inits += [numpy_helper.from_array(zero, "zero"), numpy_helper.from_array(prior, "prior")]
        nodes += [
            helper.make_node("MatMul", ["x", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "prior"], ["probabilities"]),
        ]
        output = output_info(len(prior), TensorProto.FLOAT)
        graph = helper.make_graph(nodes, "prior", [input_info(metrics)], [output], inits)
        return serialise(graph, [helper.make_opsetid("", 17)])


@pytest.fixture
def toy_model(monkeypatch):
    monkeypatch.setitem(families.FAMILIES, "toy", PriorFamily)
    monkeypatch.setitem(
        MODELS, "toy-prior", ModelSpec("toy", {}, "class frequencies", SINGLE_LABEL)
    )
    return "toy-prior"


def test_a_model_added_in_a_test_trains_predicts_evaluates_and_exports(
    toy_model, tmp_path, synth_file
):
    run = medclf.train(
        toy_model, dataset=str(synth_file), test_split="official", out=tmp_path / "run"
    )
    assert run.metrics["status"] == "done" and run.config["model"] == toy_model
    dataset = medclf.load_dataset(str(synth_file))
    counts = np.bincount(dataset.train.labels.ravel(), minlength=len(dataset.class_names)) + 1
    prior = counts / counts.sum()  # the oracle: counted here, not by the family
    proba = medclf.open_run(run.path).predict_proba(dataset.test.images[:5])
    np.testing.assert_allclose(proba, np.tile(prior, (5, 1)), rtol=1e-6)
    assert (run.predict(dataset.test.images[:5]) == prior.argmax()).all()
    majority = (dataset.test.labels.ravel() == prior.argmax()).mean()
    assert run.evaluate("test")["acc"] == pytest.approx(majority)

    pytest.importorskip("onnxruntime", reason="onnxruntime is missing: pip install -e '.[onnx]'")
    result = CliRunner().invoke(cli, ["export", "onnx", str(run.path)])
    assert result.exit_code == 0, result.output
    assert (run.path / "model.onnx").is_file()
