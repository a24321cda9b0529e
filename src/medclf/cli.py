"""The ``medclf`` command line, a thin layer over medclf.api. Every failure prints one line, never
a traceback: user errors exit 1, usage errors 2 (as click and argparse do), Ctrl-C 130."""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path

import click
import numpy as np

from medclf import __version__, api
from medclf.data.registry import REGISTRY
from medclf.errors import ConfigError, MedclfError, SettingError, did_you_mean
from medclf.models.config import (
    ACTIVATIONS,
    AUGMENTS,
    DEFAULTS,
    DTYPES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    SELECT,
    TEST_SPLITS,
    VALIDATION_METRICS,
    make_config,
    read_config_file,
)
from medclf.models.registry import BENCHMARK_ZOOS
from medclf.models.registry import MODELS as MODEL_NAMES
from medclf.run.families import family_of
from medclf.run.folder import FINISHED, RUNS

SHOW_DPI = 150  # data show: fine enough to read a 28-voxel slice


class Interrupted(click.ClickException):
    exit_code = 130  # the shell's code for Ctrl-C


def os_message(err: OSError, written: str | None) -> str:
    """One sentence for an environment fault: what happened to which path, and the fix."""
    path = err.filename2 if err.filename2 is not None else err.filename  # a rename: the target
    name = str(path if path is not None else written or "a file")
    name = re.sub(r"(^|/)\.([^/]+?)(\.\d+-[0-9a-f]+)?\.tmp(\.[^/.]+)?$", r"\1\2\4", name)
    name = name if len(name) <= 80 else f"{name[:60]}... ({len(name)} characters)"
    fixes = {
        errno.ENOSPC: f"disk full while writing {name}; free some space or choose a folder on "
        "another disk, then rerun",
        errno.EDQUOT: f"disk quota exceeded while writing {name}; free some space, then rerun",
        errno.EACCES: f"permission denied for {name}; choose a folder you can write to",
        errno.EPERM: f"operation not permitted on {name}; choose a folder you can write to",
        errno.EROFS: f"{name} is on a read-only file system; choose a writable folder",
        errno.ENAMETOOLONG: f"the name {name} is too long for the file system; choose a shorter "
        "one",
        errno.ENOTDIR: f"a part of {name} is a file, not a folder; choose another path or move "
        "that file",
        errno.EEXIST: f"{name} already exists and is in the way; move it or choose another path",
        errno.EISDIR: f"{name} is a folder where a file is needed; give a file name",
        errno.ENOENT: f"cannot find or create {name}; check the path or choose another folder",
    }
    return fixes.get(
        err.errno,
        f"cannot use {name} ({err.strerror or err}); check the path, "
        "its permissions and the free disk space",
    )


