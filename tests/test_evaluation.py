"""Runs evaluated as the field does: every task trains, predictions are saved, metrics are
recomputed from them by scikit-learn called directly here, model selection keeps the best
epoch, and the genuine MedMNIST files give AUC well above chance."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from medclf.cli import cli

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
real_data = pytest.mark.skipif(
    not (REAL / "pneumoniamnist.npz").exists(),
    reason="the genuine MedMNIST files in ../shared/data are absent",
)


def medclf(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def strict_json(path):
    """metrics.json must be valid JSON: NaN or Infinity are refused here."""

    def refuse(name):
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def saved(run, split="test"):
    with np.load(Path(run) / "predictions.npz", allow_pickle=False) as npz:
        return npz[f"{split}_labels"], npz[f"{split}_scores"]


@pytest.fixture(scope="module")
def chest_file(tmp_path_factory):
    from medclf.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("chest") / "chest.npz", "chestmnist", 0.01, 0)


@pytest.fixture(scope="module")
def retina_file(tmp_path_factory):
    from medclf.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("retina") / "retina.npz", "retinamnist", 0.2, 0)


def test_saved_predictions_give_the_recorded_metrics(tmp_path, synth_file):
    out = tmp_path / "run"
    result = medclf(
        "train",
        "torch-logreg",
        "--dataset",
        synth_file,
        "--epochs",
        2,
        "--test-split",
        "official",
        "--quiet",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    metrics = strict_json(out / "metrics.json")
    y, p = saved(out)
    assert p.shape == (len(y), 4) and np.allclose(p.sum(axis=1), 1)
    assert metrics["test_acc"] == pytest.approx(accuracy_score(y, p.argmax(axis=1)))
    assert metrics["test_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"))
    test = metrics["metrics"]["test"]
    assert test["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, p.argmax(axis=1)))
    counts = np.zeros((4, 4), int)
    for true, pred in zip(y, p.argmax(axis=1), strict=True):
        counts[true, pred] += 1
    assert test["confusion_matrix"] == counts.tolist()
    # MedMNIST's result CSV: one row per image, its index then its scores
    rows = list(csv.reader(io.StringIO((out / "octmnist_test@run.csv").read_text())))
    assert len(rows) == len(y)
    assert np.allclose(np.array([[float(v) for v in r[1:]] for r in rows]), p, atol=1e-6)
    assert (out / "confusion.png").stat().st_size > 1000


def test_evaluate_recomputes_from_predictions_and_compares_runs(tmp_path, synth_file):
    runs = []
    for model in ("torch-logreg", "numpy-perceptron"):
        runs.append(tmp_path / model)
        result = medclf(
            "train", model, "--dataset", synth_file, "--epochs", 2, "--quiet", "--out", runs[-1]
        )
        assert result.exit_code == 0, result.output
    result = medclf("evaluate", runs[0], "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    y, p = saved(runs[0])
    assert shown["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"))
    # evaluate reads predictions, not metrics.json: a changed score file changes its answer
    with np.load(runs[0] / "predictions.npz") as npz:
        arrays = dict(npz)
    arrays["test_scores"] = np.roll(arrays["test_scores"], 1, axis=1)
    np.savez(runs[0] / "predictions.npz", **arrays)
    changed = json.loads(medclf("evaluate", runs[0], "--json").output)
    assert changed["acc"] == pytest.approx(accuracy_score(y, arrays["test_scores"].argmax(1)))
    table = medclf("evaluate", *runs, "--split", "val")
    assert table.exit_code == 0 and "torch-logreg" in table.output
    assert "numpy-perceptron" in table.output and "synthetic" in table.output
    single = medclf("evaluate", runs[1])
    assert "confusion matrix" in single.output and "precision" in single.output
    bad = medclf("evaluate", runs[1], "--split", "nope")
    assert bad.exit_code == 1 and "no saved 'nope' split" in bad.output
    assert "Traceback" not in bad.output
    empty = medclf("evaluate", tmp_path)
    assert empty.exit_code == 1 and "no readable metrics.json" in empty.output


def test_runs_lists_every_folder_sorted(tmp_path, synth_file):
    for lr in (0.001, 0.1):
        result = medclf(
            "train",
            "torch-logreg",
            "--dataset",
            synth_file,
            "--epochs",
            1,
            "--lr",
            lr,
            "--quiet",
            "--out",
            tmp_path / f"lr{lr}",
        )
        assert result.exit_code == 0, result.output
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    result = medclf("runs", tmp_path, "--sort", "test_acc", "--json")
    rows = json.loads(result.output)
    assert [r["status"] for r in rows].count("done") == 2 and len(rows) == 3
    accs = [r["test_acc"] for r in rows if r["test_acc"] is not None]
    assert accs == sorted(accs, reverse=True) and rows[-1]["status"] == "no metrics"
    assert "lr=0.001" in medclf("runs", tmp_path).output
    assert medclf("runs", tmp_path / "missing").exit_code == 1


def test_selection_keeps_the_best_epoch_and_reports_the_last(tmp_path, synth_file):
    out = tmp_path / "sel"
    result = medclf(
        "train",
        "torch-ffn",
        "--dataset",
        synth_file,
        "--epochs",
        6,
        "--lr",
        1.5,
        "--hidden-size",
        32,
        "--select",
        "val_acc",
        "--quiet",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    metrics = strict_json(out / "metrics.json")
    history = json.loads((out / "history.json").read_text())
    best = max(history, key=lambda r: r["val_acc"])
    assert metrics["selected_epoch"] == best["epoch"] and metrics["val_acc"] == best["val_acc"]
    # the saved model is the selected epoch's: its val scores give that epoch's accuracy
    y, p = saved(out, "val")
    assert accuracy_score(y, p.argmax(axis=1)) == pytest.approx(best["val_acc"])
    if best["epoch"] != history[-1]["epoch"]:
        y_last, p_last = saved(out, "last_val")
        assert accuracy_score(y_last, p_last.argmax(1)) == pytest.approx(history[-1]["val_acc"])
    assert all(r["val_auc"] is not None for r in history)


def test_patience_stops_early_and_resume_respects_it(tmp_path, synth_file):
    out = tmp_path / "pat"
    result = medclf(
        "train",
        "numpy-logreg",
        "--dataset",
        synth_file,
        "--epochs",
        40,
        "--lr",
        0.5,
        "--select",
        "val_loss",
        "--patience",
        1,
        "--quiet",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    metrics = strict_json(out / "metrics.json")
    history = json.loads((out / "history.json").read_text())
    assert len(history) < 40 and metrics["stopped"].startswith("early stop")
    assert len(history) == metrics["selected_epoch"] + 1
    losses = [r["val_loss"] for r in history]
    assert losses[metrics["selected_epoch"] - 1] == min(losses)
    bad = medclf(
        "train",
        "numpy-logreg",
        "--dataset",
        synth_file,
        "--patience",
        2,
        "--select",
        "last",
        "--out",
        tmp_path / "x",
    )
    assert bad.exit_code == 2 and "patience needs a metric" in bad.output  # a usage error


def test_diverged_run_is_marked_and_its_json_stays_valid(tmp_path, synth_file):
    out = tmp_path / "div"
    result = medclf(
        "train",
        "torch-logreg",
        "--dataset",
        synth_file,
        "--epochs",
        5,
        "--lr",
        1e38,
        "--select",
        "last",
        "--quiet",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    metrics = strict_json(out / "metrics.json")
    assert metrics["status"] == "diverged" and metrics["stopped"].startswith("diverged")
    assert metrics["epochs_run"] < 5 and metrics["test_acc"] is None
    assert "undefined" in result.output


def test_multi_label_trains_and_evaluates_end_to_end(tmp_path, chest_file):
    out = tmp_path / "chest"
    result = medclf(
        "train",
        "torch-ffn",
        "--dataset",
        chest_file,
        "--epochs",
        2,
        "--batch-size",
        64,
        "--quiet",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    metrics = strict_json(out / "metrics.json")
    y, p = saved(out)
    assert y.shape == p.shape == (len(y), 14) and ((p > 0) & (p < 1)).all()
    assert metrics["test_acc"] == pytest.approx(np.mean((p > 0.5) == y))
    aucs = [roc_auc_score(y[:, k], p[:, k]) for k in range(14) if len(set(y[:, k])) == 2]
    assert metrics["test_auc"] == pytest.approx(np.mean(aucs))
    assert "confusion per label" in medclf("evaluate", out).output
    refused = medclf("train", "numpy-mlp", "--dataset", chest_file, "--out", tmp_path / "np")
    assert refused.exit_code == 1 and "use one of torch-logreg, torch-ffn" in refused.output


def test_ordinal_task_gets_mae_and_kappa(tmp_path, retina_file):
    from sklearn.metrics import cohen_kappa_score, mean_absolute_error

    out = tmp_path / "retina"
    result = medclf(
        "train", "torch-logreg", "--dataset", retina_file, "--epochs", 2, "--quiet", "--out", out
    )
    assert result.exit_code == 0, result.output
    test = strict_json(out / "metrics.json")["metrics"]["test"]
    y, p = saved(out)
    assert test["mae"] == pytest.approx(mean_absolute_error(y, p.argmax(1)))
    assert test["qwk"] == pytest.approx(cohen_kappa_score(y, p.argmax(1), weights="quadratic"))


def test_a_finished_run_of_another_config_needs_force(tmp_path, synth_file):
    out = tmp_path / "run"
    assert (
        medclf(
            "train", "torch-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet", "--out", out
        ).exit_code
        == 0
    )
    other = medclf(
        "train", "numpy-perceptron", "--dataset", synth_file, "--epochs", 1, "--quiet", "--out", out
    )
    assert other.exit_code == 1 and "--force" in other.output
    assert not (out / "model.npz").exists()
    forced = medclf(
        "train",
        "numpy-perceptron",
        "--dataset",
        synth_file,
        "--epochs",
        1,
        "--quiet",
        "--force",
        "--out",
        out,
    )
    assert forced.exit_code == 0, forced.output
    assert (out / "model.npz").exists() and not (out / "model.pt").exists()


def test_numpy_checkpoint_of_another_config_is_refused(tmp_path, synth_file):
    from conftest import Killed, kill_after
    from medclf.data.load import load_dataset
    from medclf.errors import ConfigError
    from medclf.models.config import make_config
    from medclf.run.lifecycle import run_job as run_numpy

    ds = load_dataset(synth_file)
    config = make_config("numpy-logreg", epochs=3, dataset=str(synth_file))
    with pytest.raises(Killed):
        run_numpy(config, ds, tmp_path / "r", quiet=True, after_epoch=kill_after(1))
    with pytest.raises(ConfigError, match="another config"):
        run_numpy({**config, "lr": 0.5}, ds, tmp_path / "r", quiet=True)


@real_data
@pytest.mark.parametrize("name", ["pneumoniamnist", "breastmnist"])
def test_genuine_files_verify_and_train_well_above_chance(tmp_path, name):
    shutil.copy(REAL / f"{name}.npz", tmp_path / f"{name}.npz")
    verified = medclf("data", "verify", name, "--root", tmp_path)
    assert verified.exit_code == 0 and "ok" in verified.output
    torch.manual_seed(0)
    out = tmp_path / "run"
    result = medclf(
        "train",
        "torch-logreg",
        "--dataset",
        name,
        "--root",
        tmp_path,
        "--epochs",
        4,
        "--batch-size",
        32,
        "--quiet",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    metrics = strict_json(out / "metrics.json")
    assert not metrics["synthetic"] and metrics["n_test"] in (624, 156)
    assert metrics["test_auc"] > 0.7  # chance is 0.5; MedMNIST's ResNet-18 gets 0.90-0.94
    y, p = saved(out)
    assert metrics["test_auc"] == pytest.approx(roc_auc_score(y, p[:, 1]))
    assert metrics["test_acc"] == pytest.approx(np.mean((p[:, 1] > 0.5) == y))


def test_sklearn_baseline_runs_through_the_same_lifecycle(tmp_path, synth_file):
    import skops.io as sio
    from sklearn.metrics import roc_auc_score as auc

    from medclf.data.features import make_features
    from medclf.data.load import load_dataset

    out = tmp_path / "hgb"
    result = medclf("train", "sklearn-logreg", "--dataset", synth_file, "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    metrics = strict_json(out / "metrics.json")
    model = sio.load(out / "model.skops", trusted=sio.get_untrusted_types(file=out / "model.skops"))
    f = make_features(load_dataset(synth_file), "auto", np.float32)
    assert metrics["test_acc"] == pytest.approx(model.score(f.X_test, f.y_test))
    expected = auc(f.y_test, model.predict_proba(f.X_test), multi_class="ovr")
    assert metrics["test_auc"] == pytest.approx(expected, abs=1e-4)  # rows renormalised
    shown = medclf("predict", out, synth_file)
    assert shown.exit_code == 0 and "drusen" in shown.output


def test_a_model_file_with_foreign_types_is_refused(tmp_path, synth_file):
    import skops.io as sio

    from medclf.errors import DataError
    from medclf.run.family_sklearn import load_model_file

    sio.dump({"payload": Path("/etc/passwd")}, tmp_path / "model.skops")
    with pytest.raises(DataError, match="types medclf never writes"):
        load_model_file(tmp_path / "model.skops")
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a model file that medclf wrote"):
        load_model_file(tmp_path / "junk.skops")


def test_a_size_that_does_not_match_the_file_is_refused(tmp_path, synth_file):
    result = medclf(
        "train", "torch-ffn", "--dataset", synth_file, "--size", 64, "--out", tmp_path / "x"
    )
    assert result.exit_code == 2 and "holds 28x28 images, but the size given is 64" in (
        result.output
    )
    assert not (tmp_path / "x" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("metric", "best"), [("val_auc", 3), ("val_acc", 2), ("val_loss", 4), ("last", 5)]
)
def test_selector_picks_the_right_epoch_on_a_crafted_history(metric, best):
    from medclf.run.selection import Selector, stop_reason

    rows = [
        (0.70, 0.60, 0.9),
        (0.80, 0.61, 0.8),
        (0.75, 0.90, 0.7),
        (0.74, None, 0.5),
        (0.10, 0.20, float("nan")),
    ]  # epoch 5 diverged: its NaN loss is never the best
    history = [
        {"epoch": e, "val_acc": acc, "val_auc": auc, "val_loss": loss}
        for e, (acc, auc, loss) in enumerate(rows, 1)
    ]
    assert Selector(metric, 0, history).best_epoch == best
    patient = Selector("val_acc", 2, history[:4])  # best at 2, no better at 3 and 4: stop
    assert stop_reason(history[:4], patient).startswith("early stop at epoch 4")
    assert stop_reason(history, Selector("val_auc", 0, history)).startswith("diverged at epoch 5")


def test_features_that_cannot_fit_in_memory_are_refused_before_allocating(
    tmp_path, synth_file, monkeypatch
):
    import os

    from medclf.data.load import load_dataset
    from medclf.errors import ConfigError
    from medclf.models.config import make_config
    from medclf.run import lifecycle

    ds = load_dataset(synth_file)  # before the machine shrinks: reading checks memory too
    pages, real = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 256}, os.sysconf  # a 1 MiB machine
    monkeypatch.setattr(lifecycle.os, "sysconf", lambda name: pages.get(name) or real(name))
    with pytest.raises(ConfigError, match="GiB of features, more than this machine's"):
        lifecycle.run_job(make_config("numpy-logreg", dataset=str(synth_file)), ds, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_evaluate_and_runs_survive_damaged_files(tmp_path, synth_file):
    out = tmp_path / "runs" / "a"
    assert (
        medclf(
            "train", "torch-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet", "--out", out
        ).exit_code
        == 0
    )
    good = (out / "predictions.npz").read_bytes()
    (out / "predictions.npz").write_bytes(good[:300])
    cut = medclf("evaluate", out)
    assert cut.exit_code == 1 and "predictions.npz cannot be read" in cut.output
    (out / "predictions.npz").write_bytes(good)
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "task"}))
    older = medclf("evaluate", out)
    assert older.exit_code == 1 and "lacks the task or class names" in older.output
    (out / "metrics.json").write_text(json.dumps({**metrics, "test_auc": "high"}))
    (tmp_path / "runs" / "b").mkdir()
    (tmp_path / "runs" / "b" / "config.json").write_text("[1, 2]")
    (tmp_path / "runs" / "b" / "metrics.json").write_text("[]")
    listed = medclf("runs", tmp_path / "runs", "--sort", "test_auc", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [r["test_auc"] for r in rows] == [None, None]  # "high" is no number
    assert {r["status"] for r in rows} == {"done", "no metrics"}


@pytest.fixture(scope="module")
def binary_runs(tmp_path_factory):
    """Two runs of different models on one binary file, and one on another file."""
    from medclf.data.synthetic import write_synthetic

    top = tmp_path_factory.mktemp("paired")
    data = write_synthetic(top / "b.npz", "breastmnist", 0.3, 0)
    other = write_synthetic(top / "p.npz", "pneumoniamnist", 0.02, 0)
    runs = {}
    for name, model, file in [
        ("a", "sklearn-logreg", data),
        ("b", "torch-logreg", data),
        ("c", "sklearn-logreg", other),
    ]:
        runs[name] = top / name
        epochs = ["--epochs", 2] if model.startswith("torch") else []
        result = medclf("train", model, "--dataset", file, *epochs, "--quiet", "--out", runs[name])
        assert result.exit_code == 0, result.output
    return runs


def test_evaluate_gives_seeded_bootstrap_intervals(binary_runs):
    shown = json.loads(medclf("evaluate", binary_runs["a"], "--json", "--resamples", 300).output)
    y, p = saved(binary_runs["a"])
    acc = accuracy_score(y, (p[:, 1] > 0.5).astype(int))
    ci = shown["intervals"]["acc"]
    assert ci["low"] < acc < ci["high"] and ci["resamples"] == 300 and ci["seed"] == 0
    width = ci["high"] - ci["low"]  # about 4 binomial standard errors
    assert 2.5 < width / np.sqrt(acc * (1 - acc) / len(y)) < 5.5
    again = json.loads(medclf("evaluate", binary_runs["a"], "--json", "--resamples", 300).output)
    assert again["intervals"] == shown["intervals"]
    other = medclf("evaluate", binary_runs["a"], "--json", "--resamples", 300, "--seed", 1)
    assert json.loads(other.output)["intervals"] != shown["intervals"]
    none = json.loads(medclf("evaluate", binary_runs["a"], "--json", "--resamples", 0).output)
    assert none["intervals"] == {}
    text = medclf("evaluate", binary_runs["a"], "--resamples", 300).output
    assert f"[{shown['intervals']['auc']['low']:.4f}, " in text and "bootstrap" in text


def test_evaluate_compare_pairs_two_runs_on_the_same_images(binary_runs):
    result = medclf("evaluate", binary_runs["a"], binary_runs["b"], "--compare", "--json")
    assert result.exit_code == 0, result.output
    tests = json.loads(result.output)["tests"]
    y, pa = saved(binary_runs["a"])
    _, pb = saved(binary_runs["b"])
    right_a, right_b = (pa[:, 1] > 0.5) == y, (pb[:, 1] > 0.5) == y  # counted here, directly
    assert tests["acc"]["mcnemar"]["only_a_right"] == int(np.sum(right_a & ~right_b))
    assert tests["acc"]["mcnemar"]["only_b_right"] == int(np.sum(right_b & ~right_a))
    delong = tests["auc"]["delong"]
    assert delong["auc_a"] == pytest.approx(roc_auc_score(y, pa[:, 1]))
    assert delong["auc_b"] == pytest.approx(roc_auc_score(y, pb[:, 1]))
    assert 0 <= delong["p_value"] <= 1
    boot = tests["auc"]["bootstrap"]
    assert boot["low"] <= delong["auc_a"] - delong["auc_b"] <= boot["high"]
    text = medclf("evaluate", binary_runs["a"], binary_runs["b"], "--compare").output
    assert "DeLong" in text and "McNemar" in text


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["a", "c"], 1, "not scored on the same test images"),
        (["a"], 2, "exactly two runs"),
        (["a", "b", "c"], 2, "exactly two runs"),
    ],
)
def test_evaluate_compare_refuses_in_one_line(binary_runs, args, code, says):
    result = medclf("evaluate", *[binary_runs[a] for a in args], "--compare")
    assert result.exit_code == code and says in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
