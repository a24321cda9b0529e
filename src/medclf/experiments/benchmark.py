"""`medclf benchmark`: a grid of datasets x models x seeds under one training preset, run by
the same runner as `reproduce` (keyed by config hash, resumable, parallel, one folder each),
summarised (by medclf.api.benchmark) in results.csv and in a report beside MedMNIST v2's
published table."""

from __future__ import annotations

from pathlib import Path

from medclf.errors import ConfigError
from medclf.experiments.runner import run_all
from medclf.experiments.specs import run_key
from medclf.models.config import make_config
from medclf.models.registry import BENCHMARK_MODELS, MODELS, PRESETS, preset_settings

RESULT_KEYS = ("status", "val_acc", "val_auc", "test_acc", "test_auc", "seconds", "synthetic",
               "selected_epoch", "error")  # fmt: skip


def grid(datasets, models, preset: str, seeds: int, size: int = 28) -> list[dict]:
    """One runner entry per dataset x model x seed (seeds 42, 43, ...)."""
    if preset not in PRESETS:
        raise ConfigError(f"preset '{preset}' is unknown; choose one of {', '.join(PRESETS)}")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(MODELS)}")  # fmt: skip
    if seeds < 1:
        raise ConfigError(f"seeds == {seeds}, must be >= 1")
    entries = []
    for dataset in datasets:
        for model in models:
            for seed in range(42, 42 + seeds):
                config = make_config(model, dataset=str(dataset), size=size, seed=seed,
                                     **preset_settings(preset, model))  # fmt: skip
                entries.append({"key": run_key(config), "config": config,
                                "questions": [f"{Path(str(dataset)).stem}/{model}"],
                                "dataset": Path(str(dataset)).stem, "model": model,
                                "preset": preset, "seed": seed})  # fmt: skip
    return entries


def check_grid(datasets, models, size: int, root) -> None:
    """Every dataset loads and every model can learn its task, before anything trains."""
    from medclf.data.load import load_dataset
    from medclf.run.lifecycle import check_task

    for dataset in datasets:
        data = load_dataset(dataset, root, size=size)
        for model in models:
            if model in MODELS:
                check_task(make_config(model, dataset=dataset, size=size), data)


def result_row(result: dict) -> dict:
    row = {k: result.get(k) for k in ("dataset", "model", "preset", "seed")}
    row["dataset"] = result.get("dataset_name") or row["dataset"]
    return {**row, **{k: result.get(k) for k in RESULT_KEYS}, "key": result["key"]}


def run_benchmark(datasets, models=BENCHMARK_MODELS, preset="fast", seeds=3, out="benchmark",
                  workers=1, size=28, root=None, progress=True, backend="local",
                  address=None) -> list[dict]:  # fmt: skip
    """Run the grid; return one result row per run (result_row).
    ``backend``/``address``: see medclf.experiments.runner.run_all."""
    if workers < 1:
        raise ConfigError(f"workers == {workers}, must be >= 1")
    out = Path(out)
    datasets = list(dict.fromkeys(str(d) for d in datasets))  # a dataset named twice runs once
    check_grid(datasets, models, size, root)
    out.mkdir(parents=True, exist_ok=True)  # an unusable --out fails now, not after training
    entries = grid(datasets, models, preset, seeds, size)
    results = run_all(entries, out, workers=workers, root=root, progress=progress,
                      backend=backend, address=address)
    return [result_row(r) for r in results]
