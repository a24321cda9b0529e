"""One training epoch of ResNet-18 (28) and of torch-cnn on the genuine PneumoniaMNIST:
medclf's engine (the split as tensors, batched by index:
medclf.models.training.torch_engine.train_epoch) against the standard loop MedMNIST's
experiments use
(a Dataset whose __getitem__ makes a PIL image and applies ToTensor + Normalize(0.5, 0.5) per
image, a DataLoader(batch_size=128, shuffle=True), zero_grad / backward / step). Same model,
same Adam, same batch, same process, same threads; the two loops alternate (A B, B A, ...) and
each figure is the median of the repeats.

Then what else helps medclf's engine: channels-last, evaluation under inference_mode instead of
no_grad, torch.compile, and bfloat16 autocast where the CPU has AVX512-BF16 or AMX (read from
/proc/cpuinfo; skipped otherwise). Run: python benchmarks/bench_conv.py [--data FILE]
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

from medclf.data.features import channels_first
from medclf.models.torch_models import ResNet18, SmallCNN
from medclf.models.training import torch_engine as engine
from medclf.run.family_torch import scale_images

BATCH = 128


class MedMNISTStyle(Dataset):
    """MedMNIST's dataset class as its experiments use it: one image at a time, through PIL,
    ToTensor (uint8 -> float / 255, (1, H, W)) and Normalize(mean 0.5, sd 0.5), written in plain
    torch because torchvision does not work with the pinned torch."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.images[i])
        x = torch.from_numpy(np.array(img, copy=True)).unsqueeze(0)  # ToTensor: (1, H, W)
        x = x.float().div(255)
        x = (x - 0.5) / 0.5  # Normalize(mean=[.5], std=[.5])
        return x, self.labels[i]  # label of shape (1,), as in MedMNIST


def standard_epoch(model, opt, loader):
    model.train()
    for inputs, targets in loader:
        opt.zero_grad()
        outputs = model(inputs)
        loss = F.cross_entropy(outputs, torch.squeeze(targets, 1).long())
        loss.backward()
        opt.step()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bf16_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def build(name, channels_last=False):
    torch.manual_seed(0)
    model = SmallCNN(1, 2, width=32) if name == "torch-cnn" else ResNet18(1, 2)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def adam(model):
    return engine.make_optimizer(model, "adam", 0.001, 0.0)


def versus_standard(name, images, labels, X, y, threads, repeats):
    """(median engine s, median standard s, all times) at ``threads``, alternating order."""
    torch.set_num_threads(threads)
    ours, theirs = build(name), build(name)
    theirs.load_state_dict(ours.state_dict())
    opt_ours, opt_theirs = adam(ours), adam(theirs)
    gen = engine.seed_everything(0)
    loader = DataLoader(MedMNISTStyle(images, labels), batch_size=BATCH, shuffle=True)
    run_ours = lambda: engine.train_epoch(  # noqa: E731
        ours, opt_ours, X, y, BATCH, gen, prepare=scale_images
    )
    run_theirs = lambda: standard_epoch(theirs, opt_theirs, loader)  # noqa: E731
    times = {"engine": [], "standard": []}
    # warm-up on 512 images: allocator, oneDNN primitives
    engine.train_epoch(ours, opt_ours, X[:512], y[:512], BATCH, gen, prepare=scale_images)
    standard_epoch(
        theirs,
        opt_theirs,
        DataLoader(MedMNISTStyle(images[:512], labels[:512]), batch_size=BATCH, shuffle=True),
    )
    for r in range(repeats):
        pair = [("engine", run_ours), ("standard", run_theirs)]
        for key, fn in pair if r % 2 == 0 else pair[::-1]:
            times[key].append(timed(fn))
    return statistics.median(times["engine"]), statistics.median(times["standard"]), times


def engine_variant(
    name, X, y, threads, repeats, channels_last=False, autocast=False, compile_=False
):
    torch.set_num_threads(threads)
    engine.CHANNELS_LAST = channels_last  # the engine's default since this benchmark: True
    model = build(name, channels_last)
    opt = adam(model)
    if compile_:
        model = torch.compile(model)
    if channels_last:
        prepare = lambda x: scale_images(x).contiguous(memory_format=torch.channels_last)  # noqa: E731
    else:
        prepare = scale_images
    gen = engine.seed_everything(0)

    def epoch(n=None):
        n = len(X) if n is None else n
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                engine.train_epoch(model, opt, X[:n], y[:n], BATCH, gen, prepare=prepare)
        else:
            engine.train_epoch(model, opt, X[:n], y[:n], BATCH, gen, prepare=prepare)

    try:
        first = timed(lambda: epoch(512))  # warm-up, 4 batches (for compile: the compilation)
        return statistics.median(timed(epoch) for _ in range(repeats)), first
    finally:
        engine.CHANNELS_LAST = True


