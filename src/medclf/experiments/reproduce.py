"""`medclf reproduce`: every run of the study and the facts its report needs (medclf.api.reproduce
draws the report from them)."""

from __future__ import annotations

import time
from pathlib import Path

from medclf.data.registry import REGISTRY
from medclf.errors import ConfigError, DownloadError
from medclf.experiments.runner import run_all, runs_csv
from medclf.experiments.specs import CONVEXITY, QUESTIONS, STUDY, expand
from medclf.run.folder import (
    CONFIG,
    RUNS,
    environment,
    finished,
    read_json_or_none,
    run_dir_of,
    write_text,
)


def resolve_dataset(dataset: str, root=None, echo=print) -> str:
    """A registry name is downloaded if needed; without network, fall back to a full-size
    synthetic look-alike (said loudly, and labelled synthetic everywhere)."""
    from medclf.data.fetch import cache_root, download
    from medclf.data.synthetic import write_synthetic

    if dataset.lower() not in REGISTRY:
        return str(Path(dataset).resolve())  # one file, one run key, however it is spelled
    try:
        return str(download(dataset, root=root))
    except DownloadError as err:
        path = cache_root(root) / f"{dataset.lower()}-synthetic.npz"
        echo(f"{err}")
        echo(
            f"Running on SYNTHETIC data instead ({path}); its numbers are not comparable to "
            "the study's."
        )
        if not path.exists():
            write_synthetic(path, dataset, scale=1.0, seed=0)
        return str(path)


def default_out(quick: bool) -> str:
    """A quick study's own folder, so that its runs never mix with a full study's."""
    return "reproduction-quick" if quick else "reproduction"


def check_mode(out: Path, quick: bool, rows, ref: str, seeds: int) -> None:
    """Refuse a study in a folder that holds runs of the other mode (quick or full): the report
    covers every run of its folder, and would mix the two."""
    other = expand(rows, ref, seeds=seeds, quick=not quick)
    found = sum((run_dir_of(out, e["key"]) / CONFIG).is_file() for e in other)
    if found:
        mode, this = ("a full", "a --quick") if quick else ("a --quick", "a full")
        raise ConfigError(
            f"{out} holds {mode} study ({found} of its runs), which {this} study's report "
            f"would mix with; give another --out (its default is {default_out(quick)})"
        )


def run_study(
    dataset="octmnist",
    out="reproduction",
    only=None,
    workers=2,
    quick=False,
    seeds=1,
    root=None,
    extra_rows=(),
    progress=True,
    echo=print,
    backend="local",
    address=None,
) -> dict:
    """Run (or finish) the study's runs in OUT; return every finished run of OUT ("results"),
    the report's facts ("meta"), this call's failed runs and its start time."""
    unknown = sorted(set(only or ()) - set(QUESTIONS))
    if unknown:
        raise ConfigError(
            f"unknown question(s) {', '.join(unknown)}; choose from {', '.join(QUESTIONS)}"
        )
    if workers < 1 or seeds < 1:
        raise ConfigError(f"workers == {workers}, seeds == {seeds}; both must be >= 1")
    start = time.perf_counter()
    ref = resolve_dataset(dataset, root, echo)
    rows = [*STUDY, *CONVEXITY, *extra_rows]
    entries = expand(rows, ref, seeds=seeds, quick=quick, only=set(only) if only else None)
    out = Path(out)
    check_mode(out, quick, rows, ref, seeds)
    ran = run_all(
        entries,
        out,
        workers=workers,
        root=root,
        progress=progress,
        backend=backend,
        address=address,
    )
    # the report and runs.csv cover every finished run in OUT, not only this call's (--only)
    results = everything_in(out, expand(rows, ref, seeds=seeds, quick=quick), ran)
    write_text(out / "runs.csv", runs_csv(results))
    running = [r for r in ran if r["status"] == "running"]
    if running:
        echo(
            f"{len(running)} run(s) skipped: another medclf process is training them "
            f"({', '.join(sorted({r['error'] for r in running}))}); the report covers them "
            "once they are finished and medclf reproduce runs again"
        )
    meta = {
        "dataset": dataset,
        **data_facts(results, ref, root),
        "quick": quick,
        "seeds": seeds,
        "workers": workers,
        "seconds": time.perf_counter() - start,
        **machine_and_versions(),
    }
    failed = [r for r in ran if r["status"] == "failed"]
    return {"results": results, "meta": meta, "failed": failed, "started": start}


def everything_in(out: Path, study: list[dict], ran: list[dict]) -> list[dict]:
    """This call's results, then every other finished run of the study in ``out/runs``, then
    finished runs of other settings found there (questions unknown: listed, not plotted)."""
    ran_by_key = {r["key"]: r for r in ran}
    results = {}
    for entry in study:  # a run shared by questions keeps them all, whatever --only chose
        done = ran_by_key.get(entry["key"]) or finished(
            run_dir_of(out, entry["key"]), entry["config"]
        )
        if done:
            results[entry["key"]] = {**entry, **done, "questions": entry["questions"]}
    results.update({k: r for k, r in ran_by_key.items() if k not in results})
    for run_dir in sorted((out / RUNS).glob("*/")) if (out / RUNS).is_dir() else ():
        if run_dir.name in results:
            continue
        config = read_json_or_none(run_dir / CONFIG)
        done = isinstance(config, dict) and finished(run_dir, config)
        if done:
            results[run_dir.name] = {"key": run_dir.name, "config": config, "questions": [], **done}
    keys = [e["key"] for e in study]
    return sorted(
        results.values(), key=lambda r: keys.index(r["key"]) if r["key"] in keys else len(keys)
    )


def data_facts(results: list[dict], ref: str, root) -> dict:
    """Source, synthetic flag and test split, from a finished run (or the file itself)."""
    from medclf.data.features import resolve_test_split
    from medclf.data.load import load_dataset

    done = next((r for r in results if r["status"] == "done" and "dataset_source" in r), None)
    if done:
        return {
            "source": done["dataset_source"],
            "synthetic": done["synthetic"],
            "test_split": done["test_split"],
        }
    data = load_dataset(ref, root)
    return {
        "source": data.source,
        "synthetic": data.synthetic,
        "test_split": resolve_test_split(data),
    }


def machine_and_versions() -> dict:
    env = environment()
    return {
        "machine": f"{env['platform']}, {env['cpus']} CPUs",
        "versions": f"Python {env['python']}, NumPy {env['numpy']}, PyTorch {env['torch']}, "
        f"numba {env['numba']}",
    }
