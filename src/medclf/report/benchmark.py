"""The `medclf benchmark` report: our runs, mean ± sd over seeds, beside MedMNIST v2's table.

Ours and the published numbers share a table only for real data of a dataset the paper has;
synthetic runs are labelled and never compared, and datasets not run show the paper's numbers
alone, in their own table.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import re
import statistics
from html import escape
from pathlib import Path

import numpy as np

from medclf.errors import MedclfError
from medclf.experiments.benchmark import preset_label
from medclf.files import atomic_path
from medclf.plots import save_figure
from medclf.report.evaluate import saved_split
from medclf.report.medmnist_v2 import BASELINE, METHODS, NAMES, SOURCE, published, reference
from medclf.report.report import scrolling_tables
from medclf.report.robustness import robustness_section
from medclf.run.folder import FINISHED, RUNS
from medclf.stats import mean_interval

COLUMNS = (
    "dataset",
    "model",
    "preset",
    "seed",
    "status",
    "val_acc",
    "val_auc",
    "test_acc",
    "test_auc",
    "seconds",
)
COUNTED = FINISHED  # finished runs: their selected epoch's metrics are averaged
SYNTHETIC = "synthetic — not comparable"
CSS = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:.25em .6em;"
    "text-align:left}th{background:#eee}img{max-width:100%}.scroll{overflow-x:auto;max-width:100%}"
)


def results_csv(results: list[dict]) -> str:
    """One row per run: the required columns first, then any other key in first-seen order."""
    extra = [k for r in results for k in r if k not in COLUMNS]
    fields = [*COLUMNS, *dict.fromkeys(extra)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fields, restval="", lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return out.getvalue()


def number(value) -> float | None:
    """A finite float, or None for a missing, empty or non-finite value (CSV gives strings)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def flag(row: dict, key: str) -> bool:
    """A yes/no column, from a result dict or a CSV string."""
    value = row.get(key)
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def is_synthetic(row: dict) -> bool:
    return flag(row, "synthetic")


DETERMINISTIC = "deterministic: trained once, same for every seed"


def dataset_key(dataset) -> str:
    """'pneumoniamnist', '../data/pneumoniamnist_64.npz' -> 'pneumoniamnist' (the table's key)."""
    name = Path(str(dataset)).name.lower().removesuffix(".npz")
    return re.sub(r"_(28|64|128|224)$", "", name)


def counted(row: dict) -> bool:
    return (
        row.get("status") in COUNTED
        and number(row.get("test_acc")) is not None
        and number(row.get("test_auc")) is not None
    )


