"""MedMNIST v2's `paper` protocol for ResNet-18 (28), as medclf trains it: Adam, lr 0.001,
batch 128, 100 epochs, lr x 0.1 at 50 % and 75 %, the epoch with the best validation AUC scored
once on the test split. Seeds 42, 43, 44 on each file; wall time per run.

    python benchmarks/paper_resnet.py --data ../shared/data --device cuda --out paper-resnet

Writes OUT/summary.json (one row per run) and keeps every run folder under OUT/runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    import torch

    from medclf.data.load import load_dataset
    from medclf.models.config import make_config
    from medclf.models.registry import preset_settings
    from medclf.run.lifecycle import run_job

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--datasets", nargs="+", default=["breastmnist", "pneumoniamnist"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--device", default=None)
    parser.add_argument("--model", default="torch-resnet18")
    parser.add_argument("--out", default="paper-resnet")
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    rows = []
    for name in args.datasets:
        path = Path(args.data) / f"{name}.npz"
        dataset = load_dataset(path)
        for seed in args.seeds:
            config = make_config(
                args.model, dataset=str(path), seed=seed, **preset_settings("paper", args.model)
            )
            start = time.perf_counter()
            m = run_job(
                config,
                dataset,
                Path(args.out) / "runs" / f"{name}-{seed}",
                quiet=True,
                device=args.device,
            )
            rows.append(
                {
                    "dataset": name,
                    "seed": seed,
                    "device": device,
                    "wall_s": time.perf_counter() - start,
                    "test_acc": m["test_acc"],
                    "test_auc": m["test_auc"],
                    "val_auc": m["val_auc"],
                    "selected_epoch": m["selected_epoch"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    for name in args.datasets:
        runs = [r for r in rows if r["dataset"] == name]
        for key in ("test_acc", "test_auc", "wall_s"):
            values = [r[key] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"{name} {key}: {statistics.mean(values):.4f} ± {sd:.4f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
