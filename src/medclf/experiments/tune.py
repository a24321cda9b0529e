"""``medclf tune``: hyperparameter search with Optuna over a model's search space
(medclf.models.registry.SEARCH_SPACES).

Each trial is one run folder, OUT/trials/trial-NNNN (medclf.run.folder.trial_dir), with
``select`` = the metric, so a trial's value is the validation metric of its kept epoch. Local
trials are trained by run_job in this process: they report the metric after every epoch and a
MedianPruner stops unpromising ones (state PRUNED, checkpoint removed). With ``backend="ray"``
trials run ``workers`` at a time as Ray tasks through the runner, in the same trial folders,
unpruned (a worker cannot reach the driver's study).
The study lives in ``storage`` (default sqlite:///OUT/study.db) and ``trials`` counts finished
trials (COMPLETE, PRUNED, or FAIL with a reason), so the same command rerun after a kill runs only
the missing ones. A trial that was RUNNING when the search was killed is marked FAIL and its
parameters are tried again as a new trial in the same run folder, continuing from the folder's
checkpoint (a run that had already written metrics.json is not retrained) after reporting the
killed trial's epochs again, so that the pruner decides as it would have.

A resumed search is the same search: every trial has a slot (its place among the search's
trials; a retry has the slot of the trial it retries, and the folder trials/trial-SLOT), and its
settings are drawn by a sampler seeded with (seed, slot), from the finished trials only. The
pruner reads only the finished trials' reported values. The user sees a trial by its slot: the
progress lines, trials.csv (one row a slot, its last attempt), the table and "best trial N"; a
killed attempt that was retried is only counted. Ctrl-C stops the search even where
Python ignores its KeyboardInterrupt (raised inside a finaliser, e.g. SQLAlchemy's): the signal
also sets a flag checked after every epoch and every trial.

The search reads validation numbers only. At the end it writes OUT/best_config.json (for
``medclf train --config``) and OUT/trials.csv, and reads the best trial's test metrics once from
its metrics.json.

With ``cv=K`` (``--cv K``) a trial is K runs, OUT/trials/trial-NNNN/fold-J, each trained on
K-1 parts of the training split and validated on the remaining part (StratifiedKFold by class,
seeded with ``seed``; for multi-label tasks plain shuffled KFold, as scikit-learn has no
iterative stratification). The trial's value is the mean of the folds' kept validation metric;
the official validation split plays no part in the choice. The pruner sees the running mean
after each fold (step J), not per-epoch values (the folds' epochs are not one curve). Each fold
folder holds fold.json (the file's MD5, K, the seed, the fold and the MD5 of its indices), so a
fold folder of other data or another split is trained again, never reused. The best settings
are then trained once on the whole training split with the official validation split
(OUT/best): that run's validation metric is the final check, and its test metrics are read once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from medclf.data.load import Dataset, Split, load_dataset
from medclf.data.registry import REGISTRY
from medclf.errors import ConfigError
from medclf.experiments.runner import run_all
from medclf.models.config import VALIDATION_METRICS, make_config
from medclf.models.registry import MODELS, SEARCH_SPACES
from medclf.run import folder
from medclf.run.dataid import data_file, data_md5
from medclf.run.folder import (
    HISTORY,
    read_json_or_none,
    remove_leftovers,
    run_lock,
    trial_dir,
    write_json,
    write_text,
)
from medclf.run.lifecycle import check_task, run_job

METRICS = VALIDATION_METRICS


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            'medclf tune needs Optuna, an optional extra: pip install -e ".[tune]"'
        ) from None
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


class Restart(Exception):
    """A retried run's checkpoint is ahead of the epochs its killed trial reported."""


