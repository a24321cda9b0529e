"""The reproduction report: figures, tables and selections made by code, beside the study.

Writes OUT/report.md and a self-contained OUT/report.html (images embedded), and the figures as
PNG and PDF in OUT/figures/.
"""

from __future__ import annotations

import base64
import json
import re
import statistics
from pathlib import Path

from medclf.experiments.specs import SWEPT
from medclf.report.figures import FIGURES, convexity_figure, curve_figure, save_both
from medclf.report.published import MEDMNIST_BASELINES, STUDY_RESULTS, STUDY_SELECTIONS
from medclf.run.folder import FINISHED, HISTORY, read_json, run_dir_of, write_text

HYPER = ("lr", "batch_size", "epochs", "hidden_size", "layers", "dropout", "l2", "init_std")
# a run whose final validation accuracy ends this far below its best has diverged
DIVERGED_DROP = 0.10


# --- choosing runs -------------------------------------------------------------------------


def matches(result: dict, qid: str | None, settings: dict) -> bool:
    c = result["config"]
    return (qid is None or qid in result["questions"]) and all(
        c.get(k) == v for k, v in settings.items()
    )


def without_seed(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)


def base_runs(results: list[dict]) -> list[dict]:
    """One run per config up to the seed: the lowest seed (the study's 42 by default)."""
    groups: dict[str, dict] = {}
    for r in results:
        key = without_seed(r["config"])
        if key not in groups or r["config"]["seed"] < groups[key]["config"]["seed"]:
            groups[key] = r
    return list(groups.values())


def seed_group(results: list[dict], run: dict) -> list[dict]:
    key = without_seed(run["config"])
    return [r for r in results if without_seed(r["config"]) == key]


def pick(results, qid, settings) -> dict | None:
    found = [r for r in base_runs(results) if matches(r, qid, settings) and r["status"] in FINISHED]
    return min(found, key=lambda r: r["config"]["seed"]) if found else None


def ranked(results, qid, key: str = "val_acc") -> list[dict]:
    """Runs of a question (Q1.2a's extra runs aside), best ``key`` (final validation accuracy)
    first; a run without that number (diverged) last."""
    runs = [r for r in base_runs(results) if qid in r["questions"] and r["status"] in FINISHED]
    return sorted(runs, key=lambda r: -(r.get(key) if r.get(key) is not None else -1.0))


def divergence(run: dict) -> str | None:
    """Why a finished run counts as diverged, or None: its loss became NaN or infinite, or its
    final validation accuracy ends far below its best epoch's."""
    if run.get("status") == "diverged":
        return run.get("stopped") or "the loss became NaN or infinite"
    accs = [
        (r["val_acc"], r["epoch"]) for r in run.get("history", []) if r.get("val_acc") is not None
    ]
    if not accs:
        return None
    best, epoch = max(accs)
    final = accs[-1][0]
    if best - final > DIVERGED_DROP:
        return (
            f"final validation accuracy {final:.4f} is far below its best, {best:.4f} at "
            f"epoch {epoch}"
        )
    return None


