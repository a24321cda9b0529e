"""ROC, precision-recall and reliability curves of saved predictions, checked against
scikit-learn called directly here, and every figure medclf draws at slide resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from medclf.cli import cli
from medclf.metrics import curve_data, task_metrics
from medclf.plots import curve_figures

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
real_data = pytest.mark.skipif(
    not (REAL / "breastmnist.npz").exists(),
    reason="the genuine MedMNIST files in ../shared/data are absent",
)


def medclf(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def dpi_of(png: Path) -> float:
    """The resolution a PNG declares (its pHYs chunk), PIL's reading of it."""
    with Image.open(png) as image:
        return min(image.info["dpi"])


def single_label(rng, n=300, k=4):
    labels = rng.integers(0, k, n)
    scores = rng.dirichlet(np.ones(k), n)
    scores[np.arange(n), labels] += rng.random(n)  # better than chance, not perfect
    return labels, scores / scores.sum(axis=1, keepdims=True)


def test_curve_points_are_sklearns_per_class(tmp_path):
    rng = np.random.default_rng(0)
    labels, scores = single_label(rng)
    names = ["a", "b", "c", "d"]
    data = curve_data("multi-class", labels, scores, names)
    assert [c["name"] for c in data["curves"]] == names
    for i, c in enumerate(data["curves"]):
        fpr, tpr, _ = roc_curve(labels == i, scores[:, i])
        precision, recall, _ = precision_recall_curve(labels == i, scores[:, i])
        assert c["roc"]["fpr"] == fpr.tolist() and c["roc"]["tpr"] == tpr.tolist()
        assert c["pr"]["precision"] == precision.tolist() and c["pr"]["recall"] == recall.tolist()
        ap = average_precision_score(labels == i, scores[:, i])
        assert c["pr"]["average_precision"] == pytest.approx(ap)
    # the reliability diagram's bins are the ECE's: their weighted gaps sum to it
    (rel,) = data["reliability"]
    assert sum(rel["count"]) == len(labels)
    gaps = sum(
        n * abs(a - c)
        for n, a, c in zip(rel["count"], rel["accuracy"], rel["confidence"], strict=True)
        if n
    )
    ece = task_metrics("multi-class", labels, scores, names)["ece"]
    assert gaps / len(labels) == pytest.approx(ece) and rel["ece"] == pytest.approx(ece)
    json.dumps(data, allow_nan=False)  # JSON-safe: the viewer inlines it


def test_binary_has_one_curve_for_the_positive_class():
    rng = np.random.default_rng(1)
    labels, scores = single_label(rng, k=2)
    data = curve_data("binary-class", labels, scores, ["neg", "pos"])
    (c,) = data["curves"]
    fpr, tpr, _ = roc_curve(labels, scores[:, 1])
    assert c["name"] == "pos" and c["roc"]["fpr"] == fpr.tolist()


def test_multi_label_draws_one_curve_per_label():
    rng = np.random.default_rng(2)
    labels = (rng.random((200, 5)) < 0.3).astype(int)
    scores = np.clip(labels * 0.3 + rng.random((200, 5)) * 0.7, 0, 1)
    names = [f"label {j}" for j in range(5)]
    data = curve_data("multi-label, binary-class", labels, scores, names)
    for j, c in enumerate(data["curves"]):
        assert c["roc"]["tpr"] == roc_curve(labels[:, j], scores[:, j])[1].tolist()
    ece = task_metrics("multi-label, binary-class", labels, scores, names)["ece"]
    assert np.mean([r["ece"] for r in data["reliability"]]) == pytest.approx(ece)
    figures = curve_figures(data)
    roc_axes, pr_axes = figures["roc"].axes[0], figures["pr"].axes[0]
    assert len(roc_axes.lines) == 5 + 1  # one per label and the chance diagonal
    assert [t.get_text().split(" (")[0] for t in roc_axes.get_legend().get_texts()] == names
    assert len(pr_axes.get_legend().get_texts()) == 5
    assert len(figures["reliability"].axes[0].get_legend().get_texts()) == 5


def test_a_class_absent_from_the_split_has_no_curve_and_says_why():
    labels = np.array([0, 1, 0, 1, 0, 1])
    scores = np.full((6, 3), 1 / 3)
    data = curve_data("multi-class", labels, scores, ["a", "b", "c"])
    assert (
        data["curves"][2]["roc"] is None and "none of the split" in data["curves"][2]["undefined"]
    )
    curve_figures(data)  # draws the others


@pytest.fixture(scope="module")
def run(tmp_path_factory, synth_file):
    out = tmp_path_factory.mktemp("curves") / "run"
    result = medclf(
        "train", "torch-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet", "--out", out
    )
    assert result.exit_code == 0, result.output
    return out


def test_evaluate_plots_every_figure_at_slide_resolution(tmp_path, run):
    result = medclf("evaluate", run, "--resamples", 0, "--plots", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    for name in ("roc", "pr", "reliability", "confusion", "curves"):
        png = tmp_path / "plots" / f"{name}.png"
        assert dpi_of(png) >= 150 and (tmp_path / "plots" / f"{name}.pdf").stat().st_size > 1000
    # the run's own figures too (120 dpi, no PDF, before)
    for name in ("accuracy", "loss", "confusion"):
        assert dpi_of(run / f"{name}.png") >= 150 and (run / f"{name}.pdf").is_file()
    with Image.open(run / "loss.png") as image:
        assert image.width >= 1000  # 644 x 472 before
    # two runs: one subfolder each; --json keeps stdout one JSON document
    result = medclf("evaluate", run, run, "--json", "--resamples", 0, "--plots", tmp_path / "two")
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 2
    assert (tmp_path / "two" / "0-run" / "roc.png").is_file()
    assert (tmp_path / "two" / "1-run" / "roc.pdf").is_file()


def test_api_curves_returns_the_data_the_figures_draw(run):
    import medclf.api as api

    data = api.curves(run)
    with np.load(run / "predictions.npz") as npz:
        labels, scores = npz["test_labels"], npz["test_scores"]
    for i, c in enumerate(data["curves"]):
        assert c["roc"]["fpr"] == roc_curve(labels == i, scores[:, i])[0].tolist()
    assert data["split"] == "test" and len(data["confusion_matrix"]) == 4


def test_bad_plots_input_is_one_line(tmp_path, run):
    (tmp_path / "file").write_text("x")
    result = medclf("evaluate", run, "--resamples", 0, "--plots", tmp_path / "file")
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = medclf("evaluate", empty, "--plots", tmp_path / "p")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()
    result = medclf("evaluate", run, run, "--compare", "--plots", tmp_path / "p")
    assert result.exit_code == 2 and not (tmp_path / "p").exists()


@real_data
def test_breastmnist_curves_are_drawn(tmp_path):
    out = tmp_path / "run"
    data = REAL / "breastmnist.npz"
    result = medclf(
        "train", "numpy-logreg", "--dataset", data, "--epochs", 1, "--quiet", "--out", out
    )
    assert result.exit_code == 0, result.output
    result = medclf("evaluate", out, "--resamples", 0, "--plots", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    assert dpi_of(tmp_path / "plots" / "curves.png") >= 150
