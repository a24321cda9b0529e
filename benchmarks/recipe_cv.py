"""Recipe choice for torch-cnn's ``fast`` preset by 3-fold cross-validation inside a genuine
dataset's training split (issue 18 §2; default BreastMNIST), on validation only: the test split
is never read.

Each setting is trained on K-1 folds of the training split (the folds of ``medclf tune --cv``:
medclf.experiments.tune.cv_folds, fold_dataset), its epoch chosen on the held-out fold. Two
numbers per run: the held-out fold's metric of the kept epoch (what ``tune --cv`` optimises) and
the kept model's AUC/ACC on the official validation split, which took no part in training or
epoch choice (the fold dataset's "test" split is the official validation split, so the real test
split is not even loaded into a run). Run single-threaded:

    OMP_NUM_THREADS=1 python benchmarks/recipe_cv.py [--data FILE] [--seeds 42 43] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from medclf.data.load import load_dataset
from medclf.experiments.tune import cv_folds, fold_dataset
from medclf.models.config import make_config
from medclf.models.registry import preset_settings
from medclf.run.lifecycle import run_job

DATA = str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "breastmnist.npz")
SETTINGS = {  # name -> settings over the fast preset (only what the config already has)
    "fast (select val_auc)": {},
    "select val_loss": {"select": "val_loss"},
    "augment auto": {"augment": "auto"},
    "epochs 60": {"epochs": 60},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--out", default="runs/recipe_cv")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    data = load_dataset(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.jsonl"
    base = {"dataset": args.data, "size": data.info.size, **preset_settings("fast", "torch-cnn")}
    base["precision"] = "fp32"  # as the recipe was chosen (docs/benchmarks.md), before bf16
    for seed in args.seeds:
        folds = cv_folds(data, args.cv, seed)
        for name in args.settings:
            config = make_config("torch-cnn", **{**base, "seed": seed, **SETTINGS[name]})
            for j, (tr, va) in enumerate(folds, 1):
                fold = replace(fold_dataset(data, tr, va), test=data.val)  # "test" = official val
                run_dir = out / name.replace(" ", "_").replace("(", "").replace(")", "")
                m = run_job(config, fold, run_dir / f"seed{seed}-fold{j}", quiet=True)
                row = {
                    "setting": name,
                    "seed": seed,
                    "fold": j,
                    "fold_val_auc": m.get("val_auc"),
                    "official_val_auc": m.get("test_auc"),
                    "official_val_acc": m.get("test_acc"),
                    "epoch": m.get("selected_epoch"),
                }
                print(json.dumps(row), flush=True)
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    table(log)


def table(log: Path) -> None:
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    # one row a run: a rerun after a kill logs its reused runs again
    rows = list({(r["setting"], r["seed"], r["fold"]): r for r in rows}.values())
    head = ["setting", "runs", "CV fold val AUC", "official val AUC", "official val ACC", "epoch"]
    print("| " + " | ".join(head) + " |")
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == name]

        def ms(key, rs=mine):
            v = [r[key] for r in rs if r[key] is not None]
            sd = statistics.stdev(v) if len(v) > 1 else float("nan")
            return f"{statistics.mean(v):.3f} ± {sd:.3f}"

        print(
            f"| {name} | {len(mine)} | {ms('fold_val_auc')} | {ms('official_val_auc')} | "
            f"{ms('official_val_acc')} | {ms('epoch')} |"
        )


if __name__ == "__main__":
    main()
