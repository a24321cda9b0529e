"""`medclf reproduce`: the spec table, the quick run end to end, resumption, failures, HTML."""

import csv
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import needs_chromium
from medclf.api import reproduce
from medclf.experiments.runner import EpochBar
from medclf.experiments.specs import CONVEXITY, STUDY, expand
from medclf.models.config import make_config
from medclf.report.report import divergence, runs_table

# protocol.md, written out independently of specs.py: question -> runs as (model, settings)
PROTOCOL = {
    "Q1.1a": [("numpy-perceptron", {"epochs": 20})],
    "Q1.1b": [("numpy-logreg", {"lr": lr, "epochs": 20, "batch_size": 1}) for lr in (0.01, 0.001)],
    "Q1.2b": [("numpy-mlp", {"lr": 0.001, "hidden_size": 200, "layers": 1, "epochs": 20})],
    "Q2.1": [
        ("torch-logreg", {"lr": lr, "batch_size": 16, "epochs": 20, "optimizer": "sgd"})
        for lr in (0.001, 0.01, 0.1)
    ],
    "Q2.2a": [("torch-ffn", {"batch_size": b, "lr": 0.1, "epochs": 20}) for b in (16, 1024)],
    "Q2.2b": [
        ("torch-ffn", {"lr": lr, "batch_size": 16, "epochs": 20}) for lr in (1, 0.1, 0.01, 0.001)
    ],
    "Q2.2c": [
        ("torch-ffn", {"batch_size": 256, "epochs": 150, "l2": l2, "dropout": p})
        for l2, p in ((0.0, 0.0), (0.0001, 0.0), (0.0, 0.2))
    ],
}
TABLE1 = {"hidden_size": 200, "layers": 2, "activation": "relu", "optimizer": "sgd"}


def test_spec_table_equals_the_protocol():
    configs = {}
    for qid, model, overrides in STUDY:
        configs.setdefault(qid, []).append(make_config(model, **overrides))
    assert set(configs) == set(PROTOCOL)
    for qid, runs in PROTOCOL.items():
        assert len(configs[qid]) == len(runs), qid
        for (model, settings), config in zip(runs, configs[qid], strict=True):
            assert config["model"] == model and config["seed"] == 42
            assert all(config[k] == v for k, v in settings.items()), (qid, config)
            if model == "torch-ffn":
                assert all(config[k] == v for k, v in TABLE1.items())
                assert config["lr"] == settings.get("lr", 0.1)
                assert config["l2"] == settings.get("l2", 0.0)
                assert config["dropout"] == settings.get("dropout", 0.0)


def test_identical_rows_run_once_and_seeds_multiply():
    entries = expand(STUDY, "octmnist")
    assert len(entries) == len(STUDY) - 1  # the default network is in Q2.2a and Q2.2b
    shared = [e for e in entries if len(e["questions"]) > 1]
    assert len(shared) == 1 and shared[0]["questions"] == ["Q2.2a", "Q2.2b"]
    three = expand(STUDY, "octmnist", seeds=3)
    assert len(three) == 3 * len(entries)
    assert {e["config"]["seed"] for e in three} == {42, 43, 44}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, synth_file):
    out = tmp_path_factory.mktemp("repro")
    bad = [("Q2.1", "torch-logreg", {"dataset": "/nonexistent/broken.npz", "lr": 0.05})]
    summary = reproduce(
        str(synth_file),
        out,
        workers=2,
        quick=True,
        extra_rows=bad,
        progress=False,
        echo=lambda *_: None,
    )
    return out, summary


def test_quick_run_writes_every_figure_both_reports_and_every_row(quick_run):
    out, summary = quick_run
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(figures) == 19, figures  # Figures 1-18 and the Q1.2a figure
    assert all((out / "figures" / f.replace(".png", ".pdf")).exists() for f in figures)
    md = (out / "report.md").read_text()
    # the selected runs' curves and calibration, from their saved predictions, inlined
    curves = sorted((out / "figures" / "curves").glob("*/curves.png"))
    assert curves and all(f"](figures/curves/{p.parent.name}/curves.png)" in md for p in curves)
    assert all(p.with_suffix(".pdf").is_file() for p in curves)
    html = (out / "report.html").read_text()
    assert 'src="figures/' not in html
    assert "Synthetic data" in md and "Quick mode" in md and "not comparable" in md
    assert "0.7788" in md and "Question 3" in md and "**b)**" in md
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == len(summary["results"]) == len(expand(STUDY + CONVEXITY, "x")) + 1
    assert all(r["status"] == "done" for r in rows if "nonexistent" not in r["dataset"])