def pruning_hook(trial, metric: str, stopped=None, replayed=None, seen=None):
    """run_job's after_epoch: report the epoch's metric, stop the run if Optuna says prune, and
    stop the search if ``stopped()`` (Ctrl-C). ``replayed``: a retry's epochs, reported again
    from its killed trial; a checkpoint beyond them raises Restart. ``seen``: a list that
    collects the epochs run."""
    seen = [] if seen is None else seen

    def after_epoch(rec):
        if replayed is not None and not seen and rec["epoch"] > max(replayed, default=0) + 1:
            raise Restart
        seen.append(rec["epoch"])
        value = rec.get(metric)
        if value is not None and math.isfinite(value) and rec["epoch"] not in (replayed or ()):
            trial.report(value, rec["epoch"])
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned(f"pruned after epoch {rec['epoch']}")
        if stopped is not None and stopped():
            raise KeyboardInterrupt

    return after_epoch


def kept_value(run_dir: Path, metrics: dict, metric: str):
    """The metric of the run's kept epoch (None where undefined, e.g. diverged)."""
    history = read_json_or_none(run_dir / HISTORY) or []
    epoch = metrics["selected_epoch"]
    rec = history[epoch - 1] if len(history) >= epoch else metrics  # a damaged history.json
    value = rec.get(metric)
    return value if value is not None and math.isfinite(value) else None


def counted(trial) -> bool:
    return trial.state.name in ("COMPLETE", "PRUNED") or "reason" in trial.user_attrs


def open_study(optuna, storage: str, search: dict, pruner=None):
    """Create or load the study; refuse one made for another search."""
    direction = "minimize" if search["select"] == "val_loss" else "maximize"
    try:
        study = optuna.create_study(
            study_name="medclf",
            storage=storage,
            direction=direction,
            pruner=pruner or optuna.pruners.MedianPruner(),
            load_if_exists=True,
        )
    except Exception as err:  # a bad URL, a missing driver, a file that is not a database
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise ConfigError(
            f"cannot open the Optuna storage {storage} ({type(err).__name__}: "
            f"{first}); give --storage sqlite:///FILE.db in a writable "
            "folder"
        ) from err
    old = study.user_attrs.get("search")
    if old is None:
        study.set_user_attr("search", search)
    elif old != search:
        # both ways: a key only the old search has (e.g. cv) is a difference too
        keys = ", ".join(k for k in {**old, **search} if old.get(k) != search.get(k))
        raise ConfigError(
            f"{storage} holds a search with other {keys}; rerun it with the same "
            "options or choose another --out or --storage"
        )
    return study


def requeue_killed(optuna, study) -> None:
    """Mark the trials a killed search left RUNNING as FAIL and queue each again with its own
    settings, run folder and slot."""
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        attrs = {"retry_of": t.number}
        if "run_dir" in t.user_attrs:
            attrs["run_dir"] = t.user_attrs["run_dir"]
        study.enqueue_trial(t.params, user_attrs=attrs)


def slots(trials) -> tuple[dict, int]:
    """Each trial's slot (a retry has the slot of the trial it retries) and the next new one."""
    slot, fresh = {}, 0
    for t in trials:
        if "retry_of" in t.user_attrs:
            slot[t.number] = slot[t.user_attrs["retry_of"]]
        else:
            slot[t.number], fresh = fresh, fresh + 1
    return slot, fresh


def last_attempts(trials) -> tuple[list, int]:
    """Each slot's last attempt, in slot order, and how many killed attempts were retried."""
    slot, _ = slots(trials)
    last = {slot[t.number]: t for t in trials}
    return [(n, last[n]) for n in sorted(last)], len(trials) - len(last)


def ask(optuna, study, seed: int):
    """The next trial (a queued retry first) and its slot. Its settings come from a TPE sampler
    seeded with (seed, slot), which reads only the finished trials: the same in a resumed
    search as in an uninterrupted one."""
    trials = study.get_trials(deepcopy=False)
    slot, fresh = slots(trials)
    waiting = [t.number for t in trials if t.state.name == "WAITING"]
    n = slot[waiting[0]] if waiting else fresh  # study.ask() takes the first waiting trial
    trial_seed = int(np.random.SeedSequence([seed, n]).generate_state(1)[0])
    study.sampler = optuna.samplers.TPESampler(seed=trial_seed)
    return study.ask(), n


