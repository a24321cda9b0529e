"""`medclf benchmark --auto [--budget 10m]`: per data file, the one row "medclf (auto)" that
validation alone chooses from the benchmark's runs.

The candidates are the grid's finished runs of that file, taken cheapest first by the registry's
cost (medclf.experiments.specs.estimated_cost), each admitted if the training seconds it recorded
still fit in what the runs admitted before it left of the budget; one that does not fit is passed
over, not the end of the list (the registry's cost knows no data size: on 28³ volumes sklearn-hgb
took 604 s, longer than a 3D CNN it ranks dearer). The same on every rerun whether the runs were
trained now or reused. Among them, greedy forward selection on validation AUC (Caruana et al., 2004,
without replacement): start from the best single run, add the run that raises the average's
validation AUC most, stop when none does. Only val_labels and val_scores are ever read to choose;
the chosen run's, or ensemble's, test numbers are read once, afterwards, for the report.
"""

from __future__ import annotations

import math
import re
import shutil

import numpy as np

from medclf.errors import ConfigError, MedclfError
from medclf.experiments.benchmark import RESULT_KEYS, shared_precision
from medclf.experiments.ensembles import built, ensemble_key, seed_groups
from medclf.experiments.specs import estimated_cost
from medclf.run.family_ensemble import make_ensemble
from medclf.run.folder import CONFIG, read_json_or_none, read_metrics, run_dir_of
from medclf.run.outputs import load_predictions
from medclf.run.selection import auc_of

AUTO = "medclf (auto)"
MAX_BUDGET = 24 * 3600  # one day: a larger number is a typo, not a budget
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_budget(text) -> float:
    """'10m', '90s', '1.5h' or plain seconds -> seconds in (0, one day]."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(text))
    seconds = float(match[1]) * UNITS[match[2]] if match else math.nan
    if not 0 < seconds <= MAX_BUDGET:
        raise ConfigError(
            f"--budget {text} is not a time from 1 s to 24 h; give one such as 10m, 90s or 1h"
        )
    return seconds


def admitted(rows: list[dict], out, budget: float) -> list[dict]:
    """The finished runs the budget buys, cheapest first (ties: first seen); a run that no
    longer fits is passed over."""
    done = [r for r in rows if r.get("status") == "done" and not r.get("members")]
    done = list({r["key"]: r for r in done}.values())  # a run serving several seeds: once
    costs = {}
    for r in done:
        config = read_json_or_none(run_dir_of(out, r["key"]) / CONFIG)
        costs[r["key"]] = estimated_cost(config) if isinstance(config, dict) else math.inf
    kept, spent = [], 0.0
    for r in sorted(done, key=lambda r: costs[r["key"]]):
        seconds = float(r.get("seconds") or 0)
        if spent + seconds <= budget:
            spent += seconds
            kept.append(r)
    return kept


def validation(out, key: str) -> tuple[str, np.ndarray, np.ndarray]:
    """(task, val labels, val scores) of a run: the only numbers the choice sees."""
    run_dir = run_dir_of(out, key)
    preds = load_predictions(run_dir)
    return read_metrics(run_dir)["task"], preds["val_labels"], preds["val_scores"]


def choose(candidates: dict[str, tuple]) -> tuple[list[str], float | None, float | None]:
    """Greedy forward selection on validation AUC: (chosen keys, their average's val AUC, the
    best single run's val AUC). ``candidates``: key -> validation()."""
    single = {k: auc_of(task, y, s) for k, (task, y, s) in candidates.items()}
    ranked = [k for k in candidates if single[k] is not None]
    if not ranked:
        return [], None, None
    best = max(ranked, key=lambda k: single[k])  # first seen wins a tie: the cheaper
    chosen, score = [best], single[best]
    task, labels, _ = candidates[best]
    while True:
        trials = {}
        for k in ranked:
            if k not in chosen:
                mean = np.mean([candidates[c][2] for c in [*chosen, k]], axis=0)
                trials[k] = auc_of(task, labels, mean)
        gains = {k: v for k, v in trials.items() if v is not None and v > score}
        if not gains:
            return chosen, score, single[best]
        k = max(gains, key=lambda k: gains[k])
        chosen, score = [*chosen, k], gains[k]


def pick(rows: list[dict], out, budget: float) -> dict:
    """What the budget's runs of one data file lead validation to choose, and why."""
    runs = admitted(rows, out, budget)
    if not runs:
        return {"chosen": [], "why": f"no run finished within the budget of {budget:.0f} s"}
    candidates = {r["key"]: validation(out, r["key"]) for r in runs}
    chosen, score, single = choose(candidates)
    by_key = {r["key"]: r for r in runs}
    names = [f"{by_key[k]['model']} seed {by_key[k]['seed']}" for k in chosen]
    if not chosen:
        why = "no candidate has a validation AUC"
    elif len(chosen) == 1:
        why = f"the best val AUC ({score:.4f}); no ensemble of them raised it"
    else:
        why = f"val AUC {score:.4f} of their mean vs {single:.4f} for the best single run"
    why += f"; {len(runs)} of {len(rows)} runs tried within {budget:.0f} s of training"
    return {"chosen": chosen, "names": names, "why": why}


def auto_row(rows: list[dict], out, budget: float) -> dict:
    first = rows[0]
    choice = pick(rows, out, budget)
    row = {
        **{k: first.get(k) for k in ("dataset", "file", "data_md5", "data_file")},
        "model": AUTO,
        "preset": f"budget {budget:.0f} s",
        "seed": "",
        **dict.fromkeys(RESULT_KEYS),
        "status": "failed",
        "picked": " + ".join(choice.get("names", [])) or "nothing",
        "why": choice["why"],
    }
    chosen = choice["chosen"]
    if not chosen:
        return {**row, "error": choice["why"]}
    key = chosen[0] if len(chosen) == 1 else f"auto-{ensemble_key(chosen)}"
    run_dir = run_dir_of(out, key)
    try:
        metrics = read_metrics(run_dir) if len(chosen) == 1 else built(run_dir, chosen)
        if metrics is None:
            shutil.rmtree(run_dir, ignore_errors=True)  # ours: OUT/runs/auto-ensemble-HASH
            metrics = make_ensemble([run_dir_of(out, k) for k in chosen], run_dir)
    except MedclfError as err:
        return {**row, "error": str(err)}
    row.update({k: metrics.get(k) for k in RESULT_KEYS if k in metrics})
    row["precision"] = shared_precision([r for r in rows if r["key"] in chosen])
    return {**row, "key": key, "members": " ".join(chosen) if len(chosen) > 1 else ""}


def auto_rows(rows: list[dict], out, budget: float) -> list[dict]:
    """One "medclf (auto)" row per data file."""
    files: dict = {}
    for (where, _, _), group in seed_groups(rows).items():
        files.setdefault(where, []).extend(group)
    return [auto_row(group, out, budget) for group in files.values()]
