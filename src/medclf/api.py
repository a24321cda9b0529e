"""medclf's Python API: what the command line does, from Python. The CLI is a thin layer over it.

    import medclf

    ds = medclf.load_dataset("pneumoniamnist.npz")          # a name, or a MedMNIST .npz path
    run = medclf.train("torch-cnn", dataset="pneumoniamnist.npz", epochs=5, out="runs/cnn")
    run.metrics["test_auc"], run.history[-1], run.evaluate("val")["balanced_acc"]
    run.predict_proba(ds.test.images[:8])                    # uint8 images -> probabilities
    medclf.open_run("runs/cnn").predict(ds.test.images[:8])  # a saved run, ready to predict
    medclf.evaluate(["runs/cnn"], "test")[0]["auc"]          # metrics recomputed, with intervals
    medclf.tune("pneumoniamnist.npz", "torch-cnn", trials=20, out="tune")["best_config"]
    medclf.export_onnx("runs/cnn")["path"]                   # runs/cnn/model.onnx, checked

Every command of the CLI does its work through one function here (the CLI only parses and
prints): train, ensemble, predict (Run.predict_files), evaluate, curves, explain, compare,
list_runs, view, reproduce, benchmark, tune, robustness, export_onnx, export_mlflow, and for the
data: load_dataset, download, verify, synthesize, sample_figure (``medclf theory`` is
medclf.theory's own).

Every function checks its inputs and raises medclf.errors.MedclfError subclasses with one
sentence that names the problem and the fix.
"""

from __future__ import annotations

import os
import time
from functools import cached_property
from pathlib import Path

import numpy as np

from medclf.errors import ConfigError, DataError, InputError
from medclf.models import config as config_module
from medclf.run import folder
from medclf.run.families import family_of
from medclf.run.folder import run_lock, write_text

# The imports inside the functions below stay there on purpose (measured): at the top they
# made `import medclf.api`, hence medclf.load_dataset or medclf.open_run, take 13-15 s instead
# of under 1 s (scikit-learn through medclf.metrics, matplotlib, requests).


class Run:
    """A run folder: its config, history and metrics, its saved predictions, its model."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @cached_property
    def config(self) -> dict:
        return folder.read_object(self.path / folder.CONFIG)

    @cached_property
    def metrics(self) -> dict:
        return folder.read_object(self.path / folder.METRICS)

    @cached_property
    def history(self) -> list[dict]:
        """One record per epoch (history.json); a missing or damaged file is a DataError."""
        path = self.path / folder.HISTORY
        if not path.is_file():
            raise DataError(f"{path} is missing; train the run again with 'medclf train'")
        try:
            history = folder.read_json(path)  # RecursionError: a ValueError there
        except (ValueError, UnicodeDecodeError):
            history = None
        if not (isinstance(history, list) and all(isinstance(r, dict) for r in history)):
            raise DataError(f"{path} is damaged (not a JSON list of epochs); train the run again")
        return history

    @property
    def predictions(self) -> dict[str, np.ndarray]:
        """Labels and scores of every saved split (predictions.npz), each checked numeric."""
        from medclf.report.evaluate import read_predictions

        return read_predictions(self.path)

    def evaluate(self, split: str = "test") -> dict:
        """Every metric of a saved split, recomputed from the saved predictions."""
        from medclf.report.evaluate import evaluate_run

        return evaluate_run(self.path, split)

    def predict_proba(self, images) -> np.ndarray:
        """Probabilities for uint8 images shaped like the dataset's, (n, H, W[, C]), or
        volumes, (n, D, H, W); the perceptron, which has none, raises."""
        classes, proba = self._predict(images)
        if proba is None:
            raise ConfigError(
                f"{self.config.get('model')} gives classes, not probabilities; use predict()"
            )
        return proba

    def log_to_mlflow(self, uri: str, experiment: str = "medclf") -> str:
        """Log this finished run to the MLflow store ``uri``; its MLflow run id."""
        from medclf.experiments.tracking import log_run_folder

        return log_run_folder(self.path, uri, experiment)

    def predict_files(self, paths) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """(a name per image, predicted classes or label rows, probabilities or None) for PNG
        images or .npz files of images, each file checked against the run's image shape."""
        from medclf.run.predict import read_images

        images, names = read_images(paths, self.metrics["image_shape"])
        classes, proba = self._predict(images)
        return names, classes, proba

    def predict(self, images) -> np.ndarray:
        """Class indices (n,), or 0/1 label rows (n, L) for a multi-label run."""
        return self._predict(images)[0]

    def _predict(self, images):
        from medclf.run.predict import check_images, check_run, predict_run

        config, metrics = check_run(self.path)  # image_shape and class names checked
        try:
            images = np.asarray(images)
        except (ValueError, TypeError) as err:  # ragged lists, objects
            shape = ", ".join(map(str, metrics["image_shape"]))  # a volume's (D, H, W) too
            raise InputError(f"images must be one uint8 array (n, {shape}) ({err})") from None
        images = check_images(images, metrics["image_shape"])
        return predict_run(self.path, images, (config, metrics))


