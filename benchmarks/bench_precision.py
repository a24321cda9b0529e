"""bf16 autocast and torch.compile against float32 eager, on validation only (issue 20 §2).

usage: python benchmarks/bench_precision.py OUT [--models torch-cnn,torch-resnet18]
       [--data DIR] [--files a.npz,b.npz] [--seeds 3] [--first-seed 42] [--compile-epochs 6]
       [--only precision|compile]

For each genuine file (BreastMNIST 28 and 64, PneumoniaMNIST, AdrenalMNIST3D 28 and 64), model
(default: the conv net of the file's benchmark zoo, torch-cnn or torch-cnn3d) and seed (42, 43, ...)
it trains the model's `fast` preset twice in this process, fp32 and bf16, alternating which goes
first from seed to seed, on one thread, and compares the kept epoch's validation ACC and AUC
(paired by seed: the same data order and initial weights) and the mean training-pass seconds per
epoch. Test metrics are never read. Then one fp32 run per file with and without torch.compile
(--compile-epochs epochs, back to back): the first compiled epoch's extra time is the compile
cost, set against the per-epoch saving of the later epochs.

The machine is shared: wall times are ratios of runs made in the same process, back to back.
Writes OUT/results.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

FILES = (
    "breastmnist.npz",
    "breastmnist_64.npz",
    "pneumoniamnist.npz",
    "adrenalmnist3d.npz",
    "adrenalmnist3d_64.npz",
)


def train(model, path, out, seed, **settings):
    from medclf import api
    from medclf.models.registry import preset_settings

    run = api.train(
        model,
        dataset=str(path),
        out=str(out),
        quiet=True,
        threads=1,
        seed=seed,
        **{**preset_settings("fast", model), **settings},
    )
    history = json.loads((Path(out) / "history.json").read_text())
    epochs = history["epochs"] if isinstance(history, dict) else history
    return {
        "val_acc": run.metrics["val_acc"],
        "val_auc": run.metrics["val_auc"],
        "epoch_seconds": [r["seconds"] for r in epochs],
    }


def mean_sd(values):
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return statistics.mean(values), sd


def paired(a, b):
    """Mean ± sd of b - a and the paired t-test's p (scipy)."""
    from scipy.stats import ttest_rel

    diffs = [y - x for x, y in zip(a, b, strict=True)]
    if len(a) < 2:
        return (diffs[0], float("nan"), float("nan"))  # one pair: no spread, no test
    p = ttest_rel(b, a).pvalue if any(diffs) else 1.0
    return (*mean_sd(diffs), float(p))


def zoo_conv(path) -> list[str]:
    """The conv net of the file's default benchmark zoo (its first model)."""
    from medclf.data.load import load_dataset
    from medclf.models.registry import BENCHMARK_ZOOS

    return [BENCHMARK_ZOOS[load_dataset(str(path)).info.dims][0]]


def precision_study(models, files, data, seeds, out, results, epochs=None, first=42):
    for name in files:
        for model in models or zoo_conv(data / name):
            for seed in range(first, first + seeds):
                i = seed - 42
                key = f"{model}|{name}|{seed}"
                if key in results["precision"]:
                    continue
                order = ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")
                pair = {}
                for p in order:
                    run_dir = out / "runs" / p / key
                    pair[p] = train(model, data / name, run_dir, seed, precision=p, epochs=epochs)
                    print(key, p, {k: pair[p][k] for k in ("val_acc", "val_auc")}, flush=True)
                results["precision"][key] = pair
                save(out, results)


def compile_study(files, data, epochs, out, results):
    for name in files:
        if name in results["compile"]:
            continue
        runs = {}
        for compiled in (False, True):
            start = time.perf_counter()
            r = train(
                zoo_conv(data / name)[0],
                data / name,
                out / "runs" / "compile" / f"{name}-{compiled}",
                42,
                epochs=epochs,
                compile=compiled,
            )
            r["wall"] = time.perf_counter() - start
            runs["compile" if compiled else "eager"] = r
        results["compile"][name] = runs
        print(name, {k: v["epoch_seconds"] for k, v in runs.items()}, flush=True)
        save(out, results)


def save(out, results):
    (out / "results.json").write_text(json.dumps(results, indent=1))


def noise_exceeded(delta, p, seed_sd) -> bool:
    """bf16 moved a metric beyond seed noise: the paired t-test says so (p < 0.05) or the
    mean paired change is larger than fp32's own spread from seed to seed."""
    return (p == p and p < 0.05) or abs(delta) > seed_sd