def settings_text(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "default"


def escape_md(text: str) -> str:
    """Plain text inside Markdown (an error message in a table cell): no markup, no HTML."""
    text = re.sub(r"([\\`*_\[\]{}|#])", r"\\\1", str(text))
    return text.replace("<", "&lt;").replace("\n", " ")


def code(text: str) -> str:
    """Text that is not Markdown as a code span (a path, a run key)."""
    return f"`` {text} ``" if "`" in str(text) else f"`{text}`"


def code_spans(text: str) -> str:
    """Sums of weighted inputs, such as ``1*[-1, -1] + 1*[1, 1]``, as code spans: their ``*``
    are products, not Markdown emphasis."""
    term = r"-?\d+(?:\.\d+)?\*\[[-+\d., ]*\]"
    return re.sub(rf"{term}(?: [+-] {term})*", lambda m: code(m.group(0)), text)


def label(result: dict, qid: str | None = None) -> str:
    """A run named by what its question sweeps: 'lr=0.1', 'dropout=0.2', 'default'."""
    c = result["config"]
    qid = qid or result["questions"][0]
    parts = [
        f"{k}={c[k]}" for k in SWEPT.get(qid, ()) if not (k in ("l2", "dropout") and c[k] == 0)
    ]
    return ", ".join(parts) or "default"


def stat(results, run, key, qid) -> str:
    """'0.7788' for one seed, '0.7788 ± 0.0040 (n=3)' for several seeds of the same run;
    ``key`` names a number of the run or is a function of the run."""
    get = key if callable(key) else lambda r: r.get(key)
    group = [r for r in seed_group(results, run) if qid in r["questions"]]
    values = [get(r) for r in group if r["status"] in FINISHED and get(r) is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} (n={len(values)})"


# --- test metrics from metrics.json (computed from each run's predictions.npz) -------------

# (which test split, its name in the report); OCTMNIST runs report the study's subset as "test"
# and the official 1,000 images as "test_official", other runs only the official split as "test"
TEST_SPLITS = (("subset", "the study's subset"), ("official", "the official test split"))


def split_key(run: dict, which: str) -> str | None:
    """The metrics.json entry of a run's study subset or official test split (None: no such
    split for this run)."""
    study = run.get("test_split") == "study" or "test_official" in (run.get("metrics") or {})
    if which == "subset":
        return "test" if study else None
    return "test_official" if study else "test"


def split_metrics(run: dict, which: str) -> dict:
    """Every metric of one test split; {} for a run whose metrics.json has none (older medclf,
    or diverged: NaN scores have no metrics)."""
    key = split_key(run, which)
    found = (run.get("metrics") or {}).get(key) if key else None
    return found if isinstance(found, dict) else {}


def metric(which: str, name: str):
    """A function of a run: one number of one test split, or None."""
    return lambda run: split_metrics(run, which).get(name)


def number(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def class_names(run: dict, k: int) -> list[str]:
    names = run.get("class_names") or []
    return [str(n) for n in names] if len(names) == k else [str(i) for i in range(k)]


def confusion(run: dict, which: str) -> list[list[int]] | None:
    """The split's confusion matrix (rows: true class), or None (none saved, or multi-label)."""
    matrix = split_metrics(run, which).get("confusion_matrix")
    if not matrix or not all(isinstance(x, int) for row in matrix for x in row):
        return None
    return matrix


def constant_class(run: dict, which: str) -> str | None:
    """The one class a run predicts for every image of a split, if it predicts only one."""
    matrix = confusion(run, which)
    if matrix is None:
        return None
    predicted = [sum(col) for col in zip(*matrix, strict=True)]
    used = [j for j, count in enumerate(predicted) if count]
    return class_names(run, len(matrix))[used[0]] if len(used) == 1 else None


def matrix_table(matrix: list[list[int]], names: list[str]) -> list[str]:
    k = len(matrix)
    lines = [
        "| true ↓ / predicted → | " + " | ".join(map(str, range(k))) + " | images |",
        "|" + "---|" * (k + 2),
    ]
    for i, row in enumerate(matrix):
        lines.append(
            f"| {i}: {escape_md(names[i])} | " + " | ".join(map(str, row)) + f" | {sum(row)} |"
        )
    return lines


def prediction_note(run: dict, which: str) -> str:
    """What the confusion matrix says at once: a run predicting one class for (nearly) every
    image, whose accuracy is then that class's share of the split."""
    matrix = confusion(run, which)
    m = split_metrics(run, which)
    n = sum(map(sum, matrix))
    names = class_names(run, len(matrix))
    predicted = [sum(col) for col in zip(*matrix, strict=True)]
    top = max(range(len(matrix)), key=predicted.__getitem__)
    share = f"{sum(matrix[top])}/{n}"
    if predicted[top] == n:
        return (
            f"It predicts **{escape_md(names[top])} for every image**: its accuracy "
            f"{number(m.get('acc'))} is just the share of {escape_md(names[top])} in this "
            f"split ({share}); balanced accuracy {number(m.get('balanced_acc'))} (chance: "
            f"{1 / len(matrix):.4f}), AUC {number(m.get('auc'))}."
        )
    if predicted[top] >= 0.9 * n:
        return (
            f"It predicts {escape_md(names[top])} for {predicted[top]} of {n} images "
            f"({predicted[top] / n:.0%}; {share} are {escape_md(names[top])}); balanced "
            f"accuracy {number(m.get('balanced_acc'))}."
        )
    return (
        f"Accuracy {number(m.get('acc'))}, balanced accuracy "
        f"{number(m.get('balanced_acc'))}, AUC {number(m.get('auc'))}."
    )


def selected_runs(results) -> dict[str, list[tuple[str, dict]]]:
    """question -> [(why, run)]: the runs each question's conclusion names."""
    chosen: dict[str, dict[str, tuple[list[str], dict]]] = {}

    def add(qid, why, run):
        if run is not None:
            chosen.setdefault(qid, {}).setdefault(run["key"], ([], run))[0].append(why)

    q21, q22b, q22c = (ranked(results, q) for q in ("Q2.1", "Q2.2b", "Q2.2c"))
    if q21:
        add("Q2.1", "best learning rate (final validation accuracy)", q21[0])
    if q22b:
        add("Q2.2b", "best learning rate (validation accuracy)", q22b[0])
        add("Q2.2b", "worst learning rate (validation accuracy)", q22b[-1])
        add("Q2.2b", "the study's lr = 1 network", pick(results, "Q2.2b", {"lr": 1}))
    if q22c:
        add("Q2.2c", "best configuration (final validation accuracy)", q22c[0])
        add("Q2.2c", "worst configuration (final validation accuracy)", q22c[-1])
    return {
        qid: [("; ".join(why), run) for why, run in runs.values()] for qid, runs in chosen.items()
    }


def confusion_lines(results, qid: str) -> list[str]:
    """The confusion matrices of a question's selected runs, on both test splits."""
    lines = []
    for why, run in selected_runs(results).get(qid, []):
        for which, split_name in TEST_SPLITS:
            if split_key(run, which) is None:
                continue
            title = (
                f"Confusion matrix, {why}: {label(run, qid)} ({code(run['key'])}), on {split_name}"
            )
            matrix = confusion(run, which)
            if matrix is None:
                lines += [f"{title}: — (its metrics.json holds no confusion matrix)", ""]
                continue
            table = matrix_table(matrix, class_names(run, len(matrix)))
            lines += [
                f"{title} ({sum(map(sum, matrix))} images):",
                "",
                *table,
                "",
                prediction_note(run, which),
                "",
            ]
    return lines


def curves_lines(results, qid: str, out: Path) -> list[str]:
    """The ROC, precision-recall, reliability and confusion figures of a question's selected
    runs (test split, from their saved predictions), drawn into OUT/figures/curves/KEY."""
    from medclf.errors import MedclfError
    from medclf.report.curves import plot_run

    lines = []
    for why, run in selected_runs(results).get(qid, []):
        if run["status"] not in FINISHED:
            continue
        try:
            folder = out / "figures" / "curves" / run["key"]
            drawn = plot_run(run_dir_of(out, run["key"]), folder, names=("curves",))
        except MedclfError:  # no readable predictions: the confusion table above says enough
            continue
        caption = escape_md(
            f"Curves and calibration, {why}: {label(run, qid)} ({run['key']}), test split"
        )
        path = drawn["figures"]["curves"].relative_to(out).as_posix()
        lines += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    return lines


def imbalance_line(results) -> str:
    """Class counts of both test splits, and what always predicting the commonest class
    scores there, from any run's confusion matrices (row sums)."""
    parts = []
    for which, split_name in TEST_SPLITS:
        run = next((r for r in results if confusion(r, which) is not None), None)
        if run is None:
            continue
        counts = [sum(row) for row in confusion(run, which)]
        names = class_names(run, len(counts))
        top = max(range(len(counts)), key=counts.__getitem__)
        one = "any one class" if min(counts) == counts[top] else escape_md(names[top])
        listed = ", ".join(f"{escape_md(name)} {c}" for name, c in zip(names, counts, strict=True))
        parts.append(
            f"{split_name} has {sum(counts)} images ({listed}): always predicting "
            f"{one} scores accuracy {counts[top] / sum(counts):.4f} and balanced "
            f"accuracy {1 / len(counts):.4f}"
        )
    return (
        (
            "Class balance: " + "; ".join(parts) + ". Accuracy alone cannot tell such a "
            "constant classifier from a model; AUC and balanced accuracy can."
        )
        if parts
        else ""
    )


def metrics_table(results) -> list[str]:
    """Accuracy, AUC and balanced accuracy of every run on both test splits, from each run's
    metrics.json (computed from its predictions.npz); '—' for what a run lacks."""
    head = ["questions", "run", "model", "setting"]
    names = [("acc", "acc"), ("auc", "AUC"), ("balanced_acc", "balanced acc")]
    head += [f"{short} {title}" for short in ("subset", "official") for _, title in names]
    head.append("predicts one class only")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [
            " ".join(r["questions"]) or "—",
            code(r["key"]),
            r["config"]["model"],
            label(r) if r["questions"] else "—",
        ]
        for which, _ in TEST_SPLITS:
            cells += [number(split_metrics(r, which).get(name)) for name, _ in names]
        constant = [
            f"{escape_md(name)} ({short})"
            for (which, _), short in zip(TEST_SPLITS, ("subset", "official"), strict=True)
            if (name := constant_class(r, which))
        ]
        cells.append(", ".join(constant))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# --- decisions -----------------------------------------------------------------------------


def overfits(history: list[dict], tolerance: float = 0.05) -> bool:
    """Validation loss ends clearly above its minimum while the training loss kept falling."""
    if any(r.get("val_loss") is None or r.get("train_loss") is None for r in history):
        return False
    val = [r["val_loss"] for r in history]
    best = min(range(len(val)), key=val.__getitem__)
    return (
        val[-1] > val[best] * (1 + tolerance)
        and history[-1]["train_loss"] < history[best]["train_loss"]
    )


def convexity_verdict(logreg: list[dict], mlp: list[dict]) -> str:
    def spread(runs, key):
        values = [r["history"][-1][key] for r in runs]
        return (max(values) - min(values)) / max(abs(statistics.mean(values)), 1e-12), values

    lr_spread, lr_loss = spread(logreg, "train_loss")
    mlp_spread, mlp_loss = spread(mlp, "train_loss")
    lr_acc = max(r["history"][-1]["train_acc"] for r in logreg)
    mlp_acc = max(r["history"][-1]["train_acc"] for r in mlp)
    convex = lr_spread < mlp_spread
    expressive = mlp_acc > lr_acc
    return (
        f"Final training losses: logistic regression from {len(logreg)} random initialisations "
        f"{', '.join(f'{v:.4f}' for v in lr_loss)} (relative spread {lr_spread:.2%}); MLP from "
        f"{len(mlp)} seeds {', '.join(f'{v:.4f}' for v in mlp_loss)} (relative spread "
        f"{mlp_spread:.2%}). "
        + (
            "The logistic-regression losses agree far more closely, as convexity predicts. "
            if convex
            else "The logistic-regression losses do NOT agree more closely than the "
            "MLP's here, so this run does not show the convexity claim. "
        )
        + f"Best training accuracy: MLP {mlp_acc:.4f} vs logistic regression {lr_acc:.4f}, so "
        + (
            "the MLP fits the training data better (more expressive)."
            if expressive
            else "the MLP does NOT fit the training data better in this run."
        )
    )


# --- writing -------------------------------------------------------------------------------


def load_histories(results: list[dict], out: Path) -> None:
    for r in results:
        path = run_dir_of(out, r["key"]) / HISTORY
        try:
            r["history"] = read_json(path) if r["status"] in FINISHED else []
        except (OSError, ValueError):
            r["history"] = []


def draw_figures(results, out: Path) -> dict[str, list[tuple[str, str]]]:
    """question -> [(figure path relative to out, caption)]"""
    from medclf.theory.explain import figure18

    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    shown: dict[str, list[tuple[str, str]]] = {}
    for number, qid, title, chosen, series in FIGURES:
        if isinstance(chosen, tuple):
            runs = ranked(results, chosen[1])
            run = (runs[0] if chosen[0] == "best" else runs[-1]) if runs else None
        else:
            run = pick(results, qid, chosen)
        if run is None or not run["history"]:
            continue
        subtitle = f"{run['config']['model']}: {label(run, qid)} — {run['key']}"
        stem = f"fig{number:02d}_{qid}_{series}"
        png = save_both(
            curve_figure(run["history"], series, f"Figure {number}: {title}", subtitle),
            fig_dir,
            stem,
        )
        shown.setdefault(qid, []).append(
            (f"figures/{png.name}", f"Figure {number}: {title} ({label(run, qid)})")
        )
    png = save_both(figure18(-1, 1), fig_dir, "fig18_Q3")
    shown["Q3"] = [
        (
            f"figures/{png.name}",
            "Figure 18: f for D = 2, A = -1, B = 1, with the hidden units of the sign construction",
        )
    ]
    logreg, mlp = convexity_runs(results)
    if logreg and mlp:
        png = save_both(convexity_figure(logreg, mlp), fig_dir, "fig_Q1.2a_convexity")
        shown["Q1.2a"] = [(f"figures/{png.name}", "Q1.2a: training loss from several starts")]
    return shown


def convexity_runs(results):
    runs = [
        r for r in results if "Q1.2a" in r["questions"] and r["status"] == "done" and r["history"]
    ]
    return (
        [r for r in runs if r["config"]["model"] == "numpy-logreg"],
        [r for r in runs if r["config"]["model"] == "numpy-mlp"],
    )


def comparison_table(results) -> list[str]:
    """The study's test accuracy beside ours, and our AUC and balanced accuracy on the study's
    subset and on the official test split (from metrics.json)."""
    extra = [
        ("subset", "auc"),
        ("subset", "balanced_acc"),
        ("official", "acc"),
        ("official", "auc"),
        ("official", "balanced_acc"),
    ]
    split = next(
        (TEST_SPLITS[r["test_split"] != "study"][1] for r in results if "test_split" in r),
        "the test split",
    )
    lines = [
        f"Metric: test accuracy (acc) of each run's kept epoch on {split}, beside the study's "
        "published test accuracy (on its 529-image subset); the other columns name theirs.",
        "",
        f"| question | run | published test acc (study's subset) | ours: test acc ({split}) | "
        "difference | AUC (subset) | balanced acc (subset) | acc (official) | AUC (official) | "
        "balanced acc (official) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for qid, model, settings, published in STUDY_RESULTS:
        run = pick(results, qid, {"model": model, **settings})
        if run is None:
            lines.append(
                f"| {qid} | {model} {settings_text(settings)} | {published:.4f} | "
                "not run |" + " — |" * 6
            )
            continue
        ours = stat(results, run, "test_acc", qid)
        diff = "—" if run.get("test_acc") is None else f"{run['test_acc'] - published:+.4f}"
        more = [stat(results, run, metric(which, name), qid) for which, name in extra]
        lines.append(
            f"| {qid} | {model} {label(run, qid)} | {published:.4f} | {ours} | "
            f"{diff} | " + " | ".join(more) + " |"
        )
    return lines


def selections(results) -> list[str]:
    lines = ["| selection | study | ours (by code) |", "|---|---|---|"]
    ours = {}
    q21 = ranked(results, "Q2.1")
    if q21:
        ours["Q2.1 best learning rate (final validation accuracy)"] = f"lr={q21[0]['config']['lr']}"
    q22b = ranked(results, "Q2.2b")
    if q22b:
        ours["Q2.2b best / worst (validation accuracy)"] = (
            f"lr={q22b[0]['config']['lr']} / lr={q22b[-1]['config']['lr']}"
        )
    q22c = ranked(results, "Q2.2c")
    if q22c:
        ours["Q2.2c best / worst (final validation accuracy)"] = (
            f"{label(q22c[0], 'Q2.2c')} / {label(q22c[-1], 'Q2.2c')}"
        )
        by_test = ranked(results, "Q2.2c", "test_acc")
        ours["Q2.2c best / worst (test accuracy)"] = (
            f"{label(by_test[0], 'Q2.2c')} / {label(by_test[-1], 'Q2.2c')}"
        )
        default = next((r for r in q22c if label(r, "Q2.2c") == "default"), None)
        if default and default["history"]:
            ours["Q2.2c overfitting without regularisation"] = (
                "yes" if overfits(default["history"]) else "no"
            )
    for name, study in STUDY_SELECTIONS.items():
        lines.append(f"| {name} | {study} | {ours.get(name, 'not run')} |")
    return lines


def overfitting_lines(results) -> list[str]:
    lines = []
    for r in ranked(results, "Q2.2c"):
        h = r["history"]
        val = [x["val_loss"] for x in h]
        if not h or None in val:
            continue
        best = min(range(len(val)), key=val.__getitem__)
        verdict = "overfits" if overfits(h) else "no clear overfitting"
        lines.append(
            f"- {label(r, 'Q2.2c')}: validation loss lowest at epoch {h[best]['epoch']} "
            f"({val[best]:.4f}), final {val[-1]:.4f}; training loss "
            f"{h[best]['train_loss']:.4f} → {h[-1]['train_loss']:.4f}: **{verdict}**"
        )
    return lines


def status_text(r: dict) -> str:
    if r["status"] == "failed":
        return f"**failed**: {escape_md(r.get('error', ''))}"
    if r["status"] == "running":
        return escape_md(r.get("error") or "running in another process")
    flag = divergence(r)
    return f"{r['status']}; **diverged**: {escape_md(flag)}" if flag else r["status"]


def runs_table(results) -> list[str]:
    """One row per run; ``run`` is its folder's name in runs/."""
    head = [
        "run",
        "questions",
        "model",
        *HYPER,
        "seed",
        "train acc",
        "val acc",
        "test acc",
        "time (s)",
        "status",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        c = r["config"]
        cells = [
            code(r["key"]),
            " ".join(r["questions"]) or "— (other settings)",
            c["model"],
            *[str(c.get(k, "")) for k in HYPER],
            str(c["seed"]),
        ]
        for key in ("train_acc", "val_acc", "test_acc"):
            cells.append("—" if r.get(key) is None else f"{r[key]:.4f}")
        cells.append("—" if r.get("seconds") is None else f"{r['seconds']:.1f}")
        cells.append(status_text(r))
        assert len(cells) == len(head)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def batch_size_verdict(results) -> str:
    """Q2.2a: accuracy and wall time of batch 16 against batch 1024."""
    small = pick(results, "Q2.2a", {"batch_size": 16})
    large = pick(results, "Q2.2a", {"batch_size": 1024})
    if not (small and large) or None in (small.get("test_acc"), large.get("test_acc")):
        return "Not run (both batch sizes are needed)."
    acc = small["test_acc"] - large["test_acc"]
    speed = small["seconds"] / max(large["seconds"], 1e-9)
    return (
        f"Batch 16: test accuracy {small['test_acc']:.4f} (validation {small['val_acc']:.4f}) "
        f"in {small['seconds']:.1f} s; batch 1024: {large['test_acc']:.4f} (validation "
        f"{large['val_acc']:.4f}) in {large['seconds']:.1f} s. "
        + (
            f"Batch 16 is more accurate by {acc:.4f}"
            if acc > 0
            else f"Batch 16 is NOT more accurate ({acc:+.4f})"
        )
        + f" and takes {speed:.1f}× the wall time of batch 1024 for the same "
        f"{small['config']['epochs']} epochs ({len(small['history']) or '?'} vs "
        f"{len(large['history']) or '?'} epochs run): "
        + (
            "many small noisy updates buy accuracy at a cost in time."
            if acc > 0 and speed > 1
            else "this run does not show the study's trade-off."
        )
    )


def divergence_lines(results, qid) -> list[str]:
    flagged = [
        (r, divergence(r))
        for r in base_runs(results)
        if qid in r["questions"] and r["status"] in FINISHED
    ]
    return [
        f"- **Diverged**: {label(r, qid)} ({code(r['key'])}): {escape_md(why)}"
        for r, why in flagged
        if why
    ]


SECTIONS = [
    ("Q1.1a", "Question 1.1 a) — perceptron"),
    ("Q1.1b", "Question 1.1 b) — logistic regression"),
    ("Q1.2a", "Question 1.2 a) — expressiveness and convexity, shown"),
    ("Q1.2b", "Question 1.2 b) — MLP"),
    ("Q2.1", "Question 2.1 — logistic regression in PyTorch"),
    ("Q2.2a", "Question 2.2 a) — batch size"),
    ("Q2.2b", "Question 2.2 b) — learning rate"),
    ("Q2.2c", "Question 2.2 c) — regularisation"),
    ("Q3", "Question 3 — what perceptrons compute"),
]


def write_report(results: list[dict], out: Path, meta: dict) -> tuple[Path, Path]:
    from medclf.theory.explain import markdown_proof

    out = Path(out)
    load_histories(results, out)
    figures = draw_figures(results, out)
    failed = [r for r in results if r["status"] == "failed"]
    md = ["# medclf reproduction of the OCTMNIST study", ""]
    if meta["synthetic"]:
        md += [
            "> **Synthetic data.** These runs used a synthetic OCTMNIST look-alike, not the "
            "real dataset: the numbers below show that the pipeline works and are **not "
            "comparable** to the study's.",
            "",
        ]
    if meta["quick"]:
        md += [
            "> **Quick mode.** A slice of the data and a few epochs: the numbers are **not "
            "comparable** to the study's.",
            "",
        ]
    md += [
        f"- data: {code(meta['dataset'])} ({code(meta['source'])})"
        f"{' — synthetic' * meta['synthetic']}",
        f"- test split: {meta['test_split']}; seeds per run: {meta['seeds']}",
        f"- runs: {len(results)} ({len(failed)} failed); wall time {meta['seconds']:.0f} s "
        f"with {meta['workers']} worker(s)",
        f"- machine: {meta['machine']}; {meta['versions']}",
        "",
    ]
    md += [
        "## Our numbers beside the published ones",
        "",
        *comparison_table(results),
        "",
        "## The study's selections, made by code",
        "",
        *selections(results),
        "",
    ]
    for qid, heading in SECTIONS:
        md += [f"## {heading}", ""]
        if qid == "Q1.2a":
            logreg, mlp = convexity_runs(results)
            md += [convexity_verdict(logreg, mlp) if logreg and mlp else "Not run.", ""]
        if qid == "Q2.2a":
            md += [batch_size_verdict(results), ""]
        if qid == "Q2.2c":
            md += overfitting_lines(results) + [""]
        md += [*divergence_lines(results, qid), ""] if divergence_lines(results, qid) else []
        md += confusion_lines(results, qid)
        md += curves_lines(results, qid, out)
        for path, caption in figures.get(qid, []):
            md += [f"![{caption}]({path})", "", f"*{caption}*", ""]
        if qid == "Q3":
            md += [code_spans(markdown_proof(2, -1, 1)).replace("### ", "### Proof: "), ""]
    md += [
        "## Every run",
        "",
        *runs_table(results),
        "",
        "## Test metrics of every run",
        "",
        "From each run's metrics.json, computed from its saved predictions: the study's "
        "subset and the official test split. " + imbalance_line(results),
        "",
        *metrics_table(results),
        "",
        "## MedMNIST v2 baselines on OCTMNIST (official 1,000-image test split)",
        "",
        "| method | AUC | ACC |",
        "|---|---|---|",
        *[f"| {m} | {auc:.3f} | {acc:.3f} |" for m, auc, acc in MEDMNIST_BASELINES],
        "",
        "The study's test accuracies use its 529-image subset, so they are not directly "
        "comparable with these baselines.",
        "",
    ]
    text = "\n".join(md)
    md_path = write_text(out / "report.md", text)
    html_path = write_text(out / "report.html", to_html(text, out))
    return md_path, html_path


def scrolling_tables(body: str) -> str:
    """Every table in a box that scrolls sideways, so a wide one never runs off the page."""
    return body.replace("<table>", '<div class="scroll"><table>').replace(
        "</table>", "</table></div>"
    )


CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}table{border-collapse:collapse;font-size:.85em;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .5em}th{background:#f3f3f3}img{max-width:100%}
blockquote{background:#fff4e5;border-left:4px solid #f0a000;margin:1em 0;padding:.5em 1em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}code{font-size:.9em}
.math{font-family:"STIX Two Math","Cambria Math","Latin Modern Math",serif;white-space:nowrap}
.math sub,.math sup{font-size:.75em}.scroll{overflow-x:auto;max-width:100%}"""


# LaTeX commands the report's maths uses, as Unicode; anything else stays visible as written
SYMBOLS = {
    "sum": "∑",
    "le": "≤",
    "ge": "≥",
    "lt": "<",
    "gt": ">",
    "ne": "≠",
    "dots": "…",
    "ldots": "…",
    "cdot": "·",
    "pm": "±",
    "in": "∈",
    "times": "×",
    "infty": "∞",
    "{": "{",
    "}": "}",
    ",": "\u2009",
    ";": "\u2005",
    " ": " ",
    "quad": "\u2003",
}
COMMAND = re.compile(r"\\([A-Za-z]+|.)")


def _math(tex: str, i: int = 0, upright: bool = False, stop: str | None = None):
    """HTML of ``tex`` from ``i`` up to ``stop``: italic letters, sub/superscripts, symbols."""
    from html import escape

    out = []
    while i < len(tex) and tex[i] != stop:
        c = tex[i]
        if c == "\\":
            name = COMMAND.match(tex, i).group(1)
            i += 1 + len(name)
            if name in ("mathrm", "mathbf", "text", "operatorname"):
                inner, i = _math_arg(tex, i, True)
                out.append(f"<b>{inner}</b>" if name == "mathbf" else inner)
            else:
                out.append(SYMBOLS.get(name, escape("\\" + name)))
        elif c in "_^":
            inner, i = _math_arg(tex, i + 1, upright)
            tag = "sub" if c == "_" else "sup"
            out.append(f"<{tag}>{inner}</{tag}>")
        elif c == "{":
            inner, i = _math(tex, i + 1, upright, "}")
            out.append(inner)
            i += 1
        else:
            italic = c.isascii() and c.isalpha() and not upright
            out.append(f"<i>{c}</i>" if italic else "−" if c == "-" else escape(c))
            i += 1
    return "".join(out), i


def _math_arg(tex: str, i: int, upright: bool):
    """One argument: a {group}, a command or a character."""
    if i >= len(tex):
        return "", i
    if tex[i] == "{":
        inner, i = _math(tex, i + 1, upright, "}")
        return inner, i + 1
    end = COMMAND.match(tex, i).end() if tex[i] == "\\" else i + 1
    return _math(tex[i:end], 0, upright)[0], end


def math_html(tex: str) -> str:
    """Inline LaTeX maths as HTML that reads as maths offline (no MathJax, no CDN)."""
    return f'<span class="math">{_math(tex)[0]}</span>'


MATH = re.compile(r"```.*?```|`[^`\n]*`|(?<![\\$])\$(?=\S)([^$\n]+?)(?<=\S)\$", re.S)


def to_html(markdown_text: str, out: Path) -> str:
    """Markdown -> one HTML file with every image inlined as a data URI and inline maths
    ($...$ outside code) rendered as HTML."""
    import markdown

    maths: list[str] = []

    def hold(match):  # a placeholder Markdown leaves alone, swapped back afterwards
        if match.group(1) is None:
            return match.group(0)
        maths.append(math_html(match.group(1)))
        return f"MEDCLFMATH{len(maths) - 1}X"

    body = markdown.markdown(MATH.sub(hold, markdown_text), extensions=["tables", "fenced_code"])
    body = re.sub(r"MEDCLFMATH(\d+)X", lambda m: maths[int(m.group(1))], body)

    def inline(match):
        data = base64.b64encode((out / match.group(1)).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="(figures/[^"]+\.png)"', inline, body)
    body = scrolling_tables(body)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>medclf reproduction</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