def open_run(path) -> Run:
    """A finished run folder, checked (config.json and metrics.json readable and valid)."""
    from medclf.run.predict import check_run

    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"a run is the path of a run folder, not a {type(path).__name__}")
    check_run(path)
    return Run(path)


def load_dataset(name_or_path, root=None, size: int | None = None):
    """A MedMNIST dataset (``.train``, ``.val``, ``.test`` splits of uint8 images and labels,
    ``.info`` with its task and class names), by registry name (at ``size``, default 28) or
    .npz path (at the file's own size; a ``size`` that contradicts it is refused)."""
    from medclf.data.load import load_dataset as load

    if not isinstance(name_or_path, str | os.PathLike):
        raise ConfigError(
            f"a dataset is a registry name or the path of a .npz, not a "
            f"{type(name_or_path).__name__}"
        )
    return load(name_or_path, root, size=size)


def make_config(model: str, **settings) -> dict:
    """A run's full config: the model's defaults (medclf.models.registry) with ``settings``."""
    return config_module.make_config(model, **settings)


def train(
    model: str | None = None,
    *,
    config: dict | None = None,
    out=None,
    root=None,
    resume: bool = False,
    force: bool = False,
    quiet: bool = True,
    device=None,
    threads=None,
    **settings,
) -> Run:
    """Train one model (or ``config``, a run's config dict) and return its finished Run.
    ``settings`` override the defaults (``dataset=``, ``epochs=``, ``lr=``, ``select=``...);
    ``out`` defaults to runs/MODEL-TIME-PID."""
    from medclf.run.lifecycle import check_task, claim_run_folder, run_job

    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"config is a dict of settings, not a {type(config).__name__}")
    if config is not None:
        model = model or config.get("model")
        if model != config.get("model"):
            raise ConfigError(f"model '{model}' differs from the config's '{config.get('model')}'")
        settings = {**{k: v for k, v in config.items() if k != "model"}, **settings}
    if model is None:
        raise ConfigError("give a model (e.g. 'torch-ffn') or a config with a 'model'")
    size_given = settings.get("size") is not None
    config = make_config(model, **settings)
    dataset = _dataset_of(config, root, size_given)
    out = out or f"runs/{model}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"{out} is a file; give a folder (new or a run folder) as out")
    check_task(config, dataset)  # before the run folder is made
    options = {}
    if device or threads:
        if not {"device", "threads"} <= set(family_of(model).options):
            raise ConfigError("device and threads apply to torch-* models only")
        options = {"device": device, "threads": threads}
    with run_lock(out):  # one writer per run folder
        claim_run_folder(out, config, force)
        run_job(config, dataset, out, quiet=quiet, resume=resume, **options)
    return Run(out)


def _dataset_of(config: dict, root, size_given: bool):
    """The config's dataset. A file holds its own size: the config takes it, unless a size
    was given, which must then match (a named dataset is loaded at the config's size)."""
    from medclf.data.registry import REGISTRY, SIZES

    named = config["dataset"].lower() in REGISTRY
    size = config["size"] if named or size_given else None
    dataset = load_dataset(config["dataset"], root, size=size)
    if not named and dataset.info.size in SIZES:
        config["size"] = dataset.info.size
    return dataset