class Group(click.Group):
    """A click group that turns medclf's user errors and environment faults (full disk,
    unwritable folder, Ctrl-C, ...) into one clear line and a non-zero exit, never a
    traceback."""

    def resolve_command(self, ctx, args):
        ctx.meta["medclf.args"] = list(args)  # to name --out when an OSError names no file
        name = args[0] if args else None
        if name and name not in self.commands and not name.startswith("-"):
            ctx.fail(f"No such command '{name}'{did_you_mean(name, self.commands)}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Abort, click.exceptions.Exit):
            raise
        except SettingError as err:  # a value out of range or of the wrong type: a usage error
            error = click.ClickException(str(err))
            error.exit_code = 2
            raise error from None
        except MedclfError as err:
            raise click.ClickException(str(err)) from None
        except click.UsageError as err:  # one line instead of the usage block, still exit 2
            where = err.ctx.command_path if err.ctx else "medclf"
            error = click.ClickException(f"{err.format_message()} (see '{where} --help')")
            error.exit_code = err.exit_code
            raise error from None
        except KeyboardInterrupt:
            if ctx.invoked_subcommand in ("train", "reproduce"):
                raise Interrupted(
                    "interrupted; every finished epoch is checkpointed in the run folder: continue "
                    "with the same 'medclf train ... --resume --out RUN_FOLDER', or rerun the same "
                    "'medclf reproduce'"
                ) from None
            raise Interrupted(
                "interrupted; no file was left half-written, rerun the command to finish"
            ) from None
        except BrokenPipeError:  # the reader went away (medclf ... | head): stop quietly
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            raise click.exceptions.Exit(141) from None
        except OSError as err:
            raise click.ClickException(os_message(err, written(ctx))) from None
        except MemoryError:
            raise click.ClickException(
                "out of memory; choose smaller settings (--hidden-size, --batch-size, --scale) or "
                "a smaller dataset"
            ) from None
        except RuntimeError as err:  # torch.save reports a full disk as "unexpected pos N vs M"
            torch_says = re.search(r"unexpected pos \d+ vs \d+|file write failed", str(err))
            if torch_says is None:
                raise
            raise click.ClickException(
                f"disk full while writing {written(ctx) or 'a PyTorch file'} (torch: "
                f"'{torch_says.group()}'); free some space or choose another disk, then rerun"
            ) from None


class Choice(click.Choice):
    """click's Choice, with a 'did you mean' for a near miss."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as err:
            hint = did_you_mean(value, self.choices)
            if not hint:
                raise
            raise click.BadParameter(f"{err.message.rstrip('.')}{hint}", ctx, param) from None


class Budget(click.ParamType):
    """A time such as 10m, 90s or 1h, in seconds (medclf.experiments.auto.parse_budget)."""

    name = "TIME"

    def convert(self, value, param, ctx):
        from medclf.experiments.auto import parse_budget

        if isinstance(value, float):
            return value
        try:
            return parse_budget(value)
        except ConfigError as err:
            self.fail(str(err), param, ctx)


def written(ctx) -> str | None:
    """The --out or --plot of the command line, if any."""
    args = ctx.meta.get("medclf.args", [])
    return next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--out", "--plot")), None)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medclf")
def cli():
    """Medical image classification on MedMNIST: data, models, theory, reproduction."""


@cli.group(cls=Group)
def data():
    """Download, verify, inspect and synthesise MedMNIST datasets."""


root_option = click.option(
    "--root",
    type=click.Path(file_okay=False),
    default=None,
    help="Data folder (default: $MEDCLF_DATA, else the per-user cache folder).",
)
size_option = click.option(
    "--size",
    type=Choice(["28", "64", "128", "224"]),
    default="28",
    show_default=True,
    callback=lambda ctx, param, value: int(value),
    help="Image side: 28 (MedMNIST) or 64, 128, 224 (MedMNIST+; 3D datasets: 64 only).",
)

data_size_option = click.option(
    "--size",
    type=Choice(["28", "64", "128", "224"]),
    callback=lambda ctx, param, value: value and int(value),
    help="Image side of a named dataset: 28 (default) or 64, 128, 224 (MedMNIST+; 3D datasets: "
    "64 only); a file's size is read from it.",
)


@data.command("list")
def data_list():
    """List the datasets medclf knows (2D at sizes 28, 64, 128 and 224; 3D at 28 and 64)."""

    click.echo(
        f"{'dataset':16} {'task':26} {'classes':>7}  kind  sizes            train / val / test"
    )
    for info in REGISTRY.values():
        splits = " / ".join(f"{info.n_samples[s]:,}" for s in ("train", "val", "test"))
        sizes = ", ".join(map(str, info.sizes))
        click.echo(
            f"{info.name:16} {info.task:26} {info.n_classes:7}  {info.kind:4}  {sizes:15}  {splits}"
        )


@data.command()
@click.argument("names", nargs=-1, required=True)
@root_option
@click.option(
    "--mirror",
    default=None,
    help="Folder URL to fetch from instead of Zenodo ($MEDCLF_MIRROR); the MD5 is still checked.",
)
@click.option("--retries", default=3, show_default=True, type=click.IntRange(0, 10))
@size_option
def download(names, root, mirror, retries, size):
    """Download datasets into the cache, checking their MD5."""
    for name in names:
        path = api.download([name], root=root, mirror=mirror, retries=retries, size=size)[name]
        click.echo(f"{name}: {path}")


@data.command()
@click.argument("names", nargs=-1)
@root_option
@click.option(
    "--size",
    type=Choice(["28", "64", "128", "224"]),
    default=None,
    help="Image side to check [default: 28 for named datasets, every size otherwise].",
)
def verify(names, root, size):
    """Check the MD5 of cached files (all known datasets and sizes when no NAME is given)."""
    from medclf.data.fetch import cache_root

    shown = api.verify(names, root, size and int(size))
    for name, state in shown.items():
        click.echo(f"{name:19} {state}")
    if not shown:
        click.echo(f"no datasets cached in {cache_root(root)}")
    if any(not v.startswith("ok") for v in shown.values()):
        sys.exit(1)


@data.command()
@click.argument("dataset")
@root_option
@data_size_option
def info(dataset, root, size):
    """Splits, class counts and pixel statistics of a dataset name or .npz file."""
    from medclf.data.load import pixel_stats

    ds = api.load_dataset(dataset, root, size)
    licence = "none (synthetic data made by medclf)" if ds.synthetic else ds.info.licence
    click.echo(f"dataset  {ds.display_name}   task {ds.info.task}   licence {licence}")
    click.echo(f"source   {ds.source}")
    what = "volumes" if ds.info.dims == 3 else "images"
    kind = " (3D, one channel)" if ds.info.dims == 3 else ""
    click.echo(f"{what:8} {ds.info.image_shape} uint8{kind}, {ds.info.n_classes} classes")
    for split in ("train", "val", "test"):
        s = ds.split(split)
        counts = (
            np.bincount(s.labels, minlength=ds.info.n_classes)
            if s.labels.ndim == 1
            else s.labels.sum(axis=0)
        )
        mean, sd, lo, hi = pixel_stats(s.images)
        click.echo(
            f"{split:6} {len(s):>8,} {what:8} {'voxels' if ds.info.dims == 3 else 'pixels'} "
            f"mean {mean:6.2f} "
            f"sd {sd:6.2f} min {lo} max {hi}"
        )
        for name, count in zip(ds.class_names, counts, strict=True):
            click.echo(f"         {count:>8,}  {100 * count / len(s):5.1f}%  {name}")


@data.command()
@click.argument("dataset")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--split", type=Choice(["train", "val", "test"]), default="train")
@click.option("--per-class", default=8, show_default=True, type=click.IntRange(1, 32))
@root_option
@data_size_option
def show(dataset, out, split, per_class, root, size):
    """Draw sample images, one row per class (volumes: their three mid-slices)."""
    from medclf.plots import save_figure

    fig = api.sample_figure(dataset, split, per_class, root, size)
    click.echo(f"wrote {save_figure(fig, out, dpi=SHOW_DPI)}")


@data.command()
@click.option(
    "--like",
    default="octmnist",
    show_default=True,
    type=Choice(sorted(REGISTRY), case_sensitive=False),
    help="MedMNIST dataset to imitate.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help=".npz to write.")
@click.option(
    "--scale",
    default=0.05,
    show_default=True,
    type=float,
    help="Fraction of the real train/val sizes (1 = full size).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@size_option
def synth(like, out, scale, seed, size):
    """Write a synthetic .npz in the MedMNIST layout (learnable, not trivial)."""
    path = api.synthesize(like, out, scale, seed, size)
    click.echo(f"wrote {path} (synthetic, like {like}, size {size}, scale {scale}, seed {seed})")


@cli.group(cls=Group)
def theory():
    """Question 3: what perceptrons and two-unit MLPs compute."""


@theory.command()
@click.option("--D", "D", required=True, type=int, help="Input dimension.")
@click.option("--A", "A", required=True, type=int, help="Lower end of the interval.")
@click.option("--B", "B", required=True, type=int, help="Upper end of the interval.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Draw Figure 18 (D = 2) here.")
@click.option("--markdown", is_flag=True, help="Print the answers as a Markdown proof.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as one JSON object.")
def interval(D, A, B, plot, markdown, as_json):
    """Decide, construct and verify networks for f(x) = +1 iff A <= sum(x) <= B."""
    import json

    if markdown and as_json:
        raise ConfigError("--markdown and --json both choose the output format; pick one")
    if plot and D != 2:
        raise ConfigError(f"--plot draws the D = 2 picture, but D == {D}; drop --plot or use D 2")
    answer = api.interval_answer(D, A, B, "json" if as_json else "markdown" if markdown else "text")
    text = json.dumps(answer, separators=(",", ":")) if as_json else answer
    if plot:  # before printing, so that a failed save prints only its one line
        wrote = api.interval_figure(A, B, plot)
    click.echo(text)
    if plot:  # on stderr under --json, so that stdout stays one JSON object
        click.echo(f"wrote {wrote}", err=as_json)


backend_option = click.option(
    "--backend",
    type=Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Run on this machine's processes or on a Ray cluster (the ray extra).",
)
address_option = click.option(
    "--address",
    default=None,
    help="Ray cluster: auto or HOST:PORT (default: start a local Ray instance).",
)
mlflow_option = click.option(
    "--mlflow",
    "mlflow_uri",
    metavar="URI",
    help="Then log every finished run folder to this MLflow store (sqlite:///FILE.db or a "
    "folder; needs the mlflow extra).",
)


def check_mlflow(uri: str | None) -> None:
    """Refuse a store MLflow could not open before any training starts."""
    if uri:
        api.check_mlflow(uri)


def log_to_mlflow(folder, uri: str | None) -> None:
    """Log each finished run folder under ``folder`` to MLflow (medclf.api.export_mlflow)."""
    if not uri:
        return
    runs = api.export_mlflow([folder], uri)
    click.echo(f"logged {len(runs)} run folder(s) to MLflow at {uri}")


def per_model_default(key: str) -> str:
    """'default 20; torch-cnn 30; torch-resnet18, torch-resnet50 100' from the model registry:
    the most common value first, then the models that differ."""
    from collections import Counter

    values = {model: d[key] for model, d in DEFAULTS.items() if key in d}
    common = Counter(map(str, values.values())).most_common(1)[0][0]
    others: dict[str, list[str]] = {}
    for model, value in values.items():
        if str(value) != common:
            others.setdefault(str(value), []).append(model)
    return "; ".join([f"default {common}", *(f"{', '.join(m)} {v}" for v, m in others.items())])


def number_option(key: str, text: str):
    return click.option(
        f"--{key.replace('_', '-')}", key, type=float, help=f"{text} ({per_model_default(key)})."
    )


@cli.command()
@click.argument("model", type=Choice(list(MODEL_NAMES)), required=False, metavar="[MODEL]")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Start from the config in this JSON or YAML file (a run's config.json, "
    "tune's best_config.json; MODEL may then be left out); flags override it.",
)
@click.option("--dataset", default="octmnist", show_default=True, help="Name or .npz path.")
@click.option(
    "--size",
    type=Choice(["28", "64", "128", "224"]),
    callback=lambda ctx, param, value: value and int(value),
    help="Image side of a named dataset (MedMNIST+ sizes; default 28); a file's is read from it.",
)
@click.option(
    "--epochs", type=int, help=f"Passes over the training split ({per_model_default('epochs')})."
)
@number_option("lr", "Learning rate")
@click.option(
    "--batch-size", type=int, help=f"Examples per update ({per_model_default('batch_size')})."
)
@click.option(
    "--hidden-size", type=int, help=f"Units per hidden layer ({per_model_default('hidden_size')})."
)
@click.option(
    "--layers", type=int, help=f"Number of hidden layers ({per_model_default('layers')})."
)
@number_option("dropout", "Probability of zeroing a hidden unit while training")
@click.option(
    "--activation",
    type=Choice(ACTIVATIONS),
    help=f"Hidden activation ({per_model_default('activation')}).",
)
@number_option("l2", "L2 penalty (weight decay)")
@click.option("--optimizer", type=Choice(OPTIMIZERS), help=f"({per_model_default('optimizer')}).")
@click.option(
    "--width", type=int, help=f"Channels of the first block ({per_model_default('width')})."
)
@click.option(
    "--schedule",
    type=Choice(SCHEDULES),
    help=f"Learning-rate schedule ({per_model_default('schedule')}).",
)
@click.option(
    "--augment",
    type=Choice(AUGMENTS),
    help="Training-batch augmentation; auto: the label-safe operations of the "
    f"dataset ({per_model_default('augment')}).",
)
@click.option("--dtype", type=Choice(DTYPES), help="NumPy models only (default float64).")
@click.option(
    "--precision",
    type=Choice(PRECISIONS),
    help="Conv nets: bf16 autocast where the CPU (AVX512-BF16, AMX) or GPU has it natively, "
    "else refused; auto: bf16 where native, else fp32, as env.json records "
    f"({per_model_default('precision')}).",
)
@click.option(
    "--compile/--no-compile",
    "compile",
    default=None,
    help="Conv nets: train the network through torch.compile (default: eager).",
)
@click.option(
    "--test-split",
    type=Choice(TEST_SPLITS),
    help="auto (default): the study's 529-image subset for OCTMNIST, else the official test split.",
)
@click.option("--seed", type=int, help="Seeds every random generator (default 42).")
@click.option(
    "--select",
    type=Choice(SELECT),
    default="val_auc",
    show_default=True,
    help="Keep the epoch with the best validation metric, or the last epoch.",
)
@click.option(
    "--patience",
    type=click.IntRange(0, 100_000),
    default=0,
    show_default=True,
    help="Stop after this many epochs without a better --select metric (0: never).",
)
@click.option(
    "--out", type=click.Path(file_okay=False), help="Run folder (default runs/MODEL-TIME-PID)."
)
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@click.option(
    "--device", default=None, help="PyTorch: cpu, cuda or cuda:N (default: cuda if present)."
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    help="PyTorch: CPU threads (default: 1 for batches <= 64, else all cores).",
)
@click.option("--resume", is_flag=True, help="Continue the unfinished run in --out.")
@click.option("--force", is_flag=True, help="Replace a finished run of another config in --out.")
@click.option(
    "--mlflow",
    "mlflow_uri",
    metavar="URI",
    help="Then log the run folder to this MLflow store (sqlite:///FILE.db or a folder).",
)
@root_option
def train(
    model,
    config_file,
    out,
    quiet,
    root,
    device,
    threads,
    resume,
    force,
    size,
    mlflow_uri,
    **settings,
):
    """Train one model and write its run folder (metrics, predictions, figures, model)."""
    check_mlflow(mlflow_uri)
    if config_file:  # the flags' defaults < the file < the flags given on the command line
        from click.core import ParameterSource

        ctx = click.get_current_context()
        model, base = read_config_file(config_file, model)
        flags = {"size": size, **settings}
        given = {
            k: v
            for k, v in flags.items()
            if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT
        }
        config = make_config(model, **{**flags, **base, **given})
    elif model is None:
        raise ConfigError("give a MODEL (e.g. medclf train torch-ffn) or --config FILE")
    else:
        config = make_config(model, size=size, **settings)
    if (device or threads) and not {"device", "threads"} <= set(family_of(model).options):
        raise ConfigError("--device and --threads apply to torch-* models only")
    run = api.train(
        config=config,
        out=out,
        root=root,
        resume=resume,
        force=force,
        quiet=quiet,
        device=device,
        threads=threads,
        size=size,
    )
    out = run.path
    click.echo(run_summary(run.metrics, out))
    if mlflow_uri:
        click.echo(f"MLflow run {run.log_to_mlflow(mlflow_uri)} in {mlflow_uri}")


def study_folder(quick: bool) -> str:
    from medclf.experiments.reproduce import default_out

    return default_out(quick)


def run_summary(metrics: dict, out) -> str:
    """One line: the selected epoch's test ACC and AUC, and where everything else is (a key
    missing from metrics.json reads as unknown: the line is informational)."""

    def num(key):
        value = metrics.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return f"{value:.4f}" if ok else "undefined"

    def text(key):
        return str(metrics.get(key, "?"))

    synthetic = ", synthetic" if metrics.get("synthetic") is True else ""
    stopped = f"; {metrics['stopped']}" if metrics.get("stopped") else ""
    kept = "the last pass"
    if metrics.get("select", "last") != "last":
        kept = f"pass {text('selected_epoch')} of {text('epochs_run')}, best {text('select')}"
    return (
        f"test accuracy {num('test_acc')}, AUC {num('test_auc')} on the {text('test_split')} "
        f"test split ({text('n_test')} images{synthetic}); model of {kept}{stopped}; run folder "
        f"{out}"
    )


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New run folder.")
def ensemble(runs, out):
    """Average finished runs' predicted probabilities into a new run folder (evaluate,
    predict and export it as any run)."""
    if len(runs) < 2:
        raise click.UsageError("an ensemble needs two runs or more; give more RUN folders")
    m = api.ensemble(runs, out).metrics

    def num(key):
        return "undefined" if m.get(key) is None else f"{m[key]:.4f}"

    click.echo(
        f"ensemble of {len(runs)} runs: val ACC {num('val_acc')}, AUC {num('val_auc')}; "
        f"test ACC {num('test_acc')}, AUC {num('test_auc')} on the {m['test_split']} "
        f"test split ({m['n_test']} images); run folder {out}"
    )


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("inputs", nargs=-1, required=True)
def predict(run_dir, inputs):
    """Class probabilities for PNG images or .npz files of images, from a run folder."""
    run = api.open_run(run_dir)
    names, classes, proba = run.predict_files(inputs)
    metrics = run.metrics
    labels = metrics["class_names"]
    head = ["image", "predicted", *(labels if proba is not None else [])]
    rows = [head]
    for i, name in enumerate(names):
        if classes.ndim == 2:  # multi-label: every label with probability >= 0.5
            predicted = " + ".join(labels[j] for j in np.flatnonzero(classes[i])) or "(none)"
        else:
            predicted = labels[classes[i]]
        rows.append(
            [name, predicted, *(f"{p:.4f}" for p in (proba[i] if proba is not None else []))]
        )
    widths = [max(len(row[j]) for row in rows) for j in range(len(head))]
    for row in rows:  # full names: one column per class, as wide as its name
        cells = [
            c.ljust(w) if j < 2 else c.rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        click.echo("  ".join(cells).rstrip())
    if proba is None:
        click.echo("(a perceptron gives classes, not probabilities)")


@cli.command()
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    required=True,
    help="Dataset name or .npz path (repeatable).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=Choice(list(MODEL_NAMES)),
    help=f"Model (repeatable; default: {', '.join(BENCHMARK_ZOOS[2])} on images, "
    f"{', '.join(BENCHMARK_ZOOS[3])} on 3D volumes).",
)
@click.option(
    "--preset",
    type=Choice(["fast", "paper"]),
    default="fast",
    show_default=True,
    help="Training recipe: medclf's CPU recipe or MedMNIST v2's.",
)
@click.option(
    "--seeds",
    default=3,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Seeds 42, 43, ... per dataset and model.",
)
@click.option(
    "--size",
    type=Choice(["28", "64", "128", "224"]),
    default=None,
    help="Image side of named datasets (default 28; a file's size is read from it).",
)
@click.option("--out", default="benchmark", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Parallel processes.",
)
@click.option(
    "--robustness",
    is_flag=True,
    help="Add each run's MedMNIST-C rBE (medclf robustness) to the table and report.",
)
@click.option(
    "--ensemble",
    is_flag=True,
    help="Add per dataset and model the ensemble of its seeds (their mean probabilities) as a row.",
)
@click.option(
    "--auto",
    is_flag=True,
    help="Add per dataset the row 'medclf (auto)': the run or ensemble validation chooses.",
)
@click.option(
    "--budget",
    default="10m",
    show_default=True,
    type=Budget(),
    help="--auto: training time its candidates may take per dataset (90s, 10m, 1h).",
)
@click.option(
    "--precision",
    type=Choice(PRECISIONS),
    help="The conv nets' precision in place of the preset's (fast: auto, bf16 where the "
    "hardware has it natively; paper: fp32); --precision fp32 turns bf16 off.",
)
@root_option
@backend_option
@address_option
@mlflow_option
def benchmark(
    datasets,
    models,
    preset,
    seeds,
    size,
    out,
    workers,
    robustness,
    ensemble,
    auto,
    budget,
    precision,
    root,
    backend,
    address,
    mlflow_uri,
):
    """Train a grid of models on datasets and compare it with MedMNIST v2's published table."""
    check_mlflow(mlflow_uri)
    summary = api.benchmark(
        datasets,
        models or None,
        preset,
        seeds,
        out,
        workers,
        size and int(size),
        root,
        backend=backend,
        address=address,
        robustness=robustness,
        ensemble=ensemble,
        auto=auto,
        budget=budget,
        precision=precision,
    )
    failed = [r for r in summary["rows"] if r["status"] not in FINISHED]
    click.echo(
        f"{len(summary['rows'])} runs in {summary['seconds']:.0f} s; results: "
        f"{summary['csv']}; report: {summary['markdown']} and {summary['html']}"
    )
    log_to_mlflow(Path(out) / RUNS, mlflow_uri)
    if failed:
        click.echo(f"{len(failed)} run(s) did not finish; see {summary['csv']}", err=True)
        sys.exit(1)


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--split",
    default="test",
    show_default=True,
    help="Saved split: val, test, test_official (OCTMNIST's 1,000 images), or "
    "last_val/last_test (the last epoch where another was selected).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option(
    "--compare",
    is_flag=True,
    help="Two runs on the same images: paired tests of their difference (DeLong's "
    "for binary AUC, McNemar's for ACC, a paired bootstrap for both).",
)
@click.option(
    "--resamples",
    default=1000,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="Bootstrap resamples of the split's images for the 95 % intervals (0: none).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(0, 2**32 - 1),
    help="Seed of the bootstrap resampling.",
)
@click.option(
    "--plots",
    type=click.Path(dir_okay=True, file_okay=False),
    help="Folder for the ROC, precision-recall, reliability and confusion figures (PNG and "
    "PDF); with several runs, one subfolder per run.",
)
def evaluate(runs, split, as_json, compare, resamples, seed, plots):
    """Every metric of finished runs, recomputed from their saved predictions, with 95 %
    bootstrap intervals of ACC and AUC."""
    import json

    from medclf.report.evaluate import compare_text, comparison_text, single_run_text

    if compare and len(runs) != 2:
        raise click.UsageError(f"--compare takes exactly two runs, not {len(runs)}")
    if plots and compare:
        raise click.UsageError("--plots draws each run's own figures; leave out --compare")
    if plots:
        draw_plots(runs, split, Path(plots), err=as_json)
    if compare:
        paired = api.compare(*runs, split=split, seed=seed, resamples=resamples or 1000)
        click.echo(json.dumps(paired, indent=2) if as_json else compare_text(paired))
        return
    results = api.evaluate(runs, split, resamples, seed)
    if as_json:
        click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    elif len(results) == 1:
        click.echo(single_run_text(results[0]))
    else:
        click.echo(comparison_text(results))


