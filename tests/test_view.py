"""`medclf view`: one self-contained HTML page over run folders, checked against the run folders'
own files and, where Debian's chromium is installed, in a real headless browser."""

import base64
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import medclf
from conftest import needs_chromium
from medclf.report.view import collect, curves

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
ROBUSTNESS = "corruption,severity,acc,auc,balanced_acc\nnone,0,0.8,0.9,0.7\n"
ROBUSTNESS += "gaussian_noise,1,0.7,0.8,0.6\ngaussian_noise,2,0.6,0.7,0.55\n"


def train(data, out, **settings):
    return medclf.train(dataset=str(data), out=str(out), epochs=2, quiet=True, **settings)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished binary runs, a multi-class one, an unfinished folder and a robustness.csv;
    the page written over them."""
    from medclf.data.synthetic import write_synthetic

    tmp = tmp_path_factory.mktemp("view")
    binary = write_synthetic(tmp / "pneu.npz", "pneumoniamnist", 0.03, 0)
    multi = write_synthetic(tmp / "blood.npz", "bloodmnist", 0.02, 0)
    top = tmp / "runs"
    train(binary, top / "logreg", model="numpy-logreg", lr=0.01)
    train(binary, top / "ffn <b>x</b>", model="torch-ffn", seed=7)
    train(multi, top / "blood", model="numpy-logreg")
    medclf.train(dataset=str(binary), out=str(top / "sk"), model="sklearn-logreg", quiet=True)
    medclf.ensemble([top / "logreg", top / "ffn <b>x</b>"], top / "ens")
    (top / "logreg" / "robustness").mkdir()
    (top / "logreg" / "robustness" / "robustness.csv").write_text(ROBUSTNESS)
    (top / "half").mkdir()
    shutil.copy(top / "logreg" / "config.json", top / "half" / "config.json")
    done = subprocess.run(["medclf", "view", str(top)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return top, top / "view.html"


def page_data(html_path: Path) -> dict:
    text = html_path.read_text()
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


def by_name(data: dict) -> dict:
    return {r["name"]: r for r in data["runs"]}


def test_page_lists_every_run_folder_with_its_status(runs):
    top, html = runs
    runs_ = by_name(page_data(html))
    assert set(runs_) == {"logreg", "ffn <b>x</b>", "blood", "sk", "ens", "half"}
    assert runs_["half"]["status"] == "unfinished"
    done = ("logreg", "ffn <b>x</b>", "blood", "sk", "ens")
    assert all(runs_[n]["status"] == "done" for n in done)
    metrics = json.loads((top / "logreg" / "metrics.json").read_text())
    assert runs_["logreg"]["test_auc"] == pytest.approx(metrics["test_auc"])
    assert runs_["logreg"]["seed"] == 42 and runs_["ffn <b>x</b>"]["seed"] == 7


def test_page_loads_nothing_from_the_network(runs):
    text = runs[1].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert "<b>x</b>" not in text  # a folder's name is data, never markup


def test_curves_and_confusion_match_the_saved_predictions(runs):
    top, html = runs
    for name, k in (("logreg", 2), ("blood", 8)):
        run = by_name(page_data(html))[name]
        with np.load(top / name / "predictions.npz") as npz:
            labels, scores = npz["test_labels"], npz["test_scores"]
        matrix = np.zeros((k, k), int)
        np.add.at(matrix, (labels, scores.argmax(1)), 1)  # counted by hand
        assert run["confusion"] == matrix.tolist()
        assert len(run["roc"]) == (1 if k == 2 else k)
        if k == 2:  # the drawn ROC's area (trapezoids over its points) is the run's AUC
            fpr, tpr = run["roc"][0]["xy"]
            assert np.trapezoid(tpr, fpr) == pytest.approx(run["test_auc"], abs=0.01)
        confidence, correct = scores.max(1), scores.argmax(1) == labels
        bins = np.minimum((confidence * 10).astype(int), 9)  # ten equal bins, by hand
        used = np.unique(bins)
        xs, ys = run["reliability"]  # per bin: mean confidence, accuracy
        assert xs == pytest.approx([confidence[bins == b].mean() for b in used], abs=1e-4)
        assert ys == pytest.approx([correct[bins == b].mean() for b in used], abs=1e-4)


def test_wrong_images_are_the_most_confident_mistakes_and_the_file_s_pixels(runs):
    from PIL import Image

    top, html = runs
    run = by_name(page_data(html))["logreg"]
    with np.load(top / "logreg" / "predictions.npz") as npz:
        labels, scores = npz["test_labels"], npz["test_scores"]
    with np.load(top.parent / "pneu.npz") as npz:
        images = npz["test_images"]
    wrong = np.flatnonzero(scores.argmax(1) != labels)
    expected = wrong[np.argsort(-scores[wrong].max(1), kind="stable")][:8]
    shown = run["wrong"]
    assert [w["index"] for w in shown] == expected.tolist()
    names = run["classes"]
    for w in shown:
        i = w["index"]
        assert w["true"] == names[labels[i]] and w["predicted"] == names[scores[i].argmax()]
        assert w["confidence"] == pytest.approx(scores[i].max(), abs=1e-4)
        png = base64.b64decode(w["image"].removeprefix("data:image/png;base64,"))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), images[i])


def png_pixels(uri: str) -> np.ndarray:
    from PIL import Image

    png = base64.b64decode(uri.removeprefix("data:image/png;base64,"))
    return np.asarray(Image.open(io.BytesIO(png)))


def colours(attr: np.ndarray, method: str) -> np.ndarray:
    """explain's colour scale, by hand: per map its largest |value|; signed maps around 0."""
    import matplotlib
    from matplotlib.colors import Normalize

    top = np.abs(attr).max() or 1.0
    signed = method in ("weights", "integrated-gradients")
    norm = Normalize(-top if signed else 0, top, clip=True)
    cmap = matplotlib.colormaps["RdBu_r" if signed else "inferno"]
    return cmap(norm(attr), bytes=True)[..., :3]


