"""Train a PyTorch run from its config, with a checkpoint after every epoch and resumption."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from medclf.data.features import make_features, to_features
from medclf.data.load import Dataset
from medclf.errors import ConfigError
from medclf.experiments.jobs import end_epoch, finish_run, open_run, stop_reason
from medclf.experiments.lifecycle import Selector, finite_or_none
from medclf.experiments.store import environment, read_json
from medclf.files import atomic_path
from medclf.torch_models import build_torch_model
from medclf.train import torch_engine as engine
from medclf.train.display import EpochProgress

CHECKPOINT = "checkpoint.pt"


def save_atomic(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


CHECKPOINT_KEYS = {"config", "model", "optimizer", "rng", "history", "seconds"}


def load_checkpoint(path: Path, config: dict) -> dict:
    """The state medclf saved after an epoch; anything else is refused in one line."""
    afresh = "delete it to start the run afresh"
    try:
        state = torch.load(path, weights_only=True)
    except Exception as err:  # truncated, empty or foreign file
        raise ConfigError(f"checkpoint {path} cannot be read ({type(err).__name__}); "
                          f"{afresh}") from err  # fmt: skip
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= set(state):
        raise ConfigError(f"checkpoint {path} is not a checkpoint medclf wrote; {afresh}")
    if state["config"] != config:
        raise ConfigError(f"checkpoint {path} belongs to another config; use another --out or "
                          "delete the checkpoint")  # fmt: skip
    return state


def restore(model, optimizer, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise ConfigError(f"checkpoint {path} does not fit this model ({type(err).__name__}); "
                          "delete it to start the run afresh") from err


def run_torch(config: dict, dataset: Dataset, run_dir: Path, quiet: bool = False,
              device: str | None = None, threads: int | None = None, resume: bool = True,
              train_acc: bool = True, after_epoch=None) -> dict:  # fmt: skip
    """Train (or continue) the run and write its folder. ``train_acc``: measure training
    accuracy every epoch (else only after the last: a forward pass over the whole training
    split costs about half a training epoch at batch 256). ``after_epoch(record)`` runs after
    each epoch's checkpoint is on disk (tests use it to simulate a kill)."""
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").exists() and resume:
        metrics = read_json(run_dir / "metrics.json")
        if read_json(run_dir / "config.json") == config and metrics.get("status") == "done":
            return metrics
    ckpt_path, best_path = run_dir / CHECKPOINT, run_dir / "best.pt"
    open_run(run_dir, config, ckpt_path, resume)
    threads = threads or engine.default_threads(config["batch_size"])
    torch.set_num_threads(threads)
    dev = engine.pick_device(device)
    generator = engine.seed_everything(config["seed"])

    multi_label = dataset.info.multi_label
    f = make_features(dataset, config["test_split"], np.float32)
    data = {name: torch.from_numpy(getattr(f, name)).to(dev)
            for name in ("X_train", "X_val", "X_test")}  # fmt: skip
    label_type = torch.float32 if multi_label else torch.long
    data.update({name: torch.from_numpy(getattr(f, name)).to(dev, label_type)
                 for name in ("y_train", "y_val", "y_test")})  # fmt: skip
    model = build_torch_model(config, f.n_features, dataset.info.n_classes).to(dev)
    optimizer = engine.make_optimizer(model, config["optimizer"], config["lr"], config["l2"])

    history, seconds = [], 0.0
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, config)
        restore(model, optimizer, state, ckpt_path)
        engine.set_rng_states(state["rng"], generator)
        history, seconds = state["history"], state["seconds"]
    selector = Selector(config["select"], config["patience"], history)
    display = EpochProgress(len(f.y_train), config["epochs"], quiet, config["model"])

    def scores(net):
        return lambda X: engine.scores(net, torch.from_numpy(X).to(dev), multi_label)

    def checkpoint(rec):
        val_scores = engine.scores(model, data["X_val"], multi_label)
        stop = end_epoch(rec, dataset.info.task, f.y_val, val_scores, selector,
                         lambda: save_atomic(best_path, model.state_dict()))  # fmt: skip
        display.end_epoch(rec)
        save_atomic(ckpt_path, {
            "config": config, "epoch": rec["epoch"], "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "rng": engine.rng_states(generator),
            "history": history + [rec], "seconds": seconds + time.perf_counter() - start,
        })  # fmt: skip
        history.append(rec)
        if after_epoch is not None:
            after_epoch(rec)
        return stop

    start = time.perf_counter()
    if stop_reason(history, selector) is None:
        engine.fit(model, optimizer, data, config["epochs"], config["batch_size"], generator,
                   history=list(history), train_acc=train_acc, callback=checkpoint,
                   progress=display.step)  # fmt: skip
    seconds += time.perf_counter() - start
    chosen = model
    if selector.best_epoch != history[-1]["epoch"]:
        chosen = copy.deepcopy(model)
        chosen.load_state_dict(torch.load(best_path, weights_only=True))
    record = history[selector.best_epoch - 1 if selector.best_epoch else -1]
    if record["train_acc"] is None:  # measured once at the end instead of every epoch
        record["train_acc"] = engine.evaluate(chosen, data["X_train"], data["y_train"])[1]
    test_loss = engine.evaluate(chosen, data["X_test"], data["y_test"])[0]
    save_atomic(run_dir / "model.pt", chosen.state_dict())
    best_val_acc = max((r["val_acc"] for r in history if r["val_acc"] is not None), default=None)
    metrics = finish_run(run_dir, config, dataset, f, history, selector, scores(chosen),
                         scores(model), lambda images: to_features(images, np.float32),
                         seconds, environment(threads=threads, device=str(dev)),
                         stop_reason(history, selector), test_loss=finite_or_none(test_loss),
                         best_val_acc=best_val_acc)  # fmt: skip
    ckpt_path.unlink(missing_ok=True)
    best_path.unlink(missing_ok=True)
    return metrics
