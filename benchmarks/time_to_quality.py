"""Time to quality (issue 20 §4): wall time and test ACC/AUC, per dataset file, of

  (a) medclf ``fast``: the preset's torch-cnn recipe, through medclf.run.lifecycle.run_job;
  (b) medclf ``paper``: MedMNIST v2's ResNet-18 (28) protocol as medclf trains it (Adam, lr
      0.001, batch 128, 100 epochs, lr x 0.1 at 50 % and 75 %, best-validation-AUC epoch kept);
  (c) the standard Dataset/DataLoader loop of that protocol in plain PyTorch, as MedMNIST's
      experiments/MedMNIST2D/train_and_eval_pytorch.py writes it: per image PIL + ToTensor +
      Normalize(0.5, 0.5) (bench_conv.MedMNISTStyle), DataLoader(batch 128, shuffle), the same
      medclf ResNet18 (28x28 CIFAR-style stem), Adam, MultiStepLR, the validation AUC after every
      epoch (sklearn's roc_auc_score as MedMNIST's Evaluator), the best epoch's weights kept.

All three in one process, at the same thread count, one seed. Each test split is scored once,
at the end; nothing is chosen on it. MedMNIST's script also scores train and test after every
epoch; (c) scores validation only, as (a) and (b) do (run_job with train_acc=False, as
``medclf benchmark`` runs), so every row does the same work per epoch. Data loading is outside
the timings. Run single-threaded (``--epochs 2`` for a smoke test; (a) keeps its preset's epochs):

    OMP_NUM_THREADS=1 python benchmarks/time_to_quality.py [--data FILE ...] [--out DIR]

Prints a markdown table and writes OUT/time_to_quality.json (after every row); the medclf run
folders are OUT/runs/FILE-fast and OUT/runs/FILE-paper, replaced on a rerun.

``--timing-epochs K`` (where 100 epochs of ResNet-18 on a CPU take hours): (b) and (c) train K
epochs only, of a K-epoch schedule, and their rows give the wall time projected to --epochs
(the K-epoch wall + (epochs - K) x the median time from one epoch's end to the next) with no
test numbers (a K-epoch model is not the protocol's); the protocol's quality is then MedMNIST
v2's published ResNet-18 (28) row, printed beside (a).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_conv import MedMNISTStyle, standard_epoch
from common import machine
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from medclf.data.features import channels_first
from medclf.data.load import load_dataset
from medclf.errors import MedclfError
from medclf.files import atomic_path
from medclf.metrics import MULTI_LABEL
from medclf.models.config import make_config
from medclf.models.registry import preset_settings
from medclf.models.torch_models import ResNet18
from medclf.models.training import torch_engine as engine
from medclf.report.medmnist_v2 import BASELINE, published
from medclf.run.family_torch import scale_images
from medclf.run.lifecycle import run_job
from medclf.run.selection import auc_of

DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz")
BATCH = 128  # MedMNIST's experiments


def medclf_row(preset, model, dataset, args, epochs=None):
    """Train one medclf run in a fresh folder; (wall s, its metrics)."""
    settings = {**preset_settings(preset, model), "seed": args.seed, "size": dataset.info.size}
    if epochs is not None:
        settings["epochs"] = epochs
    config = make_config(model, dataset=dataset.source, **settings)
    run_dir = Path(args.out) / "runs" / f"{dataset.info.key}-{preset}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a rerun trains again, never reuses
    start, ends = time.perf_counter(), []
    m = run_job(
        config,
        dataset,
        run_dir,
        quiet=True,
        train_acc=False,
        threads=args.threads,
        after_epoch=lambda rec: ends.append(time.perf_counter()),
    )
    return time.perf_counter() - start, {**m, "epoch_ends": ends}, config["epochs"]


def evaluator_scores(model, loader):
    """Softmax scores of a split, as MedMNIST's test(): eval mode, no graph, float32."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x).softmax(dim=-1) for x, _ in loader]).numpy()


