"""`medclf tune` (Optuna search over the registry's search spaces: kill and resume, pruning,
best config) and `medclf train --config FILE`."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from medclf.cli import cli
from medclf.models.config import make_config
from medclf.models.registry import MODELS, SEARCH_SPACES

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
    args = [
        "tune",
        "--dataset",
        tiny,
        "--model",
        "torch-logreg",
        "--trials",
        "4",
        "--epochs",
        "3",
        "--out",
        out,
        "--seed",
        "7",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "medclf.cli", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
            assert (
                retry.params == t.params and retry.user_attrs["run_dir"] == t.user_attrs["run_dir"]
            )
    rows = list(csv.DictReader((out / "trials.csv").open()))  # one row a trial, by slot
    assert [(r["number"], r["state"]) for r in rows] == [(str(n), "COMPLETE") for n in range(4)]
    assert [r["run_dir"] for r in rows] == [str(out / f"trials/trial-{n:04d}") for n in range(4)]
    assert "1 killed attempt(s) were retried" in result.output
    assert {r["epochs"] for r in rows if r["state"] == "COMPLETE"} == {"3"}
    assert "number" in result.output and "COMPLETE" in result.output
    assert "best trial" in result.output and "test accuracy" in result.output

    best = study.best_trial
    best_dir = out / best.user_attrs["run_dir"]
    assert read(out / "best_config.json") == read(best_dir / "config.json")
    assert read(out / "best_config.json")["lr"] == best.params["lr"]
    retrain = medclf(
        "train", "--config", out / "best_config.json", "--out", tmp_path / "re", "--quiet"
    )
    assert retrain.exit_code == 0, retrain.output
    a, b = read(tmp_path / "re" / "metrics.json"), read(best_dir / "metrics.json")
    assert (a["val_auc"], a["val_acc"], a["selected_epoch"]) == (
        b["val_auc"],
        b["val_acc"],
        b["selected_epoch"],
    )
    assert a["val_auc"] == pytest.approx(best.value)
    losses = [
        [r["val_loss"] for r in read(d / "history.json")] for d in (tmp_path / "re", best_dir)
    ]
    assert losses[0] == losses[1]

    other = medclf(*args, "--metric", "val_acc")  # another search into the same storage
    assert other.exit_code == 1 and "other select" in other.output
    assert len(other.output.strip().splitlines()) == 1


def test_pruning_hook_stops_a_run_when_optuna_says_prune(tmp_path, tiny):
    from medclf.data.load import load_dataset
    from medclf.experiments.tune import pruning_hook
    from medclf.run.lifecycle import run_job

    class FakeTrial:
        reports = []

        def report(self, value, step):
            self.reports.append((value, step))

        def should_prune(self):
            return len(self.reports) == 2

    config = make_config("torch-logreg", dataset=str(tiny), epochs=4, select="val_acc")
    with pytest.raises(optuna.TrialPruned):
        run_job(
            config,
            load_dataset(tiny),
            tmp_path / "run",
            quiet=True,
            after_epoch=pruning_hook(FakeTrial(), "val_acc"),
        )
    assert [step for _, step in FakeTrial.reports] == [1, 2]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_pruned_trials_are_recorded_and_count_towards_the_budget(tmp_path, tiny):
    from medclf.experiments.tune import tune

    result = tune(
        tiny,
        "torch-logreg",
        3,
        tmp_path / "p",
        epochs=3,
        echo=lambda s: None,
        pruner=optuna.pruners.ThresholdPruner(lower=1.5),
    )  # every AUC is below
    assert [r["state"] for r in result["rows"]] == ["PRUNED"] * 3
    assert [r["epochs"] for r in result["rows"]] == [1, 1, 1]
    assert result["best"] is None and not (tmp_path / "p" / "best_config.json").exists()
    assert not list((tmp_path / "p").glob("trials/*/checkpoint.pt"))  # never continued
    again = medclf(
        "tune",
        "--dataset",
        tiny,
        "--model",
        "torch-logreg",
        "--trials",
        3,
        "--epochs",
        3,
        "--out",
        tmp_path / "p",
    )
    assert again.exit_code == 1 and "no trial finished with a val_auc" in again.output
    assert "trial 3" not in again.output  # the budget was already spent: nothing reran


def test_train_config_reruns_a_run_and_flags_override_it(tmp_path, tiny):
    first = medclf(
        "train",
        "torch-logreg",
        "--dataset",
        tiny,
        "--epochs",
        2,
        "--lr",
        0.05,
        "--select",
        "val_acc",
        "--out",
        tmp_path / "a",
        "--quiet",
    )
    assert first.exit_code == 0, first.output
    again = medclf(
        "train", "--config", tmp_path / "a" / "config.json", "--out", tmp_path / "b", "--quiet"
    )
    assert again.exit_code == 0, again.output
    a, b = read(tmp_path / "a" / "metrics.json"), read(tmp_path / "b" / "metrics.json")
    assert read(tmp_path / "a" / "config.json") == read(tmp_path / "b" / "config.json")
    for key in ("val_acc", "val_auc", "test_acc", "test_auc", "selected_epoch"):
        assert a[key] == b[key], key
    (tmp_path / "hand.yaml").write_text(
        f"model: torch-logreg\ndataset: {tiny}\nepochs: 2\nlr: 1e-2\n"
    )
    flags = medclf(
        "train",
        "torch-logreg",
        "--config",
        tmp_path / "hand.yaml",
        "--epochs",
        1,
        "--out",
        tmp_path / "c",
        "--quiet",
    )
    assert flags.exit_code == 0, flags.output
    c = read(tmp_path / "c" / "config.json")
    assert (c["epochs"], c["lr"], c["select"]) == (1, 0.01, "val_auc")  # train's own default


@pytest.mark.parametrize(
    "content, model, says",
    [
        (None, None, "not found"),
        ("{not json", None, "not valid JSON"),
        ('{"model": "torch-logreg", "momentum": 0.9}', None, "has no setting 'momentum'"),
        ('{"model": "torch-logreg", "lr": -1}', None, "lr == -1"),
        ('{"model": "torch-logreg"}', "torch-ffn", "MODEL argument is torch-ffn"),
        ('{"lr": 0.1}', None, 'names no "model"'),
        ("[1, 2]", None, "one object of settings"),
    ],
)
def test_bad_config_files_get_one_line(tmp_path, content, model, says):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    result = medclf("train", *([model] if model else []), "--config", path)
    usage = "momentum" in says or "==" in says  # a bad setting or value is a usage error
    assert result.exit_code == (2 if usage else 1) and says in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("garbage", "cannot open the Optuna storage garbage"),
        ("sqlite:////proc/x/study.db", "cannot open the Optuna storage"),
    ],
)
def test_a_storage_optuna_cannot_open_is_one_line(tmp_path, tiny, storage, message):
    pytest.importorskip("optuna", reason="medclf tune needs the tune extra")
    result = medclf(
        "tune",
        "--dataset",
        tiny,
        "--model",
        "torch-logreg",
        "--trials",
        1,
        "--storage",
        storage,
        "--out",
        tmp_path / "t",
    )
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()  # refused before --out was made


# A search run as a subprocess of the CLI, killed at chosen points by callbacks this script
# injects: "SLOT:EPOCH:before" / "SLOT:EPOCH:after" (the epoch's report to Optuna) and
# "SLOT:tell" (its run written, Optuna not yet told); a point ending in ":int" presses Ctrl-C
# inside a finaliser, where Python ignores the KeyboardInterrupt. Each point fires once.
KILLER = r"""
import functools, os, signal, sys, time
from pathlib import Path

