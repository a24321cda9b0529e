"""One run, whatever its model family: config → data → fit with a checkpoint after every
epoch → select → predictions → metrics → run folder. ``medclf train``, the reproduce runner
and the benchmark all come through ``run_job``.

A family plugs in through one checked interface, medclf.run.family.Family (its trainer:
built from the config and the data, fitted epoch by epoch with this module's callbacks),
found by medclf.run.families.family_of.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from medclf.data.load import Dataset
from medclf.errors import ConfigError
from medclf.models.registry import MODELS
from medclf.models.training.display import EpochProgress
from medclf.run import folder
from medclf.run.dataid import changed_data, data_md5
from medclf.run.families import family_of
from medclf.run.folder import CONFIG, read_json_or_none, write_json
from medclf.run.outputs import (
    final_metrics,
    medmnist_flag,
    predictions,
    save_predictions,
    save_run,
)
from medclf.run.selection import Selector, auc_of, stop_reason


def claim_run_folder(out, config: dict, force: bool) -> None:
    """Refuse to write over a finished run of another config unless ``force``; then remove
    that run's files (only medclf's own, never anything else in the folder)."""
    run_dir = Path(out)
    if not folder.has_metrics(run_dir):
        return
    if read_json_or_none(run_dir / CONFIG) == config and not force:
        return
    if not force:
        raise ConfigError(
            f"{run_dir} holds a finished run of another config; choose another "
            "--out or pass --force to replace it"
        )
    folder.clear(run_dir)


def start_run_folder(run_dir: Path, config: dict, checkpoint: Path | None, resume: bool) -> bool:
    """Refuse what would mix two runs in one folder; write config.json from the start.
    True where an unfinished run of this config is to be continued."""
    unfinished = checkpoint is not None and checkpoint.exists()
    if unfinished and not resume:
        raise ConfigError(
            f"{run_dir} holds an unfinished run; pass --resume to continue it or "
            "choose another --out"
        )
    if unfinished and read_json_or_none(run_dir / CONFIG) != config:
        raise ConfigError(
            f"checkpoint {checkpoint} belongs to another config; use another "
            "--out or delete the checkpoint"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, config)  # ties the checkpoint to this config
    return unfinished


def check_memory(config: dict, dataset: Dataset) -> None:
    """Flat inputs are float copies of every split (images and volumes stay uint8): refuse one
    that cannot fit in this machine's memory, before allocating it."""
    if MODELS[config["model"]].inputs in ("image", "volume"):
        return
    n = sum(len(dataset.split(s)) for s in ("train", "val", "test"))
    itemsize = 8 if config.get("dtype") == "float64" else 4
    need = n * (int(np.prod(dataset.info.image_shape)) + 1) * itemsize
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > 0.8 * have:
        raise ConfigError(
            f"{config['model']} on {dataset.name} at {dataset.info.size}x"
            f"{dataset.info.size} needs {need / 2**30:.0f} GiB of features, more "
            f"than this machine's {have / 2**30:.0f} GiB; use a smaller --size or "
            "an image model (torch-cnn)"
        )


def check_task(config: dict, dataset: Dataset) -> None:
    """The config must describe the data it meets: its image size and a task its model learns."""
    side = dataset.info.size
    if config.get("size", 28) != side:
        raise ConfigError(
            f"{dataset.source} holds {side}x{side} images, but the config says "
            f"size {config['size']}; drop --size or give the {config['size']}x"
            f"{config['size']} file"
        )
    spec = MODELS[config["model"]]
    dims = dataset.info.dims
    if dims not in spec.dims:
        kind = {2: "2D images", 3: "3D volumes"}
        able = [m for m, s in MODELS.items() if dims in s.dims and dataset.info.task in s.tasks]
        raise ConfigError(
            f"{config['model']} takes {' or '.join(kind[d] for d in spec.dims)}, but "
            f"{dataset.name} holds {kind[dims]}; use one of {', '.join(able)}"
        )
    check_memory(config, dataset)
    if dataset.info.task not in spec.tasks:
        able = [m for m, s in MODELS.items() if dataset.info.task in s.tasks]
        raise ConfigError(
            f"{config['model']} cannot learn {dataset.name}'s task "
            f"({dataset.info.task}); use one of {', '.join(able)}"
        )


