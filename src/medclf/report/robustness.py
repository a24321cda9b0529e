"""`medclf robustness`: robustness.csv, its companion robustness.json (what the numbers mean
and MedMNIST-C's summary), a figure of each metric against severity, and the printed summary."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from medclf.errors import ConfigError
from medclf.experiments.benchmark import preset_label
from medclf.files import atomic_path
from medclf.run.folder import ROBUSTNESS, write_json, write_text
from medclf.run.robustness import METRICS

FILES = CSV, JSON, PNG, PDF = ROBUSTNESS
DPI = 200  # slide resolution


def check_out(out) -> Path:
    """A folder robustness's files can be written to, checked before any work (and made only
    when they are written), so a bad --out costs nothing and leaves nothing behind."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    top = next(p for p in (out, *out.parents) if p.exists())
    if not top.is_dir():
        raise ConfigError(f"cannot make --out {out}: {top} is a file, not a folder")
    if not os.access(top, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {top} (permission denied); choose another --out")
    return out


def rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["corruption", "severity", *METRICS], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def figure(result: dict):
    """One panel per metric: each corruption's metric against severity, the clean value at 0."""
    from medclf.plots import subplots

    fig, axes = subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4.2), squeeze=False)
    clean = result["rows"][0]
    by_corruption: dict[str, list[dict]] = {}
    for r in result["rows"][1:]:
        by_corruption.setdefault(r["corruption"], []).append(r)
    styles = ["-", "--", ":", "-."]
    for ax, metric in zip(axes[0], METRICS, strict=True):
        for i, (name, rows) in enumerate(by_corruption.items()):
            pts = [(0, clean[metric]), *((r["severity"], r[metric]) for r in rows)]
            pts = [(s, v) for s, v in pts if v is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), styles[i // 10 % 4], marker="o", ms=3, label=name)
        ax.set_xlabel("severity (0: clean)")
        ax.set_ylabel(metric)
        ax.set_xticks(range(0, 6))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{title(result)}\n{protocol_line(result)}", fontsize=9)
    return fig


def title(result: dict) -> str:
    data = result["dataset"] + (" (synthetic)" if result["synthetic"] else "")
    return f"{result['run']}: {data}, {result['test_split']} test split, {result['n_test']} images"


def protocol_line(result: dict) -> str:
    side = result["image_size"]
    if result["protocol"] == "MedMNIST-C":
        return "MedMNIST-C's corruptions at its own 224x224 size"
    return (
        f"MedMNIST-C-style, not the official protocol: the corruptions' 224x224 parameters "
        f"applied at {side}x{side}"
    )


def summary_lines(result: dict) -> list[str]:
    s = result["summary"]
    lines = [title(result), protocol_line(result)]
    if result["skipped"]:
        lines.append(
            "not applied: "
            + "; ".join(f"{c} ({why})" for c, why in result["skipped"].items())
            + " — the summary averages over the others"
        )
    if result.get("chosen"):
        lines.append("the chosen corruptions only; MedMNIST-C averages over all of the dataset's")
    sev = result["severities"]
    if sev != [1, 2, 3, 4, 5]:
        lines.append(f"severities {sev} only; MedMNIST-C averages over 1-5")
    if s is None:
        return lines
    lines.append(f"{'corruption':18}{'balanced error':>16}{'BE':>8}{'rBE':>8}")
    for c, err in s["mean_error"].items():
        be, rbe = s["be_per_corruption"][c], s["rbe_per_corruption"][c]
        lines.append(f"{c:18}{err:16.4f}{be:8.3f}{rbe:8.3f}")
    lines += [
        f"clean balanced error {s['clean_error']:.4f}; mean over corruptions: "
        f"BE {s['be']:.3f}, rBE {s['rbe']:.3f}",
        "(MedMNIST-C's summary: BE = mean balanced error / AlexNet's; rBE = (mean balanced "
        "error - clean balanced error) / AlexNet's (mean - clean), AlexNet at 224x224)",
    ]
    return lines


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight")


def write_robustness(result: dict, out) -> dict[str, Path]:
    """The four files, each written whole (temporary name, then renamed); the JSON last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # an OSError names the path (the CLI's one line)
    paths = {name: out / name for name in FILES}
    write_text(paths[CSV], rows_csv(result["rows"]))
    fig = figure(result)
    save_figure(fig, paths[PNG])
    save_figure(fig, paths[PDF])
    about = {"protocol_note": protocol_line(result), "csv": CSV}
    write_json(paths[JSON], {k: v for k, v in result.items() if k != "rows"} | about)
    return paths


# --- medclf benchmark --robustness ---------------------------------------------------------------

RBE = "robust_rbe"  # the results.csv column: MedMNIST-C's rBE of the run


def add_robustness(rows: list[dict], out) -> None:
    """MedMNIST-C's rBE of each finished run of the benchmark in ``out`` as
    ``row["robust_rbe"]``, its robustness files written into its run folder; a run it cannot
    measure (a 3D run, a dataset MedMNIST-C does not cover) gets None and, in
    ``robust_note``, why."""
    from medclf.errors import MedclfError
    from medclf.run.folder import FINISHED, run_dir_of
    from medclf.run.robustness import robustness

    for row in rows:
        if row.get("status") not in FINISHED:
            continue
        run = run_dir_of(out, row["key"])
        try:
            result = robustness(run)
        except MedclfError as err:
            row[RBE], row["robust_note"] = None, str(err)
            continue
        write_robustness(result, run)
        row[RBE] = result["summary"]["rbe"] if result["summary"] else None
        row["robust_protocol"] = result["protocol"]


def robustness_section(rows: list[dict]) -> list[str]:
    """The benchmark report's robustness table: rBE mean ± sd over seeds per dataset and model
    (none where the benchmark ran without --robustness)."""
    import statistics

    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if RBE in r:
            key = (str(r.get("dataset")), str(r.get("model")), preset_label(r))
            groups.setdefault(key, []).extend([r[RBE]] if r[RBE] is not None else [])
    if not groups:
        return []
    styles = {r.get("robust_protocol") for r in rows if r.get("robust_protocol")}
    lines = [
        "## Robustness (MedMNIST-C)",
        "",
        "MedMNIST-C's relative balanced error rBE over its corruptions of each dataset, five "
        "severities (lower is more robust; AlexNet at 224x224 is 1): mean ± sd over seeds. "
        + (
            "MedMNIST-C-style, not the official protocol: its 224x224 parameters applied at "
            "the data's own size."
            if "MedMNIST-C-style" in styles
            else ""
        ),
        "",
        "| dataset | model | runs | rBE |",
        "|---|---|---|---|",
    ]
    for (dataset, model, preset), values in groups.items():
        mean = f"{statistics.mean(values):.3f}" if values else "—"
        sd = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        lines.append(f"| {dataset} | {model} ({preset}) | {len(values)} | {mean}{sd} |")
    return [*lines, ""]
