"""The ``medclf`` command line. User errors print one line and exit 1, never a traceback."""

from __future__ import annotations

import sys

import click
import numpy as np

from medclf import __version__
from medclf.errors import MedclfError


class Group(click.Group):
    """A click group that turns medclf's user errors into one clear line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MedclfError as err:
            raise click.ClickException(str(err)) from None
        except click.UsageError as err:  # one line instead of the usage block
            where = err.ctx.command_path if err.ctx else "medclf"
            raise click.ClickException(f"{err.format_message()} (see '{where} --help')") from None


@click.group(cls=Group)
@click.version_option(__version__, prog_name="medclf")
def cli():
    """Medical image classification on MedMNIST: data, models, theory, reproduction."""


@cli.group(cls=Group)
def data():
    """Download, verify, inspect and synthesise MedMNIST datasets."""


root_option = click.option(
    "--root", type=click.Path(file_okay=False), default=None,
    help="Data folder (default: $MEDCLF_DATA, else the per-user cache folder).",
)  # fmt: skip
size_option = click.option(
    "--size", type=click.Choice(["28", "64", "128", "224"]), default="28", show_default=True,
    callback=lambda ctx, param, value: int(value),
    help="Image side: 28 (MedMNIST) or 64, 128, 224 (MedMNIST+).",
)  # fmt: skip


@data.command("list")
def data_list():
    """List the datasets medclf knows (each at sizes 28, 64, 128 and 224)."""
    from medclf.data.registry import REGISTRY

    click.echo(f"{'dataset':15} {'task':26} {'classes':>7}  train / val / test images")
    for info in REGISTRY.values():
        sizes = " / ".join(f"{info.n_samples[s]:,}" for s in ("train", "val", "test"))
        click.echo(f"{info.name:15} {info.task:26} {info.n_classes:7}  {sizes}")


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
    from medclf.data.fetch import download as fetch

    for name in names:
        path = fetch(name, root=root, mirror=mirror, retries=retries, size=size)
        click.echo(f"{name}: {path}")


@data.command()
@click.argument("names", nargs=-1)
@root_option
@click.option(
    "--size", type=click.Choice(["28", "64", "128", "224"]), default=None,
    help="Image side to check [default: 28 for named datasets, every size otherwise].",
)  # fmt: skip
def verify(names, root, size):
    """Check the MD5 of cached files (all known datasets and sizes when no NAME is given)."""
    from medclf.data.fetch import cache_root
    from medclf.data.fetch import verify as check
    from medclf.data.registry import REGISTRY, SIZES

    status = {}
    for side in [int(size)] if size else [28] if names else SIZES:
        status.update(check(list(names) or list(REGISTRY), root, side))
    shown = status if names else {k: v for k, v in status.items() if v != "missing"}
    for name, state in shown.items():
        click.echo(f"{name:19} {state}")
    if not shown:
        click.echo(f"no datasets cached in {cache_root(root)}")
    if any(not v.startswith("ok") for v in shown.values()):
        sys.exit(1)


@data.command()
@click.argument("dataset")
@root_option
@size_option
def info(dataset, root, size):
    """Splits, class counts and pixel statistics of a dataset name or .npz file."""
    from medclf.data.load import load_dataset, pixel_stats

    ds = load_dataset(dataset, root, size)
    licence = "none (synthetic data made by medclf)" if ds.synthetic else ds.info.licence
    click.echo(f"dataset  {ds.display_name}   task {ds.info.task}   licence {licence}")
    click.echo(f"source   {ds.source}")
    click.echo(f"images   {ds.info.image_shape} uint8, {ds.info.n_classes} classes")
    for split in ("train", "val", "test"):
        s = ds.split(split)
        counts = (
            np.bincount(s.labels, minlength=ds.info.n_classes)
            if s.labels.ndim == 1
            else s.labels.sum(axis=0)
        )
        mean, sd, lo, hi = pixel_stats(s.images)
        click.echo(
            f"{split:6} {len(s):>8,} images   pixels mean {mean:6.2f} "
            f"sd {sd:6.2f} min {lo} max {hi}"
        )
        for name, count in zip(ds.class_names, counts, strict=True):
            click.echo(f"         {count:>8,}  {100 * count / len(s):5.1f}%  {name}")


@data.command()
@click.argument("dataset")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train")
@click.option("--per-class", default=8, show_default=True, type=click.IntRange(1, 32))
@root_option
@size_option
def show(dataset, out, split, per_class, root, size):
    """Draw a grid of sample images, one row per class."""
    import textwrap

    from medclf.data.load import load_dataset
    from medclf.report.plots import sample_grid, save_figure

    ds = load_dataset(dataset, root, size)
    s = ds.split(split)
    labels = s.labels if s.labels.ndim == 1 else s.labels.argmax(axis=1)
    fig = sample_grid(s.images, labels, ds.class_names, per_class, f"{ds.display_name} — {split}")
    for row, name in enumerate(ds.class_names):  # whole class names, wrapped, never cut
        fig.axes[row * per_class].yaxis.label.set_text(textwrap.fill(name, 24))
    click.echo(f"wrote {save_figure(fig, out)}")


@data.command()
@click.option("--like", default="octmnist", show_default=True, help="Dataset to imitate.")
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
    from medclf.data.synthetic import write_synthetic

    path = write_synthetic(out, like, scale, seed, size)
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

    from medclf.errors import ConfigError
    from medclf.theory.explain import figure18, json_answer, markdown_proof, text_report
    from medclf.theory.interval import check_params

    check_params(D, A, B)
    if markdown and as_json:
        raise ConfigError("--markdown and --json both choose the output format; pick one")
    if plot and D != 2:
        raise ConfigError(f"--plot draws the D = 2 picture, but D == {D}; drop --plot or use D 2")
    if as_json:
        text = json.dumps(json_answer(D, A, B), separators=(",", ":"))
    else:
        text = markdown_proof(D, A, B) if markdown else text_report(D, A, B)
    if plot:  # before printing, so that a failed save prints only its one line
        from medclf.report.plots import save_figure

        wrote = save_figure(figure18(A, B), plot)
    click.echo(text)
    if plot:  # on stderr under --json, so that stdout stays one JSON object
        click.echo(f"wrote {wrote}", err=as_json)


@cli.command()
@click.argument(
    "model",
    type=click.Choice(
        ["numpy-perceptron", "numpy-logreg", "numpy-mlp", "torch-logreg", "torch-ffn"]
    ),
)
@click.option("--dataset", default="octmnist", show_default=True, help="Name or .npz path.")
@click.option("--epochs", type=int)
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--batch-size", type=int)
@click.option("--hidden-size", type=int)
@click.option("--layers", type=int, help="Number of hidden layers.")
@click.option("--dropout", type=float)
@click.option("--activation", type=click.Choice(["relu", "tanh"]))
@click.option("--l2", type=float, help="L2 penalty (weight decay).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]))
@click.option("--dtype", type=click.Choice(["float64", "float32"]), help="NumPy models only.")
@click.option("--test-split", type=click.Choice(["auto", "study", "official"]))
@click.option("--seed", type=int)
@click.option(
    "--out", type=click.Path(file_okay=False), help="Run folder (default runs/MODEL-TIME)."
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
@root_option
def train(model, out, quiet, root, device, threads, resume, **settings):
    """Train one model and write its run folder."""
    import time

    from medclf.config import make_config
    from medclf.data.load import load_dataset
    from medclf.errors import ConfigError
    from medclf.experiments.jobs import run_job

    config = make_config(model, **settings)
    dataset = load_dataset(config["dataset"], root)
    out = out or f"runs/{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    torch_options = {"device": device, "threads": threads}
    if model.startswith("numpy-"):
        if device or threads:
            raise ConfigError("--device and --threads apply to torch-* models only")
        torch_options = {}
    metrics = run_job(config, dataset, out, quiet=quiet, resume=resume, **torch_options)
    click.echo(
        f"test accuracy {metrics['test_acc']:.4f} on the {metrics['test_split']} test split "
        f"({metrics['n_test']} images{', synthetic' if dataset.synthetic else ''}); "
        f"run folder {out}"
    )


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("inputs", nargs=-1, required=True)
def predict(run_dir, inputs):
    """Class probabilities for PNG images or .npz files of images, from a run folder."""
    from pathlib import Path

    from medclf.errors import DataError
    from medclf.experiments.predict import predict_run, read_images
    from medclf.experiments.store import read_json

    if not (Path(run_dir) / "metrics.json").exists():
        raise DataError(f"{run_dir} is not a finished run folder (no metrics.json); train one "
                        "with 'medclf train'")  # fmt: skip
    metrics = read_json(Path(run_dir) / "metrics.json")
    images, names = read_images(inputs, metrics["image_shape"])
    classes, proba = predict_run(run_dir, images)
    labels = metrics["class_names"]
    short = [name[:12] for name in labels]
    click.echo(f"{'image':24} {'predicted':28}" + ("".join(f"{s:>13}" for s in short)
                                                    if proba is not None else ""))  # fmt: skip
    for i, name in enumerate(names):
        row = f"{name[:24]:24} {labels[classes[i]][:28]:28}"
        if proba is not None:
            row += "".join(f"{p:13.4f}" for p in proba[i])
        click.echo(row)
    if proba is None:
        click.echo("(a perceptron gives classes, not probabilities)")


@cli.command()
@click.option("--dataset", default="octmnist", show_default=True, help="Name or .npz path.")
@click.option("--out", default="reproduction", show_default=True, type=click.Path(file_okay=False))
@click.option("--only", multiple=True, help="Only these questions (repeatable), e.g. Q2.2b.")
@click.option("--workers", default=2, show_default=True, type=int, help="Parallel processes.")
@click.option(
    "--seeds",
    default=1,
    show_default=True,
    type=int,
    help="Repeat each run with K seeds (42, 43, ...); the report gives mean ± sd.",
)
@click.option("--quick", is_flag=True, help="A slice of the data and a few epochs (< 2 min).")
@root_option
def reproduce(dataset, out, only, workers, seeds, quick, root):
    """Rerun every experiment of the study, draw its figures, write report.md and report.html."""
    from medclf.experiments.reproduce import reproduce as run

    summary = run(
        dataset,
        out,
        only=only,
        workers=workers,
        quick=quick,
        seeds=seeds,
        root=root,
        echo=click.echo,
    )
    click.echo(
        f"{len(summary['results'])} runs in {summary['seconds']:.0f} s; report: "
        f"{summary['report_md']} and {summary['report_html']}; table: {out}/runs.csv"
    )
    if summary["failed"]:
        click.echo(f"{len(summary['failed'])} run(s) failed; see {out}/runs.csv", err=True)
        sys.exit(1)


def main():
    cli(prog_name="medclf")


if __name__ == "__main__":
    main()