def evaluator_metrics(labels, scores):
    """(ACC, AUC) as MedMNIST's Evaluator: binary -> class 1's score (> 0.5 is positive);
    multi-class -> argmax and the mean one-vs-rest AUC."""
    labels = labels.ravel()
    if scores.shape[1] == 2:
        acc = float(np.mean((scores[:, 1] > 0.5) == labels))
        return acc, float(roc_auc_score(labels, scores[:, 1]))
    aucs = [roc_auc_score(labels == k, scores[:, k]) for k in range(scores.shape[1])]
    return float(np.mean(scores.argmax(1) == labels)), float(np.mean(aucs))


def standard_row(dataset, args, epochs):
    """The standard loop (c); (wall s, metrics, the val AUC medclf computes on the kept
    weights)."""
    torch.manual_seed(args.seed)
    split = {s: dataset.split(s) for s in ("train", "val", "test")}
    start = time.perf_counter()
    sets = {s: MedMNISTStyle(d.images, d.labels[:, None]) for s, d in split.items()}
    gen = torch.Generator().manual_seed(args.seed)
    train = DataLoader(sets["train"], batch_size=BATCH, shuffle=True, generator=gen)
    val, test = (DataLoader(sets[s], batch_size=BATCH) for s in ("val", "test"))
    model = ResNet18(dataset.info.channels, len(dataset.class_names))  # as the registry builds
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    # MedMNIST gives [0.5 * epochs, 0.75 * epochs]; ceil makes a fractional milestone drop
    # where medclf's schedule does (the same at 100 epochs)
    steps = [math.ceil(0.5 * epochs), math.ceil(0.75 * epochs)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=steps, gamma=0.1)
    best_auc, best_epoch, best, ends = -1.0, 0, None, []
    for epoch in range(1, epochs + 1):
        standard_epoch(model, opt, train)
        auc = evaluator_metrics(split["val"].labels, evaluator_scores(model, val))[1]
        sched.step()
        ends.append(time.perf_counter())
        if auc > best_auc:  # strictly better, as MedMNIST and medclf keep the first best
            best_auc, best_epoch, best = auc, epoch, copy.deepcopy(model)
    acc, test_auc = evaluator_metrics(split["test"].labels, evaluator_scores(best, test))
    wall = time.perf_counter() - start
    # sanity: medclf's validation AUC (its engine's scoring, its metric) on the kept weights
    X_val = torch.from_numpy(channels_first(split["val"].images))
    s = engine.scores(copy.deepcopy(best), X_val, False, chunk=1024, prepare=scale_images)
    m = {"test_acc": acc, "test_auc": test_auc, "val_auc": best_auc, "selected_epoch": best_epoch}
    m["epoch_ends"], m["precision"] = ends, "fp32"
    return wall, m, auc_of(dataset.info.task, split["val"].labels, s)


def check(dataset):
    info = dataset.info
    if info.dims != 2 or info.channels != 1 or info.task == MULTI_LABEL:
        raise MedclfError(
            f"{dataset.source} holds {info.task} {'volumes' if info.dims == 3 else 'images'} "
            f"with {info.channels} channel(s); this benchmark takes single-label grey 2D images"
        )


def row(dataset, name, epochs, wall, m, standard=False):
    keep = ("test_acc", "test_auc", "val_auc", "selected_epoch", "epoch_ends", "precision")
    tag = " (synthetic)" if dataset.synthetic else ""
    out = {"dataset": dataset.info.key + tag, "implementation": name, "epochs": epochs}
    return {**out, "wall_s": wall, **{k: m.get(k) for k in keep}, "standard": standard}


def projected(r, timing_epochs, epochs):
    """A row of K timed epochs as the protocol's: the epochs left at the median epoch time
    (from one epoch's end to the next) added to its wall time; no test numbers."""
    per_epoch = float(np.median(np.diff(r["epoch_ends"])))
    return {
        **r,
        "timed_epochs": timing_epochs,
        "timed_wall_s": r["wall_s"],
        "epoch_s": per_epoch,
        "epochs": epochs,
        "wall_s": r["wall_s"] + (epochs - timing_epochs) * per_epoch,
        "test_acc": None,
        "test_auc": None,
        "val_auc": None,
    }