import optuna
import medclf.experiments.tune as tune
from medclf.cli import cli

marks, points, args = Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3:]
optuna.pruners.MedianPruner = functools.partial(optuna.pruners.MedianPruner, n_startup_trials=1)


class Swallowed:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)


def act(point):
    for kind in ("", ":int"):
        if point + kind in points and not (marks / (point + kind)).exists():
            (marks / (point + kind)).touch()
            if kind:
                Swallowed()
            else:
                os.kill(os.getpid(), signal.SIGKILL)


def pruning_hook(trial, *a, **k):
    inner, slot = hook(trial, *a, **k), int(trial.user_attrs["run_dir"][-4:])

    def after_epoch(rec):
        act(f"{slot}:{rec['epoch']}:before")
        inner(rec)
        act(f"{slot}:{rec['epoch']}:after")

    return after_epoch


def tell(optuna, study, trial, run_dir, *a):
    act(f"{int(run_dir.name[-4:])}:tell")
    told(optuna, study, trial, run_dir, *a)


hook, told = tune.pruning_hook, tune.tell
tune.pruning_hook, tune.tell = pruning_hook, tell
cli(args, prog_name="medclf")
"""


def search_args(tiny, out, trials=5):
    search = ["--model", "torch-logreg", "--trials", trials, "--epochs", 3, "--seed", 3]
    return ["tune", "--dataset", tiny, *search, "--out", out]


def killed_search(tmp_path, args, points):
    """Run the search until it exits without a kill; the exit codes and stderr of each run, and
    the points reached."""
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    runs = []
    for _ in range(len(points) + 2):
        command = [sys.executable, "-c", KILLER, marks, ",".join(points), *map(str, args)]
        proc = subprocess.run(command, capture_output=True, text=True)
        runs.append((proc.returncode, proc.stderr, proc.stdout))
        if proc.returncode == 0:
            break
    return [run[:2] for run in runs], sorted(p.name for p in marks.iterdir()), runs[-1][2]


def uninterrupted_search(monkeypatch, args):
    import functools

    pruner = functools.partial(optuna.pruners.MedianPruner, n_startup_trials=1)
    monkeypatch.setattr(optuna.pruners, "MedianPruner", pruner)
    result = medclf(*args)
    assert result.exit_code == 0, result.output
    return result.output


def finished_trials(out):
    """Each run folder's counted trial: its settings, state, value and reported epochs."""
    study = optuna.load_study(study_name="medclf", storage=f"sqlite:///{out / 'study.db'}")
    counted = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    return {
        t.user_attrs["run_dir"]: (t.params, t.state.name, t.value, t.intermediate_values)
        for t in counted
    }


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """An uninterrupted search with seed 3 (MedianPruner after 1 finished trial)."""
    out = tmp_path_factory.mktemp("reference") / "search"
    with pytest.MonkeyPatch.context() as monkeypatch:
        output = uninterrupted_search(monkeypatch, search_args(tiny, out))
    trials = finished_trials(out)
    states = [state for _, state, _, _ in trials.values()]
    assert len(trials) == 5 and "PRUNED" in states and "COMPLETE" in states  # both are tested
    return out, trials, output