def ensemble(runs, out) -> Run:
    """The ensemble of finished runs (their predicted probabilities averaged) as a new run
    folder ``out`` (new or empty), checked and written whole or not at all
    (medclf.run.family_ensemble)."""
    from medclf.run.family_ensemble import make_ensemble

    if isinstance(runs, str | os.PathLike):
        raise ConfigError("runs is a list of run folders, not one path")
    make_ensemble(runs, out)
    return Run(out)


def reproduce(dataset="octmnist", out=None, **options) -> dict:
    """The whole study: its runs (medclf.experiments.reproduce.run_study: only, workers, seeds,
    quick, root, backend, address, ...), then its report; returns the results and the
    report's paths ("report_md", "report_html"), the failed runs and the seconds taken.
    ``out`` defaults to reproduction, or reproduction-quick for a quick study."""
    from medclf.experiments.reproduce import default_out, run_study
    from medclf.report.report import write_report

    out = out or default_out(options.get("quick", False))
    study = run_study(dataset, out, **options)
    md, html = write_report(study["results"], Path(out), study["meta"])
    seconds = time.perf_counter() - study["started"]
    return {**study, "report_md": md, "report_html": html, "seconds": seconds}


def benchmark(
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
    robustness=False,
    ensemble=False,
    auto=False,
    budget=600.0,
    precision=None,
) -> dict:
    """A benchmark grid, datasets x models x seeds under a training preset, run by
    medclf.experiments.benchmark.run_benchmark (``backend``: local or ray at ``address``;
    ``models`` None: the default zoo of each dataset's dimensionality, BENCHMARK_ZOOS),
    then results.csv and its report beside MedMNIST v2's published table; returns the rows
    and the files' paths. ``ensemble``: one more row per dataset and model, the ensemble of
    its seeds (medclf.experiments.ensembles). ``auto``: one more row per data file, "medclf
    (auto)", what validation chooses among the runs ``budget`` seconds of training buy
    (medclf.experiments.auto). ``robustness``: each run's MedMNIST-C rBE
    (medclf.report.robustness). ``precision``: the conv nets' (fp32, bf16, auto) in place of
    the preset's."""
    from medclf.experiments.benchmark import run_benchmark
    from medclf.experiments.ensembles import seed_ensembles
    from medclf.report.benchmark import results_csv, write_benchmark_report

    if ensemble and seeds < 2:
        raise ConfigError(
            f"an ensemble of seeds needs two seeds or more, not {seeds}; add --seeds 3"
        )
    if auto:
        from medclf.experiments.auto import auto_rows, parse_budget

        budget = parse_budget(budget)
    start = time.perf_counter()
    options = {"progress": progress, "backend": backend, "address": address}
    options["precision"] = precision
    rows = run_benchmark(list(datasets), models, preset, seeds, out, workers, size, root, **options)
    grid_rows = list(rows)
    if ensemble:
        rows += seed_ensembles(grid_rows, out)
    if auto:
        rows += auto_rows(grid_rows, out, budget)
    out = Path(out)
    if robustness:
        from medclf.report.robustness import add_robustness

        add_robustness(rows, out)
    write_text(out / "results.csv", results_csv(rows))
    paths = write_benchmark_report(rows, out)
    return {
        "rows": rows,
        "seconds": time.perf_counter() - start,
        **paths,
        "csv": out / "results.csv",
    }


def evaluate(runs, split: str = "test", resamples: int = 1000, seed: int = 0) -> list[dict]:
    """Every metric of one saved split of each finished run, recomputed from its saved
    predictions, with 95 % bootstrap intervals of ACC and AUC (``resamples`` 0: none)."""
    from medclf.report.evaluate import evaluate_run

    return [evaluate_run(run, split, resamples, seed) for run in runs]


