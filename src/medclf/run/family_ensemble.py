"""Ensembles as runs: ``medclf ensemble RUN... --out DIR`` averages finished runs' predicted
probabilities. The result is a run folder like any other (config.json, metrics.json,
predictions.npz, MedMNIST's CSVs), so evaluate, predict, ``medclf runs`` and ONNX export read
it through its family, ``Ensemble``, which medclf.run.families finds by the config's
``"family"``.

config.json names each member by its path relative to the ensemble's folder: an ensemble kept
beside its members (a benchmark's OUT/runs) survives moving or copying the whole results
folder, which an absolute path would not (an absolute path given stays absolute: join keeps it).
Each member's MD5 covers its config.json, its model file and its predictions.npz: what its
probabilities are computed from (the model and the config that builds it) and what the
ensemble's saved scores are averaged from. predict and export recompute it and refuse a member
that changed or went missing.

Choices: one run alone is refused (its ensemble is itself: use the run); an ensemble of
ensembles is refused rather than flattened (flattening would reweight the members silently:
name the members instead); the same folder twice, by any path, or two copies of one run (the
same MD5) are refused; members must share a data file (its MD5), task, classes, image shape
and every saved split's labels; a perceptron, which gives no probabilities, cannot be a member.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from medclf.errors import ConfigError, DataError
from medclf.files import check_parent
from medclf.run.dataid import data_md5
from medclf.run.families import family_for
from medclf.run.family import Family
from medclf.run.folder import CONFIG, ENV, HISTORY, PREDICTIONS, environment, write_json
from medclf.run.onnx_graph import input_info, output_info, serialise
from medclf.run.outputs import (
    confusion_png,
    flag_of,
    load_predictions,
    metrics_per_split,
    save_predictions,
    summary,
)
from medclf.run.predict import check_run, predict_run

FAMILY = "ensemble"
SPLITS = ("val", "test", "test_official")  # averaged where every member saved them
SAME = (
    "dataset_name",
    "task",
    "class_names",
    "image_shape",
    "data_md5",
    "test_split",
)  # metrics.json facts


def not_trained() -> ConfigError:
    return ConfigError(
        "an ensemble is not trained; make one with 'medclf ensemble RUN... --out DIR'"
    )


class Ensemble(Family):
    """A finished ensemble: its model is the members its config.json names, with their MD5s."""

    model_file = CONFIG

    def __init__(self, config, dataset, **options):
        raise not_trained()

    def fit(self, on_epoch, progress, train_acc):
        raise not_trained()

    def inputs(self, images):
        raise not_trained()

    def scores(self, model, X):
        raise not_trained()

    def accuracy(self, model, X, y):
        raise not_trained()

    def save_model(self, model, path):
        raise not_trained()

    def environment(self):
        raise not_trained()

    @classmethod
    def outputs(cls, run_dir: Path, config: dict, metrics: dict, images):
        members = checked_members(run_dir, config)
        return "proba", np.mean([member_proba(d, c, images) for d, c in members], axis=0)

    @classmethod
    def onnx_graph(cls, run_dir: Path, config: dict, metrics: dict) -> bytes:
        members = checked_members(run_dir, config)
        graphs = [family_for(c[0]).onnx_graph(d, *c) for d, c in members]
        return mean_graph(graphs, metrics)


# --- members ----------------------------------------------------------------------------------


def member_md5(run_dir: Path, config: dict) -> str:
    """One MD5 over the member's config.json, model file and predictions.npz (each hashed once
    per process while unchanged: medclf.run.dataid.data_md5)."""
    digest = hashlib.md5()
    for name in dict.fromkeys((CONFIG, family_for(config).model_file, PREDICTIONS)):
        path = Path(run_dir) / name
        if not path.is_file():
            raise DataError(f"{run_dir} has no {name}; train the run again with 'medclf train'")
        digest.update(f"{name} {data_md5(path)}\n".encode())
    return digest.hexdigest()


def member_proba(run_dir: Path, checked: tuple[dict, dict], images) -> np.ndarray:
    _, proba = predict_run(run_dir, images, checked)
    if proba is None:
        raise DataError(
            f"{run_dir} gives classes, not probabilities (a perceptron), so it cannot be "
            "averaged; leave it out of the ensemble"
        )
    return proba.astype(np.float64)


def checked_members(run_dir: Path, config: dict) -> list[tuple[Path, tuple[dict, dict]]]:
    """Each member's folder and check_run result, refused in one line where a member is gone
    or has changed since the ensemble was made."""
    members = config.get("members")
    if not (
        isinstance(members, list)
        and members
        and all(isinstance(m, dict) and isinstance(m.get("run"), str) for m in members)
    ):
        raise DataError(f"{run_dir / CONFIG} is damaged ('members' is not a list of runs)")
    again = "make the ensemble again with 'medclf ensemble'"
    out, seen = [], set()
    for member in members:
        path = Path(run_dir) / member["run"]
        shown = os.path.normpath(path)
        if path.resolve() in seen:  # never made so: one run counted twice, written by hand
            raise DataError(f"{run_dir / CONFIG} is damaged (member {shown} is named twice)")
        seen.add(path.resolve())
        try:
            checked = check_run(path)
            md5 = member_md5(path, checked[0])
        except DataError as err:
            why = str(err).split(";")[0]  # the member's problem, without its own fix
            raise DataError(
                f"member {shown} of ensemble {run_dir} is unusable ({why}); {again}"
            ) from err
        if family_for(checked[0]) is Ensemble:  # never made so: written by hand
            raise DataError(f"{run_dir / CONFIG} is damaged (member {shown} is an ensemble)")
        if md5 != member.get("md5"):
            raise DataError(
                f"member {shown} of ensemble {run_dir} has changed since the ensemble was made "
                f"(another MD5); {again}"
            )
        out.append((path, checked))
    return out


# --- making one -------------------------------------------------------------------------------


def check_out(out: Path) -> Path:
    """A new folder, or an empty one, in a folder that exists."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty folder; choose a new --out")
    check_parent(out)
    if not os.access(out.parent, os.W_OK):
        raise ConfigError(f"cannot write {out}: {out.parent} is not writable; choose another --out")
    return out


