"""Train a PyTorch run from its config, with a checkpoint after every epoch and resumption."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from medclf.data.features import make_features
from medclf.data.load import Dataset
from medclf.errors import ConfigError
from medclf.experiments.store import environment, read_json, save_run
from medclf.files import atomic_path
from medclf.torch_models import build_torch_model
from medclf.train import torch_engine as engine
from medclf.train.display import EpochProgress

CHECKPOINT = "checkpoint.pt"


def save_atomic(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, config: dict) -> dict:
    try:
        state = torch.load(path, weights_only=True)
    except Exception as err:  # truncated or foreign file
        raise ConfigError(
            f"checkpoint {path} cannot be read ({type(err).__name__}); delete it to start the "
            "run afresh"
        ) from err
    if state.get("config") != config:
        raise ConfigError(f"checkpoint {path} belongs to another config; use another --out or "
                          "delete the checkpoint")  # fmt: skip
    return state


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
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise ConfigError(f"{run_dir} holds an unfinished run; pass --resume to continue it or "
                          "choose another --out")  # fmt: skip
    threads = threads or engine.default_threads(config["batch_size"])
    torch.set_num_threads(threads)
    dev = engine.pick_device(device)
    generator = engine.seed_everything(config["seed"])

    f = make_features(dataset, config["test_split"], np.float32)
    data = {name: torch.from_numpy(getattr(f, name)).to(dev)
            for name in ("X_train", "X_val", "X_test")}  # fmt: skip
    data.update({name: torch.from_numpy(getattr(f, name)).long().to(dev)
                 for name in ("y_train", "y_val", "y_test")})  # fmt: skip
    model = build_torch_model(config, f.n_features, dataset.info.n_classes).to(dev)
    optimizer = engine.make_optimizer(model, config["optimizer"], config["lr"], config["l2"])

    history, best_val, seconds = [], -1.0, 0.0
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        engine.set_rng_states(state["rng"], generator)
        history, best_val, seconds = state["history"], state["best_val"], state["seconds"]
    run_dir.mkdir(parents=True, exist_ok=True)
    display = EpochProgress(len(f.y_train), config["epochs"], quiet, config["model"])

    def checkpoint(rec):
        nonlocal best_val
        best_val = max(best_val, rec["val_acc"])
        display.end_epoch(rec)
        save_atomic(ckpt_path, {
            "config": config, "epoch": rec["epoch"], "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "best_val": best_val,
            "rng": engine.rng_states(generator), "history": history + [rec],
            "seconds": seconds + time.perf_counter() - start,
        })  # fmt: skip
        history.append(rec)
        if after_epoch is not None:
            after_epoch(rec)

    start = time.perf_counter()
    engine.fit(model, optimizer, data, config["epochs"], config["batch_size"], generator,
               history=list(history), train_acc=train_acc, callback=checkpoint,
               progress=display.step)  # fmt: skip
    seconds += time.perf_counter() - start
    if history[-1]["train_acc"] is None:  # measured once at the end instead of every epoch
        history[-1]["train_acc"] = engine.evaluate(model, data["X_train"], data["y_train"])[1]
    test_loss, test_acc = engine.evaluate(model, data["X_test"], data["y_test"])
    save_atomic(run_dir / "model.pt", model.state_dict())
    from medclf.experiments.jobs import final_metrics

    metrics = final_metrics(config, dataset, history, f, seconds, test_acc=test_acc,
                            test_loss=test_loss, best_val_acc=best_val)  # fmt: skip
    env = environment(threads=threads, device=str(dev))
    save_run(run_dir, config, history, metrics, env)
    ckpt_path.unlink(missing_ok=True)
    return metrics