def test_a_failing_run_is_reported_and_does_not_stop_the_rest(quick_run):
    out, summary = quick_run
    assert len(summary["failed"]) == 1
    assert "DataError" in summary["failed"][0]["error"]
    assert "**failed**" in (out / "report.md").read_text()


def test_rerun_skips_finished_runs_and_gives_the_same_table(quick_run, tmp_path, synth_file):
    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    # simulate a kill: one run lost its results mid-way, another never started
    runs = sorted((copy / "runs").iterdir())
    for name in ("metrics.json", "model.pt", "model.npz"):
        (runs[0] / name).unlink(missing_ok=True)
    shutil.rmtree(runs[1])
    (runs[2] / "config.json").write_text('{"model": "tor')  # damaged: rerun, not a crash
    (runs[3] / "config.json").unlink()
    reproduce(
        str(synth_file),
        copy,
        workers=1,
        quick=True,
        progress=False,
        extra_rows=[("Q2.1", "torch-logreg", {"dataset": "/nonexistent/broken.npz", "lr": 0.05})],
        echo=lambda *_: None,
    )

    def table(path):
        return [
            {k: v for k, v in r.items() if k not in ("seconds", "error")}
            for r in csv.DictReader(path.open())
        ]

    assert table(copy / "runs.csv") == table(out / "runs.csv")
    assert all(json.loads((run / "config.json").read_text()) for run in runs[:4])


def test_only_some_questions_still_report_every_finished_run(quick_run, tmp_path, synth_file):
    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    summary = reproduce(
        str(synth_file),
        copy,
        only=["Q2.2b"],
        workers=1,
        quick=True,
        progress=False,
        echo=lambda *_: None,
    )
    done = sorted(p.parent.name for p in (copy / "runs").glob("*/metrics.json"))
    assert sorted(r["key"] for r in summary["results"]) == done
    md = (copy / "report.md").read_text()
    tables = md.split("## Question 1.1 a)")[0]  # published numbers and selections
    assert "not run" not in tables and "{" not in tables and "Not run" not in md
    assert [r["key"] for r in csv.DictReader((copy / "runs.csv").open())] == [
        r["key"] for r in summary["results"]
    ]
    shared = next(
        r for r in summary["results"] if len(r["questions"]) > 1 and "Q2.2b" in r["questions"]
    )
    assert shared["questions"] == ["Q2.2a", "Q2.2b"]  # --only does not drop Q2.2a's tag