def read_member(run) -> dict:
    """A finished, usable member: its folder, config, metrics, predictions and MD5."""
    path = Path(run)
    config, metrics = check_run(path)
    if family_for(config) is Ensemble:
        raise ConfigError(
            f"{path} is an ensemble; give its members (listed in its config.json) instead, "
            "so that each run counts once"
        )
    if metrics.get("status") != "done":
        raise DataError(f"{path} did not finish training ({metrics.get('status')}); leave it out")
    if "data_md5" not in metrics:
        raise DataError(f"{path} was trained before medclf recorded its data's MD5; train it again")
    preds = load_predictions(path)
    for split in ("val", "test"):
        if f"{split}_scores" not in preds or f"{split}_labels" not in preds:
            raise DataError(f"{path / PREDICTIONS} has no {split} split; train the run again")
    for key in (k for k in preds if k.endswith("_scores")):  # averaged: must be probabilities
        scores = preds[key]
        if np.isfinite(scores).all() and (scores.min() < 0 or scores.max() > 1):
            raise DataError(
                f"{path / PREDICTIONS}: '{key}' holds values outside 0-1, not probabilities; "
                "train the run again"
            )
    shape = metrics["image_shape"]
    member_proba(path, (config, metrics), np.zeros((1, *shape), np.uint8))  # loads its model
    return {
        "path": path,
        "config": config,
        "metrics": metrics,
        "preds": preds,
        "md5": member_md5(path, config),
    }


def check_same(members: list[dict]) -> None:
    """Each member once; every member on one data file, task, class list and image shape,
    scored on the same images (each saved split's labels equal)."""
    for i, a in enumerate(members):
        for b in members[:i]:
            if a["path"].resolve() == b["path"].resolve():
                raise ConfigError(
                    f"{b['path']} and {a['path']} are the same run folder; give each member once"
                )
            if a["md5"] == b["md5"]:
                raise ConfigError(
                    f"{b['path']} and {a['path']} are copies of one run (the same MD5); "
                    "give each member once"
                )
    first = members[0]
    for other in members[1:]:
        a, b = first["path"], other["path"]
        for key in SAME:
            if first["metrics"].get(key) != other["metrics"].get(key):
                raise ConfigError(
                    f"{a} and {b} differ in {key} ({first['metrics'].get(key)} vs "
                    f"{other['metrics'].get(key)}); an ensemble's members must be runs on "
                    "one data file, task and test split"
                )
        for split in SPLITS:
            ya, yb = first["preds"].get(f"{split}_labels"), other["preds"].get(f"{split}_labels")
            if ya is not None and yb is not None and not np.array_equal(ya, yb):
                raise ConfigError(
                    f"{a} and {b} were scored on different {split} images (another "
                    "train_fraction or split); an ensemble's members must share them"
                )


def averaged(members: list[dict]) -> dict:
    """The members' mean scores of every split they all saved, with its labels."""
    preds = {}
    for split in SPLITS:
        if all(f"{split}_scores" in m["preds"] for m in members):
            preds[f"{split}_labels"] = members[0]["preds"][f"{split}_labels"]
            scores = [m["preds"][f"{split}_scores"].astype(np.float64) for m in members]
            preds[f"{split}_scores"] = np.mean(scores, axis=0)
    return preds