def csv_rows(out):
    """trials.csv row by row (number, state, value, epochs, settings, folder within OUT)."""
    rows = list(csv.DictReader((out / "trials.csv").open()))
    return [{**r, "run_dir": os.path.relpath(r["run_dir"], out)} for r in rows]


def assert_reads_like(reference, out, output):
    """A resumed search's trials.csv, progress lines and best trial read as the reference's."""
    ref_out, _, ref_output = reference
    assert csv_rows(out) == csv_rows(ref_out)
    [best] = [line for line in output.splitlines() if line.startswith("best trial")]
    assert best in ref_output.splitlines()
    progress = [line for line in output.splitlines() if line.startswith("trial ")]
    assert progress and set(progress) <= set(ref_output.splitlines())
    assert "killed attempt(s) were retried" in output


# 1:1:before: checkpointed, not reported, so the retry starts again; 2:2:after then 2:3:before:
# killed twice in one trial, its last epoch never reported; 0:tell: trained, Optuna not told
KILLS = [["1:1:before", "2:2:after", "2:3:before"], ["0:3:after", "0:tell", "4:1:before"]]


@pytest.mark.parametrize("points", KILLS)
def test_a_search_killed_and_resumed_is_the_uninterrupted_search(tmp_path, tiny, reference, points):
    ref_out, ref_trials, _ = reference
    out = tmp_path / "search"
    runs, reached, output = killed_search(tmp_path, search_args(tiny, out), points)
    assert finished_trials(out) == ref_trials  # the same settings, values, prunings, folders
    assert reached == sorted(points)
    assert [rc for rc, _ in runs] == [-signal.SIGKILL] * len(points) + [0]
    assert read(out / "best_config.json") == read(ref_out / "best_config.json")
    assert_reads_like(reference, out, output)  # the same numbers, rows and best trial


def test_ctrl_c_stops_the_search_even_inside_a_finaliser(tmp_path, tiny, reference):
    _, ref_trials, _ = reference
    out = tmp_path / "search"
    runs, reached, output = killed_search(tmp_path, search_args(tiny, out), ["0:2:after:int"])
    assert reached == ["0:2:after:int"]
    assert [rc for rc, _ in runs] == [130, 0]  # not swallowed: the search stopped
    assert "Exception ignored" in runs[0][1]  # Python did ignore the KeyboardInterrupt
    assert runs[0][1].strip().splitlines()[-1].startswith("Error: interrupted;")
    assert finished_trials(out) == ref_trials
    assert_reads_like(reference, out, output)