def markdown_table(md: str, heading: str) -> list[list[str]]:
    section = md.split(f"## {heading}\n\n", 1)[1].split("\n\n", 1)[0]
    return [
        [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in section.splitlines()
    ]


def test_every_run_table_is_well_formed_and_keyed_by_folder(quick_run):
    out, summary = quick_run
    md = (out / "report.md").read_text()
    rows = markdown_table(md, "Every run")
    assert {len(r) for r in rows} == {len(rows[0])} and rows[0][0] == "run"
    assert set(rows[1]) == {"---"}
    keys = [r[0].strip("`") for r in rows[2:]]
    assert keys == [r["key"] for r in summary["results"]]
    assert set(keys) <= {p.name for p in (out / "runs").iterdir()} | {
        r["key"] for r in summary["failed"]
    }
    html = (out / "report.html").read_text()
    every_run = html.split("Every run</h2>", 1)[1]
    assert every_run.lstrip().startswith('<div class="scroll"><table>')
    assert "<th>run</th>" in every_run


def test_report_html_renders_maths_and_keeps_certificates_literal(quick_run):
    out, _ = quick_run
    html = (out / "report.html").read_text()
    assert "$" not in html and "\\mathrm" not in html and "\\le" not in html
    text = re.sub(r"<[^>]+>", "", html)
    assert "h1 = sign(2s − 2A + 1)" in text and "s = ∑i xi" in text
    assert "<code>1*[-1, -1] + 1*[1, 1]</code>" in html and "<em>[" not in html


def test_report_concludes_on_time_names_criteria_and_flags_divergence(quick_run):
    out, _ = quick_run
    md = (out / "report.md").read_text()
    q22a = md.split("Question 2.2 a)", 1)[1].split("## ", 1)[0]
    assert "wall time" in q22a and " s; batch 1024: " in q22a
    assert "| Q2.2c best / worst (final validation accuracy) |" in md
    history = [{"epoch": e, "val_acc": a} for e, a in enumerate((0.5, 0.7, 0.72, 0.3), 1)]
    run = {
        "key": "torch-ffn-x",
        "questions": ["Q2.2b"],
        "status": "done",
        "history": history,
        "config": {"model": "torch-ffn", "seed": 42, "lr": 1.0},
        "val_acc": 0.3,
    }
    assert (
        divergence(run) == "final validation accuracy 0.3000 is far below its best, "
        "0.7200 at epoch 3"
    )
    assert "**diverged**" in runs_table([run])[2]
    assert divergence({**run, "history": history[:3]}) is None


def table_after(md: str, marker: str) -> list[list[str]]:
    """The first Markdown table after ``marker``, as rows of cells (header and rule included)."""
    lines = md.split(marker, 1)[1].split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def saved(out, key: str, split: str):
    import numpy as np

    with np.load(out / "runs" / key / "predictions.npz", allow_pickle=False) as npz:
        return npz[f"{split}_labels"].ravel(), npz[f"{split}_scores"]


SPLIT_OF = {"subset": "test", "official": "test_official"}


def test_report_auc_and_balanced_accuracy_equal_sklearn_on_saved_predictions(quick_run):
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    out, summary = quick_run
    rows = table_after((out / "report.md").read_text(), "## Test metrics of every run")
    head, body = rows[0], rows[2:]
    assert len(body) == len(summary["results"])
    checked = 0
    for row in body:
        cells = dict(zip(head, row, strict=True))
        key = cells["run"].strip("`")
        if not (out / "runs" / key / "predictions.npz").exists():  # the failed run
            assert {cells[f"{s} {m}"] for s in SPLIT_OF for m in ("AUC", "balanced acc")} == {"—"}
            continue
        for short, split in SPLIT_OF.items():
            labels, scores = saved(out, key, split)
            auc = roc_auc_score(labels, scores, multi_class="ovr")
            balanced = balanced_accuracy_score(labels, scores.argmax(1))
            assert float(cells[f"{short} AUC"]) == pytest.approx(auc, abs=5.01e-5), (key, split)
            assert float(cells[f"{short} balanced acc"]) == pytest.approx(balanced, abs=5.01e-5)
            assert float(cells[f"{short} acc"]) == pytest.approx(
                np.mean(scores.argmax(1) == labels), abs=5.01e-5
            )
            checked += 1
    assert checked == 2 * (len(body) - 1)


def test_confusion_matrices_of_selected_runs_equal_a_hand_count(quick_run):
    out, _ = quick_run
    md = (out / "report.md").read_text()
    q22b = md.split("## Question 2.2 b)", 1)[1].split("\n## ", 1)[0]
    assert "the study's lr = 1 network: lr=1" in q22b
    titles = [line for line in md.splitlines() if line.startswith("Confusion matrix, ")]
    assert len(titles) >= 2 * 4  # Q2.1 best, Q2.2b best/worst/lr=1, Q2.2c best/worst; 2 splits
    for title in titles:
        key = re.search(r"\(`([^`]+)`\)", title).group(1)
        short = "subset" if "on the study's subset" in title else "official"
        labels, scores = saved(out, key, SPLIT_OF[short])
        pred, k = scores.argmax(1), scores.shape[1]
        hand = [[0] * k for _ in range(k)]
        for true, guess in zip(labels, pred, strict=True):
            hand[true][guess] += 1
        rows = table_after(md, title)
        assert [[int(c) for c in row[1:-1]] for row in rows[2:]] == hand, title
        note = md.split(title, 1)[1].split("\n\n")[2]  # the line under the table
        names = json.loads((out / "runs" / key / "metrics.json").read_text())["class_names"]
        constant = len(set(pred)) == 1
        assert (f"predicts **{names[pred[0]]} for every image**" in note) == constant, title
    assert "<th>true ↓ / predicted →</th>" in (out / "report.html").read_text()


def test_runs_without_per_split_metrics_still_give_a_report(quick_run, tmp_path, synth_file):
    out, summary = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    lr1 = next(
        r["key"] for r in summary["results"] if "Q2.2b" in r["questions"] and r["config"]["lr"] == 1
    )
    done = sorted(p.parent.name for p in (copy / "runs").glob("*/metrics.json"))
    old = {lr1, *done[::2]}  # as an older medclf wrote them: no "metrics"
    for key in old:
        path = copy / "runs" / key / "metrics.json"
        metrics = json.loads(path.read_text())
        del metrics["metrics"]
        path.write_text(json.dumps(metrics))
    reproduce(str(synth_file), copy, workers=1, quick=True, progress=False, echo=lambda *_: None)
    md = (copy / "report.md").read_text()
    rows = table_after(md, "## Test metrics of every run")
    for row in rows[2:]:
        cells = dict(zip(rows[0], row, strict=True))
        blank = {cells[f"{s} {m}"] for s in SPLIT_OF for m in ("acc", "AUC", "balanced acc")}
        assert (blank == {"—"}) == (cells["run"].strip("`") in old)
    assert f"(`{lr1}`), on the study's subset: — (its metrics.json holds no confusion" in md
    assert "## Every run" in (copy / "report.html").read_text().replace("<h2>", "## ")


def test_progress_counts_epochs_while_a_run_trains(tmp_path):
    import numpy as np
    import torch

    entries = expand(
        [("Q2.1", "torch-logreg", {}), ("Q1.1a", "numpy-perceptron", {})], "x", quick=True
    )
    pt, npz = (tmp_path / "runs" / e["key"] for e in entries)
    bar = EpochBar(entries, tmp_path, progress=True, every=0.02)
    try:
        assert (bar.bar.total, bar.bar.n, bar.bar.unit) == (6, 0, "epoch")
        pt.mkdir(parents=True)
        torch.save({"history": [{"epoch": 1}, {"epoch": 2}]}, pt / "checkpoint.pt")
        npz.mkdir(parents=True)
        np.savez(npz / "checkpoint.npz", meta=np.array(json.dumps({"history": [{}]})))
        deadline = time.monotonic() + 10
        while bar.bar.n < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert bar.bar.n == 3  # moving before any run ends
        bar.end({**entries[0], "status": "done"})
        assert bar.bar.n == 4
    finally:
        bar.close()


@needs_chromium
def test_report_html_loads_in_headless_chromium(quick_run, chromium):
    out, _ = quick_run
    driver = chromium
    driver.get(Path(out / "report.html").resolve().as_uri())
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
    )
    drawn = (out / "report.md").read_text().count("](figures/")
    assert len(images) == drawn >= 19  # the study's 19 figures and the selected runs' curves
    assert all(done and width > 0 for done, width in images)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    text = driver.execute_script("return document.body.innerText")
    assert "sign(2s − 2A + 1)" in text and "$" not in text
    cells = driver.execute_script(  # the run table renders as a table, one row per run
        "return Array.from(document.querySelectorAll('table')).filter(t => "
        "t.rows[0].cells[0].textContent == 'run').map(t => t.rows.length)"
    )
    assert cells == [len(list((out / "runs").iterdir())) + 1]
    page, view = driver.execute_script(  # wide tables scroll in their box, not the page
        "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]"
    )
    assert page <= view


def test_cli_reproduce_rejects_unknown_questions(tmp_path, synth_file):
    args = ["reproduce", "--dataset", str(synth_file), "--only", "Q9", "--out", str(tmp_path)]
    result = subprocess.run(["medclf", *args], capture_output=True, text=True)
    assert result.returncode == 1
    assert (
        result.stderr.strip() == "Error: unknown question(s) Q9; choose from Q1.1a, Q1.1b, "
        "Q1.2a, Q1.2b, Q2.1, Q2.2a, Q2.2b, Q2.2c"
    )


def test_one_file_under_two_spellings_is_one_dataset(tmp_path, monkeypatch):
    from medclf.experiments.reproduce import resolve_dataset

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    spellings = ["oct.npz", "./oct.npz", "sub/../oct.npz", str(tmp_path / "oct.npz")]
    assert {resolve_dataset(s) for s in spellings} == {str(tmp_path / "oct.npz")}