def ensemble_config(members: list[dict], out: Path) -> dict:
    first = members[0]["config"]
    where = out.parent.resolve() / out.name
    return {
        "model": FAMILY,
        "family": FAMILY,
        "dataset": first["dataset"],
        "size": first.get("size", 28),
        "test_split": first["test_split"],
        "members": [
            {
                "run": os.path.relpath(m["path"].resolve(), where),
                "model": m["config"]["model"],
                "md5": m["md5"],
            }
            for m in members
        ],
    }


def ensemble_metrics(members: list[dict], preds: dict, config: dict) -> dict:
    first = members[0]["metrics"]
    per_split = metrics_per_split(preds, first["task"], first["class_names"])
    if any("undefined" in per_split[s] and "all" in per_split[s]["undefined"] for s in per_split):
        raise DataError("a member's saved scores hold NaN or inf; leave that run out")
    models = ", ".join(dict.fromkeys(m["config"]["model"] for m in members))
    return {
        "status": "done",
        "title": f"ensemble of {len(members)} runs ({models}) on {first.get('dataset_name')}",
        "task": first["task"],
        "selected_epoch": None,
        "epochs_run": None,
        "stopped": None,
        "train_acc": None,
        "val_acc": per_split["val"].get("acc"),
        "val_auc": per_split["val"].get("auc"),
        **summary(per_split, "test"),
        "test_split": first["test_split"],
        "n_test": int(len(preds["test_labels"])),
        "seconds": sum(float(m["metrics"].get("seconds") or 0) for m in members),
        "data_md5": first["data_md5"],
        "dataset_name": first.get("dataset_name"),
        "dataset_source": first.get("dataset_source"),
        "synthetic": first.get("synthetic"),
        "class_names": first["class_names"],
        "image_shape": first["image_shape"],
        "members": [m["run"] for m in config["members"]],
        "metrics": per_split,
    }


def make_ensemble(runs, out) -> dict:
    """Write the ensemble of ``runs`` (finished run folders) into ``out``, a new or empty folder;
    its metrics. Everything is checked first and written under a temporary name, renamed into
    place at the end: a refusal or a fault leaves no ``out`` behind."""
    runs = list(runs)
    if len(runs) < 2:
        raise ConfigError(
            f"an ensemble needs two runs or more, not {len(runs)}; one run alone is its own "
            "ensemble: use it directly"
        )
    out = check_out(Path(out))
    members = [read_member(r) for r in runs]
    check_same(members)
    preds = averaged(members)
    config = ensemble_config(members, out)
    metrics = ensemble_metrics(members, preds, config)
    tmp = out.parent / f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        tmp.mkdir()
        write_json(tmp / CONFIG, config)
        write_json(tmp / ENV, environment())
        write_json(tmp / HISTORY, [])  # nothing trained
        save_predictions(tmp, preds, flag_of(metrics["dataset_name"], config["size"]), out.name)
        confusion_png(tmp, metrics)
        write_json(tmp / "metrics.json", metrics)
        try:
            os.rename(tmp, out)  # onto a new or empty folder: atomic
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise ConfigError(  # another command wrote it since check_out
                f"{out} was filled by another command meanwhile; choose a new --out"
            ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return metrics


# --- ONNX ------------------------------------------------------------------------------------


def mean_graph(graphs: list[bytes], metrics: dict) -> bytes:
    """The members' graphs side by side (each name prefixed m0_, m1_, ...) on one ``images``
    input, their probabilities averaged by one Mean node: one graph."""
    import onnx
    from onnx import TensorProto, compose, helper

    nodes, inits, infos, means, opsets = [], [], [], [], {}
    for i, raw in enumerate(graphs):
        model = onnx.load_from_string(raw)
        if model.functions:
            raise ConfigError("a member's ONNX graph holds local functions; export it alone")
        model = compose.add_prefix(model, f"m{i}_")
        nodes.append(helper.make_node("Identity", ["images"], [f"m{i}_images"]))
        nodes += model.graph.node
        nodes.append(
            helper.make_node("Cast", [f"m{i}_probabilities"], [f"m{i}_p"], to=TensorProto.FLOAT)
        )
        inits += model.graph.initializer
        infos += model.graph.value_info
        means.append(f"m{i}_p")
        for o in model.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    nodes.append(helper.make_node("Mean", means, ["probabilities"]))
    output = output_info(len(metrics["class_names"]), TensorProto.FLOAT)
    graph = helper.make_graph(
        nodes, "ensemble", [input_info(metrics)], [output], inits, value_info=infos
    )
    return serialise(graph, [helper.make_opsetid(d, v) for d, v in opsets.items()])
