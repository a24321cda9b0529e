"""The benchmark report: MedMNIST v2's published table, and our runs set beside it."""

import csv
import io
import re
import statistics
from html.parser import HTMLParser

import pytest

from medclf.report.benchmark import COLUMNS, results_csv, write_benchmark_report
from medclf.report.medmnist_v2 import MEDMNIST_V2, METHODS, NAMES
from medclf.report.published import MEDMNIST_BASELINES

DATASETS = [
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
]
# (test ACC, test AUC), typed in from shared/data/README.md, independently of medmnist_v2.py
ANCHORS = {
    "breastmnist": {
        "ResNet-18 (28)": (0.863, 0.901),
        "ResNet-50 (28)": (0.812, 0.857),
        "auto-sklearn": (0.803, 0.836),
        "AutoKeras": (0.831, 0.871),
        "Google AutoML Vision": (0.861, 0.919),
    },
    "pneumoniamnist": {
        "ResNet-18 (28)": (0.854, 0.944),
        "ResNet-50 (28)": (0.854, 0.948),
        "auto-sklearn": (0.855, 0.942),
        "AutoKeras": (0.878, 0.947),
        "Google AutoML Vision": (0.946, 0.991),
    },
}


def test_published_table_has_every_2d_dataset_and_method():
    assert sorted(MEDMNIST_V2) == sorted(DATASETS) == sorted(NAMES)
    assert METHODS == (
        "ResNet-18 (28)",
        "ResNet-18 (224)",
        "ResNet-50 (28)",
        "ResNet-50 (224)",
        "auto-sklearn",
        "AutoKeras",
        "Google AutoML Vision",
    )
    for scores in MEDMNIST_V2.values():
        assert list(scores) == list(METHODS)
        assert all(0.4 < s.acc <= 1 and 0.6 < s.auc <= 1 for s in scores.values())


def test_published_anchors_and_the_reproduction_report_agree():
    for dataset, methods in ANCHORS.items():
        for method, (acc, auc) in methods.items():
            assert tuple(MEDMNIST_V2[dataset][method]) == (acc, auc)
    assert MEDMNIST_BASELINES == [(m, s.auc, s.acc) for m, s in MEDMNIST_V2["octmnist"].items()]
    assert ("auto-sklearn", 0.887, 0.601) in MEDMNIST_BASELINES  # v2's, not v1's 0.595


# MedMNIST v2 Table 4 as https://medmnist.com/ prints it: one row per method, AUC then ACC for
# OrganMNIST3D, NoduleMNIST3D, FractureMNIST3D, AdrenalMNIST3D, VesselMNIST3D, SynapseMNIST3D;
# typed in a second time, in the source's layout, independently of medmnist_v2.py
TABLE_4 = """
ResNet-18+2.5D 0.977 0.788 0.838 0.835 0.587 0.451 0.718 0.772 0.748 0.846 0.634 0.696
ResNet-18+3D   0.996 0.907 0.863 0.844 0.712 0.508 0.827 0.721 0.874 0.877 0.820 0.745
ResNet-18+ACS  0.994 0.900 0.873 0.847 0.714 0.497 0.839 0.754 0.930 0.928 0.705 0.722
ResNet-50+2.5D 0.974 0.769 0.835 0.848 0.552 0.397 0.732 0.763 0.751 0.877 0.669 0.735
ResNet-50+3D   0.994 0.883 0.875 0.847 0.725 0.494 0.828 0.745 0.907 0.918 0.851 0.795
ResNet-50+ACS  0.994 0.889 0.886 0.841 0.750 0.517 0.828 0.758 0.912 0.858 0.719 0.709
auto-sklearn   0.977 0.814 0.914 0.874 0.628 0.453 0.828 0.802 0.910 0.915 0.631 0.730
AutoKeras      0.979 0.804 0.844 0.834 0.642 0.458 0.804 0.705 0.773 0.894 0.538 0.724
"""
SITE_ORDER_3D = [
    "organmnist3d",
    "nodulemnist3d",
    "fracturemnist3d",
    "adrenalmnist3d",
    "vesselmnist3d",
    "synapsemnist3d",
]


