"""Issue 20 §3: no repeated work. A model whose fit never uses its seed is trained once in a
benchmark, whatever --seeds says, and its row says so; validation is scored once per epoch."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from medclf import api
from medclf.cli import cli
from medclf.models.registry import MODELS
from medclf.report.benchmark import DETERMINISTIC


@pytest.fixture(scope="module")
def breast(tmp_path_factory):
    from medclf.data.synthetic import write_synthetic

    return write_synthetic(
        tmp_path_factory.mktemp("data") / "breastmnist.npz", "breastmnist", 0.1, 0
    )


SEED_FREE = [m for m, spec in MODELS.items() if not spec.uses_seed]


def test_some_models_are_seed_free_and_they_are_classic_only():
    assert {"sklearn-svm", "sklearn-hgb"} <= set(SEED_FREE)
    assert all(MODELS[m].family == "sklearn" for m in SEED_FREE)  # networks shuffle by seed


@pytest.mark.parametrize("model", SEED_FREE)
def test_a_seed_free_model_fits_the_same_model_for_every_seed(model, breast, tmp_path):
    # the registry's claim checked against the estimator itself: two seeds, the same outputs
    runs = [api.train(model, dataset=str(breast), seed=s, out=tmp_path / str(s)) for s in (42, 7)]
    a, b = (np.load(r.path / "predictions.npz") for r in runs)
    assert sorted(a.files) == sorted(b.files)
    assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_a_seeded_model_differs_between_seeds(breast, tmp_path):
    # the oracle above can tell: a model that draws from its seed gives other outputs
    runs = [
        api.train("sklearn-rf", dataset=str(breast), seed=s, out=tmp_path / str(s), n_estimators=5)
        for s in (42, 7)
    ]
    a, b = (np.load(r.path / "predictions.npz") for r in runs)
    assert not np.array_equal(a["test_scores"], b["test_scores"])


def test_a_benchmark_trains_a_deterministic_model_once_and_says_so(breast, tmp_path, monkeypatch):
    from medclf.run import family_sklearn

    fits = []
    real_fit = family_sklearn.SklearnTrainer.fit

    def counting_fit(self, *args, **kwargs):
        fits.append(self.config["model"])
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(family_sklearn.SklearnTrainer, "fit", counting_fit)
    out = tmp_path / "bench"
    args = ["benchmark", "--out", out, "--seeds", 2, "--dataset", breast]
    args += ["--model", "sklearn-svm", "--model", "sklearn-knn"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert fits.count("sklearn-svm") == 1 and fits.count("sklearn-knn") == 2
    rows = list(csv.DictReader((out / "results.csv").open()))
    svm = [r for r in rows if r["model"] == "sklearn-svm"]
    assert len(svm) == 1 and svm[0]["deterministic"] == "True"
    assert {r["deterministic"] for r in rows if r["model"] == "sklearn-knn"} == {"False"}

    # the same numbers as one run of its own, at another seed
    single = api.train("sklearn-svm", dataset=str(breast), seed=43, select="val_auc")
    for key in ("val_acc", "val_auc", "test_acc", "test_auc"):
        assert float(svm[0][key]) == single.metrics[key]

    report = (out / "benchmark.md").read_text()
    line = next(x for x in report.splitlines() if x.startswith("| sklearn-svm (fast)"))
    assert f"1 ({DETERMINISTIC})" in line
    assert "±" not in line and "(n=1)" not in line  # no seed spread, no fake n
    assert f"{single.metrics['test_acc']:.3f} (every seed)" in line
    knn = next(x for x in report.splitlines() if x.startswith("| sklearn-knn (fast)"))
    assert "±" in knn and DETERMINISTIC not in knn


def test_a_deterministic_row_read_back_from_csv_stays_deterministic():
    from medclf.report.benchmark import runs_text, summarise

    row = {"status": "done", "test_acc": "0.8", "test_auc": "0.9", "deterministic": "True"}
    s = summarise([row])
    assert s["deterministic"] and s["n"] == 1 and s["test_acc_sd"] is None
    assert DETERMINISTIC in runs_text(s)
    assert not summarise([{**row, "deterministic": "False"}])["deterministic"]
    assert json.dumps(s)  # plain data


# --- §3b: validation is scored once per epoch, with the same numbers as scoring it again ---


def spy_on_trainers(monkeypatch):
    """Every trainer run_job builds, kept for the test."""
    from medclf.run import lifecycle

    trainers, real = [], lifecycle.family_of

    def family_of(name):
        class Spy(real(name)):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                trainers.append(self)

        return Spy

    monkeypatch.setattr(lifecycle, "family_of", family_of)
    return trainers


def count_val_passes(monkeypatch, model, n_val):
    """A counter of passes over a split of n_val rows through the family's scoring code."""
    from medclf.models import classic
    from medclf.models.numpy_models.base import NumpyClassifier
    from medclf.models.training import torch_engine

    seen = []
    if MODELS[model].family == "torch":
        target, name = torch_engine, "logits_of"
    elif MODELS[model].family == "numpy":
        target, name = NumpyClassifier, "_scores_checked"
    else:
        target, name = classic, "classic_scores"
    real = getattr(target, name)

    def counting(*args, **kwargs):
        X = next(a for a in args if hasattr(a, "shape"))
        seen.append(len(X) == n_val)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, counting)
    return seen


@pytest.mark.parametrize(
    "model, settings",
    [
        ("numpy-logreg", {"epochs": 3}),
        ("numpy-mlp", {"epochs": 2, "hidden_size": 8}),
        ("torch-cnn", {"epochs": 2, "width": 4}),
        ("torch-ffn", {"epochs": 2, "hidden_size": 8}),
        ("sklearn-logreg", {}),
    ],
)
def test_validation_is_scored_once_per_epoch_with_the_numbers_of_a_second_pass(
    model, settings, breast, tmp_path, monkeypatch
):
    from medclf.data.load import load_dataset
    from medclf.models.config import make_config
    from medclf.run.lifecycle import run_job
    from medclf.run.selection import auc_of

    dataset = load_dataset(str(breast))
    n = {s: len(dataset.split(s)) for s in ("train", "val", "test")}
    assert len(set(n.values())) == 3  # a pass over validation is told apart by its length
    trainers = spy_on_trainers(monkeypatch)
    config = make_config(model, dataset=str(breast), select="val_auc", **settings)
    seen = count_val_passes(monkeypatch, model, n["val"])
    per_epoch, again = [], []

    def after_epoch(rec):
        per_epoch.append(sum(seen))
        seen.clear()
        # the old way, a second pass: the same AUC, loss and accuracy, bit for bit
        t = trainers[0]
        f = t.features
        again.append(auc_of(dataset.info.task, f.y_val, t.scores(t.model, f.X_val)))
        assert rec["val_acc"] == t.accuracy(t.model, f.X_val, f.y_val)
        seen.clear()

    extra = {"threads": 1} if MODELS[model].family == "torch" else {}
    run_job(config, dataset, tmp_path / "run", quiet=True, after_epoch=after_epoch, **extra)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert per_epoch == [1] * len(history)  # was 2: the family's pass and the lifecycle's
    assert [r["val_auc"] for r in history] == again
