"""The Adrenal targets of issue 21: the `fast` preset's 3D zoo (or any models) trained on the
genuine AdrenalMNIST3D (28 or 64), seeds 42, 43, ..., one run folder each; prints and writes
one JSON line per run (validation and test ACC/AUC, seconds, the epoch kept).

    python benchmarks/adrenal3d.py --models torch-cnn3d --seeds 3 --out /tmp/adrenal
    python benchmarks/adrenal3d.py --models torch-cnn3d --set augment=none --seeds 1

The file is read with the data registry's AdrenalMNIST3D entry (MedMNIST v3.0.2's facts)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from medclf.data.load import read_npz
from medclf.data.registry import DatasetInfo, get_info
from medclf.models.config import make_config
from medclf.models.registry import BENCHMARK_ZOOS, preset_settings
from medclf.run.families import family_of
from medclf.run.lifecycle import run_job

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def adrenal_info(size: int = 28) -> DatasetInfo:
    return get_info("adrenalmnist3d", size)


def adrenal(size: int = 28, data: Path = DATA):
    name = "adrenalmnist3d.npz" if size == 28 else f"adrenalmnist3d_{size}.npz"
    return read_npz(data / name, adrenal_info(size))


def value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(BENCHMARK_ZOOS[3]))
    p.add_argument("--preset", default="fast")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=42)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--set", nargs="*", default=[], help="setting=value overrides")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="/tmp/adrenal3d")
    p.add_argument("--val-only", action="store_true", help="choosing: print no test numbers")
    a = p.parse_args()
    data = adrenal(a.size)
    extra = {k: value(v) for k, v in (s.split("=", 1) for s in a.set)}
    for model in a.models:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            settings = {**preset_settings(a.preset, model), **extra}
            config = make_config(
                model, dataset=str(data.source), size=a.size, seed=seed, **settings
            )
            tag = "-".join([model, str(a.size), str(seed), *a.set]).replace("=", "_")
            threads = "threads" in family_of(model).options
            options = {"threads": a.threads} if threads else {}
            start = time.perf_counter()
            m = run_job(config, data, Path(a.out) / tag, quiet=True, train_acc=False, **options)
            row = {
                "model": model,
                "size": a.size,
                "seed": seed,
                "set": a.set,
                **{k: m.get(k) for k in ("val_acc", "val_auc", "test_acc", "test_auc")},
                "selected_epoch": m.get("selected_epoch"),
                "wall_s": round(time.perf_counter() - start, 1),
            }
            if a.val_only:
                row = {k: v for k, v in row.items() if not k.startswith("test")}
            print(json.dumps(row), flush=True)
            with open(Path(a.out) / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