def replay(study, trial) -> tuple | None:
    """A retry reports its killed trial's epochs again and asks the pruner, as the killed trial
    would have; the epochs replayed (None: not a retry)."""
    if "retry_of" not in trial.user_attrs:
        return None
    old = study.get_trials(deepcopy=False)[trial.user_attrs["retry_of"]].intermediate_values
    for step, value in sorted(old.items()):
        trial.report(value, step)
    if old and trial.should_prune():
        import optuna

        raise optuna.TrialPruned(f"pruned after epoch {max(old)}")
    return tuple(old)


CV_FILE = "fold.json"


def check_cv(cv: int, data: Dataset) -> None:
    """Refuse a K that cannot give every fold each class (single-label) or any image."""
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise ConfigError(f"--cv must be an integer >= 2 (K folds), not {cv!r}")
    labels = data.train.labels
    if labels.ndim == 1:
        counts = np.bincount(labels, minlength=len(data.class_names))
        least = int(np.argmin(counts))
        if counts[least] < cv:
            raise ConfigError(
                f"--cv {cv}: class {least} ({data.class_names[least]}) has only "
                f"{counts[least]} training images, fewer than the {cv} folds; give --cv "
                f"<= {counts[least]} or a larger dataset"
            )
    elif len(labels) < 2 * cv:
        raise ConfigError(
            f"--cv {cv}: the training split has {len(labels)} images, too few for {cv} folds "
            f"of 2 or more; give a smaller --cv or a larger dataset"
        )


def cv_folds(data: Dataset, cv: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, validation indices) of each fold of the training split."""
    from sklearn.model_selection import KFold, StratifiedKFold

    check_cv(cv, data)
    labels = data.train.labels
    if labels.ndim == 1:
        splitter = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(labels)), labels))
    splitter = KFold(n_splits=cv, shuffle=True, random_state=seed)  # multi-label: no strata
    return list(splitter.split(np.zeros(len(labels))))


def fold_dataset(data: Dataset, train_idx: np.ndarray, val_idx: np.ndarray) -> Dataset:
    """The dataset whose train and val splits are the fold's parts of the training split."""
    t = data.train
    return replace(
        data,
        train=Split(t.images[train_idx], t.labels[train_idx]),
        val=Split(t.images[val_idx], t.labels[val_idx]),
    )


def fold_identity(md5: str | None, cv: int, seed: int, fold: int, idx) -> dict:
    """What a fold folder's run was trained on: the file, K, the seed, the fold, its indices."""
    digest = hashlib.md5()
    for part in idx:
        digest.update(np.asarray(part, dtype=np.int64).tobytes())
        digest.update(b"|")
    return {
        "data_md5": md5,
        "cv": cv,
        "seed": seed,
        "fold": fold,
        "indices_md5": digest.hexdigest(),
    }


def run_fold(config: dict, data: Dataset, run_dir: Path, identity: dict, hook) -> dict:
    """Train one fold in its folder; a folder of another fold's data starts afresh."""
    if read_json_or_none(run_dir / CV_FILE) not in (None, identity):
        folder.clear(run_dir)
        remove_leftovers(run_dir)
        (run_dir / CV_FILE).unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CV_FILE, identity)
    return run_job(config, data, run_dir, quiet=True, after_epoch=hook)


