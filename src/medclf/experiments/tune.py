"""``medclf tune``: hyperparameter search with Optuna over a model's search space
(medclf.models.registry.SEARCH_SPACES).

Each trial is one run folder, OUT/trials/trial-NNNN, trained by the runner (run_all, the same
path for both backends) with ``select`` = the metric, so a trial's value is the validation
metric of its kept epoch. Local trials report the metric after every epoch and a MedianPruner
stops unpromising ones (state PRUNED, checkpoint removed). With ``backend="ray"`` trials run
``workers`` at a time as Ray tasks, unpruned (a worker cannot reach the driver's study).
The study lives in ``storage`` (default sqlite:///OUT/study.db) and ``trials`` counts finished
trials (COMPLETE, PRUNED, or FAIL with a reason), so the same command rerun after a kill runs only
the missing ones. A trial that was RUNNING when the search was killed is marked FAIL and its
parameters are tried again as a new trial in the same run folder, continuing from the folder's
checkpoint (a run that had already written metrics.json is not retrained).

The search reads validation numbers only. At the end it writes OUT/best_config.json (for
``medclf train --config``) and OUT/trials.csv, and reads the best trial's test metrics once from
its metrics.json.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

from medclf.data.load import load_dataset
from medclf.errors import ConfigError
from medclf.experiments.runner import run_all
from medclf.experiments.worker import StopRun
from medclf.models.config import VALIDATION_METRICS, make_config
from medclf.models.registry import MODELS, SEARCH_SPACES
from medclf.run import folder
from medclf.run.folder import (
    CONFIG,
    HISTORY,
    read_json,
    run_lock,
    trial_dir,
    write_json,
    write_text,
)
from medclf.run.lifecycle import check_task

METRICS = VALIDATION_METRICS


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("medclf tune needs Optuna, an optional extra: "
                          "pip install -e \".[tune]\"") from None  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def suggest(trial, space: dict) -> dict:
    """One value per setting of ``space`` from an Optuna trial."""
    params = {}
    for key, (kind, *args) in space.items():
        if kind == "log":
            params[key] = trial.suggest_float(key, *args, log=True)
        elif kind == "float":
            params[key] = trial.suggest_float(key, *args)
        elif kind == "int":
            params[key] = trial.suggest_int(key, *args)
        elif kind == "choice":
            params[key] = trial.suggest_categorical(key, args[0])
        else:
            raise ConfigError(f"search space of {key}: unknown kind '{kind}'")
    return params


def pruned_error(optuna):
    """optuna.TrialPruned that the runner also knows as a run stopped on purpose (StopRun)."""

    class Pruned(optuna.TrialPruned, StopRun):
        pass

    return Pruned


def pruning_hook(trial, metric: str):
    """An after_epoch hook: report the epoch's metric, stop the run if Optuna says prune."""
    pruned = pruned_error(import_optuna())

    def after_epoch(rec):
        value = rec.get(metric)
        if value is None or not math.isfinite(value):
            return
        trial.report(value, rec["epoch"])
        if trial.should_prune():
            raise pruned(f"pruned after epoch {rec['epoch']}")

    return after_epoch


def kept_value(run_dir: Path, metrics: dict, metric: str):
    """The metric of the run's kept epoch (None where undefined, e.g. diverged)."""
    history = read_json(run_dir / HISTORY)
    value = history[metrics["selected_epoch"] - 1].get(metric)
    return value if value is not None and math.isfinite(value) else None


def counted(trial) -> bool:
    return trial.state.name in ("COMPLETE", "PRUNED") or "reason" in trial.user_attrs


def open_study(optuna, storage: str, search: dict, seed: int, pruner=None):
    """Create or load the study; refuse one made for another search; mark trials a killed
    search left RUNNING as FAIL and queue their parameters (and run folder) again."""
    direction = "minimize" if search["select"] == "val_loss" else "maximize"
    try:
        study = optuna.create_study(study_name="medclf", storage=storage, direction=direction,
                                    pruner=pruner or optuna.pruners.MedianPruner(),
                                    load_if_exists=True)  # fmt: skip
    except Exception as err:  # a bad URL, a missing driver, a file that is not a database
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise ConfigError(f"cannot open the Optuna storage {storage} ({type(err).__name__}: "
                          f"{first}); give --storage sqlite:///FILE.db in a writable "
                          "folder") from err  # fmt: skip
    old = study.user_attrs.get("search")
    if old is None:
        study.set_user_attr("search", search)
    elif old != search:
        keys = ", ".join(k for k in search if old.get(k) != search[k])
        raise ConfigError(f"{storage} holds a search with other {keys}; rerun it with the same "
                          "options or choose another --out or --storage")  # fmt: skip
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in running:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        attrs = {"retry_of": t.number}
        if "run_dir" in t.user_attrs:
            attrs["run_dir"] = t.user_attrs["run_dir"]
        study.enqueue_trial(t.params, user_attrs=attrs)
    # seeded, and offset by the trials so far so that a resumed search does not redraw them
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def trial_entry(trial, base: dict, space: dict, model: str) -> dict:
    """The runner entry of a trial: its config and its folder (a retry keeps the folder)."""
    params = suggest(trial, space)
    rel = trial.user_attrs.get("run_dir") or trial_dir(trial.number)
    trial.set_user_attr("run_dir", rel)  # after every suggestion: a retry gets them all
    config = make_config(model, **base, **params)
    return {"key": f"trial-{trial.number:04d}", "config": config, "folder": rel,
            "questions": [f"trial {trial.number}"], "train_acc": True}  # fmt: skip


