"""`medclf benchmark --ensemble`: per data file, model and preset, the ensemble of its seeds'
runs (medclf.run.family_ensemble) as one more result row, in OUT/runs/ensemble-HASH beside its
members, so that the report reads its saved predictions as it reads any run's."""

from __future__ import annotations

import hashlib
import shutil

from medclf.errors import MedclfError
from medclf.experiments.benchmark import RESULT_KEYS, preset_label, shared_precision
from medclf.run.family_ensemble import checked_members, make_ensemble
from medclf.run.folder import is_finished, read_json_or_none, read_metrics, run_dir_of

ENSEMBLE = "ensemble"  # appended to the model's name in its row: "torch-cnn ensemble"


def ensemble_key(keys) -> str:
    text = " ".join(sorted(keys))
    return f"{ENSEMBLE}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def seed_groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    """(data file, model, preset and precision) -> its seeds' rows, in first-seen order: bf16
    and fp32 runs of one preset (precision auto on two machines) are never one ensemble."""
    out: dict = {}
    for r in rows:
        where = r.get("data_file") or r.get("dataset")
        out.setdefault((where, r.get("model"), preset_label(r)), []).append(r)
    return out


def built(run_dir, member_keys) -> dict | None:
    """The metrics of a finished ensemble in ``run_dir`` of these members, all unchanged."""
    config = read_json_or_none(run_dir / "config.json")
    metrics = read_metrics(run_dir)
    if not (isinstance(config, dict) and is_finished(metrics)):
        return None
    names = [str(m.get("run", "")).rsplit("/", 1)[-1] for m in config.get("members", [])]
    if sorted(names) != sorted(member_keys):
        return None
    try:
        checked_members(run_dir, config)
    except MedclfError:
        return None
    return metrics


def ensemble_row(members: list[dict], out) -> dict:
    """The row of the ensemble of ``members`` (rows of one group's finished runs)."""
    first = members[0]
    keys = [str(r["key"]) for r in members]
    key = ensemble_key(keys)
    run_dir = run_dir_of(out, key)
    row = {
        **{k: first.get(k) for k in ("dataset", "preset", "file", "data_md5", "data_file")},
        "model": f"{first.get('model')} {ENSEMBLE}",
        "seed": "+".join(str(r.get("seed")) for r in members),
        **dict.fromkeys(RESULT_KEYS),
        "key": key,
        "members": " ".join(keys),
    }
    try:
        metrics = built(run_dir, keys)
        if metrics is None:
            shutil.rmtree(run_dir, ignore_errors=True)  # ours: OUT/runs/ensemble-HASH
            metrics = make_ensemble([run_dir_of(out, k) for k in keys], run_dir)
    except MedclfError as err:
        return {**row, "status": "failed", "error": str(err)}
    row.update({k: metrics.get(k) for k in RESULT_KEYS if k in metrics})
    row["synthetic"] = first.get("synthetic")
    row["precision"] = shared_precision(members)
    return row


def seed_ensembles(rows: list[dict], out) -> list[dict]:
    """One ensemble row per group with two finished runs or more (a run that serves several
    seeds, such as a model that ignores its seed, counts once)."""
    new = []
    for group in seed_groups(rows).values():
        done = list({r["key"]: r for r in group if r.get("status") == "done"}.values())
        if len(done) >= 2:
            new.append(ensemble_row(done, out))
    return new