def draw_plots(runs, split: str, plots: Path, err: bool) -> None:
    """Each run's curve figures: into PLOTS for one run, PLOTS/NAME for several."""
    names = [Path(r).resolve().name or "run" for r in runs]
    folders = [
        plots if len(runs) == 1 else plots / (n if names.count(n) == 1 else f"{i}-{n}")
        for i, n in enumerate(names)
    ]
    for run, folder in zip(runs, folders, strict=True):
        drawn = api.curves(run, split, out=folder)["figures"]
        click.echo(
            f"wrote {', '.join(p.stem for p in drawn.values())} (PNG, PDF) in {folder}", err=err
        )


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--images",
    "n_images",
    default=8,
    show_default=True,
    type=click.IntRange(1, 32),
    help="Images to explain, taking the classes in turn (file order within each).",
)
@click.option(
    "--index",
    "indices",
    multiple=True,
    type=click.IntRange(0),
    metavar="I",
    help="Explain these rows of the split instead (repeatable).",
)
@click.option(
    "--split", default="test", show_default=True, type=Choice(["test", "val", "test_official"])
)
@click.option(
    "--method",
    type=Choice(["gradcam", "saliency", "integrated-gradients", "weights"]),
    help="Attribution (default: the model's first: gradcam for conv nets, weights for linear "
    "models, saliency otherwise).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="FILE.png or FILE.pdf; the other format is written beside it.",
)
def explain(run_dir, n_images, indices, split, method, out):
    """What in each image drove the model's answer: its attribution map, predicted and true
    class, for a finished run of a NumPy or PyTorch model."""
    from click.core import ParameterSource

    given = click.get_current_context().get_parameter_source("n_images")
    if indices and given is not ParameterSource.DEFAULT:
        raise click.UsageError("give --images N or --index I..., not both")
    result = api.explain(run_dir, out, split, n_images, list(indices) or None, method)
    png = result["figure"]
    click.echo(
        f"wrote {png} and {png.with_suffix('.pdf').name}: {result['method']} of "
        f"{result['model']} on {len(result['indices'])} {split} images"
    )


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder for robustness.csv/.json/.png/.pdf (default: the run folder).",
)
@click.option(
    "--severities",
    default="1-5",
    show_default=True,
    help="MedMNIST-C severities: one (3), a range (1-5) or a list (1,3,5).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(0, 2**32 - 1),
    help="Seed of the random corruptions.",
)
@click.option(
    "--corruption",
    "corruptions",
    multiple=True,
    help="Only this corruption (repeatable; default: all of MedMNIST-C's for the dataset).",
)
@root_option
def robustness(run_dir, out, severities, seed, corruptions, root):
    """A run's test metrics under MedMNIST-C's corruptions of its dataset, severity by
    severity, and MedMNIST-C's summary (balanced errors relative to AlexNet's)."""
    from medclf.report.robustness import summary_lines

    result = api.robustness(run_dir, out, severities, seed, corruptions or None, root)
    click.echo("\n".join(summary_lines(result)))
    files = result["paths"]
    click.echo(f"wrote {', '.join(str(p) for p in files.values())}")