@pytest.mark.parametrize(("name", "method"), [("logreg", "weights"), ("ffn <b>x</b>", "saliency")])
def test_each_wrong_image_has_explain_s_map_beside_it(runs, name, method):
    from medclf.report.explain import explain_run

    top, html = runs
    run = by_name(page_data(html))[name]
    assert run["wrong"] and method in run["saliency_note"]
    for w in run["wrong"][:3]:  # explain asked image by image: the same map as the page's
        alone = explain_run(top / name, "test", indices=[w["index"]])
        assert alone["method"] == method
        shown = png_pixels(w["saliency"])
        assert shown.shape == (28, 28, 3)
        assert np.array_equal(shown, colours(alone["attributions"][0], method))


def test_a_model_without_a_map_says_why_in_words(runs):
    runs_ = by_name(page_data(runs[1]))
    for name, why in (("sk", "no gradients to attribute"), ("ens", "no network of its own")):
        assert runs_[name]["wrong"], name
        assert all(w["saliency"] is None for w in runs_[name]["wrong"])
        assert why in runs_[name]["saliency_note"]


def test_robustness_is_shown_where_measured(runs):
    runs_ = by_name(page_data(runs[1]))
    rows = runs_["logreg"]["robustness"]["rows"]
    assert [(r["corruption"], r["severity"], r["acc"]) for r in rows] == [
        ("none", 0, 0.8),
        ("gaussian_noise", 1, 0.7),
        ("gaussian_noise", 2, 0.6),
    ]
    assert runs_["blood"]["robustness"] is None


def test_multi_label_curves_are_per_label():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (60, 3))
    scores = np.clip(labels * 0.6 + rng.random((60, 3)) * 0.4, 0, 1)
    drawn = curves("multi-label, binary-class", labels, scores, ["a", "b", "c"])
    assert [c["name"] for c in drawn["roc"]] == ["a", "b", "c"]
    assert drawn["confusion"] is None and drawn["reliability"] is not None


def medclf_view(*args):
    return subprocess.run(["medclf", "view", *map(str, args)], capture_output=True, text=True)