def test_published_3d_table_is_table_4_in_the_2d_tables_shape():
    from medclf.report.medmnist_v2 import (
        BASELINE_3D,
        MEDMNIST_V2_3D,
        METHODS_3D,
        NAMES_3D,
        Score,
        published_3d,
    )

    rows = [line.split() for line in TABLE_4.strip().splitlines()]
    assert METHODS_3D == tuple(row[0] for row in rows) and BASELINE_3D in METHODS_3D
    assert sorted(MEDMNIST_V2_3D) == sorted(SITE_ORDER_3D) == sorted(NAMES_3D)
    for row in rows:
        for j, dataset in enumerate(SITE_ORDER_3D):
            auc, acc = map(float, row[1 + 2 * j : 3 + 2 * j])
            score = MEDMNIST_V2_3D[dataset][row[0]]
            assert isinstance(score, Score) and (score.acc, score.auc) == (acc, auc)
    # the AdrenalMNIST3D anchors of shared/data/README.md
    adrenal = published_3d("AdrenalMNIST3D")
    assert tuple(adrenal["ResNet-18+3D"]) == (0.721, 0.827)
    assert tuple(adrenal["ResNet-50+3D"]) == (0.745, 0.828)
    assert tuple(adrenal["auto-sklearn"]) == (0.802, 0.828)


def run(dataset, model, seed, acc, auc, status="done", synthetic=False):
    return {
        "dataset": dataset,
        "model": model,
        "preset": "fast",
        "seed": seed,
        "status": status,
        "val_acc": acc - 0.01,
        "val_auc": auc - 0.01,
        "test_acc": acc,
        "test_auc": auc,
        "seconds": 12.5,
        "synthetic": synthetic,
        "run_dir": f"runs/{dataset}-{model}-{seed}",
    }


# two real datasets, two models, three seeds; one failed run with numbers that would move the
# mean if they were averaged in; and one synthetic dataset the paper also has
TEST = {  # (dataset, model) -> [(test ACC, test AUC)] per seed 42, 43, 44
    ("pneumoniamnist", "torch-cnn"): [(0.871, 0.951), (0.880, 0.957), (0.866, 0.949)],
    ("pneumoniamnist", "sk-logreg"): [(0.840, 0.930), (0.842, 0.931), (0.839, 0.933)],
    ("breastmnist", "torch-cnn"): [(0.880, 0.925), (0.871, 0.930), (0.885, 0.921)],
    ("breastmnist", "sk-logreg"): [(0.801, 0.812), (0.805, 0.809), (0.799, 0.815)],
}
FAILED = ("breastmnist", "sk-logreg", 44)


@pytest.fixture
def results():
    rows = []
    for (dataset, model), scores in TEST.items():
        for seed, (acc, auc) in zip((42, 43, 44), scores, strict=True):
            failed = (dataset, model, seed) == FAILED
            rows.append(
                run(
                    dataset,
                    model,
                    seed,
                    0.1 if failed else acc,
                    0.2 if failed else auc,
                    status="failed" if failed else "done",
                )
            )
    rows += [run("dermamnist", "torch-cnn", s, 0.99, 0.999, synthetic=True) for s in (42, 43)]
    return rows


def sections(text: str) -> dict[str, str]:
    return {part.split("\n", 1)[0]: part for part in re.split(r"^## ", text, flags=re.M)[1:]}


def row(section: str, first_cell: str) -> str:
    return next(line for line in section.splitlines() if line.startswith(f"| {first_cell} |"))