@cli.command()
@click.argument("top", default="runs", type=click.Path(file_okay=False))
@click.option(
    "--sort",
    default="run",
    show_default=True,
    type=Choice(
        ["run", "model", "dataset", "status", "val_acc", "val_auc", "test_acc", "test_auc"]
    ),
    help="Column to sort by (numbers: best first).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def runs(top, sort, as_json):
    """List the run folders under TOP (default: runs) as one table."""
    import json

    from medclf.report.evaluate import runs_text

    rows = api.list_runs(top, sort)
    click.echo(json.dumps(rows, indent=2) if as_json else runs_text(rows))


@cli.command()
@click.argument("top", metavar="DIR")
@click.option("--out", type=click.Path(dir_okay=False), help="HTML file (default: DIR/view.html).")
@click.option(
    "--serve",
    "port",
    type=click.IntRange(1, 65535),
    help="Also serve the page on http://127.0.0.1:PORT/ until Ctrl-C.",
)
def view(top, out, port):
    """One self-contained HTML page over every run folder under DIR: a sortable table, each
    run's curves, calibration, confusion matrix, wrong images and robustness."""
    server = api.serve_page(port) if port is not None else None  # a taken port: before work
    page = api.view(top, out)
    runs = page["runs"]
    bad = [r for r in runs if r["status"] == "damaged"]
    unfinished = [r for r in runs if r["status"] == "unfinished"]
    click.echo(
        f"{len(runs) - len(bad) - len(unfinished)} finished run(s), {len(unfinished)} "
        f"unfinished, {len(bad)} damaged: {page['path']}"
    )
    if bad:
        click.echo(
            f"Error: {len(bad)} damaged run folder(s), listed as damaged in the page: "
            + "; ".join(r["note"] for r in bad),
            err=True,
        )
    if server is not None:
        click.echo(f"serving {server.url} (Ctrl-C to stop)")
        server.run(Path(page["path"]).read_text(encoding="utf-8"))
    sys.exit(1 if bad else 0)


@cli.command()
@click.option("--dataset", default="octmnist", show_default=True, help="Name or .npz path.")
@click.option(
    "--out",
    default="reproduction",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder of the study (with --quick, by default: reproduction-quick).",
)
@click.option("--only", multiple=True, help="Only these questions (repeatable), e.g. Q2.2b.")
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Parallel processes.",
)
@click.option(
    "--seeds",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Repeat each run with K seeds (42, 43, ...); the report gives mean ± sd.",
)
@click.option("--quick", is_flag=True, help="A slice of the data and a few epochs (< 2 min).")
@root_option
@backend_option
@address_option
@mlflow_option
def reproduce(dataset, out, only, workers, seeds, quick, root, backend, address, mlflow_uri):
    """Rerun every experiment of the study, draw its figures, write report.md and report.html."""
    check_mlflow(mlflow_uri)
    if click.get_current_context().get_parameter_source("out").name == "DEFAULT":
        out = study_folder(quick)  # a quick study's own folder: never mixed with a full one
    summary = api.reproduce(
        dataset,
        out,
        only=only,
        workers=workers,
        quick=quick,
        seeds=seeds,
        root=root,
        echo=click.echo,
        backend=backend,
        address=address,
    )
    click.echo(
        f"{len(summary['results'])} runs in {summary['seconds']:.0f} s; report: "
        f"{summary['report_md']} and {summary['report_html']}; table: {out}/runs.csv"
    )
    log_to_mlflow(Path(out) / RUNS, mlflow_uri)
    if summary["failed"]:
        click.echo(f"{len(summary['failed'])} run(s) failed; see {out}/runs.csv", err=True)
        sys.exit(1)