def curves(run, split: str = "test", out=None) -> dict:
    """The ROC and precision-recall curve points (per class, per label), the reliability
    diagram's bins and the confusion matrix of a saved split, from the saved predictions;
    with ``out`` (a folder), also drawn there as PNG and PDF (``figures``: name -> PNG)."""
    from medclf.report.curves import plot_run, run_curves

    return run_curves(run, split) if out is None else plot_run(run, out, split)


def explain(run, out=None, split: str = "test", images: int = 8, index=None, method=None) -> dict:
    """Attribution maps of a run's model on images of a saved split (``index``: those rows,
    else ``images`` of them taking the classes in turn): Grad-CAM, saliency or integrated
    gradients (Captum), or a linear model's exact class weights (``method`` None: the model's
    first: Grad-CAM for conv nets, weights for linear models, saliency otherwise). With
    ``out`` (FILE.png or FILE.pdf), the figure is drawn there and beside it in the other
    format (``figure``: the PNG)."""
    from medclf.report.explain import check_output, explain_run, write_explanation

    if out is not None:
        check_output(out)  # before the work, not after it
    result = explain_run(run, split, images, index, method)
    if out is not None:
        result["figure"] = write_explanation(result, out)
    return result


def compare(run_a, run_b, split: str = "test", seed: int = 0, resamples: int = 1000) -> dict:
    """Paired tests of two runs scored on the same images: DeLong's (binary AUC), McNemar's
    (ACC) and a paired bootstrap of the difference."""
    from medclf.report.evaluate import paired_comparison

    return paired_comparison(run_a, run_b, split=split, seed=seed, resamples=resamples)


def robustness(run, out=None, severities="1-5", seed: int = 0, corruptions=None, root=None):
    """A run's test metrics under MedMNIST-C's corruptions of its dataset (each severity of
    ``severities``: '1-5', '3' or '1,3,5'), written to ``out`` (default: the run folder) as
    robustness.csv, .json, .png and .pdf; returns the rows, MedMNIST-C's summary and paths."""
    from medclf.report.robustness import check_out, write_robustness
    from medclf.run.robustness import check_robustness_run, parse_severities
    from medclf.run.robustness import robustness as measure

    levels = parse_severities(severities)
    check_robustness_run(run, corruptions)  # before --out is made
    out = check_out(run if out is None else out)
    result = measure(run, levels, seed, corruptions, root)
    return {**result, "paths": write_robustness(result, out)}


def list_runs(top="runs", sort: str = "run") -> list[dict]:
    """One row per run folder under ``top`` (model, dataset, settings, status, numbers)."""
    from medclf.report.evaluate import list_runs as rows

    return rows(top, sort)


def view(top="runs", out=None) -> dict:
    """One self-contained HTML page over every run folder under ``top`` (default
    TOP/view.html): its path ("path") and the runs it shows ("runs", each with its "status":
    done, diverged, unfinished or damaged, and a "note" where it has one)."""
    from medclf.report.view import write_view

    return write_view(top, out)


def serve_page(port: int):
    """A server bound to 127.0.0.1:``port`` (refused in one line where the port is taken or
    out of range); ``.run(html)`` serves the page until Ctrl-C, ``.url`` is its address."""
    from medclf.report.view import PageServer

    return PageServer(port)


def tune(dataset, model: str, trials: int, out="tune", **options) -> dict:
    """Search ``model``'s hyperparameters with Optuna (medclf.experiments.tune.tune: metric,
    storage, seed, epochs, size, root, timeout, backend, workers, address, echo, pruner, cv);
    returns the trials' rows, the best trial and the paths of trials.csv and best_config.json."""
    from medclf.experiments.tune import tune as search

    return search(dataset, model, trials, out, **options)


def export_onnx(run, out=None) -> dict:
    """Write the run's model as ONNX (default RUN/model.onnx) once onnxruntime matches
    medclf's probabilities; returns the path, the largest difference and what was checked."""
    from medclf.run.export_onnx import export_onnx as export

    return export(run, out)


def check_mlflow(uri: str) -> None:
    """Refuse, before anything trains, an MLflow store that cannot be opened."""
    from medclf.experiments.tracking import check_store

    check_store(uri)


