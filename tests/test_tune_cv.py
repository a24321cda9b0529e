"""`medclf tune --cv K`: k-fold cross-validation inside the training split (issue 18 §2)."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from medclf.cli import cli
from medclf.data.load import load_dataset
from medclf.experiments.tune import cv_folds, fold_dataset, fold_identity, run_fold
from medclf.models.config import make_config

optuna = pytest.importorskip("optuna")
sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from medclf.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("cv") / "tiny.npz", "breastmnist", 0.1, 0)


def medclf(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def search(data, out, *extra):
    args = ["tune", "--dataset", data, "--model", "torch-logreg", "--trials", 2, "--epochs", 2]
    return medclf(*args, "--cv", 3, "--out", out, *extra)


def rows(out):
    with open(out / "trials.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_partition_the_training_split_and_keep_each_class_share(tiny, k):
    data = load_dataset(str(tiny))
    labels = data.train.labels
    folds = cv_folds(data, k, seed=7)
    held_out = np.concatenate([va for _, va in folds])
    assert sorted(held_out) == list(range(len(labels)))  # each image held out exactly once
    for tr, va in folds:
        assert set(tr).isdisjoint(va) and len(tr) + len(va) == len(labels)
        for c, n in enumerate(np.bincount(labels)):
            assert np.sum(labels[va] == c) in (n // k, -(-n // k))  # stratified: floor or ceil
        fold = fold_dataset(data, tr, va)
        assert np.array_equal(fold.val.labels, labels[va])
        assert np.array_equal(fold.train.images, data.train.images[tr])
        assert fold.test is data.test
    assert [va.tolist() for _, va in cv_folds(data, k, seed=7)] == [va.tolist() for _, va in folds]


def test_multi_label_folds_are_plain_k_fold_partitions(tmp_path):
    from medclf.data.synthetic import write_synthetic

    data = load_dataset(str(write_synthetic(tmp_path / "chest.npz", "chestmnist", 0.0005, 0)))
    folds = cv_folds(data, 4, seed=0)
    assert sorted(np.concatenate([va for _, va in folds])) == list(range(len(data.train)))


def test_the_objective_is_the_mean_of_the_folds_recomputed_from_their_predictions(tmp_path, tiny):
    out = tmp_path / "s"
    result = search(tiny, out)
    assert result.exit_code == 0, result.output
    assert "mean ± sd of 3 folds" in result.output
    for row in rows(out):
        assert row["state"] == "COMPLETE"
        aucs = []
        for j in (1, 2, 3):
            preds = np.load(out / row["run_dir"] / f"fold-{j}" / "predictions.npz")
            aucs.append(
                sklearn_metrics.roc_auc_score(preds["val_labels"], preds["val_scores"][:, 1])
            )
            assert float(row[f"fold_{j}"]) == pytest.approx(aucs[-1])
        assert float(row["value"]) == pytest.approx(np.mean(aucs))
        assert float(row["sd"]) == pytest.approx(np.std(aucs, ddof=1))
    # the best settings trained once on the whole training split, its own validation split
    preds = np.load(out / "best" / "predictions.npz")
    assert np.array_equal(preds["val_labels"], load_dataset(str(tiny)).val.labels)


def test_permuting_the_test_labels_changes_no_trial_value(tmp_path, tiny):
    arrays = dict(np.load(tiny))
    arrays["test_labels"] = np.random.default_rng(0).permutation(arrays["test_labels"])
    other = tmp_path / "permuted.npz"
    np.savez_compressed(other, **arrays)
    assert search(tiny, tmp_path / "a").exit_code == 0
    assert search(other, tmp_path / "b").exit_code == 0
    a, b = rows(tmp_path / "a"), rows(tmp_path / "b")
    keys = ["value", "fold_1", "fold_2", "fold_3", "sd"]
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]


def test_the_pruner_sees_the_running_mean_after_each_fold(tmp_path, tiny):
    from medclf import api

    never_good_enough = optuna.pruners.ThresholdPruner(lower=1.5)  # prunes at the first report
    out = tmp_path / "p"
    api.tune(
        str(tiny),
        "torch-logreg",
        1,
        out,
        epochs=2,
        cv=3,
        pruner=never_good_enough,
        echo=lambda *_: None,
    )
    study = optuna.load_study(study_name="medclf", storage=f"sqlite:///{out / 'study.db'}")
    (trial,) = study.get_trials()
    assert trial.state.name == "PRUNED"
    fold1 = json.loads((out / "trials" / "trial-0000" / "fold-1" / "metrics.json").read_text())
    assert trial.intermediate_values == {1: pytest.approx(fold1["val_auc"])}
    assert not (out / "trials" / "trial-0000" / "fold-2").exists()  # stopped after fold 1


def test_a_fold_folder_of_other_indices_is_trained_again_not_reused(tmp_path, tiny):
    data = load_dataset(str(tiny))
    (tr1, va1), (tr2, va2) = cv_folds(data, 3, seed=0)[:2]
    config = make_config("torch-logreg", dataset=str(tiny), epochs=1)
    run_dir = tmp_path / "fold"
    run_fold(
        config, fold_dataset(data, tr1, va1), run_dir, fold_identity("x", 3, 0, 1, (tr1, va1)), None
    )
    run_fold(
        config, fold_dataset(data, tr2, va2), run_dir, fold_identity("x", 3, 0, 2, (tr2, va2)), None
    )
    preds = np.load(run_dir / "predictions.npz")
    assert np.array_equal(preds["val_labels"], data.train.labels[va2])
    assert json.loads((run_dir / "fold.json").read_text())["fold"] == 2


@pytest.mark.parametrize("k", ["1", "0", "-3", "abc", "2.5"])
def test_a_cv_that_is_no_fold_count_is_a_usage_error(tmp_path, tiny, k):
    result = medclf(
        "tune", "--dataset", tiny, "--model", "torch-logreg", "--cv", k, "--out", tmp_path / "s"
    )
    assert result.exit_code == 2 and "Invalid value for '--cv'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "s").exists()


def test_more_folds_than_a_class_has_training_images_is_one_line(tmp_path, tiny):
    least = int(np.bincount(load_dataset(str(tiny)).train.labels).min())
    result = medclf(
        "tune",
        "--dataset",
        tiny,
        "--model",
        "torch-logreg",
        "--cv",
        least + 1,
        "--out",
        tmp_path / "s",
    )
    assert result.exit_code == 1, result.output
    assert (
        result.output.strip().count("\n") == 0 and f"only {least} training images" in result.output
    )
    assert not (tmp_path / "s").exists()


def test_a_multi_label_training_split_too_small_for_the_folds_is_one_line(tmp_path):
    from medclf.data.synthetic import write_synthetic

    chest = write_synthetic(tmp_path / "chest.npz", "chestmnist", 0.0005, 0)
    n = len(load_dataset(str(chest)).train)
    result = medclf(
        "tune",
        "--dataset",
        chest,
        "--model",
        "torch-logreg",
        "--cv",
        n // 2 + 1,
        "--out",
        tmp_path / "s",
    )
    assert result.exit_code == 1, result.output
    assert "too few" in result.output and result.output.strip().count("\n") == 0
    assert not (tmp_path / "s").exists()


def test_cv_on_ray_is_refused_in_one_line(tmp_path, tiny):
    from medclf import api
    from medclf.errors import ConfigError

    with pytest.raises(ConfigError, match="--cv runs its folds locally"):
        api.tune(str(tiny), "torch-logreg", 1, tmp_path / "r", cv=3, backend="ray")
    with pytest.raises(ConfigError, match="--cv must be an integer >= 2"):
        api.tune(str(tiny), "torch-logreg", 1, tmp_path / "r", cv=1)


def test_a_search_killed_mid_trial_resumes_to_the_uninterrupted_value(tmp_path, tiny, monkeypatch):
    from medclf import api
    from medclf.experiments import tune as tune_module

    quiet = {"epochs": 2, "cv": 3, "echo": lambda *_: None}
    api.tune(str(tiny), "torch-logreg", 1, tmp_path / "ref", **quiet)
    real, calls = tune_module.run_job, []

    def killed_at_fold_2(config, data, run_dir, **kw):
        calls.append(run_dir.name)
        if run_dir.name == "fold-2" and calls.count("fold-2") == 1:
            raise KeyboardInterrupt  # as a kill between folds
        return real(config, data, run_dir, **kw)

    monkeypatch.setattr(tune_module, "run_job", killed_at_fold_2)
    with pytest.raises(KeyboardInterrupt):
        api.tune(str(tiny), "torch-logreg", 1, tmp_path / "s", **quiet)
    fold1 = (tmp_path / "s" / "trials" / "trial-0000" / "fold-1" / "metrics.json").stat()
    api.tune(str(tiny), "torch-logreg", 1, tmp_path / "s", **quiet)
    assert (tmp_path / "s/trials/trial-0000/fold-1/metrics.json").stat().st_mtime_ns == (
        fold1.st_mtime_ns
    )  # the finished fold is reused, not retrained
    keys = ["number", "state", "value", "fold_1", "fold_2", "fold_3", "sd"]
    assert [[r[k] for k in keys] for r in rows(tmp_path / "s")] == [
        [r[k] for k in keys] for r in rows(tmp_path / "ref")
    ]


def test_a_cv_search_rerun_without_cv_or_with_another_k_is_refused_naming_cv(tmp_path, tiny):
    out = tmp_path / "s"
    args = ["--dataset", tiny, "--model", "torch-logreg", "--trials", 1, "--epochs", 1]
    assert medclf("tune", *args, "--cv", 2, "--out", out).exit_code == 0
    for other in ([], ["--cv", 3]):
        result = medclf("tune", *args, *other, "--out", out)
        assert result.exit_code == 1 and "holds a search with other cv;" in result.output
