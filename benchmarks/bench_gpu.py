"""Issue 20 §6: medclf on a GPU, against the GPU's own floor, in one prepared script.

1. The floor, measured here: dense matmul TFLOP/s (fp32/TF32 and bf16) and the forward+backward
   throughput of one ResNet-18 (28) conv layer stack at batch 128 (images/s if the whole net
   ran at that layer's speed is not claimed: the floor is FLOP/s, compared with each epoch's
   FLOP/s counted by torch.utils.flop_counter).
2. The `fast` preset of every model the benchmark ranks (torch-cnn, torch-resnet18) on every
   genuine file under --data, one seed: wall time, epoch time, images/s, achieved TFLOP/s.
3. The `paper` protocol (MedMNIST v2's ResNet-18, 100 epochs) once on --paper-on.

    python benchmarks/bench_gpu.py --data ../shared/data --out $OUT/gpu

Writes OUT/gpu.json and prints one JSON line per measurement. On a machine without CUDA it
says so and stops (exit 3), unless --device cpu is given (a dry run of the script itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

FILES = ("breastmnist", "breastmnist_64", "pneumoniamnist")


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats=10) -> float:
    fn()  # warm-up: kernels chosen, memory allocated
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def matmul_floor(device, n: int) -> dict:
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds = timed(lambda a=a, b=b: a @ b, device)
        out[f"matmul_{name}_tflops"] = 2 * n**3 / seconds / 1e12
    return out


def step_flops(model, x, y) -> int:
    """FLOPs of one forward + backward pass, counted by torch (not estimated)."""
    from torch.nn import functional as F
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def conv_floor(device, batch: int = 128) -> dict:
    """ResNet-18 (28)'s forward + backward at batch 128 on random data: the best FLOP/s this
    network's layers reach on this device, the ceiling for an epoch of it."""
    import torch
    from torch.nn import functional as F

    from medclf.models.torch_models import ResNet18

    model = ResNet18(in_channels=1, n_outputs=2).to(device, memory_format=torch.channels_last)
    x = torch.randn(batch, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device)
    flops = step_flops(model, x, y)

    def step():
        F.cross_entropy(model(x), y).backward()

    seconds = timed(step, device)
    return {"resnet18_step_gflop": flops / 1e9, "resnet18_step_tflops": flops / seconds / 1e12}


def train(name: str, path: Path, model: str, preset: str, out: Path, device: str) -> dict:
    from medclf.data.load import load_dataset
    from medclf.models.config import make_config
    from medclf.models.registry import preset_settings
    from medclf.run.lifecycle import run_job

    dataset = load_dataset(path)
    config = make_config(model, dataset=str(path), seed=42, **preset_settings(preset, model))
    start = time.perf_counter()
    metrics = run_job(config, dataset, out / f"{name}-{model}-{preset}", quiet=True, device=device)
    wall = time.perf_counter() - start
    n_train = len(dataset.split("train"))
    return {
        "dataset": name,
        "model": model,
        "preset": preset,
        "epochs": config["epochs"],
        "wall_s": wall,
        "train_images_per_s": n_train * config["epochs"] / wall,
        "val_auc": metrics["val_auc"],
        "test_acc": metrics["test_acc"],
        "test_auc": metrics["test_auc"],
        "precision": metrics.get("precision"),  # fast's auto: bf16 on a GPU of sm_80 or later
    }


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="gpu-bench")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--files", nargs="*", default=list(FILES))
    parser.add_argument("--models", nargs="+", default=["torch-cnn", "torch-resnet18"])
    parser.add_argument("--paper-on", default="breastmnist")
    parser.add_argument("--matmul-n", type=int, default=8192)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run this script where a GPU is lent", file=sys.stderr)
        return 3
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = [{"device": name, "torch": torch.__version__}]
    rows.append(matmul_floor(device, args.matmul_n))
    rows.append(conv_floor(device))
    print(*(json.dumps(r) for r in rows), sep="\n", flush=True)
    runs = [(f, m, "fast") for f in args.files for m in args.models]
    runs += [(args.paper_on, "torch-resnet18", "paper")] if args.paper_on else []
    for file, model, preset in runs:
        path = Path(args.data) / f"{file}.npz"
        if path.exists():
            rows.append(train(file, path, model, preset, out / "runs", args.device))
            print(json.dumps(rows[-1]), flush=True)
    (out / "gpu.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