def table(rows):
    print(
        "| dataset | implementation | epochs | wall time (s) | test ACC | test AUC "
        "| val AUC of the kept epoch | speed-up vs (c) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = next(b["wall_s"] for b in rows if b["dataset"] == r["dataset"] and b["standard"])
        wall = f"{r['wall_s']:.1f}"
        if "timed_epochs" in r:
            wall += f" (projected from {r['timed_epochs']} epochs)"
        quality = (
            "| — | — | — "
            if r["test_acc"] is None
            else (
                f"| {r['test_acc']:.3f} | {r['test_auc']:.3f} | {r['val_auc']:.3f} "
                f"(epoch {r['selected_epoch']}) "
            )
        )
        name = r["implementation"] + (f" ({r['precision']})" if r.get("precision") else "")
        print(
            f"| {r['dataset']} | {name} | {r['epochs']} | {wall} "
            f"{quality}| {base / r['wall_s']:.1f}× |"
        )
        if r["standard"] and "timed_epochs" in r and (scores := published(r["dataset"])):
            acc, auc = scores[BASELINE]
            print(
                f"| {r['dataset']} | MedMNIST v2's published {BASELINE} (GPU) | 100 | — "
                f"| {acc:.3f} | {auc:.3f} | — | — |"
            )


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def at_least_two(text):
    value = positive(text)
    if value < 2:  # two epoch ends give one epoch's time
        raise argparse.ArgumentTypeError(f"{value} epochs time no epoch; give 2 or more")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=[DATA], metavar="FILE")
    parser.add_argument("--threads", type=positive, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=positive, default=100, help="of (b) and (c)")
    parser.add_argument(
        "--timing-epochs",
        type=at_least_two,
        help="train (b) and (c) this many epochs and project their wall time to --epochs",
    )
    parser.add_argument("--out", default="runs/time_to_quality")
    args = parser.parse_args()
    if args.timing_epochs and args.timing_epochs >= args.epochs:
        parser.error(f"--timing-epochs {args.timing_epochs} must be below --epochs {args.epochs}")
    torch.set_num_threads(args.threads)
    record = {"machine": machine(), "torch": torch.__version__, "threads": args.threads}
    record.update(seed=args.seed, load_start=os.getloadavg(), rows=[])
    print(f"machine: {record['machine']}; torch {torch.__version__}; {args.threads} thread(s)")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in record['load_start'])}")
    try:
        write(record, args)  # an unwritable --out fails now, not after hours of training
        datasets = [load_dataset(path) for path in args.data]
        for d in datasets:
            check(d)
        for d in datasets:
            wall, m, epochs = medclf_row("fast", "torch-cnn", d, args)
            add(record, row(d, "(a) medclf fast, torch-cnn", epochs, wall, m), args)
            timed = args.timing_epochs or args.epochs
            wall, m, epochs = medclf_row("paper", "torch-resnet18", d, args, timed)
            r = row(d, "(b) medclf paper, ResNet-18", epochs, wall, m)
            add(record, projected(r, timed, args.epochs) if args.timing_epochs else r, args)
            wall, m, medclf_val_auc = standard_row(d, args, timed)
            r = row(d, "(c) standard DataLoader, ResNet-18", timed, wall, m, True)
            r = projected(r, timed, args.epochs) if args.timing_epochs else r
            add(record, {**r, "medclf_val_auc": medclf_val_auc}, args)
            gap = abs(m["val_auc"] - medclf_val_auc)  # float32 vs float64 softmax: ties only
            same = "the same" if gap < 1e-9 else f"DIFFERENT by {gap:.2e}"
            print(
                f"sanity: (c)'s kept val AUC {m['val_auc']:.6f}, medclf's on the same "
                f"weights {medclf_val_auc:.6f}: {same}",
                flush=True,
            )
    except MedclfError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # --out a file, a read-only folder, a full disk
        print(f"error: {err.filename}: {err.strerror}; choose another --out", file=sys.stderr)
        return 1
    record["load_end"] = os.getloadavg()
    write(record, args)
    print()
    table(record["rows"])
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in record['load_end'])}")
    return 0


def add(record, r, args):
    record["rows"].append(r)
    print(json.dumps(r), file=sys.stderr, flush=True)
    write(record, args)  # a killed run keeps its finished rows


def write(record, args):
    with atomic_path(Path(args.out) / "time_to_quality.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    sys.exit(main())
