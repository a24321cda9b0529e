"""`medclf reproduce`: every run of the study, its figures and its report, from one call."""

from __future__ import annotations

import time
from pathlib import Path

from medclf.data.registry import REGISTRY
from medclf.errors import ConfigError, DownloadError
from medclf.experiments.runner import run_all
from medclf.experiments.specs import CONVEXITY, QUESTIONS, STUDY, expand


def resolve_dataset(dataset: str, root=None, echo=print) -> str:
    """A registry name is downloaded if needed; without network, fall back to a full-size
    synthetic look-alike (said loudly, and labelled synthetic everywhere)."""
    from medclf.data.fetch import cache_root, download
    from medclf.data.synthetic import write_synthetic

    if dataset.lower() not in REGISTRY:
        return dataset
    try:
        return str(download(dataset, root=root))
    except DownloadError as err:
        path = cache_root(root) / f"{dataset.lower()}-synthetic.npz"
        echo(f"{err}")
        echo(f"Running on SYNTHETIC data instead ({path}); its numbers are not comparable to "
             "the study's.")  # fmt: skip
        if not path.exists():
            write_synthetic(path, dataset, scale=1.0, seed=0)
        return str(path)


def reproduce(dataset="octmnist", out="reproduction", only=None, workers=2, quick=False,
              seeds=1, root=None, extra_rows=(), progress=True, echo=print) -> dict:  # fmt: skip
    from medclf.report.report import write_report

    unknown = sorted(set(only or ()) - set(QUESTIONS))
    if unknown:
        raise ConfigError(f"unknown question(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(QUESTIONS)}")  # fmt: skip
    if workers < 1 or seeds < 1:
        raise ConfigError(f"workers == {workers}, seeds == {seeds}; both must be >= 1")
    start = time.perf_counter()
    ref = resolve_dataset(dataset, root, echo)
    rows = [*STUDY, *CONVEXITY, *extra_rows]
    entries = expand(rows, ref, seeds=seeds, quick=quick, only=set(only) if only else None)
    out = Path(out)
    results = run_all(entries, out, workers=workers, root=root, progress=progress)
    meta = {
        "dataset": dataset, **data_facts(results, ref, root), "quick": quick,
        "seeds": seeds, "workers": workers,
        "seconds": time.perf_counter() - start, **machine_and_versions(),
    }  # fmt: skip
    md, html = write_report(results, out, meta)
    failed = [r for r in results if r["status"] != "done"]
    return {"results": results, "report_md": md, "report_html": html, "failed": failed,
            "seconds": time.perf_counter() - start}  # fmt: skip


def data_facts(results: list[dict], ref: str, root) -> dict:
    """Source, synthetic flag and test split, from a finished run (or the file itself)."""
    from medclf.data.features import resolve_test_split
    from medclf.data.load import load_dataset

    done = next((r for r in results if r["status"] == "done" and "dataset_source" in r), None)
    if done:
        return {"source": done["dataset_source"], "synthetic": done["synthetic"],
                "test_split": done["test_split"]}  # fmt: skip
    data = load_dataset(ref, root)
    return {"source": data.source, "synthetic": data.synthetic,
            "test_split": resolve_test_split(data)}  # fmt: skip


def machine_and_versions() -> dict:
    from medclf.experiments.store import environment

    env = environment()
    return {
        "machine": f"{env['platform']}, {env['cpus']} CPUs",
        "versions": f"Python {env['python']}, NumPy {env['numpy']}, PyTorch {env['torch']}, "
                    f"numba {env['numba']}",
    }  # fmt: skip