def summarise(rows: list[dict]) -> dict:
    """Mean and sd (None below two runs) of each metric over the finished runs of one group."""
    ok = [r for r in rows if counted(r)]
    out = {
        "n": len(ok),
        "runs": len(rows),
        # one run stands for every seed: no seed spread to show (its sd is no measurement)
        "deterministic": bool(rows) and all(flag(r, "deterministic") for r in rows),
        "statuses": [r.get("status") for r in rows if r.get("status") != "done"],
    }
    for key in ("test_acc", "test_auc", "val_acc", "val_auc", "seconds"):
        values = [v for r in ok if (v := number(r.get(key))) is not None]
        out[key] = statistics.mean(values) if values else None
        out[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else None
    return out


def file_of(row: dict) -> str:
    """The label of the row's data file ('' for rows that name none)."""
    return "" if row.get("file") in (None, "") else str(row["file"])


def groups(results: list[dict]) -> dict[tuple[str, str, bool], dict[tuple[str, str], list]]:
    """(dataset, file, synthetic) -> (model, preset) -> runs, in first-seen order: a group is
    one data file, never two files of one dataset."""
    out: dict = {}
    for r in results:
        by_model = out.setdefault((str(r.get("dataset")), file_of(r), is_synthetic(r)), {})
        by_model.setdefault((str(r.get("model")), preset_label(r)), []).append(r)
    return out


def md(text) -> str:
    return str(text).replace("|", "\\|")


def fmt(value: float | None, sd: float | None = None, n: int | str = 0) -> str:
    """'0.812 ± 0.010'; one run: '0.812 (n=1)', or n's own words (a deterministic model)."""
    if value is None:
        return "—"
    if sd is not None:
        return f"{value:.3f} ± {sd:.3f}"
    note = {1: " (n=1)"}.get(n, f" ({n})" if isinstance(n, str) else "")
    return f"{value:.3f}{note}"


def seeds_n(s: dict) -> int | str:
    """What a summary's one value stands for: n runs, or every seed of a deterministic model."""
    return "every seed" if s.get("deterministic") and s["n"] == 1 else s["n"]


def signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def whole(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def runs_text(s: dict) -> str:
    text = f"{s['n']}" if s["n"] == s["runs"] else f"{s['n']} of {s['runs']}"
    if s.get("deterministic"):
        text += f" ({DETERMINISTIC})"
    if s["statuses"]:
        counts = {st: s["statuses"].count(st) for st in s["statuses"]}
        text += " (" + ", ".join(f"{c} {st}" for st, c in counts.items()) + ")"
    return text


def image_intervals(rows: list[dict], runs_dir: Path | None) -> dict | None:
    """95 % bootstrap intervals over test images of the seeds' mean test ACC and AUC, from the
    finished runs' saved predictions (None where a run's predictions cannot be read)."""
    ok = [r for r in rows if counted(r)]
    if runs_dir is None or not ok:
        return None
    try:
        saved = [saved_split(runs_dir / str(r["key"]), "test") for r in ok]
    except (MedclfError, KeyError):
        return None
    (meta, labels, _), *rest = saved
    if any(m["task"] != meta["task"] or not np.array_equal(y, labels) for m, y, _ in rest):
        return None
    scores = [s for *_, s in saved]
    return {f"test_{m}": mean_interval(meta["task"], labels, scores, m) for m in ("acc", "auc")}


def verdict(s: dict, base) -> str:
    """Ours against the baseline's published numbers, read with the test images' uncertainty."""
    ci = s.get("intervals")
    if not base or not ci or any(ci[k]["low"] is None for k in ci):
        return "—"
    words = []
    for metric, published_value in (("ACC", base.acc), ("AUC", base.auc)):
        low, high = ci[f"test_{metric.lower()}"]["low"], ci[f"test_{metric.lower()}"]["high"]
        if low > published_value:
            words.append(f"{metric} above")
        elif high < published_value:
            words.append(f"{metric} below")
        else:
            words.append(f"{metric} within noise")
    return ", ".join(words)


def interval(s: dict, key: str) -> str:
    ci = (s.get("intervals") or {}).get(key)
    return "—" if not ci or ci["low"] is None else f"[{ci['low']:.3f}, {ci['high']:.3f}]"


def dataset_section(
    key: tuple[str, str, bool], by_model: dict, runs_dir: Path | None = None
) -> list[str]:
    dataset, file, synthetic = key
    ref = None if synthetic else reference(dataset_key(dataset))
    table, baseline = (ref.table, ref.baseline) if ref else (None, BASELINE)
    name = ref.name if ref else dataset
    name += f" — {file}" if file else ""
    base = table[baseline] if table else None
    stats = {
        m: summarise(rows) | {"intervals": image_intervals(rows, runs_dir)}
        for m, rows in by_model.items()
    }
    # the best value of each metric, ours (means) and the paper's alike, compared as printed
    best = {}
    for metric in ("acc", "auc"):
        values = [s[f"test_{metric}"] for s in stats.values() if s[f"test_{metric}"] is not None]
        values += [getattr(score, metric) for score in (table or {}).values()]
        best[metric] = round(max(values), 3) if values else None

    def cell(value, sd, n, metric):
        text = fmt(value, sd, n)
        return f"**{text}**" if value is not None and round(value, 3) == best[metric] else text

    if synthetic:
        lines = [
            f"## {md(name)} — {SYNTHETIC}",
            "",
            "Synthetic look-alike data: these numbers test the pipeline, not the models, and "
            "are not compared with published results.",
            "",
        ]
    elif table:
        lines = [
            f"## {md(name)}",
            "",
            f"Ours (medclf, real data) beside {ref.source}. "
            f"Δ = difference to {baseline}; best ACC and AUC in bold. 95 % CI: the seeds' "
            "mean over a percentile bootstrap of the test images (1,000 resamples, seed 0); "
            f"'vs {baseline}' reads that interval against the published number: above, "
            "below, or within noise when the interval holds it.",
            "",
        ]
    else:
        lines = [f"## {md(name)}", "", "MedMNIST v2 has no published numbers for this data.", ""]
    first = next(iter(by_model.values()))[0]  # every run of a group has the same file
    if first.get("data_file"):
        md5 = f" (MD5 `{first['data_md5']}`)" if first.get("data_md5") else ""
        lines += [f"Data file: `{md(first['data_file'])}`{md5}", ""]
    lines += [
        "| method | source | runs | test ACC | 95 % CI | test AUC | 95 % CI | Δ ACC | Δ AUC "
        f"| vs {baseline} | val ACC | val AUC | seconds / run |",
        "|---" * 13 + "|",
    ]
    source = f"medclf ({SYNTHETIC})" if synthetic else "medclf"
    for (model, preset), s in stats.items():
        d_acc = s["test_acc"] - base.acc if base and s["test_acc"] is not None else None
        d_auc = s["test_auc"] - base.auc if base and s["test_auc"] is not None else None
        lines.append(
            f"| {md(model)} ({md(preset)}) | {source} | {runs_text(s)} "
            f"| {cell(s['test_acc'], s['test_acc_sd'], seeds_n(s), 'acc')} "
            f"| {interval(s, 'test_acc')} "
            f"| {cell(s['test_auc'], s['test_auc_sd'], seeds_n(s), 'auc')} "
            f"| {interval(s, 'test_auc')} "
            f"| {signed(d_acc)} | {signed(d_auc)} | {verdict(s, base)} "
            f"| {fmt(s['val_acc'], s['val_acc_sd'], seeds_n(s))} "
            f"| {fmt(s['val_auc'], s['val_auc_sd'], seeds_n(s))} "
            f"| {whole(s['seconds'])} |"
        )
    for method, score in (table or {}).items():
        lines.append(
            f"| {method} | MedMNIST v2 (published) | — "
            f"| {cell(score.acc, None, 0, 'acc')} | — | {cell(score.auc, None, 0, 'auc')} "
            f"| — | {signed(score.acc - base.acc)} "
            f"| {signed(score.auc - base.auc)} | — | — | — | — |"
        )
    return lines + ["", *ensemble_notes(by_model)]


def ensemble_notes(by_model: dict) -> list[str]:
    """What each ensemble row (medclf.experiments.ensembles) is made of, and what the
    "medclf (auto)" row (medclf.experiments.auto) picked and why."""
    lines = []
    for (model, preset), rows in by_model.items():
        for r in rows:
            if r.get("why"):
                lines.append(
                    f"- {md(model)}: picked {md(r.get('picked'))} on validation alone: "
                    f"{md(r['why'])}."
                )
            elif r.get("members"):
                keys = ", ".join(f"`{md(k)}`" for k in str(r["members"]).split())
                seeds = str(r.get("seed")).replace("+", ", ")
                lines.append(
                    f"- {md(model)} ({md(preset)}): an ensemble, the mean probabilities of the "
                    f"runs {keys} (seeds {md(seeds)}); its interval is over test images."
                )
    return [*lines, ""] if lines else []


def curves_section(grouped: dict, out_dir: Path) -> list[str]:
    """Per dataset and model, the first finished run's ROC, precision-recall, reliability and
    confusion figures (medclf.report.curves), drawn into out_dir/curves/KEY; none where no run
    left readable predictions."""
    from medclf.report.curves import plot_run

    lines = []
    for (dataset, file, _), by_model in grouped.items():
        for (model, preset), rows in by_model.items():
            run = next((r for r in rows if counted(r)), None)
            if run is None:
                continue
            try:
                run_dir, folder = out_dir / RUNS / str(run["key"]), out_dir / "curves" / run["key"]
                drawn = plot_run(run_dir, folder, names=("curves",))
            except (MedclfError, KeyError):
                continue
            where = drawn["figures"]["curves"].relative_to(out_dir).as_posix()
            label = f"{dataset}{f' ({file})' if file else ''}: {model} ({preset}), {run['key']}"
            lines += [f"![{md(label)}]({where})", ""]
    if not lines:
        return []
    head = [
        "## Curves and calibration",
        "",
        "Test split of each model's first finished run: ROC and precision-recall per class "
        "(the positive class of a binary task), the reliability diagram (ECE's 15 bins) and the "
        "confusion matrix. PNG and PDF in curves/.",
        "",
    ]
    return head + lines


def not_run_section(run_keys: set[str]) -> list[str]:
    """The paper's numbers for every dataset no real run here used, on their own."""
    rest = [k for k in NAMES if k not in run_keys]
    if not rest:
        return []
    lines = [
        "## Published MedMNIST v2 results for datasets not run here",
        "",
        f"Not medclf's numbers: {SOURCE}, test ACC / AUC.",
        "",
        "| dataset | " + " | ".join(METHODS) + " |",
        "|---" * (len(METHODS) + 1) + "|",
    ]
    for k in rest:
        scores = published(k)
        lines.append(
            f"| {NAMES[k]} | "
            + " | ".join(f"{scores[m].acc:.3f} / {scores[m].auc:.3f}" for m in METHODS)
            + " |"
        )
    return lines + [""]


def runs_section(results: list[dict]) -> list[str]:
    head = (
        "dataset",
        "file",
        "data",
        "model",
        "preset",
        "seed",
        "status",
        "val ACC",
        "val AUC",
        "test ACC",
        "test AUC",
        "seconds",
    )
    lines = ["## Every run", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in results:
        data = SYNTHETIC if is_synthetic(r) else "real"
        seed_note = " (deterministic: stands for every seed)" if flag(r, "deterministic") else ""
        # a run not counted shows no metrics: whatever it left behind is not a result
        metrics = [
            fmt(number(r.get(k)) if counted(r) else None)
            for k in ("val_acc", "val_auc", "test_acc", "test_auc")
        ]
        lines.append(
            f"| {md(r.get('dataset'))} | {md(file_of(r) or '—')} | {data} "
            f"| {md(r.get('model'))} "
            f"| {md(preset_label(r))} | {md(r.get('seed'))}{seed_note} | {md(r.get('status'))} | "
            + " | ".join(metrics)
            + f" | {whole(number(r.get('seconds')))} |"
        )
    return lines + [""]


def draw_plot(grouped: dict, path: Path) -> None:
    """Per dataset: test AUC of each of our models (mean, sd error bars) and the paper's methods
    as horizontal lines. Object API only, so no backend is forced on the caller."""
    from matplotlib.figure import Figure

    keys = list(grouped) or [("no runs", "", False)]
    fig = Figure(figsize=(4.5 * len(keys) + 1.5, 5), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        dataset, file, synthetic = key
        stats = [(f"{m}\n{p}", summarise(rows)) for (m, p), rows in grouped.get(key, {}).items()]
        stats = [(label, s) for label, s in stats if s["n"]]
        xs = range(len(stats))
        ax.errorbar(
            list(xs),
            [s["test_auc"] for _, s in stats],
            yerr=[s["test_auc_sd"] or 0 for _, s in stats],
            fmt="o",
            color="black",
            capsize=4,
            label="medclf (mean ± sd)",
        )
        ax.set_xticks(list(xs), [label for label, _ in stats], fontsize=8)
        ax.set_xlim(-0.7, max(len(stats), 1) - 0.3)
        ref = None if synthetic else reference(dataset_key(dataset))
        table = ref.table if ref else None
        for i, (method, score) in enumerate((table or {}).items()):
            ax.axhline(
                score.auc,
                color=f"C{i}",
                linestyle=("--", ":", "-.")[i % 3],
                linewidth=1,
                label=method,
            )
        if not stats:
            ax.text(0.5, 0.5, "no finished run", transform=ax.transAxes, ha="center")
            ax.set_yticks([])
        title = ref.name if ref else dataset
        title += f"\n{file}" if file else ""
        ax.set_title(f"{title}\n({SYNTHETIC})" if synthetic else title, fontsize=10)
        ax.set_ylabel("test AUC")
    # one legend for all panels, below them, so it never hides a point or a line
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    fig.legend(
        list(handles.values()), list(handles), loc="outside lower center", ncol=4, fontsize=8
    )
    save_figure(fig, path)  # and its PDF beside it


def to_html(markdown_text: str, png: Path) -> str:
    """One self-contained page: inline CSS, the plot as a data URI, no external resource."""
    import markdown

    body = scrolling_tables(markdown.markdown(markdown_text, extensions=["tables"]))
    for src in sorted(set(re.findall(r'src="([^":]+\.png)"', body))):  # every figure, inlined
        path = png.parent / src
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode()
            body = body.replace(f'src="{src}"', f'src="data:image/png;base64,{data}"')
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape('medclf benchmark')}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_benchmark_report(results: list[dict], out_dir: Path) -> dict[str, Path]:
    """Write benchmark.md, benchmark.html and benchmark.png into out_dir; return their paths."""
    out_dir = Path(out_dir)
    grouped = groups(results)
    ok = sum(counted(r) for r in results)
    lines = [
        "# medclf benchmark",
        "",
        f"{len(results)} runs: {ok} finished and averaged, {len(results) - ok} not "
        "(failed or unfinished runs are listed, never averaged in). Values are test-split "
        "mean ± sd over seeds (sd needs two runs); seconds are per run.",
        "",
    ]
    if any(synthetic for *_, synthetic in grouped):
        lines += [f"**Some runs used synthetic data ({SYNTHETIC}).**", ""]
    lines += [
        "![test AUC per dataset: medclf mean ± sd and MedMNIST v2's methods](benchmark.png)",
        "",
    ]
    for key, by_model in grouped.items():
        lines += dataset_section(key, by_model, out_dir / RUNS)
    real_keys = {dataset_key(d) for d, _, synthetic in grouped if not synthetic}
    lines += curves_section(grouped, out_dir)
    lines += not_run_section(real_keys)
    lines += runs_section(results)
    lines += robustness_section(results)  # medclf benchmark --robustness
    text = "\n".join(lines)
    png = out_dir / "benchmark.png"
    draw_plot(grouped, png)
    return {
        "markdown": write_text(out_dir / "benchmark.md", text),
        "html": write_text(out_dir / "benchmark.html", to_html(text, png)),
        "plot": png,
    }