def test_report_means_failures_best_and_separation(results, tmp_path):
    paths = write_benchmark_report(results, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "benchmark.html",
        "benchmark.md",
        "benchmark.pdf",
        "benchmark.png",
    ]  # atomic: no temporary file left
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["markdown"].read_text()
    parts = sections(text)

    for (dataset, model), scores in TEST.items():
        kept = [
            s
            for seed, s in zip((42, 43, 44), scores, strict=True)
            if (dataset, model, seed) != FAILED
        ]
        line = row(parts[NAMES[dataset]], f"{model} (fast)")
        for i in (0, 1):
            values = [s[i] for s in kept]
            assert f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" in line
        assert ("2 of 3 (1 failed)" in line) == ((dataset, model) == FAILED[:2])
    # the failed run's numbers were not averaged in
    with_failed = [s[0] for s in TEST[FAILED[:2]][:2]] + [0.1]
    assert f"{statistics.mean(with_failed):.3f}" not in text
    # ...and it is listed as failed, without metrics
    every = parts["Every run"]
    failed_line = row(every, "breastmnist | — | real | sk-logreg | fast | 44")
    assert "| failed |" in failed_line and "0.100" not in failed_line

    # difference to ResNet-18 (28) and the best marked: on BreastMNIST our torch-cnn has the best
    # ACC and AUC; on PneumoniaMNIST Google AutoML Vision does
    breast = parts["BreastMNIST"]
    cnn = row(breast, "torch-cnn (fast)")
    acc = statistics.mean(s[0] for s in TEST["breastmnist", "torch-cnn"])
    assert f"**{acc:.3f} ±" in cnn and f"{acc - 0.863:+.3f}" in cnn
    assert "**" not in row(breast, "Google AutoML Vision")
    pneumonia = parts["PneumoniaMNIST"]
    assert "**0.946**" in row(pneumonia, "Google AutoML Vision")
    assert "**0.991**" in row(pneumonia, "Google AutoML Vision")
    assert "**" not in row(pneumonia, "torch-cnn (fast)")
    assert breast.count("**") == pneumonia.count("**") == 4  # one bold ACC, one bold AUC each

    # datasets not run (synthetic DermaMNIST included) appear only in the published table
    not_run = parts["Published MedMNIST v2 results for datasets not run here"]
    for key, name in NAMES.items():
        if key in ("pneumoniamnist", "breastmnist"):
            assert f"| {name} |" not in not_run
        else:
            assert text.count(name) == 1 and f"| {name} |" in not_run
    assert "| DermaMNIST | 0.735 / 0.917 |" in not_run

    # synthetic runs: labelled everywhere, never beside the published numbers
    synthetic = parts["dermamnist — synthetic — not comparable"]
    assert "MedMNIST v2 (published)" not in synthetic
    assert "medclf (synthetic — not comparable)" in row(synthetic, "torch-cnn (fast)")
    derma_runs = [line for line in every.splitlines() if line.startswith("| dermamnist |")]
    assert len(derma_runs) == 2
    assert all("| synthetic — not comparable |" in line for line in derma_runs)


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.open = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br", "hr"):
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):  # <img ... />: opens and closes at once
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        assert self.open.pop() == tag