def export_mlflow(paths, uri: str, experiment: str = "medclf", on_each=None) -> list:
    """Log every finished run folder at or below ``paths`` to the MLflow store ``uri``;
    returns (folder, MLflow run id) for each; ``on_each(folder, run_id)`` as each is logged."""
    from medclf.experiments.tracking import log_run_folder, run_folders

    logged = []
    for run_dir in run_folders(paths):
        logged.append((run_dir, log_run_folder(run_dir, uri, experiment)))
        if on_each is not None:
            on_each(*logged[-1])
    return logged


def download(names, root=None, mirror=None, retries: int = 3, size: int = 28) -> dict:
    """Download registry datasets into the cache (MD5 checked); {name: path}."""
    from medclf.data.fetch import download as fetch

    return {n: fetch(n, root=root, mirror=mirror, retries=retries, size=size) for n in names}


def verify(names=(), root=None, size: int | None = None) -> dict[str, str]:
    """The MD5 check of cached files, {name: state}: ``names`` at ``size`` (default 28), or
    with no names every known dataset at every size (the ones not cached left out)."""
    from medclf.data.fetch import verify as check
    from medclf.data.registry import SIZED

    if names:
        return check(list(names), root, size or 28)
    status = {}
    for name, side in sorted(SIZED, key=lambda key: key[1]):  # every dataset at its sizes
        if size in (None, side):
            status.update(check([name], root, side))
    return {k: v for k, v in status.items() if v != "missing"}


def synthesize(like: str, out, scale: float = 0.05, seed: int = 0, size: int = 28) -> Path:
    """Write a synthetic .npz in the MedMNIST layout, imitating ``like``; its path."""
    from medclf.data.synthetic import write_synthetic
    from medclf.files import check_parent

    return write_synthetic(check_parent(out), like, scale, seed, size)


def sample_figure(dataset, split: str = "train", per_class: int = 8, root=None, size=None):
    """A grid of sample images of a dataset's split, one row per class; a volume is drawn as
    its axial, coronal and sagittal mid-slices (a matplotlib Figure; save it with
    medclf.plots.save_figure)."""
    import textwrap

    from medclf.plots import sample_grid, volume_grid

    ds = load_dataset(dataset, root, size)
    s = ds.split(split)
    labels = s.labels if s.labels.ndim == 1 else s.labels.argmax(axis=1)
    title = f"{ds.display_name} — {split}"
    if ds.info.dims == 3:  # volumes: three mid-slices each, labelled there
        return volume_grid(s.images, labels, ds.class_names, per_class, title)
    fig = sample_grid(s.images, labels, ds.class_names, per_class, title)
    for row, name in enumerate(ds.class_names):  # whole class names, wrapped, never cut
        fig.axes[row * per_class].yaxis.label.set_text(textwrap.fill(name, 24))
    return fig


def interval_answer(D: int, A: int, B: int, form: str = "json"):
    """Question 3 for f(x) = +1 iff A <= sum(x) <= B on x in {-1,+1}^D: can a perceptron compute
    it (with a certificate), and the two-unit sign and ReLU networks that do, every certificate
    checked. ``form``: "json" the whole answer as plain data (recheck it with
    medclf.theory.check), "text" a report, "markdown" a proof."""
    from medclf.theory.explain import json_answer, markdown_proof, text_report
    from medclf.theory.interval import check_params

    forms = {"json": json_answer, "text": text_report, "markdown": markdown_proof}
    if form not in forms:
        raise ConfigError(f"form must be one of {', '.join(forms)}, not {form!r}")
    check_params(D, A, B)
    return forms[form](D, A, B)


def interval_figure(A: int, B: int, out) -> Path:
    """Figure 18 (D = 2): the four inputs coloured by f and the sign network's hidden lines,
    saved to ``out`` (PNG or PDF); its path."""
    from medclf.plots import save_figure
    from medclf.theory.explain import figure18
    from medclf.theory.interval import check_params

    check_params(2, A, B)
    return save_figure(figure18(A, B), out)