class Job:
    """One run between its setup and its results (run_job's steps), so that run_group can fit
    several runs at once. ``done``: the metrics of a run finished already (nothing to do)."""

    def __init__(self, config, dataset, run_dir, quiet, train_acc, resume, after_epoch, options):
        self.config, self.run_dir, self.source = config, Path(run_dir), dataset
        self.quiet, self.train_acc, self.after_epoch = quiet, train_acc, after_epoch
        family = family_of(config["model"])
        run_dir = self.run_dir
        self.ckpt = run_dir / family.checkpoint_file if family.checkpoint_file else None
        self.best = run_dir / family.best_file if family.best_file else None
        # a checkpoint is newer than any result
        unfinished = self.ckpt is not None and self.ckpt.exists()
        self.md5 = data_md5(dataset.source)  # before training: what this run is trained on
        self.done = None
        if resume and not unfinished and (done := folder.finished_run(run_dir, config)):
            why = changed_data(done, dataset.source)
            if why is None:
                self.done = done
                return
            folder.clear(run_dir)  # a finished run of other data is no result of this one
            if not quiet:
                print(
                    f"{run_dir}: training again, as {why}; its folder is replaced", file=sys.stderr
                )
        check_task(config, dataset)
        self.dataset = dataset = dataset.head(config["train_fraction"])
        self.trainer = family(config, dataset, **options)
        if start_run_folder(run_dir, config, self.ckpt, resume):
            self.trainer.resume(self.ckpt)
        self.selector = Selector(config["select"], config["patience"], self.trainer.history)
        n_train = len(self.trainer.features.y_train)
        self.display = EpochProgress(n_train, config.get("epochs", 1), quiet, config["model"])
        self.seconds = sum(r["seconds"] for r in self.trainer.history)

    def again(self, options: dict) -> dict:
        """run_job of this run, from the start: a trainer of its own, its RNGs seeded anew."""
        return run_job(
            self.config,
            self.source,
            self.run_dir,
            self.quiet,
            self.train_acc,
            True,
            self.after_epoch,
            **options,
        )

    def to_fit(self) -> bool:
        return self.done is None and stop_reason(self.trainer.history, self.selector) is None

    def on_epoch(self, rec, val_scores) -> bool:
        """After each epoch: select, checkpoint; True: stop. ``val_scores``: the family's
        probabilities from the pass its val_acc came from."""
        rec["val_auc"] = auc_of(self.dataset.info.task, self.trainer.features.y_val, val_scores)
        if self.selector.update(rec) and self.selector.metric != "last":
            self.trainer.save_best(self.best)
        self.display.end_epoch(rec)
        if self.ckpt is not None:
            self.trainer.save_checkpoint(self.ckpt)
        if self.after_epoch is not None:
            self.after_epoch(rec)
        return stop_reason([rec], self.selector) is not None

    def fit(self) -> None:
        start = time.perf_counter()
        self.trainer.fit(self.on_epoch, self.display.step, self.train_acc)
        self.seconds += time.perf_counter() - start

    def finish(self) -> dict:
        """Select the kept model, score it, write the run folder; its metrics."""
        if self.done is not None:
            return self.done
        trainer, dataset, selector, run_dir = (
            self.trainer,
            self.dataset,
            self.selector,
            self.run_dir,
        )
        f, history = trainer.features, trainer.history
        last_model = trainer.model
        kept = history[(selector.best_epoch or len(history)) - 1]  # None: no epoch had the metric
        chosen = last_model if kept is history[-1] else trainer.load_best(self.best)
        if kept["train_acc"] is None:  # measured for the kept model only, not every epoch
            kept["train_acc"] = trainer.accuracy(chosen, f.X_train, f.y_train)
        trainer.save_model(chosen, run_dir / trainer.model_file)
        preds = predictions(lambda X: trainer.scores(chosen, X), f, dataset, trainer.inputs)
        if chosen is not last_model:  # the last epoch too, for comparison
            last = predictions(lambda X: trainer.scores(last_model, X), f, dataset, trainer.inputs)
            preds.update({f"last_{k}": v for k, v in last.items()})
        save_predictions(run_dir, preds, medmnist_flag(dataset))
        best_val_acc = max(
            (r["val_acc"] for r in history if r["val_acc"] is not None), default=None
        )
        metrics = final_metrics(
            self.config,
            dataset,
            history,
            f,
            self.seconds,
            preds,
            kept["epoch"],
            stop_reason(history, selector),
            best_val_acc=best_val_acc,
            data_md5=self.md5,
            **trainer.extra_metrics(chosen),
        )
        save_run(run_dir, self.config, history, metrics, trainer.environment())
        folder.remove_leftovers(run_dir)
        return metrics