def test_a_trial_that_failed_stays_a_row_and_a_retried_kill_does_not(tmp_path):
    from medclf.experiments.tune import ask, requeue_killed, trial_rows

    study = optuna.create_study(direction="maximize")
    failed, _ = ask(optuna, study, 5)
    failed.set_user_attr("reason", "diverged")  # an error: FAIL, not retried
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    ask(optuna, study, 5)  # slot 1, left RUNNING as a kill leaves it
    requeue_killed(optuna, study)
    for _ in range(2):  # slot 1 again (the retry), then slot 2
        trial, slot = ask(optuna, study, 5)
        study.tell(trial, float(slot))
    rows = trial_rows(study, tmp_path, {})
    assert [(r["number"], r["state"], r["value"]) for r in rows] == [
        (0, "FAIL", None),
        (1, "COMPLETE", 1.0),
        (2, "COMPLETE", 2.0),
    ]


def test_a_search_interrupted_by_ctrl_c_stops_with_one_line(tmp_path, tiny):
    out = tmp_path / "search"
    args = [sys.executable, "-m", "medclf.cli", *map(str, search_args(tiny, out, trials=50))]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "trials" / "trial-0001").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(60)
    err = proc.stderr.read().strip()
    assert code == 130, err
    assert err.startswith("Error: interrupted;") and len(err.splitlines()) == 1, err
    assert not (out / "trials.csv").exists()


def test_the_proposals_are_a_function_of_the_finished_trials_and_the_seed(tmp_path):
    """Past TPE's 10 random start-up trials too: trials left RUNNING (killed) and retried do not
    change what the search proposes."""
    from medclf.experiments.tune import ask, requeue_killed, suggest

    space = SEARCH_SPACES["torch-ffn"]

    def search(kills):
        study = optuna.create_study(direction="maximize")
        while len([t for t in study.trials if t.state.name == "COMPLETE"]) < 14:
            trial, slot = ask(optuna, study, 5)
            params = suggest(trial, space)
            if slot in kills:  # left RUNNING, as a killed search leaves it
                kills.remove(slot)
                requeue_killed(optuna, study)  # as the next search does
                continue
            study.tell(trial, -math.log(params["lr"]) * params["hidden_size"] % 7)
        return [(t.params, t.value) for t in study.trials if t.state.name == "COMPLETE"]

    assert search([2, 11, 11, 12]) == search([])


def test_a_search_rerun_over_cut_metrics_files_trains_the_best_again(tmp_path, tiny):
    search = ["--model", "torch-logreg", "--trials", 2, "--epochs", 2, "--out", tmp_path / "s"]
    args = ["tune", "--dataset", tiny, *search]
    first = medclf(*args)
    assert first.exit_code == 0, first.output
    best = {p: p.read_text() for p in (tmp_path / "s").glob("trials/*/metrics.json")}
    for path, text in best.items():
        path.write_text(text[: len(text) // 2])
    again = medclf(*args)
    assert again.exit_code == 0 and "Traceback" not in again.output, again.output
    assert "holds no readable result; training it again" in again.output
    assert first.output.splitlines()[-2] == again.output.splitlines()[-2]  # the same best line


def test_a_search_over_a_replaced_data_file_is_refused(tmp_path):
    from medclf.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "d.npz", "breastmnist", 0.05, 0)
    out = tmp_path / "search"
    args = ["tune", "--dataset", data, "--model", "sklearn-logreg", "--trials", "1", "--out", out]
    assert medclf(*args).exit_code == 0
    again = medclf("tune", "--dataset", f"./{os.path.relpath(data)}", *args[3:])
    assert again.exit_code == 0, again.output  # the same file, spelt another way: the same search
    write_synthetic(data, "breastmnist", 0.05, 1)  # replaced in place
    result = medclf(*args)
    assert result.exit_code != 0 and "data_md5" in result.output
    assert "Traceback" not in result.output


def test_an_error_that_follows_ctrl_c_is_reported_as_the_interruption():
    """A KeyboardInterrupt that cuts a database session short can surface later as the
    session's own error; once Ctrl-C was pressed that error is the interruption (exit 130)."""
    from medclf.experiments.tune import ctrl_c_flag

    with pytest.raises(RuntimeError, match="broken"), ctrl_c_flag():
        raise RuntimeError("broken")  # no Ctrl-C: the error is the error
    with pytest.raises(KeyboardInterrupt), ctrl_c_flag() as stopped:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here
        except KeyboardInterrupt:
            pass  # swallowed, as a library's cleanup may
        assert stopped()
        raise RuntimeError("broken session")
