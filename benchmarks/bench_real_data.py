"""Every model of medclf on the genuine MedMNIST files, beside MedMNIST v2's ResNet-18 (28).

Each model trains with its default settings for its default epochs, keeping the epoch with the
best validation AUC (the test split is only scored, never used to choose), with seeds 42, 43
and 44; the table gives test ACC and AUC as mean ± sd over the seeds. Every run folder is kept
under --out, so each number can be recomputed with `medclf evaluate` from its predictions.

    python benchmarks/bench_real_data.py [--data ../shared/data] [--out bench-real]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import machine

MODELS = ("numpy-perceptron", "numpy-logreg", "numpy-mlp", "torch-logreg", "torch-ffn")
DATASETS = ("pneumoniamnist", "breastmnist")
SEEDS = (42, 43, 44)
# MedMNIST v2 (Yang et al. 2023), test ACC / AUC: the anchors (../shared/data/README.md)
RESNET18_28 = {"breastmnist": (0.863, 0.901), "pneumoniamnist": (0.854, 0.944)}


def mean_sd(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main() -> int:
    from medclf.data.load import load_dataset
    from medclf.models.config import make_config
    from medclf.run.lifecycle import run_job

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).parents[1] / ".." / "shared" / "data"))
    parser.add_argument("--out", default="bench-real")
    args = parser.parse_args()
    rows = []
    for name in DATASETS:
        path = Path(args.data) / f"{name}.npz"
        if not path.exists():
            print(f"{path} is missing; give --data the folder of the genuine files")
            return 1
        dataset = load_dataset(path)
        for model in MODELS:
            results = []
            for seed in SEEDS:
                config = make_config(model, dataset=str(path), seed=seed, select="val_auc")
                start = time.perf_counter()
                metrics = run_job(
                    config, dataset, Path(args.out) / f"{name}-{model}-{seed}", quiet=True
                )
                results.append({**metrics, "wall": time.perf_counter() - start})
            rows.append({"dataset": name, "model": model, "runs": results})
            print(
                f"{name:15} {model:17} ACC {mean_sd(r['test_acc'] for r in results)}  "
                f"AUC {mean_sd(r['test_auc'] for r in results)}",
                flush=True,
            )
    print(f"\nmachine: {machine()}\n")
    print("| dataset | model | test ACC | test AUC | selected epoch | s / run |")
    print("|---|---|---|---|---|---|")
    for name in DATASETS:
        acc, auc = RESNET18_28[name]
        print(f"| {name} | MedMNIST v2 ResNet-18 (28), published | {acc:.3f} | {auc:.3f} | | |")
        for row in (r for r in rows if r["dataset"] == name):
            runs = row["runs"]
            epochs = "/".join(str(r["selected_epoch"]) for r in runs)
            wall = statistics.mean(r["wall"] for r in runs)
            print(
                f"| {name} | {row['model']} | {mean_sd(r['test_acc'] for r in runs)} | "
                f"{mean_sd(r['test_auc'] for r in runs)} | {epochs} | {wall:.1f} |"
            )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
