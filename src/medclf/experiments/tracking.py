"""MLflow tracking: log a finished run folder to an MLflow store, after the fact.

The run folder stays the source of truth; logging reads it once training is over, so tracking
never slows or breaks a training loop, and any old folder can be logged later. One folder gives
one MLflow run:

- parameters: every entry of ``config.json``;
- metrics: each epoch of ``history.json`` with the epoch as step (train_loss, train_acc,
  val_loss, val_acc, val_auc), then the final numbers of ``metrics.json`` at the selected epoch
  (test_acc, test_auc, test_loss, best_val_acc, and every scalar of every saved split as
  ``{split}_{name}``: test_balanced_acc, val_ece, ...). A final number whose name is already a
  per-epoch curve (val_acc, val_auc, train_acc) is logged as ``selected_{name}``, so the curves
  hold exactly one point per epoch;
- tags ``medclf.*``: run key, run folder, config hash, model, dataset name, source and MD5,
  synthetic or real, versions, machine, status;
- artifacts: every file of the folder.

Idempotent: a run is found again by its tags ``medclf.run_dir`` (the folder's absolute path) and
``medclf.config_hash`` (SHA-1 of ``config.json``), so logging a folder twice gives one MLflow run.
A run left unfinished by an interrupted logging is deleted and logged again.

The store is an MLflow tracking URI: ``sqlite:///file.db`` (artifacts go beside it, in
``file-artifacts/``) or a folder (MLflow's file store, which MLflow 3 keeps in maintenance
mode; medclf opts in to it). Local stores never touch the network; MLflow's usage telemetry is
switched off before MLflow is imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from medclf.errors import ConfigError, DataError
from medclf.run.folder import (
    CONFIG,
    ENV,
    HISTORY,
    METRICS,
    has_metrics,
    read_json,
    run_folders_below,
)

EXTRA = 'pip install -e ".[mlflow]"'
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_auc")
FINAL_METRICS = (
    "test_acc",
    "test_auc",
    "test_loss",
    "val_acc",
    "val_auc",
    "train_acc",
    "best_val_acc",
)


SCHEMES = ("sqlite:///", "file:", "http://", "https://")
SQLITE_MAGIC = b"SQLite format 3\x00"


def check_store(uri: str) -> None:
    """Refuse, in one line and before any training, a store MLflow could not open: an unknown
    scheme, an SQLite file in a missing folder or a file that is not SQLite, a folder that is
    a file."""
    fix = "give sqlite:///FILE.db or a folder (or an http(s):// tracking server)"
    if "://" in uri and not uri.startswith(SCHEMES):
        raise ConfigError(f"MLflow store '{uri}' has a scheme medclf does not log to; {fix}")
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.is_dir():
            raise ConfigError(
                f"the folder of MLflow store {path} does not exist; create it or {fix}"
            )
        if path.exists() and (not path.is_file() or path.open("rb").read(16) != SQLITE_MAGIC):
            raise ConfigError(f"{path} exists and is not an SQLite database; {fix}")
    elif "://" not in uri and Path(uri).exists() and not Path(uri).is_dir():
        raise ConfigError(f"MLflow store {uri} is a file, not a folder; {fix}")


def log_run_folder(run_dir, uri: str, experiment: str = "medclf") -> str:
    """Log the finished run folder ``run_dir`` to the MLflow store ``uri``; its MLflow run id."""
    check_store(uri)
    try:
        return _log(Path(run_dir).resolve(), uri, experiment)
    except (ConfigError, DataError, OSError, KeyboardInterrupt):
        raise
    except Exception as err:  # MLflow's and SQLAlchemy's own failures
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"MLflow could not log {run_dir} to {uri} ({type(err).__name__}: "
            f"{first}); check the store"
        ) from err


def _log(run_dir: Path, uri: str, experiment: str) -> str:
    if not has_metrics(run_dir):
        raise DataError(
            f"{run_dir} is not a finished run folder (no metrics.json); finish "
            "the run (medclf train --resume) before logging it"
        )
    config = _read(run_dir / CONFIG)
    metrics = _read(run_dir / METRICS)
    history = _read(run_dir / HISTORY, default=[])
    env = _read(run_dir / ENV, default={})
    config_hash = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()

    client = _client(uri)
    experiment_id = _experiment(client, uri, experiment)
    found = client.search_runs([experiment_id], f"tags.`medclf.config_hash` = '{config_hash}'")
    for run in found:
        if run.data.tags.get("medclf.run_dir") == str(run_dir):
            if run.info.status == "FINISHED":
                return run.info.run_id
            client.delete_run(run.info.run_id)  # an interrupted logging: redo it

    tags = _tags(run_dir, config, metrics, env, config_hash)
    run_id = client.create_run(experiment_id, tags=tags, run_name=run_dir.name).info.run_id
    try:
        _log_values(client, run_id, config, history, metrics)
        client.log_artifacts(run_id, str(run_dir))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def run_folders(paths) -> list[Path]:
    """Every finished run folder at or below each of ``paths`` (a folder with metrics.json)."""
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise DataError(f"{path} is not a folder; give run folders or folders holding them")
        found += run_folders_below(path, METRICS)
    return list(dict.fromkeys(found))


def _client(uri: str):
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # MLflow reports usage online otherwise
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(
            f"MLflow tracking needs the optional mlflow extra; install it with {EXTRA}"
        ) from None
    for name in ("mlflow", "alembic"):  # their INFO lines would break medclf's one-line output
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=_store_uri(uri))


def _store_uri(uri: str) -> str:
    """``uri`` as MLflow takes it: a folder becomes a file:// URI (MLflow's file store)."""
    if uri.startswith("sqlite:") or ("://" in uri and not uri.startswith("file:")):
        return uri
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses folders without it
    return uri if uri.startswith("file:") else Path(uri).resolve().as_uri()