def one_line_error(done, code=1) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_bad_folders_and_outputs_are_refused_in_one_line(tmp_path, runs):
    top, _ = runs
    assert "does not exist" in one_line_error(medclf_view(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    assert "holds no run folders" in one_line_error(medclf_view(tmp_path / "empty"))
    (tmp_path / "file").write_text("x")
    line = one_line_error(medclf_view(top, "--out", tmp_path / "file" / "v.html"))
    assert "is a file, not a folder" in line
    line = one_line_error(medclf_view(top, "--out", tmp_path / "missing" / "v.html"))
    assert "does not exist" in line
    assert "is a directory" in one_line_error(medclf_view(top, "--out", tmp_path), code=2)
    assert not list(tmp_path.rglob("*.html"))


@pytest.mark.skipif(shutil.os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_out_is_refused_in_one_line(tmp_path, runs):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = one_line_error(medclf_view(runs[0], "--out", locked / "v.html"))
    finally:
        locked.chmod(0o755)
    assert "permission denied" in line


def test_a_damaged_run_is_listed_and_the_page_still_written(tmp_path, runs):
    top = tmp_path / "runs"
    shutil.copytree(runs[0] / "logreg", top / "good")
    shutil.copytree(runs[0] / "logreg", top / "bad")
    (top / "bad" / "predictions.npz").write_bytes(b"not a zip")
    done = medclf_view(top, "--out", tmp_path / "v.html")
    line = one_line_error(done)
    assert "damaged" in line and "predictions.npz" in line
    runs_ = by_name(page_data(tmp_path / "v.html"))
    assert runs_["bad"]["status"] == "damaged" and "predictions.npz" in runs_["bad"]["note"]
    assert runs_["good"]["status"] == "done" and runs_["good"]["wrong"]


def test_hand_edited_nan_and_infinity_are_shown_as_missing(tmp_path, runs):
    """JSON files written by hand may hold NaN or Infinity (Python's json reads both): the page
    shows them as missing rather than failing with a traceback."""
    top = tmp_path / "runs"
    shutil.copytree(runs[0] / "logreg", top / "good")
    metrics = (top / "good" / "metrics.json").read_text()
    metrics = metrics.replace('"selected_epoch": 2', '"selected_epoch": Infinity')
    assert "Infinity" in metrics
    (top / "good" / "metrics.json").write_text(metrics)
    (top / "half").mkdir()
    (top / "half" / "config.json").write_text('{"model": "numpy-logreg", "seed": NaN}')
    done = medclf_view(top, "--out", tmp_path / "v.html")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    runs_ = by_name(page_data(tmp_path / "v.html"))
    assert runs_["half"]["seed"] is None and runs_["half"]["status"] == "unfinished"
    assert runs_["good"]["epoch"] is None and runs_["good"]["status"] == "done"


def test_a_moved_data_file_leaves_the_images_out_with_a_note(tmp_path, runs):
    top = tmp_path / "runs"
    shutil.copytree(runs[0] / "logreg", top / "r")
    config = json.loads((top / "r" / "config.json").read_text())
    config["dataset"] = str(tmp_path / "gone.npz")
    (top / "r" / "config.json").write_text(json.dumps(config))
    (run,) = collect(top)
    assert run["status"] == "done" and run["wrong"] == [] and "gone.npz" in run["images_note"]
    assert run["roc"]  # the rest of the run is still drawn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_with_the_page_until_ctrl_c(tmp_path, runs):
    port = free_port()
    out = tmp_path / "v.html"
    proc = subprocess.Popen(
        ["medclf", "view", str(runs[0]), "--out", str(out), "--serve", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = None
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    body = answer.read()
                break
            except OSError:
                time.sleep(0.1)
        assert body == out.read_bytes()
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"serving http://127.0.0.1:{port}/" in stdout and "Traceback" not in stderr


def test_a_taken_or_impossible_port_is_refused_in_one_line(runs, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(medclf_view(runs[0], "--out", tmp_path / "v.html", "--serve", port))
    assert f"port {port} on 127.0.0.1 is in use" in line
    assert not (tmp_path / "v.html").exists()  # refused before any work
    for bad in ("70000", "0", "-1", "http"):
        assert "--serve" in one_line_error(medclf_view(runs[0], "--serve", bad), code=2)


@pytest.mark.skipif(not REAL.exists(), reason=f"the genuine BreastMNIST is absent ({REAL})")
def test_a_real_breastmnist_run_shows_its_own_test_images(tmp_path):
    from PIL import Image

    train(REAL, tmp_path / "runs" / "r", model="numpy-logreg")
    (run,) = collect(tmp_path / "runs")
    with np.load(REAL) as npz:
        images = npz["test_images"]
    assert run["wrong"] and run["task"] == "binary-class"
    for w in run["wrong"]:
        png = base64.b64decode(w["image"].removeprefix("data:image/png;base64,"))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), images[w["index"]])


@needs_chromium
def test_view_works_in_headless_chromium(runs, tmp_path, chromium):
    from selenium.webdriver.common.by import By

    driver = chromium
    js = driver.execute_script

    def names():
        return js(
            "return Array.from(document.querySelectorAll('#runs tbody tr'))"
            ".filter(r => !r.hidden).map(r => r.cells[1].textContent)"
        )

    driver.get(runs[1].resolve().as_uri())
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    data = page_data(runs[1])
    assert sorted(names()) == sorted(r["name"] for r in data["runs"])
    assert js("return document.querySelectorAll('#runs b').length") == 0  # name as text
    auc = {r["name"]: r.get("test_auc") for r in data["runs"]}
    header = driver.find_element(By.CSS_SELECTOR, "th[data-key=test_auc]")
    header.click()
    ranked = sorted(a for a in auc.values() if a is not None)
    missing = [None] * (len(auc) - len(ranked))
    assert [auc[n] for n in names()] == ranked + missing  # missing last
    driver.find_element(By.CSS_SELECTOR, "th[data-key=test_auc]").click()
    assert [auc[n] for n in names()] == ranked[::-1] + missing  # (ties in any order)
    driver.find_element(By.ID, "filter").send_keys("torch-ffn")
    assert names() == ["ffn <b>x</b>"]
    driver.find_element(By.ID, "filter").clear()
    driver.find_element(By.ID, "filter").send_keys(" ")  # an input event: all rows again
    assert len(names()) == len(auc)
    driver.find_element(By.XPATH, "//button[text()='logreg']").click()
    images = js(
        "return Array.from(document.querySelectorAll('#detail img'))"
        ".map(i => [i.complete, i.naturalWidth])"
    )
    assert len(images) == 2 * len(by_name(data)["logreg"]["wrong"])  # image, its map
    assert images and all(done and width > 0 for done, width in images)
    pairs = js(
        "return Array.from(document.querySelectorAll('#detail figure .pair'))"
        ".map(p => Array.from(p.querySelectorAll('img')).map(i => "
        "[i.alt, i.getBoundingClientRect().top, i.getBoundingClientRect().left]))"
    )
    for (image, top, left), (saliency, top2, left2) in pairs:  # side by side
        assert image.startswith("test image") and saliency.startswith("saliency")
        assert top == top2 and left < left2
    driver.find_element(By.XPATH, "//button[text()='sk']").click()
    why = js("return document.querySelector('#detail .saliency').textContent")
    assert "no gradients to attribute" in why
    assert js("return document.querySelectorAll('#detail img.map').length") == 0
    assert js("return document.querySelectorAll('#detail svg').length") >= 5
    for name in ("logreg", "blood"):
        row = driver.find_element(By.XPATH, f"//tr[td/button[text()='{name}']]")
        row.find_element(By.CSS_SELECTOR, "input.pick").click()
    boxes = js(
        "return Array.from(document.querySelectorAll('#detail section.run'))"
        ".map(s => [s.querySelector('h2').textContent, s.getBoundingClientRect().top, "
        "s.getBoundingClientRect().left])"
    )
    assert [b[0] for b in boxes] == ["logreg", "blood"]
    assert boxes[0][1] == boxes[1][1] and boxes[0][2] < boxes[1][2]  # side by side
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    shot = tmp_path / "view.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


# --- the study and benchmark reports (issue 19 §5) ---------------------------------------------


def test_report_tables_scroll_sideways_in_both_reports(tmp_path):
    from PIL import Image

    from medclf.report import benchmark, report

    wide = "| " + " | ".join(f"column {i}" for i in range(17)) + " |\n" + "|---" * 17 + "|\n"
    wide += "| " + " | ".join("0.1234 ± 0.0040 (n=3)" for _ in range(17)) + " |\n"
    Image.new("L", (4, 4)).save(tmp_path / "plot.png")
    for html in (report.to_html(wide, tmp_path), benchmark.to_html(wide, tmp_path / "plot.png")):
        assert html.count("<table>") == 1
        assert '<div class="scroll"><table>' in html and "</table></div>" in html
        style = html[html.index("<style>") : html.index("</style>")]
        assert ".scroll{overflow-x:auto" in style


def test_the_study_s_top_table_names_its_metric_and_split():
    from medclf.report.report import comparison_table

    run = {"config": {"model": "x", "seed": 42}, "questions": [], "status": "done"}
    for split, named in (("study", "the study's subset"), ("official", "the official test split")):
        lines = comparison_table([{**run, "test_split": split}])
        header = next(line for line in lines if line.startswith("| question"))
        assert f"ours: test acc ({named})" in header
        assert "published test acc (study's subset)" in header
        assert lines[0].startswith("Metric: test accuracy")


def test_a_quick_study_keeps_to_its_own_folder(tmp_path, synth_file):
    def reproduce(*args):
        return subprocess.run(
            ["medclf", "reproduce", "--only", "Q1.1a", "--workers", "1", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )

    done = reproduce("--quick", "--dataset", str(synth_file))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reproduction-quick" / "report.html").is_file()
    assert not (tmp_path / "reproduction").exists()
    runs = sorted((tmp_path / "reproduction-quick" / "runs").iterdir())
    line = one_line_error(reproduce("--dataset", str(synth_file), "--out", "reproduction-quick"))
    assert "holds a --quick study" in line and "reproduction" in line
    assert sorted((tmp_path / "reproduction-quick" / "runs").iterdir()) == runs


def test_saliency_hook_and_3d_slices(runs, monkeypatch, tmp_path):
    from PIL import Image

    from medclf.report import view

    monkeypatch.setattr(
        view, "saliency_images", lambda run_dir, split, idx: (["data:x"] * len(idx), "")
    )
    top = tmp_path / "runs"
    shutil.copytree(runs[0] / "logreg", top / "r")
    (run,) = collect(top)
    assert run["wrong"] and all(w["saliency"] == "data:x" for w in run["wrong"])
    volume = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    png = base64.b64decode(view.png_uri(volume, 3).removeprefix("data:image/png;base64,"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), volume[2])  # middle slice
