"""`medclf tune` (Optuna search over the registry's search spaces: kill and resume, pruning,
best config) and `medclf train --config FILE`."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from medclf.cli import cli
from medclf.config import make_config
from medclf.model_registry import MODELS, SEARCH_SPACES

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from medclf.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("tune") / "tiny.npz", "breastmnist", 0.1, 0)


def medclf(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def read(path):
    return json.loads(path.read_text())


def test_every_model_has_a_search_space_of_its_own_settings():
    assert set(SEARCH_SPACES) == set(MODELS)
    for model, space in SEARCH_SPACES.items():
        settings = make_config(model)
        for key, (kind, *args) in space.items():
            assert key in settings and key not in ("model", "dataset", "select"), (model, key)
            assert kind in ("log", "float", "int", "choice"), (model, key)
            values = args[0] if kind == "choice" else args
            if kind != "choice":
                assert len(args) == 2 and args[0] < args[1], (model, key)
            for value in values:  # every end and every choice is a valid setting
                make_config(model, **{key: value})


def test_tune_killed_and_resumed_keeps_finished_trials_and_best_config_retrains(tmp_path, tiny):
    out = tmp_path / "search"
    args = ["tune", "--dataset", tiny, "--model", "torch-logreg", "--trials", "4", "--epochs",
            "3", "--out", out, "--seed", "7"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "medclf.cli", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    first = out / "trials" / "trial-0000" / "metrics.json"
    second = out / "trials" / "trial-0001" / "config.json"  # trial 0 told, trial 1 training
    deadline = time.monotonic() + 60
    while not second.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (out / "trials.csv").exists()  # killed mid-search
    before = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.json")}

    result = medclf(*args)  # the same command resumes from OUT/study.db
    assert result.exit_code == 0, result.output
    for path, mtime in before.items():  # finished trials were not rerun
        assert path.stat().st_mtime_ns == mtime, path
    study = optuna.load_study(study_name="medclf", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states[0] == "COMPLETE" and states.count("COMPLETE") == 4
    assert states.count("FAIL") == 1 and len(states) == 5  # the one killed while running
    for t in study.trials:  # a trial killed while running is retried in its own folder
        if t.state.name == "FAIL":
            retry = next(r for r in study.trials if r.user_attrs.get("retry_of") == t.number)
            assert retry.params == t.params and retry.user_attrs["run_dir"] == t.user_attrs[
                "run_dir"]  # fmt: skip
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    assert {r["epochs"] for r in rows if r["state"] == "COMPLETE"} == {"3"}
    assert "number" in result.output and "COMPLETE" in result.output
    assert "best trial" in result.output and "test accuracy" in result.output

    best = study.best_trial
    best_dir = out / best.user_attrs["run_dir"]
    assert read(out / "best_config.json") == read(best_dir / "config.json")
    assert read(out / "best_config.json")["lr"] == best.params["lr"]
    retrain = medclf("train", "--config", out / "best_config.json", "--out", tmp_path / "re",
                     "--quiet")  # fmt: skip
    assert retrain.exit_code == 0, retrain.output
    a, b = read(tmp_path / "re" / "metrics.json"), read(best_dir / "metrics.json")
    assert (a["val_auc"], a["val_acc"], a["selected_epoch"]) == (
        b["val_auc"], b["val_acc"], b["selected_epoch"])  # fmt: skip
    assert a["val_auc"] == pytest.approx(best.value)
    losses = [[r["val_loss"] for r in read(d / "history.json")] for d in (tmp_path / "re",
                                                                            best_dir)]
    assert losses[0] == losses[1]

    other = medclf(*args, "--metric", "val_acc")  # another search into the same storage
    assert other.exit_code == 1 and "other select" in other.output
    assert len(other.output.strip().splitlines()) == 1


def test_pruning_hook_stops_a_run_when_optuna_says_prune(tmp_path, tiny):
    from medclf.data.load import load_dataset
    from medclf.experiments.lifecycle import run_job
    from medclf.experiments.tune import pruning_hook

    class FakeTrial:
        reports = []

        def report(self, value, step):
            self.reports.append((value, step))

        def should_prune(self):
            return len(self.reports) == 2

    config = make_config("torch-logreg", dataset=str(tiny), epochs=4, select="val_acc")
    with pytest.raises(optuna.TrialPruned):
        run_job(config, load_dataset(tiny), tmp_path / "run", quiet=True,
                after_epoch=pruning_hook(FakeTrial(), "val_acc"))  # fmt: skip
    assert [step for _, step in FakeTrial.reports] == [1, 2]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_pruned_trials_are_recorded_and_count_towards_the_budget(tmp_path, tiny):
    from medclf.experiments.tune import tune

    result = tune(tiny, "torch-logreg", 3, tmp_path / "p", epochs=3, echo=lambda s: None,
                  pruner=optuna.pruners.ThresholdPruner(lower=1.5))  # every AUC is below
    assert [r["state"] for r in result["rows"]] == ["PRUNED"] * 3
    assert [r["epochs"] for r in result["rows"]] == [1, 1, 1]
    assert result["best"] is None and not (tmp_path / "p" / "best_config.json").exists()
    assert not list((tmp_path / "p").glob("trials/*/checkpoint.pt"))  # never continued
    again = medclf("tune", "--dataset", tiny, "--model", "torch-logreg", "--trials", 3,
                   "--epochs", 3, "--out", tmp_path / "p")  # fmt: skip
    assert again.exit_code == 1 and "no trial finished with a val_auc" in again.output
    assert "trial 3" not in again.output  # the budget was already spent: nothing reran


def test_train_config_reruns_a_run_and_flags_override_it(tmp_path, tiny):
    first = medclf("train", "torch-logreg", "--dataset", tiny, "--epochs", 2, "--lr", 0.05,
                   "--select", "val_acc", "--out", tmp_path / "a", "--quiet")  # fmt: skip
    assert first.exit_code == 0, first.output
    again = medclf("train", "--config", tmp_path / "a" / "config.json", "--out", tmp_path / "b",
                   "--quiet")  # fmt: skip
    assert again.exit_code == 0, again.output
    a, b = read(tmp_path / "a" / "metrics.json"), read(tmp_path / "b" / "metrics.json")
    assert read(tmp_path / "a" / "config.json") == read(tmp_path / "b" / "config.json")
    for key in ("val_acc", "val_auc", "test_acc", "test_auc", "selected_epoch"):
        assert a[key] == b[key], key
    (tmp_path / "hand.yaml").write_text(f"model: torch-logreg\ndataset: {tiny}\nepochs: 2\n"
                                        "lr: 1e-2\n")  # fmt: skip
    flags = medclf("train", "torch-logreg", "--config", tmp_path / "hand.yaml", "--epochs", 1,
                   "--out", tmp_path / "c", "--quiet")  # fmt: skip
    assert flags.exit_code == 0, flags.output
    c = read(tmp_path / "c" / "config.json")
    assert (c["epochs"], c["lr"], c["select"]) == (1, 0.01, "val_auc")  # train's own default


@pytest.mark.parametrize("content, model, says", [
    (None, None, "not found"),
    ("{not json", None, "not valid JSON"),
    ('{"model": "torch-logreg", "momentum": 0.9}', None, "has no setting 'momentum'"),
    ('{"model": "torch-logreg", "lr": -1}', None, "lr == -1"),
    ('{"model": "torch-logreg"}', "torch-ffn", "MODEL argument is torch-ffn"),
    ('{"lr": 0.1}', None, 'names no "model"'),
    ("[1, 2]", None, "one object of settings"),
])  # fmt: skip
def test_bad_config_files_get_one_line(tmp_path, content, model, says):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    result = medclf("train", *([model] if model else []), "--config", path)
    usage = "momentum" in says or "==" in says  # a bad setting or value is a usage error
    assert result.exit_code == (2 if usage else 1) and says in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(("storage", "message"), [
    ("garbage", "cannot open the Optuna storage garbage"),
    ("sqlite:////proc/x/study.db", "cannot open the Optuna storage"),
])  # fmt: skip
def test_a_storage_optuna_cannot_open_is_one_line(tmp_path, tiny, storage, message):
    pytest.importorskip("optuna", reason="medclf tune needs the tune extra")
    result = medclf("tune", "--dataset", tiny, "--model", "torch-logreg", "--trials", 1,
                    "--storage", storage, "--out", tmp_path / "t")  # fmt: skip
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