def test_html_is_self_contained(results, tmp_path):
    html = write_benchmark_report(results, tmp_path)["html"].read_text()
    parser = Tags()
    parser.feed(html)
    parser.close()
    assert parser.open == []
    names = [tag for tag, _ in parser.tags]
    assert "script" not in names and "link" not in names and names.count("table") == 5
    images = [attrs["src"] for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")
    style = html[html.index("<style>") : html.index("</style>")]
    assert "http" not in style and "@import" not in style
    assert "synthetic — not comparable" in html


def test_results_csv_parses_back(results):
    results[0]["val_acc"] = None
    rows = list(csv.DictReader(io.StringIO(results_csv(results))))
    assert list(rows[0])[: len(COLUMNS)] == list(COLUMNS)
    assert list(rows[0])[len(COLUMNS) :] == ["synthetic", "run_dir"]
    assert len(rows) == len(results)
    assert rows[0]["val_acc"] == "" and float(rows[1]["test_auc"]) == results[1]["test_auc"]
    assert rows[-1]["synthetic"] == "True" and rows[-1]["dataset"] == "dermamnist"


def test_two_files_of_one_dataset_are_two_groups_each_named(tmp_path):
    # BreastMNIST and a quarter of it: one dataset name, two files, never one merged row
    scores = {"breastmnist.npz": [(0.80, 0.85), (0.82, 0.87)], "quarter.npz": [(0.60, 0.65)]}
    rows = [
        {
            **run("breastmnist", "torch-cnn", 42 + i, acc, auc),
            "file": name,
            "data_file": f"/data/{name}",
            "data_md5": f"{len(name):032x}",
        }
        for name, pairs in scores.items()
        for i, (acc, auc) in enumerate(pairs)
    ]
    text = write_benchmark_report(rows, tmp_path)["markdown"].read_text()
    parts = sections(text)
    for name, pairs in scores.items():
        part = parts[f"BreastMNIST — {name}"]
        assert f"Data file: `/data/{name}` (MD5 `{len(name):032x}`)" in part
        line = row(part, "torch-cnn (fast)")
        assert f"{statistics.mean(acc for acc, _ in pairs):.3f}" in line
        assert line.split(" | ")[2] == str(len(pairs))  # runs of this file only
    every = parts["Every run"]
    assert len([line for line in every.splitlines() if "| quarter.npz |" in line]) == 1
    assert len([line for line in every.splitlines() if "| breastmnist.npz |" in line]) == 2
    assert len(list(csv.DictReader(io.StringIO(results_csv(rows))))) == 3


def test_the_verdict_reads_the_interval_against_the_published_number():
    from medclf.report.benchmark import verdict
    from medclf.report.medmnist_v2 import BASELINE, published

    base = published("breastmnist")[BASELINE]  # 0.863 / 0.901

    def stats(acc, auc):
        pair = ("low", "high")
        acc, auc = dict(zip(pair, acc, strict=True)), dict(zip(pair, auc, strict=True))
        return {"intervals": {"test_acc": acc, "test_auc": auc}}

    assert verdict(stats((0.87, 0.93), (0.85, 0.95)), base) == "ACC above, AUC within noise"
    assert verdict(stats((0.70, 0.80), (0.902, 0.95)), base) == "ACC below, AUC above"
    assert verdict(stats((None, None), (0.9, 0.95)), base) == "—"
    assert verdict({"intervals": None}, base) == "—"


REAL = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(
    not (REAL / "breastmnist.npz").exists(),
    reason="the genuine MedMNIST files in ../shared/data are absent",
)
def test_the_report_gives_image_intervals_of_the_seeds_mean_on_real_data(tmp_path):
    import json

    import numpy as np
    from click.testing import CliRunner
    from sklearn.metrics import roc_auc_score

    from medclf.cli import cli
    from medclf.stats import bootstrap_interval

    out = tmp_path / "bench"
    args = [
        "benchmark",
        "--dataset",
        str(REAL / "breastmnist.npz"),
        "--model",
        "sklearn-logreg",
        "--model",
        "sklearn-knn",
        "--seeds",
        "2",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    text = (out / "benchmark.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| sklearn-logreg"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    low, high = map(float, cells[6].strip("[]").split(", "))  # the test AUC's interval
    runs = sorted(out.glob("runs/*"))
    logreg = [
        r for r in runs if json.loads((r / "config.json").read_text())["model"] == "sklearn-logreg"
    ]
    aucs = []
    for run in logreg:
        with np.load(run / "predictions.npz") as npz:
            y, p = npz["test_labels"], npz["test_scores"]
        aucs.append(roc_auc_score(y, p[:, 1]))
    assert low < np.mean(aucs) < high
    # the seeds of logistic regression give the same scores: the mean's interval is one run's
    single = bootstrap_interval("binary-class", y, p, "auc")
    assert (low, high) == (round(single["low"], 3), round(single["high"], 3))
    assert re.search(r"(ACC|AUC) (above|below|within noise)", row)


def test_a_3d_dataset_is_set_beside_the_3d_table_and_resnet18_3d(tmp_path):
    rows = [run("adrenalmnist3d", "torch-cnn3d", 42 + i, 0.80 + i / 100, 0.88) for i in range(2)]
    text = write_benchmark_report(rows, tmp_path)["markdown"].read_text()
    part = sections(text)["AdrenalMNIST3D"]
    assert "Table 4" in part and "Δ = difference to ResNet-18+3D" in part
    assert "| vs ResNet-18+3D |" in part and "ResNet-18 (28)" not in part
    assert row(part, "ResNet-18+ACS").split(" | ")[3] == "0.754"  # the 3D table's ACC
    ours = row(part, "torch-cnn3d (fast)")
    assert "+0.084" in ours  # mean ACC 0.805 - ResNet-18+3D's 0.721


def test_runs_trained_in_bf16_are_their_own_group_and_say_so(tmp_path):
    """precision auto is bf16 on one machine and fp32 on another: other arithmetic, so the
    report never averages the two, and names bf16 where it ran."""
    rows = [run("breastmnist", "torch-cnn", 42 + i, 0.85, 0.90) for i in range(4)]
    for r, p in zip(rows, ("bf16", "bf16", "fp32", None), strict=True):
        r["precision"] = p
    rows[0]["test_acc"] = 0.95  # the bf16 group's mean: 0.900
    part = sections(write_benchmark_report(rows, tmp_path)["markdown"].read_text())["BreastMNIST"]
    assert row(part, "torch-cnn (fast, bf16)").split(" | ")[2] == "2"  # runs
    assert "0.900 ± 0.071" in row(part, "torch-cnn (fast, bf16)").split(" | ")[3]
    assert row(part, "torch-cnn (fast)").split(" | ")[2] == "2"
    every = sections(write_benchmark_report(rows, tmp_path)["markdown"].read_text())["Every run"]
    assert every.count("| fast, bf16 |") == 2 and every.count("| fast |") == 2
