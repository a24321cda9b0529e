"""`medclf benchmark`: a grid of datasets x models x seeds under one training preset, run by
the same runner as `reproduce` (keyed by config hash, resumable, parallel, one folder each),
summarised (by medclf.api.benchmark) in results.csv and in a report beside MedMNIST v2's
published table."""

from __future__ import annotations

from pathlib import Path

from medclf.data.load import load_dataset
from medclf.data.registry import REGISTRY
from medclf.errors import ConfigError
from medclf.experiments.runner import run_all
from medclf.experiments.specs import run_key
from medclf.models.config import make_config
from medclf.models.registry import BENCHMARK_ZOOS, MODELS, PRESETS, preset_settings
from medclf.run.dataid import data_md5
from medclf.run.lifecycle import check_task

RESULT_KEYS = (
    "status",
    "val_acc",
    "val_auc",
    "test_acc",
    "test_auc",
    "seconds",
    "synthetic",
    "selected_epoch",
    "error",
    "deterministic",
    "precision",
)


def grid(
    datasets, models, preset: str, seeds: int, size=None, files=None, precision=None
) -> list[dict]:
    """One runner entry per dataset x model x seed (seeds 42, 43, ...); a model whose fit
    never uses its seed (its registry entry's uses_seed) gets one entry, seed 42, marked
    ``deterministic``: its other seeds would repeat the same run. ``files``: what data_files
    says of each dataset (its name, file label, MD5, image size, the default zoo of its
    dimensionality), added to its entries; ``size`` (default 28) serves a dataset data_files did
    not see. ``models`` None: each dataset's default zoo (BENCHMARK_ZOOS). ``precision``: the
    conv nets' in place of the preset's (the models without the setting keep theirs)."""
    if preset not in PRESETS:
        raise ConfigError(f"preset '{preset}' is unknown; choose one of {', '.join(PRESETS)}")
    unknown = [m for m in models or () if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if seeds < 1:
        raise ConfigError(f"seeds == {seeds}, must be >= 1")
    entries = []
    for dataset in datasets:
        about = dict((files or {}).get(dataset) or {"dataset": Path(str(dataset)).stem})
        side = about.get("size", size or 28)
        zoo = about.pop("zoo", BENCHMARK_ZOOS[2])
        for model in models or zoo:
            deterministic = not MODELS[model].uses_seed
            settings = preset_settings(preset, model)
            if precision is not None and "precision" in MODELS[model].defaults:
                settings["precision"] = precision
            for seed in range(42, 42 + (1 if deterministic else seeds)):
                config = make_config(model, dataset=str(dataset), size=side, seed=seed, **settings)
                label = about.get("file", about["dataset"])
                entries.append(
                    {
                        "key": run_key(config),
                        "config": config,
                        "questions": [f"{label}/{model}"],
                        **about,
                        "model": model,
                        "preset": preset,
                        "seed": seed,
                        "deterministic": deterministic,
                    }
                )
    return entries


def data_files(datasets, models, size, root) -> dict[str, dict]:
    """Each data file once, by its resolved path (``oct.npz``, ``./oct.npz`` and a symlink to
    it are one file), keyed by how its configs name it (a registry name stays a name, a path
    becomes absolute): the dataset's name, whether synthetic, the file, its MD5 and a label
    (``file``) that tells it from the other files, and its image size (read from a file;
    ``size``, default 28, for a registry name). Every dataset loads and every model can
    learn its task, before anything trains. ``models`` None: the default zoo of each file's
    dimensionality (``zoo``)."""
    files, seen = {}, set()
    for dataset in datasets:
        data = load_dataset(dataset, root, size=size)
        path = Path(data.source).resolve()
        if path in seen:
            continue
        seen.add(path)
        name = dataset if dataset.lower() in REGISTRY else str(path)
        side = data.info.size
        zoo = BENCHMARK_ZOOS[data.info.dims]
        for model in models or zoo:
            if model in MODELS:
                check_task(make_config(model, dataset=name, size=side), data)
        files[name] = {
            "dataset": data.name,
            "synthetic": data.synthetic,
            "file": path.name,
            "data_file": str(path),
            "data_md5": data_md5(path),
            "size": side,
            "zoo": zoo,
        }
    # two files of one name: the MD5's start tells them apart, else (the same bytes) the path
    for tell_apart in (
        lambda f: f"{f['file']} (MD5 {f['data_md5'][:8]})",
        lambda f: f["data_file"],
    ):
        names = [f["file"] for f in files.values()]
        for f in files.values():
            if names.count(f["file"]) > 1:
                f["file"] = tell_apart(f)
    return files


def preset_label(row: dict) -> str:
    """The row's preset, and bf16 where its runs trained in bf16 (the fast preset's precision
    auto on hardware that has it): other arithmetic, so another group in every table."""
    return f"{row.get('preset')}{', bf16' if row.get('precision') == 'bf16' else ''}"


def shared_precision(rows: list[dict]) -> str | None:
    """The precision of the rows that have one, where they agree (an ensemble's members)."""
    found = {r.get("precision") for r in rows} - {None}
    return found.pop() if len(found) == 1 else None


def check_grid_precision(precision: str, models) -> None:
    takes = sorted(m for m in MODELS if "precision" in MODELS[m].defaults)
    if not any(m in takes for m in models):
        raise ConfigError(
            f"--precision {precision} applies to {', '.join(takes)}; none of the benchmark's "
            "models takes it, so drop it"
        )


def planned_precision(config: dict) -> str | None:
    """The precision a run trains in, as far as its config tells (None: the model has none;
    auto resolved on this machine's default device, where the run has not said)."""
    precision = config.get("precision")
    if precision == "auto":
        from medclf.models.training.precision import resolve
        from medclf.models.training.torch_engine import pick_device

        return resolve(precision, pick_device(None))
    return precision


def result_row(result: dict) -> dict:
    """One results.csv row: which data file (``file``: its label), the run, its results."""
    row = {k: result.get(k) for k in ("dataset", "model", "preset", "seed")}
    row["dataset"] = result.get("dataset_name") or row["dataset"]
    data = {k: result.get(k) for k in ("file", "data_md5", "data_file")}
    row.update({k: result.get(k) for k in RESULT_KEYS})
    if row["precision"] is None and "config" in result:  # a failed or running run: its plan
        row["precision"] = planned_precision(result["config"])
    return {**row, "key": result["key"], **data}


def run_benchmark(
    datasets,
    models=None,
    preset="fast",
    seeds=3,
    out="benchmark",
    workers=1,
    size=None,
    root=None,
    progress=True,
    backend="local",
    address=None,
    precision=None,
) -> list[dict]:
    """Run the grid; return one result row per run (result_row). ``size``: see data_files;
    ``models`` None: each dataset's default zoo, by its dimensionality (BENCHMARK_ZOOS).
    ``backend``/``address``: see medclf.experiments.runner.run_all; ``precision``: see grid."""
    if workers < 1:
        raise ConfigError(f"workers == {workers}, must be >= 1")
    out = Path(out)
    files = data_files([str(d) for d in datasets], models, size, root)  # each file once
    if precision is not None:  # refused now, not once per run after the others trained
        check_grid_precision(precision, {m for f in files.values() for m in models or f["zoo"]})
        if backend == "local":  # Ray's workers check their own hardware
            from medclf.models.training.precision import check_precision
            from medclf.models.training.torch_engine import pick_device

            check_precision(precision, pick_device(None))
    out.mkdir(parents=True, exist_ok=True)  # an unusable --out fails now, not after training
    entries = grid(list(files), models, preset, seeds, size, files, precision)
    results = run_all(
        entries,
        out,
        workers=workers,
        root=root,
        progress=progress,
        backend=backend,
        address=address,
    )
    return [result_row(r) for r in results]
