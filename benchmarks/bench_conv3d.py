"""One training epoch of medclf's 3D CNN (torch-cnn3d) and of ResNet-18+3D (MedMNIST's stem)
on the genuine AdrenalMNIST3D (28^3): medclf's engine (the split as uint8 tensors, batched by
index: medclf.models.training.torch_engine.train_epoch, channels_last_3d on and off) against
the standard loop of MedMNIST's experiments/MedMNIST3D (a Dataset whose __getitem__ scales one
volume, voxel / 255, then Transform3D's x 0.5, a DataLoader(batch_size=32, shuffle=True),
zero_grad / backward / step). Same model, same Adam, same batch, same process, same threads;
the loops alternate (A B C, C B A, ...) and each figure is the median of the repeats.

ResNet-18+3D is tens of GFLOP per volume: on a CPU it is timed on the first ``--resnet-limit``
training volumes and the epoch (1,188 volumes) projected linearly, as is its 100-epoch time.

    python benchmarks/bench_conv3d.py [--data FILE] [--threads 2] [--resnet-limit 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import machine
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from medclf.models.registry import MODELS, builder
from medclf.models.training import torch_engine as engine
from medclf.run.family_torch import network_inputs, scale_images

BATCH = 32  # MedMNIST3D's train script


class MedMNIST3DStyle(Dataset):
    """MedMNIST's 3D dataset class as its experiments use it: one volume at a time, / 255 into
    (1, D, H, W), then Transform3D(mul='0.5') (the evaluation transform; training's draws a
    random factor, the same cost)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = np.stack([self.images[i] / 255.0], axis=0)
        return (img * 0.5).astype(np.float32), self.labels[i]


def standard_epoch(model, opt, loader):
    model.train()
    for inputs, targets in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(inputs), torch.squeeze(targets, 1).long())
        loss.backward()
        opt.step()


def build(name):
    torch.manual_seed(0)
    return builder(name)(dict(MODELS[name].defaults), (1, 28, 28, 28), 2)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(name, images, labels, threads, repeats):
    """Median seconds of one pass over ``images``: engine with channels_last_3d, engine
    contiguous, standard loop; and every time measured."""
    torch.set_num_threads(threads)
    X = torch.from_numpy(network_inputs(images, "volume-uint8"))
    y = torch.from_numpy(labels.ravel()).long()
    models = {k: build(name) for k in ("engine NDHWC", "engine contiguous", "standard")}
    opts = {k: engine.make_optimizer(m, "adam", 0.001, 0.0) for k, m in models.items()}
    gen = engine.seed_everything(0)
    loader = DataLoader(MedMNIST3DStyle(images, labels), batch_size=BATCH, shuffle=True)

    def ours(key, fmt):
        def run():
            engine.CHANNELS_LAST_3D = fmt
            try:
                engine.train_epoch(models[key], opts[key], X, y, BATCH, gen, prepare=scale_images)
            finally:
                engine.CHANNELS_LAST_3D = True

        return run

    runs = {
        "engine NDHWC": ours("engine NDHWC", True),
        "engine contiguous": ours("engine contiguous", False),
        "standard": lambda: standard_epoch(models["standard"], opts["standard"], loader),
    }
    for key in runs:  # warm-up: one batch each (allocator, oneDNN primitives)
        if key == "standard":
            standard_epoch(
                models[key], opts[key], DataLoader(MedMNIST3DStyle(images[:BATCH], labels[:BATCH]))
            )
        else:
            engine.CHANNELS_LAST_3D = key == "engine NDHWC"
            engine.train_epoch(
                models[key], opts[key], X[:BATCH], y[:BATCH], BATCH, gen, prepare=scale_images
            )
            engine.CHANNELS_LAST_3D = True
    times = {k: [] for k in runs}
    order = list(runs)
    for r in range(repeats):
        for key in order if r % 2 == 0 else order[::-1]:
            times[key].append(timed(runs[key]))
    return {k: statistics.median(v) for k, v in times.items()}, times


def main():
    parser = argparse.ArgumentParser()
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "adrenalmnist3d.npz"
    parser.add_argument("--data", default=str(real))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resnet-repeats", type=int, default=1)
    parser.add_argument("--resnet-limit", type=int, default=64, help="volumes ResNet sees")
    parser.add_argument("--limit", type=int, default=0, help="first N volumes only (smoke)")
    parser.add_argument("--models", default="torch-cnn3d,torch-resnet18-3d")
    args = parser.parse_args()
    with np.load(args.data) as f:
        images, labels = f["train_images"], f["train_labels"]
    n_epoch = len(images)  # what a projected epoch covers, whatever --limit times
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    ds = MedMNIST3DStyle(images, labels)
    X = network_inputs(images[:8], "volume")
    # the same volume: MedMNIST's x / 255 * 0.5 in [0, 0.5], medclf's x / 127.5 - 1 in [-1, 1]
    diff = max(abs(float(ds[i][0].max()) * 4 - 1 - float(X[i].max())) for i in range(8))
    print(f"machine: {machine()}; torch {torch.__version__}; {n_epoch} training volumes")
    print(f"timed: {len(images)} (torch-cnn3d), {min(args.resnet_limit, len(images))} (ResNets)")
    print(f"input scales agree (affine map, max |difference| {diff:.1e})")
    print()
    print(
        "| model | threads | volumes timed | engine, channels_last_3d | engine, contiguous "
        "| standard DataLoader loop | speed-up (best engine) | projected epoch / 100 epochs |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        cnn = MODELS[name].cost < 100
        n = len(images) if cnn else min(args.resnet_limit, len(images))
        reps = args.repeats if cnn else args.resnet_repeats
        t, all_t = compare(name, images[:n], labels[:n], args.threads, reps)
        best = min(t["engine NDHWC"], t["engine contiguous"])
        epoch = best * n_epoch / n
        print(
            f"| {name} | {args.threads} | {n} | {t['engine NDHWC']:.1f} s "
            f"| {t['engine contiguous']:.1f} s | {t['standard']:.1f} s "
            f"| {t['standard'] / best:.2f}x | {epoch:.0f} s / {epoch * 100 / 3600:.1f} h |"
            f"  <!-- {all_t} -->",
            flush=True,
        )


if __name__ == "__main__":
    main()