def run_trials(optuna, study, n: int, out: Path, base: dict, space: dict, metric, model,
               workers: int, root, backend: str, address) -> None:  # fmt: skip
    """``n`` trials (one where local: it can be pruned after each epoch) through the runner.
    Ray trials are not pruned: a worker cannot reach the driver's study, so they run their
    epochs and are told their kept value when they come back."""
    batch = [study.ask() for _ in range(n)]
    entries = [trial_entry(t, base, space, model) for t in batch]
    hook = pruning_hook(batch[0], metric) if backend == "local" else None
    results = run_all(entries, out, workers=workers, root=root, progress=False, backend=backend,
                      address=address, after_epoch=hook)  # fmt: skip
    for trial, entry, result in zip(batch, entries, results, strict=True):
        if result["status"] == "stopped":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            tell(optuna, study, trial, out / entry["folder"], result, metric)


def tell(optuna, study, trial, run_dir: Path, metrics: dict, metric: str) -> None:
    value = kept_value(run_dir, metrics, metric) if metrics.get("status") != "failed" else None
    if value is None:
        why = metrics.get("error") or f"no {metric} ({metrics.get('status')})"
        trial.set_user_attr("reason", why)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, value)


def trial_rows(study, out: Path, space: dict) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        run_dir = out / t.user_attrs["run_dir"] if "run_dir" in t.user_attrs else None
        metrics_file = run_dir / folder.METRICS if run_dir else None
        if t.state.name == "COMPLETE" and metrics_file.exists():
            epochs = read_json(metrics_file)["epochs_run"]
        else:
            epochs = max(t.intermediate_values, default=None)
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     "epochs": epochs, **{k: t.params.get(k) for k in space},
                     "run_dir": str(run_dir) if run_dir else ""})  # fmt: skip
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["number"])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_table(rows: list[dict], metric: str) -> str:
    """The trials as an aligned text table (value: the metric of the kept epoch)."""
    if not rows:
        return "(no trials)"
    head = [metric if k == "value" else k for k in rows[0]]
    cells = [head, *([cell(v) for v in row.values()] for row in rows)]
    widths = [max(len(r[j]) for r in cells) for j in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)  # fmt: skip


def tune(dataset, model: str, trials: int, out, metric: str = "val_auc", storage=None,
         seed: int = 42, epochs: int | None = None, size: int = 28, root=None,
         timeout: float | None = None, backend: str = "local", echo=print,
         pruner=None, workers: int = 2, address: str | None = None) -> dict:  # fmt: skip
    """Run (or continue) the search; return {"rows", "best", "csv", "best_config"}.
    ``pruner``: an Optuna pruner (default MedianPruner: none before 5 finished trials)."""
    if model not in MODELS:
        make_config(model)  # its one-line message
    if metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, not '{metric}'")
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend must be local or ray, not '{backend}'")
    if trials < 1:
        raise ConfigError(f"--trials == {trials}, must be >= 1")
    optuna = import_optuna()
    out = Path(out)
    space = dict(SEARCH_SPACES[model])
    if epochs is not None:
        space.pop("epochs", None)
    base = {"dataset": str(dataset), "size": size, "seed": seed, "select": metric,
            "epochs": epochs}  # fmt: skip
    check_task(make_config(model, **base), load_dataset(str(dataset), root, size=size))
    search = json.loads(json.dumps({"model": model, **base, "space": space}))
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    with run_lock(out):
        study = open_study(optuna, storage, search, seed, pruner)
        start = time.monotonic()
        while sum(map(counted, study.get_trials(deepcopy=False))) < trials:
            if timeout is not None and time.monotonic() - start >= timeout:
                echo(f"--timeout {timeout:g} s reached; rerun the same command to go on")
                break
            before = len(study.trials)
            left = trials - sum(map(counted, study.get_trials(deepcopy=False)))
            n = min(workers, left) if backend == "ray" else 1
            run_trials(optuna, study, n, out, base, space, metric, model, workers, root, backend,
                       address)  # fmt: skip
            for t in study.trials[before:]:
                echo(f"trial {t.number}: {t.state.name}"
                     + (f", {metric} {t.value:.4f}" if t.value is not None else ""))  # fmt: skip
        rows = trial_rows(study, out, space)
        write_csv(out / "trials.csv", rows)
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        best = None
        if complete:
            b = study.best_trial
            run_dir = out / b.user_attrs["run_dir"]
            write_json(out / "best_config.json", read_json(run_dir / CONFIG))
            best = {"number": b.number, "value": b.value, "params": b.params,
                    "run_dir": str(run_dir), "metrics": read_json(run_dir / folder.METRICS)}
    return {"rows": rows, "best": best, "csv": out / "trials.csv", "metric": metric,
            "best_config": out / "best_config.json" if best else None}  # fmt: skip