@cli.command()
@click.option("--dataset", required=True, help="Name or .npz path.")
@click.option("--model", required=True, type=Choice(list(MODEL_NAMES)))
@click.option(
    "--trials",
    default=20,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Finished trials in all, counting those of an earlier, interrupted search.",
)
@click.option(
    "--metric",
    type=Choice(VALIDATION_METRICS),
    default="val_auc",
    show_default=True,
    help="Validation metric to optimise.",
)
@click.option(
    "--storage",
    metavar="URL",
    help="Optuna storage (default: sqlite:///OUT/study.db; a killed search resumes).",
)
@click.option("--out", default="tune", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--seed",
    default=42,
    show_default=True,
    type=click.IntRange(0, 2**31 - 1),
    help="Seeds the sampler and every trial's run.",
)
@click.option(
    "--epochs",
    type=click.IntRange(1, 100_000),
    help="Epochs of every trial (default: the model's).",
)
@click.option(
    "--backend",
    type=Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: one trial at a time, pruned per epoch; ray: --workers trials at a "
    "time on a Ray cluster, unpruned.",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Trials at a time on Ray.",
)
@address_option
@click.option(
    "--size",
    type=Choice(["28", "64", "128", "224"]),
    default=None,
    help="Image side of a named dataset (default 28; a file's size is read from it).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Start no new trial after this many seconds.",
)
@click.option(
    "--cv",
    type=click.IntRange(2, 100_000),
    metavar="K",
    help="Score each trial by K-fold cross-validation inside the training split (stratified "
    "by class; the mean of the folds' validation metric); the best settings are then "
    "trained on the whole training split and checked on the validation split.",
)
@root_option
@mlflow_option
def tune(
    dataset,
    model,
    trials,
    metric,
    storage,
    out,
    seed,
    epochs,
    backend,
    workers,
    address,
    size,
    timeout,
    cv,
    root,
    mlflow_uri,
):
    """Search a model's hyperparameters with Optuna; write best_config.json and trials.csv."""
    check_mlflow(mlflow_uri)
    from medclf.experiments.tune import trials_table

    result = api.tune(
        dataset,
        model,
        trials,
        out,
        metric=metric,
        storage=storage,
        seed=seed,
        epochs=epochs,
        size=size and int(size),
        root=root,
        timeout=timeout,
        backend=backend,
        workers=workers,
        address=address,
        echo=click.echo,
        cv=cv,
    )
    click.echo(trials_table(result["rows"], metric))
    log_to_mlflow(Path(out), mlflow_uri)
    best = result["best"]
    if best is None:
        click.echo(
            f"no trial finished with a {metric}; see {result['csv']} and rerun with a "
            "larger --timeout or --trials",
            err=True,
        )
        sys.exit(1)
    m = best["metrics"]

    def num(key):
        return "undefined" if m.get(key) is None else f"{m[key]:.4f}"

    if cv:
        folds = ", ".join(f"{v:.4f}" for v in best["folds"])
        click.echo(
            f"best trial {best['number']}: {metric} {best['value']:.4f} ± {best['sd']:.4f} "
            f"(mean ± sd of {cv} folds of the training split: {folds}); trained on the "
            f"whole training split in {best['run_dir']}: validation {metric} "
            f"{num(metric)}"
        )
    click.echo(
        f"best trial {best['number']}: {metric} {best['value']:.4f} (epoch "
        f"{m['selected_epoch']} of {m['epochs_run']}); its test accuracy {num('test_acc')}"
        f", AUC {num('test_auc')} on the {m['test_split']} test split ({m['n_test']} "
        f"images{', synthetic' if m['synthetic'] else ''}), read once after the search"
    )
    click.echo(
        f"best config: {result['best_config']} (medclf train --config); trials: "
        f"{result['csv']}; run folder {best['run_dir']}"
    )