def run_job(
    config: dict,
    dataset: Dataset,
    run_dir,
    quiet: bool = False,
    train_acc=True,
    resume=True,
    after_epoch=None,
    **options,
) -> dict:
    """Train the run ``config`` describes (or continue it from its checkpoint) and write its
    folder. ``train_acc``: measure training accuracy every epoch (else only for the kept
    model). ``after_epoch(record)`` runs once the epoch's checkpoint is on disk (tests use it
    to simulate a kill). ``options``: the family's own (PyTorch: device, threads)."""
    job = Job(config, dataset, run_dir, quiet, train_acc, resume, after_epoch, options)
    if job.to_fit():
        job.fit()
    return job.finish()


def run_group(
    configs: list[dict],
    dataset: Dataset,
    run_dirs: list,
    train_acc: list,
    quiet=False,
    after_epoch=None,
    **options,
) -> list[dict]:
    """Several runs of one family on one dataset, as run_job would train each (``train_acc``:
    each run's): fitted as one where the family can stack them (``fit_stacked``: a sweep
    sharing data, batch order and shapes), else one by one with run_job, each result saying
    so. Their metrics, in order."""
    jobs = [
        Job(c, dataset, d, quiet, acc, True, after_epoch, options)
        for c, d, acc in zip(configs, run_dirs, train_acc, strict=True)
    ]
    todo = [job for job in jobs if job.to_fit()]
    family = family_of(configs[0]["model"])
    trainers = [job.trainer for job in todo]
    if len(todo) > 1 and len({job.train_acc for job in todo}) == 1 and family.can_stack(trainers):
        fit_stacked(family, todo)
        return [job.finish() for job in jobs]
    # built together, the trainers left the global RNGs as the last one set them: a run to
    # train is built again, alone, so that it trains exactly as run_job trains it
    note = {} if len(todo) <= 1 else {"note": UNSTACKED}
    return [{**job.again(options), **note} if job in todo else job.finish() for job in jobs]


UNSTACKED = (
    "trained one by one, as its stack could not share one pass (another epoch, state, task "
    "or setting); nothing is lost"
)


def fit_stacked(family, todo: list[Job]) -> None:
    """The jobs' fits as one; each run is charged its share of the wall time, in proportion
    to the training seconds of the epochs it recorded."""
    before = [len(job.trainer.history) for job in todo]
    start = time.perf_counter()
    trainers = [job.trainer for job in todo]
    on_epochs = [job.on_epoch for job in todo]
    family.fit_stacked(trainers, on_epochs, todo[0].display.step, todo[0].train_acc)
    wall = time.perf_counter() - start
    new = [
        sum(r["seconds"] for r in job.trainer.history[n:])
        for job, n in zip(todo, before, strict=True)
    ]
    for job, seconds in zip(todo, new, strict=True):
        job.seconds += wall * seconds / sum(new) if sum(new) else wall / len(todo)