def run_cv_trial(
    optuna, study, trial, slot, out: Path, base, space, metric, data, model, stop, cv: dict
) -> None:
    """A trial as K folds (``cv``: {"k", "folds", "md5"}); its value the folds' mean, reported
    to the pruner after each fold."""
    params = suggest(trial, space)
    rel = trial.user_attrs.get("run_dir") or trial_dir(slot)
    trial.set_user_attr("run_dir", rel)
    config = make_config(model, **base, **params)
    try:
        replayed = replay(study, trial) or ()  # a retry: its killed trial's folds, reported again
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    values = []

    def after_epoch(rec):
        if stop():
            raise KeyboardInterrupt

    for j, (train_idx, val_idx) in enumerate(cv["folds"], 1):
        run_dir = out / rel / f"fold-{j}"
        identity = fold_identity(cv["md5"], cv["k"], base["seed"], j, (train_idx, val_idx))
        fold_data = fold_dataset(data, train_idx, val_idx)
        metrics = run_fold(config, fold_data, run_dir, identity, after_epoch)
        value = kept_value(run_dir, metrics, metric) if metrics.get("status") != "failed" else None
        if value is None:
            why = metrics.get("error") or f"no {metric} in fold {j} ({metrics.get('status')})"
            trial.set_user_attr("reason", why)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        values.append(value)
        trial.set_user_attr("folds", values)
        if j not in replayed:
            trial.report(float(np.mean(values)), j)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return
    study.tell(trial, float(np.mean(values)))


def run_trial(
    optuna, study, trial, slot: int, out: Path, base: dict, space: dict, metric, data, model, stop
) -> None:
    params = suggest(trial, space)
    rel = trial.user_attrs.get("run_dir") or trial_dir(slot)
    trial.set_user_attr("run_dir", rel)  # after every suggestion: a retry gets them all
    run_dir = out / rel
    config = make_config(model, **base, **params)
    try:
        replayed, seen = replay(study, trial), []
        try:
            hook = pruning_hook(trial, metric, stop, replayed, seen)
            metrics = run_job(config, data, run_dir, quiet=True, after_epoch=hook)
            resumed_at_end = replayed is not None and not seen
            if resumed_at_end and metrics.get("epochs_run", 0) > max(replayed, default=0):
                raise Restart  # its last epoch was checkpointed, never reported
        except Restart:  # killed between a checkpoint and its report: train from scratch
            remove_leftovers(run_dir)
            hook = pruning_hook(trial, metric, stop, replayed)
            metrics = run_job(config, data, run_dir, quiet=True, resume=False, after_epoch=hook)
    except optuna.TrialPruned:
        remove_leftovers(run_dir)  # a pruned trial is never continued
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    tell(optuna, study, trial, run_dir, metrics, metric)


def tell(optuna, study, trial, run_dir: Path, metrics: dict, metric: str) -> None:
    value = kept_value(run_dir, metrics, metric) if metrics.get("status") != "failed" else None
    if value is None:
        why = metrics.get("error") or f"no {metric} ({metrics.get('status')})"
        trial.set_user_attr("reason", why)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, value)


def run_batch_on_ray(
    optuna,
    study,
    n: int,
    out: Path,
    base: dict,
    space: dict,
    metric,
    model,
    workers: int,
    root,
    address,
    seed: int,
) -> list[int]:
    """``n`` trials at once as Ray tasks (medclf.experiments.executors), each in its trial
    folder, as local trials. A worker cannot reach the driver's study, so these trials are
    not pruned: they run their epochs and are told their kept value when they come back.
    Returns the trials' numbers."""
    batch, entries = [ask(optuna, study, seed) for _ in range(n)], []
    for trial, slot in batch:
        config = make_config(model, **base, **suggest(trial, space))
        rel = trial.user_attrs.get("run_dir") or trial_dir(slot)
        trial.set_user_attr("run_dir", rel)
        # per-epoch training accuracy, as run_job measures it for a local trial
        entries.append(
            {
                "key": f"trial-{slot}",
                "config": config,
                "folder": rel,
                "questions": [f"trial {slot}"],
                "train_acc": True,
            }
        )
    results = run_all(
        entries, out, workers=workers, root=root, progress=False, backend="ray", address=address
    )
    for (trial, _), entry, result in zip(batch, entries, results, strict=True):
        tell(optuna, study, trial, out / entry["folder"], result, metric)
    return [trial.number for trial, _ in batch]