def eval_modes(name, X, repeats):
    """Seconds to score the training split in eval mode: no_grad (medclf's logits_of) vs
    inference_mode, both in chunks of 1024 as medclf evaluates images."""
    model = build(name).eval()

    def run(ctx):
        with ctx():
            return torch.cat([model(scale_images(X[s : s + 1024])) for s in range(0, len(X), 1024)])

    a, b = run(torch.no_grad), run(torch.inference_mode)
    assert torch.equal(a, b)
    t = {"no_grad": [], "inference_mode": []}
    for r in range(repeats):
        for key in ("no_grad", "inference_mode") if r % 2 == 0 else ("inference_mode", "no_grad"):
            ctx = torch.no_grad if key == "no_grad" else torch.inference_mode
            t[key].append(timed(lambda c=ctx: run(c)))
    return {k: statistics.median(v) for k, v in t.items()}


def main():
    parser = argparse.ArgumentParser()
    # ../shared/data beside the repository, wherever it is run from
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"
    parser.add_argument("--data", default=str(real))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resnet-repeats", type=int, default=2)
    parser.add_argument("--models", default="torch-cnn,torch-resnet18")
    parser.add_argument("--resnet-threads", default="2", help="thread counts for ResNet-18")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--only-versus", action="store_true", help="the first table only")
    parser.add_argument("--limit", type=int, default=0, help="first N images only (smoke test)")
    args = parser.parse_args()
    with np.load(args.data) as f:
        images, labels = f["train_images"], f["train_labels"]
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    X = torch.from_numpy(channels_first(images))  # uint8, as medclf keeps image splits
    y = torch.from_numpy(labels.ravel()).long()
    # Identical inputs: medclf's x / 127.5 - 1 against the per-image ToTensor + Normalize.
    ds = MedMNISTStyle(images, labels)
    diff = max(
        float((ds[i][0] - scale_images(X[i : i + 1])[0]).abs().max()) for i in range(0, len(ds), 97)
    )
    print(f"machine: {machine()}; torch {torch.__version__}; {len(X)} training images")
    print(f"max |input difference| engine vs standard (every 97th image): {diff:.2e}")
    print(f"bf16 flags in /proc/cpuinfo: {bf16_flags() or 'none'}")
    print()
    print(
        f"| model | threads | medclf engine (channels-last: {engine.CHANNELS_LAST}) "
        "| standard DataLoader loop | speed-up |"
    )
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        reps = args.repeats if name == "torch-cnn" else args.resnet_repeats
        threads_list = (2, 1) if name == "torch-cnn" else map(int, args.resnet_threads.split(","))
        for threads in threads_list:
            ours, theirs, all_t = versus_standard(name, images, labels, X, y, threads, reps)
            print(
                f"| {name} | {threads} | {ours:.2f} s | {theirs:.2f} s | {theirs / ours:.2f}× |"
                f"  <!-- {all_t} -->",
                flush=True,
            )
    if args.only_versus:
        return
    print()
    print("| model | engine variant, 2 threads | one epoch | warm-up: 4 batches |")
    print("|---|---|---|---|")
    variants = [("fp32, contiguous", {}), ("channels-last", {"channels_last": True})]
    if bf16_flags():
        variants.append(("bf16 autocast", {"autocast": True}))
        variants.append(
            ("bf16 autocast + channels-last", {"autocast": True, "channels_last": True})
        )
    if not args.skip_compile:
        variants.append(("torch.compile", {"compile_": True}))
    for name in args.models.split(","):
        reps = args.repeats if name == "torch-cnn" else args.resnet_repeats
        for label, kw in variants:
            if name != "torch-cnn" and kw.get("compile_"):
                continue  # compiling ResNet-18 costs minutes on 2 cores: torch-cnn only
            try:
                t, first = engine_variant(name, X, y, 2, reps, **kw)
                print(f"| {name} | {label} | {t:.2f} s | {first:.2f} s |", flush=True)
            except Exception as err:  # torch.compile may fail without a toolchain
                msg = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
                print(f"| {name} | {label} | failed: {type(err).__name__}: {msg} | |", flush=True)
    print()
    torch.set_num_threads(2)
    for name in args.models.split(","):
        e = eval_modes(name, X, args.repeats)
        print(
            f"{name}: scoring the {len(X)} training images, no_grad {e['no_grad']:.3f} s, "
            f"inference_mode {e['inference_mode']:.3f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