class ExportGroup(Group):
    """``medclf export RUN --format onnx`` is read as ``medclf export onnx RUN``: a first
    argument that names no subcommand is a path, and ``--format`` names the subcommand."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            rest, fmt = list(args), None
            for i, arg in enumerate(rest):
                if arg == "--format" and i + 1 < len(rest):
                    fmt = rest[i + 1]
                    del rest[i : i + 2]
                    break
                if arg.startswith("--format="):
                    fmt = arg.split("=", 1)[1]
                    del rest[i]
                    break
            if fmt not in self.commands:
                raise click.UsageError(
                    f"{'no --format' if fmt is None else f'unknown format {fmt!r}'} for "
                    f"{args[0]}; choose --format {' or '.join(sorted(self.commands))}",
                    ctx,
                )
            args = [fmt, *rest]
        return super().resolve_command(ctx, args)


@cli.group(cls=ExportGroup)
def export():
    """Export run folders to other tools: 'medclf export onnx RUN' (or 'medclf export RUN
    --format onnx'), 'medclf export mlflow DIR... --uri URI'."""


@export.command("mlflow")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--uri", required=True, help="MLflow store: sqlite:///FILE.db or a folder.")
@click.option("--experiment", default="medclf", show_default=True, help="MLflow experiment.")
def export_mlflow(dirs, uri, experiment):
    """Log finished run folders (each DIR or every run folder below it) to MLflow."""

    def said(run_dir, run_id):
        click.echo(f"{run_dir}: MLflow run {run_id}")

    logged = api.export_mlflow(dirs, uri, experiment, on_each=said)
    if not logged:
        raise click.UsageError(f"no finished run folder (with metrics.json) in {', '.join(dirs)}")
    click.echo(f"{len(logged)} run(s) in {uri}, experiment {experiment}")


@export.command("onnx")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--out", type=click.Path(dir_okay=False), help="ONNX file to write (default: RUN/model.onnx)."
)
def export_onnx(run_dir, out):
    """Write a run's model as ONNX: uint8 images in, probabilities out, checked against
    onnxruntime on the run's test split before the file is written."""
    done = api.export_onnx(run_dir, out)
    shape = " x ".join(map(str, done["input_shape"]))
    click.echo(
        f"wrote {done['path']}: uint8 images ({shape}) -> probabilities (n x "
        f"{done['outputs']}); onnxruntime matches medclf within {done['max_delta']:.1e} "
        f"on {done['checked_on']}"
    )


def main():
    cli(prog_name="medclf")


if __name__ == "__main__":
    main()
