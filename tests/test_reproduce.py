"""`medclf reproduce`: the spec table, the quick run end to end, resumption, failures, HTML."""

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from medclf.config import make_config
from medclf.experiments.reproduce import reproduce
from medclf.experiments.specs import CONVEXITY, STUDY, expand

# protocol.md, written out independently of specs.py: question -> runs as (model, settings)
PROTOCOL = {
    "Q1.1a": [("numpy-perceptron", {"epochs": 20})],
    "Q1.1b": [("numpy-logreg", {"lr": lr, "epochs": 20, "batch_size": 1}) for lr in (0.01, 0.001)],
    "Q1.2b": [("numpy-mlp", {"lr": 0.001, "hidden_size": 200, "layers": 1, "epochs": 20})],
    "Q2.1": [("torch-logreg", {"lr": lr, "batch_size": 16, "epochs": 20, "optimizer": "sgd"})
             for lr in (0.001, 0.01, 0.1)],
    "Q2.2a": [("torch-ffn", {"batch_size": b, "lr": 0.1, "epochs": 20}) for b in (16, 1024)],
    "Q2.2b": [("torch-ffn", {"lr": lr, "batch_size": 16, "epochs": 20})
              for lr in (1, 0.1, 0.01, 0.001)],
    "Q2.2c": [("torch-ffn", {"batch_size": 256, "epochs": 150, "l2": l2, "dropout": p})
              for l2, p in ((0.0, 0.0), (0.0001, 0.0), (0.0, 0.2))],
}  # fmt: skip
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
    summary = reproduce(str(synth_file), out, workers=2, quick=True, extra_rows=bad,
                        progress=False, echo=lambda *_: None)  # fmt: skip
    return out, summary


def test_quick_run_writes_every_figure_both_reports_and_every_row(quick_run):
    out, summary = quick_run
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(figures) == 19, figures  # Figures 1-18 and the Q1.2a figure
    assert all((out / "figures" / f.replace(".png", ".pdf")).exists() for f in figures)
    md = (out / "report.md").read_text()
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
    reproduce(str(synth_file), copy, workers=1, quick=True, progress=False,
              extra_rows=[("Q2.1", "torch-logreg", {"dataset": "/nonexistent/broken.npz",
                                                    "lr": 0.05})],
              echo=lambda *_: None)  # fmt: skip

    def table(path):
        return [{k: v for k, v in r.items() if k not in ("seconds", "error")}
                for r in csv.DictReader(path.open())]  # fmt: skip

    assert table(copy / "runs.csv") == table(out / "runs.csv")


CHROMIUM = shutil.which("chromium") and shutil.which("chromedriver")


@pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium and chromium-driver "
                    "(.ci/run installs them)")  # fmt: skip
def test_report_html_loads_in_headless_chromium(quick_run, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out, _ = quick_run
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(Path(out / "report.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
        )
        assert len(images) == 19
        assert all(done and width > 0 for done, width in images)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_cli_reproduce_rejects_unknown_questions(tmp_path, synth_file):
    args = ["reproduce", "--dataset", str(synth_file), "--only", "Q9", "--out", str(tmp_path)]
    result = subprocess.run(["medclf", *args], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: unknown question(s) Q9; choose from Q1.1a, Q1.1b, " \
        "Q1.2a, Q1.2b, Q2.1, Q2.2a, Q2.2b, Q2.2c"  # fmt: skip