def _experiment(client, uri: str, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        db = Path(uri[len("sqlite:///") :]).resolve()
        location = (db.parent / f"{db.stem}-artifacts" / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def _tags(run_dir: Path, config: dict, metrics: dict, env: dict, config_hash: str) -> dict:
    source = metrics.get("dataset_source")
    md5 = "unknown"
    if source and Path(source).is_file():
        from medclf.data.fetch import file_md5

        md5 = file_md5(Path(source))
    tags = {
        "run_key": run_dir.name,
        "run_dir": str(run_dir),
        "config_hash": config_hash,
        "model": config.get("model"),
        "dataset": metrics.get("dataset_name"),
        "dataset_source": source,
        "dataset_md5": md5,
        "data": "synthetic" if metrics.get("synthetic") else "real",
        "status": metrics.get("status"),
        "version": env.get("medclf", "unknown"),
        "python_version": env.get("python"),
        "numpy_version": env.get("numpy"),
        "torch_version": env.get("torch"),
        "machine": env.get("machine"),
        "platform": env.get("platform"),
        "cpus": env.get("cpus"),
        "device": env.get("device"),
        "precision": env.get("precision"),  # what ran: the param may say auto
        "bf16_hardware": env.get("bf16_hardware"),
    }
    return {f"medclf.{k}": str(v) for k, v in tags.items() if v is not None}


def _log_values(client, run_id: str, config: dict, history: list, metrics: dict) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    params = [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()]
    points = [
        Metric(key, rec[key], now, rec["epoch"])
        for rec in history
        for key in EPOCH_METRICS
        if _number(rec.get(key))
    ]
    final = {key: metrics.get(key) for key in FINAL_METRICS}
    for split, values in (metrics.get("metrics") or {}).items():
        final |= {f"{split}_{k}": v for k, v in values.items() if k != "n"}
    step = metrics.get("selected_epoch") or 0
    for key, value in final.items():
        if _number(value):
            name = f"selected_{key}" if key in EPOCH_METRICS else key
            points.append(Metric(name, value, now, step))
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i : i + 100])
    for i in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[i : i + 1000])


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read(path: Path, default=None):
    try:
        return read_json(path)
    except FileNotFoundError:
        if default is not None:
            return default
        raise DataError(f"{path} is missing; this is not a complete run folder") from None
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: nested too deeply
        raise DataError(
            f"{path} cannot be read as JSON ({err}); repair or remove that run folder"
        ) from None