def best_trial(study, out: Path, model: str, base: dict, data, echo, cv=None) -> dict | None:
    """The best COMPLETE trial; writes OUT/best_config.json. A best run whose folder was damaged
    since (a cut metrics.json) is trained again in it. With ``cv``, the best settings are
    trained on the whole training split in OUT/best (the official validation split's check)."""
    if not any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        return None
    b = study.best_trial
    number = slots(study.get_trials(deepcopy=False))[0][b.number]
    run_dir = out / b.user_attrs["run_dir"]
    config = make_config(model, **base, **b.params)
    if cv:
        run_dir = out / "best"
        metrics = run_job(config, data, run_dir, quiet=True)  # reused where already trained
    elif (metrics := folder.finished_run(run_dir, config)) is None:
        echo(f"trial {number}: {run_dir} holds no readable result; training it again")
        metrics = run_job(config, data, run_dir, quiet=True)
    write_json(out / "best_config.json", config)
    run = {"number": number, "value": b.value, "params": b.params, "run_dir": str(run_dir)}
    if cv:
        folds = b.user_attrs["folds"]
        run.update(folds=folds, sd=float(np.std(folds, ddof=1)))
    return {**run, "metrics": metrics}


@contextmanager
def ctrl_c_flag():
    """Yield ``stopped()``, true once Ctrl-C was pressed. Python ignores an exception raised in a
    finaliser (SQLAlchemy's run at any time), so a KeyboardInterrupt alone can be lost; the
    flag is checked after every epoch and trial. An error raised after Ctrl-C (a database session
    or a file cut off mid-operation by the KeyboardInterrupt) is reported as the interruption it
    follows. Only where Ctrl-C has Python's own handler."""
    hits = []

    def on_sigint(signum, frame):
        hits.append(signum)
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    ours = main and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ours:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: bool(hits)
    except Exception:
        if hits:
            raise KeyboardInterrupt from None
        raise
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def trial_rows(study, out: Path, space: dict, cv: int | None = None) -> list[dict]:
    """One row a slot (the trial's number), from its last attempt; with ``cv`` K, each fold's
    value (fold_J) and their sd too."""
    rows = []
    for number, t in last_attempts(study.get_trials(deepcopy=False))[0]:
        run_dir = out / t.user_attrs["run_dir"] if "run_dir" in t.user_attrs else None
        metrics = read_json_or_none(run_dir / folder.METRICS) if run_dir else None
        if t.state.name == "COMPLETE" and isinstance(metrics, dict) and "epochs_run" in metrics:
            epochs = metrics["epochs_run"]
        else:  # not finished, or its metrics.json damaged since
            epochs = max(t.intermediate_values, default=None)
        row = {"number": number, "state": t.state.name, "value": t.value, "epochs": epochs}
        if cv:  # the trial folder holds folds, not one run: no one epoch count
            row["epochs"] = None
            folds = t.user_attrs.get("folds", [])
            row.update({f"fold_{j}": v for j, v in enumerate(folds + [None] * cv, 1) if j <= cv})
            row["sd"] = float(np.std(folds, ddof=1)) if len(folds) > 1 else None
        rows.append(
            {
                **row,
                **{k: t.params.get(k) for k in space},
                "run_dir": str(run_dir) if run_dir else "",
            }
        )
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
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def tune(
    dataset,
    model: str,
    trials: int,
    out,
    metric: str = "val_auc",
    storage=None,
    seed: int = 42,
    epochs: int | None = None,
    size: int | None = None,
    root=None,
    timeout: float | None = None,
    backend: str = "local",
    echo=print,
    pruner=None,
    workers: int = 2,
    address: str | None = None,
    cv: int | None = None,
) -> dict:
    """Run (or continue) the search; return {"rows", "best", "csv", "best_config"}.
    ``pruner``: an Optuna pruner (default MedianPruner: none before 5 finished trials).
    ``cv``: K-fold cross-validation inside the training split (see the module's text)."""
    if model not in MODELS:
        make_config(model)  # its one-line message
    if metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, not '{metric}'")
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend must be local or ray, not '{backend}'")
    if trials < 1:
        raise ConfigError(f"--trials == {trials}, must be >= 1")
    if cv is not None and (isinstance(cv, bool) or not isinstance(cv, int) or cv < 2):
        raise ConfigError(f"--cv must be an integer >= 2 (K folds), not {cv!r}")
    if cv is not None and backend == "ray":
        raise ConfigError("--cv runs its folds locally; drop --backend ray or --cv")
    optuna = import_optuna()
    out = Path(out)
    space = dict(SEARCH_SPACES[model])
    if epochs is not None:
        space.pop("epochs", None)
    if str(dataset).lower() not in REGISTRY:  # one file under any spelling is one search
        dataset = Path(dataset).resolve()
    data = load_dataset(str(dataset), root, size=size)  # a file's size is read from it
    base = {
        "dataset": str(dataset),
        "size": data.info.size,
        "seed": seed,
        "select": metric,
        "epochs": epochs,
    }
    check_task(make_config(model, **base), data)
    # the data's MD5 too: a file replaced in place is another search, not more of the same one
    md5 = data_md5(path) if (path := data_file(str(dataset), root, data.info.size)) else None
    search = {"model": model, **base, "space": space, "data_md5": md5}
    if cv is not None:
        search["cv"] = cv  # only then: an earlier search without --cv stays the same search
        folds = {"k": cv, "folds": cv_folds(data, cv, seed), "md5": md5}
    search = json.loads(json.dumps(search))
    # another storage is checked before --out is made, so that a refusal leaves no empty folder
    study = open_study(optuna, storage, search, pruner) if storage else None
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    with run_lock(out), ctrl_c_flag() as stopped:
        study = study or open_study(optuna, storage, search, pruner)
        requeue_killed(optuna, study)
        start = time.monotonic()
        while sum(map(counted, study.get_trials(deepcopy=False))) < trials:
            if stopped():
                raise KeyboardInterrupt
            if timeout is not None and time.monotonic() - start >= timeout:
                echo(f"--timeout {timeout:g} s reached; rerun the same command to go on")
                break
            if backend == "ray":
                left = trials - sum(map(counted, study.get_trials(deepcopy=False)))
                numbers = run_batch_on_ray(
                    optuna,
                    study,
                    min(workers, left),
                    out,
                    base,
                    space,
                    metric,
                    model,
                    workers,
                    root,
                    address,
                    seed,
                )
            else:
                trial, slot = ask(optuna, study, seed)
                context = (out, base, space, metric, data, model, stopped)
                if cv is None:
                    run_trial(optuna, study, trial, slot, *context)
                else:
                    run_cv_trial(optuna, study, trial, slot, *context, folds)
                numbers = [trial.number]
            done = study.get_trials(deepcopy=False)
            slot_of = slots(done)[0]
            for t in (done[n] for n in numbers):
                echo(
                    f"trial {slot_of[t.number]}: {t.state.name}"
                    + (f", {metric} {t.value:.4f}" if t.value is not None else "")
                )
        if stopped():
            raise KeyboardInterrupt
        rows = trial_rows(study, out, space, cv)
        retried = last_attempts(study.get_trials(deepcopy=False))[1]
        if retried:
            echo(
                f"{retried} killed attempt(s) were retried in their own folders (not in trials.csv)"
            )
        write_csv(out / "trials.csv", rows)
        best = best_trial(study, out, model, base, data, echo, cv)
    return {
        "rows": rows,
        "best": best,
        "csv": out / "trials.csv",
        "metric": metric,
        "cv": cv,
        "best_config": out / "best_config.json" if best else None,
    }