def merged(outs) -> dict:
    """The results.json of several OUTs as one."""
    results = {"precision": {}, "compile": {}}
    for out in outs:
        if not (out / "results.json").is_file():
            sys.exit(f"{out} holds no results.json; give the OUT folders of this script")
        part = json.loads((out / "results.json").read_text())
        for k in ("precision", "compile"):
            if twice := set(results[k]) & set(part[k]):
                sys.exit(f"{out} repeats {sorted(twice)[0]}: merge each study once")
            results[k].update(part[k])
    return results


def report(results):
    lines = [
        "| model | file | fp32 val ACC | bf16 val ACC | Δ ACC (paired) | fp32 val AUC "
        "| bf16 val AUC | Δ AUC (paired) | epoch s bf16/fp32 | bf16 beyond seed noise? |",
        "|---" * 10 + "|",
    ]
    groups = {}
    for key, pair in results["precision"].items():
        model, name, _ = key.split("|")
        groups.setdefault((model, name), []).append(pair)
    for (model, name), pairs in groups.items():
        cells, beyond = [], []
        for m in ("val_acc", "val_auc"):
            a = [p["fp32"][m] for p in pairs]
            b = [p["bf16"][m] for p in pairs]
            d, dsd, pv = paired(a, b)
            if noise_exceeded(d, pv, mean_sd(a)[1]):
                beyond.append(f"{m.removeprefix('val_').upper()} {'higher' if d > 0 else 'lower'}")
            cells += [
                "{:.4f} ± {:.4f}".format(*mean_sd(a)),
                "{:.4f} ± {:.4f}".format(*mean_sd(b)),
                f"{d:+.4f} ± {dsd:.4f} (p={pv:.2f})",
            ]
        ratios = [
            statistics.median(p["bf16"]["epoch_seconds"])
            / statistics.median(p["fp32"]["epoch_seconds"])
            for p in pairs
        ]
        ratio = "{:.2f} ± {:.2f}".format(*mean_sd(ratios))
        lines.append(
            f"| {model} | {name} | " + " | ".join(cells) + f" | {ratio} (n={len(pairs)}) "
            f"| {'one seed: not judged' if len(pairs) < 2 else ', '.join(beyond) or 'no'} |"
        )
    if results["compile"]:
        lines += [
            "",
            "| file | eager s/epoch | compiled s/epoch (epochs 2+) | first compiled epoch s "
            "| compile cost s | saving s/epoch | epochs to pay back |",
            "|---" * 7 + "|",
        ]
    for name, runs in results["compile"].items():
        eager = statistics.median(runs["eager"]["epoch_seconds"])
        first, *rest = runs["compile"]["epoch_seconds"]
        compiled = statistics.median(rest)
        cost, saving = first - compiled, eager - compiled
        pay = f"{cost / saving:.0f}" if saving > 0 else "never"
        lines.append(
            f"| {name} | {eager:.3f} | {compiled:.3f} | {first:.1f} | {cost:.1f} "
            f"| {saving:+.3f} | {pay} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", help="comma-separated (default: each file's zoo conv net)")
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed", type=int, default=42, help="seeds first..first+seeds-1 (split a study)"
    )
    parser.add_argument("--compile-epochs", type=int, default=6)
    parser.add_argument("--files", default=",".join(FILES))
    parser.add_argument(
        "--epochs", type=int, help="fewer epochs than the preset: a timing run, not a quality one"
    )
    parser.add_argument("--only", choices=("precision", "compile"))
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="more OUTs (of split studies) to report with OUT"
    )
    args = parser.parse_args(argv)
    if args.merge:
        print(report(merged([args.out, *args.merge])))
        return

    from medclf.models.training.precision import cpu_bf16

    if cpu_bf16() is None:
        sys.exit("this CPU has no native bf16 (AVX512-BF16 or AMX): nothing to measure")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"precision": {}, "compile": {}}
    results["cpu_bf16"] = cpu_bf16()
    files = args.files.split(",")
    if args.only != "compile":
        models = args.models.split(",") if args.models else None
        precision_study(
            models, files, args.data, args.seeds, args.out, results, args.epochs, args.first_seed
        )
    if args.only != "precision":
        compile_study(files, args.data, args.compile_epochs, args.out, results)
    print(report(results))


if __name__ == "__main__":
    main()
