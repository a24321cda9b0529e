"""`medclf view`: one self-contained HTML page over every run folder under a folder.

Everything the page shows is computed here from each run folder's own files (config.json,
metrics.json, history.json, predictions.npz, robustness.csv where measured) and the test images
of its data file: the curves with scikit-learn, drawn in the page by a little inline SVG code.
Nothing is fetched at view time: no CDN, no network, every image a data URI.
"""

from __future__ import annotations

import base64
import csv
import http.server
import io
import json
import math
from pathlib import Path

import numpy as np

from medclf.errors import ConfigError, DataError, MedclfError
from medclf.metrics import MULTI_LABEL, task_metrics
from medclf.report.evaluate import read_predictions
from medclf.run.folder import (
    CONFIG,
    HISTORY,
    METRICS,
    PREDICTIONS,
    has_metrics,
    is_finished,
    is_unfinished,
    json_safe,
    read_json_or_none,
    run_folders_below,
)
from medclf.run.predict import check_run

WRONG = 8  # the most confidently wrong test images shown per run
POINTS = 200  # points per drawn curve at most: the page stays small
BINS = 10  # bins of the reliability diagram
ROBUSTNESS = "robustness.csv"
ROBUSTNESS_COLUMNS = ("corruption", "severity", "acc", "auc", "balanced_acc")
CURVE_FIELDS = ("train_loss", "val_loss", "train_acc", "val_acc", "val_auc")


# --- the run folders ---------------------------------------------------------------------------


def collect(top) -> list[dict]:
    """One entry per run folder at or below ``top``: a finished run with everything the page
    draws, or an unfinished or damaged one with a note saying why it has nothing to show."""
    data: dict = {}  # test images per data file, loaded once for every run of it
    return [run_entry(d, Path(top), data) for d in find_folders(top)]


def find_folders(top) -> list[Path]:
    """The run folders at or below ``top`` (medclf.run.folder finds them); one DataError where
    there is no such folder or no run in it."""
    top = Path(top)
    if not top.exists():
        raise DataError(f"{top} does not exist; give the folder that holds run folders")
    if not top.is_dir():
        raise DataError(f"{top} is a file, not a folder; give the folder that holds run folders")
    folders = run_folders_below(top, CONFIG)
    if not folders:
        raise DataError(
            f"{top} holds no run folders (no config.json at or below it); give a folder that "
            "'medclf train', 'medclf benchmark' or 'medclf reproduce' wrote"
        )
    return folders


def run_entry(run_dir: Path, top: Path, data: dict) -> dict:
    name = str(run_dir.relative_to(top)) if run_dir != top else run_dir.name
    config = read_json_or_none(run_dir / CONFIG)
    config = config if isinstance(config, dict) else {}
    entry = {"name": name, "model": str(config.get("model", "?")), "seed": config.get("seed")}
    if not has_metrics(run_dir):
        why = "stopped mid-way" if is_unfinished(run_dir) else "no epoch saved yet"
        return {**entry, "status": "unfinished", "note": f"no metrics.json: training {why}"}
    try:
        return {**entry, **finished_entry(run_dir, data)}
    except MedclfError as err:
        return {**entry, "status": "damaged", "note": str(err)}


def finished_entry(run_dir: Path, data: dict) -> dict:
    config, metrics = check_run(run_dir)  # config.json and metrics.json checked
    if not is_finished(metrics):
        raise DataError(
            f"{run_dir / METRICS} has status {metrics.get('status')!r}, not a finished "
            "one; train the run again"
        )
    preds = read_predictions(run_dir)
    task, names = str(metrics.get("task")), metrics["class_names"]
    split = {s: split_of(run_dir, preds, s, task, names) for s in ("val", "test")}
    labels, scores = preds["test_labels"], preds["test_scores"]
    entry = {
        "status": str(metrics["status"]),
        "dataset": dataset_text(metrics),
        "task": task,
        "classes": names,
        "val_acc": split["val"].get("acc"),
        "val_auc": split["val"].get("auc"),
        "test_acc": split["test"].get("acc"),
        "test_auc": split["test"].get("auc"),
        "ece": split["test"].get("ece"),
        "epoch": metrics.get("selected_epoch"),
        "epochs": metrics.get("epochs_run"),
        "seconds": finite(metrics.get("seconds")),
        "test_split": str(metrics.get("test_split", "")),
        "history": history_of(run_dir),
        "robustness": robustness_of(run_dir),
    }
    if not split["test"]:
        return {**entry, "note": "the test scores hold NaN or inf (diverged): nothing to draw"}
    entry.update(curves(task, labels, scores, names))
    entry.update(wrong_images(run_dir, config, metrics, preds, data))
    return entry


def dataset_text(metrics: dict) -> str:
    name = str(metrics.get("dataset_name", "?"))
    return f"{name} (synthetic)" if metrics.get("synthetic") else name


def split_of(run_dir, preds: dict, split: str, task: str, names) -> dict:
    """medclf's metrics of one saved split, recomputed from its scores ({} where they are not
    finite: a diverged model); a split that is missing or does not fit is damage."""
    labels, scores = preds.get(f"{split}_labels"), preds.get(f"{split}_scores")
    if labels is None or scores is None:
        raise DataError(f"{run_dir / PREDICTIONS} has no '{split}' split; train the run again")
    if not np.isfinite(scores).all():
        return {}
    try:
        return task_metrics(task, labels, scores, names)
    except MedclfError as err:
        raise DataError(f"{run_dir / PREDICTIONS}: {err}") from err


def finite(value):
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def history_of(run_dir: Path) -> list[dict]:
    """The epochs of history.json, only the numbers the training curves draw."""
    history = read_json_or_none(run_dir / HISTORY)
    if not isinstance(history, list):
        return []
    rows = [r for r in history if isinstance(r, dict)]
    return [{k: finite(r.get(k)) for k in ("epoch", *CURVE_FIELDS)} for r in rows]


# --- curves, calibration, confusion ------------------------------------------------------------


def thin(*arrays) -> list[list[float]]:
    """At most POINTS evenly spaced points of equally long arrays, first and last kept."""
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, POINTS)).round().astype(int))
    return [[round(float(v), 4) for v in np.asarray(a)[keep]] for a in arrays]


def is_probability(task: str, scores: np.ndarray) -> bool:
    """Scores that are probabilities: the reliability diagram and confidences need them (the
    perceptron's decision values are not)."""
    if scores.min() < 0 or scores.max() > 1:
        return False
    return task == MULTI_LABEL or bool(np.allclose(scores.sum(axis=1), 1, atol=1e-3))


def one_vs_rest(task: str, labels: np.ndarray, scores: np.ndarray, names) -> list[tuple]:
    """(name, truth 0/1, score) per curve: the positive class of a binary task, each class of a
    multi-class one (one vs rest), each label of a multi-label one."""
    if task == MULTI_LABEL:
        return [(n, labels[:, j], scores[:, j]) for j, n in enumerate(names)]
    if scores.shape[1] == 2:
        return [(names[1], labels == 1, scores[:, 1])]
    return [(n, labels == j, scores[:, j]) for j, n in enumerate(names)]


def curves(task: str, labels, scores, names) -> dict:
    """ROC and PR curves, the reliability diagram and the confusion matrix of the test split."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import (
        auc,
        average_precision_score,
        confusion_matrix,
        precision_recall_curve,
        roc_curve,
    )

    roc, pr = [], []
    for name, truth, score in one_vs_rest(task, labels, scores, names):
        if truth.min() == truth.max():  # one class only: no curve
            continue
        fpr, tpr, _ = roc_curve(truth, score)
        precision, recall, _ = precision_recall_curve(truth, score)
        roc.append({"name": name, "area": round(auc(fpr, tpr), 4), "xy": thin(fpr, tpr)})
        ap = average_precision_score(truth, score)
        pr.append({"name": name, "area": round(ap, 4), "xy": thin(recall[::-1], precision[::-1])})
    out = {"roc": roc, "pr": pr, "reliability": None, "confusion": None}
    if is_probability(task, scores):
        confidence, correct = top_label(task, labels, scores)
        accuracy, mean_conf = calibration_curve(correct, confidence, n_bins=BINS)
        out["reliability"] = thin(mean_conf, accuracy) if len(accuracy) else None
    if task != MULTI_LABEL:
        matrix = confusion_matrix(labels, scores.argmax(axis=1), labels=range(len(names)))
        out["confusion"] = matrix.tolist()
    return out


def top_label(task: str, labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of every decision, as medclf's ECE counts them: the predicted
    class of each image, or each label's yes/no of a multi-label task."""
    if task == MULTI_LABEL:
        pred = scores >= 0.5
        confidence = np.where(pred, scores, 1 - scores)
        return confidence.ravel(), (pred == labels.astype(bool)).ravel()
    pred = scores.argmax(axis=1)
    return scores[np.arange(len(scores)), pred], pred == labels


# --- the most confidently wrong test images ---------------------------------------------------


def wrong_images(run_dir: Path, config, metrics, preds, data: dict) -> dict:
    """The WRONG test images the model got wrong with the highest confidence (true and
    predicted classes, confidence, the image and its saliency map as PNG data URIs), a note
    ('' when shown) and a saliency note (the method, or why there is no map)."""
    task, names = metrics["task"], metrics["class_names"]
    labels, scores = preds["test_labels"], preds["test_scores"]
    images, dims, note = test_images(config, metrics, labels, data)
    if images is None:
        return {"wrong": [], "images_note": note, "saliency_note": ""}
    if task == MULTI_LABEL:
        pred = (scores >= 0.5).astype(int)
        miss = (pred != labels).any(axis=1)
        confidence = np.where(pred != labels, np.abs(scores - 0.5) * 2, 0).max(axis=1)
    else:
        pred = scores.argmax(axis=1)
        miss = pred != labels
        confidence = scores[np.arange(len(scores)), pred]
    order = [int(i) for i in np.argsort(-confidence, kind="stable") if miss[i]][:WRONG]
    saliency, saliency_note = saliency_images(run_dir, "test", order)
    probability = is_probability(task, scores)
    wrong = [
        {
            "index": i,
            "true": class_text(task, labels[i], names),
            "predicted": class_text(task, pred[i], names),
            "confidence": round(float(confidence[i]), 4) if probability else None,
            "image": png_uri(images[i], dims),
            "saliency": sal,
        }
        for i, sal in zip(order, saliency, strict=True)
    ]
    note = "" if order else "no test image is wrong"
    return {"wrong": wrong, "images_note": note, "saliency_note": saliency_note}


def class_text(task: str, label, names) -> str:
    if task == MULTI_LABEL:
        return ", ".join(n for n, on in zip(names, label, strict=True) if on) or "none"
    return str(names[int(label)])


def saliency_images(run_dir: Path, split: str, indices: list[int]) -> tuple[list, str]:
    """The model's attribution over each image of ``split`` at ``indices``, as medclf explain
    computes it (the model's default method) and colours it: (a PNG data URI per image, ''),
    or (None per image, why there is none: scikit-learn, an ensemble, no Captum...)."""
    from medclf.plots import attribution_rgb
    from medclf.report.explain import explain_run

    if not indices:
        return [], ""
    try:
        result = explain_run(run_dir, split, indices=indices)
    except MedclfError as err:
        return [None] * len(indices), f"no saliency map: {err}"
    dims = 3 if result["attributions"][0].ndim == 3 else 2
    maps = [attribution_rgb(a, result["method"]) for a in result["attributions"]]
    return [png_uri(m, dims) for m in maps], f"beside each image: its {result['method']} map"


def test_images(config: dict, metrics: dict, labels: np.ndarray, data: dict):
    """(the run's test images, their dims, '') from the data file its config names, or (None,
    0, why not): the file is gone, its bytes changed (MD5), or its test labels are not the
    saved ones."""
    from medclf.data.features import select_test
    from medclf.data.load import load_dataset
    from medclf.run.dataid import data_file, data_md5

    named = str(config.get("dataset", ""))
    path = data_file(named, None, config.get("size") or 28) if named else None
    if path is None:
        return None, 0, f"its data file {named or '?'} is not here, so no test image is shown"
    if "data_md5" in metrics and metrics["data_md5"] != data_md5(path):
        return None, 0, f"{path} has changed since the run (another MD5): no test image is shown"
    key = (str(path), str(metrics.get("test_split", "auto")))
    if key not in data:
        try:
            dataset = load_dataset(path)
            data[key] = select_test(dataset, key[1]), dataset.info.dims
        except MedclfError as err:
            data[key] = str(err), 0
    split, dims = data[key]
    if isinstance(split, str):
        return None, 0, f"its test images cannot be read: {split}"
    if split.labels.shape != labels.shape or not np.array_equal(split.labels, labels):
        return None, 0, f"{path}'s test labels are not the run's saved ones: no image is shown"
    return split.images, dims, ""


def png_uri(image: np.ndarray, dims: int) -> str:
    """One image as a PNG data URI; a 3D volume as its middle slice."""
    from PIL import Image

    if dims == 3:
        image = image[len(image) // 2]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- robustness --------------------------------------------------------------------------------


def robustness_of(run_dir: Path) -> dict | None:
    """robustness.csv of the run (in its folder or its robustness/ subfolder): its rows, or a
    note where the file does not hold the expected columns; None where none was measured."""
    path = next(
        (p for p in (run_dir / ROBUSTNESS, run_dir / "robustness" / ROBUSTNESS) if p.is_file()),
        None,
    )
    if path is None:
        return None
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        if not rows or not set(ROBUSTNESS_COLUMNS) <= set(rows[0]):
            raise ValueError(f"expected the columns {', '.join(ROBUSTNESS_COLUMNS)}")
        rows = [
            {
                "corruption": str(r["corruption"]),
                "severity": int(r["severity"]),
                **{
                    k: finite(float(r[k])) if r[k] not in ("", None) else None
                    for k in ROBUSTNESS_COLUMNS[2:]
                },
            }
            for r in rows
        ]
    except (ValueError, UnicodeDecodeError, csv.Error) as err:
        return {"rows": [], "note": f"{path} cannot be read ({err})"}
    return {"rows": rows, "note": ""}


# --- the page ----------------------------------------------------------------------------------


def page_html(runs: list[dict], title: str) -> str:
    """The page: the runs as JSON inside it, drawn by its inline script."""
    from html import escape

    # a hand-edited file's NaN or infinity (a seed, an epoch) is no JSON: shown as missing
    payload = json.dumps(json_safe({"title": title, "runs": runs}), allow_nan=False)
    payload = payload.replace("<", "\\u003c")  # nothing inside the JSON can close the script
    return (
        PAGE.replace("{{TITLE}}", escape(title))
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{DATA}}", payload)
    )


def write_view(top, out=None) -> dict:
    """Write the page over every run folder under ``top`` to ``out`` (default TOP/view.html);
    its path, and the runs it holds (each with its status)."""
    from medclf.files import check_parent
    from medclf.run.folder import write_text

    find_folders(top)  # a bad DIR is named before --out
    out = Path(out) if out is not None else Path(top) / "view.html"
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; give the name of the HTML file to write")
    check_parent(out)
    runs = collect(top)
    write_text(out, page_html(runs, f"medclf runs in {top}"))
    return {"path": out, "runs": runs}


class PageServer(http.server.ThreadingHTTPServer):
    """The page on http://127.0.0.1:PORT/, from the standard library; nothing else served."""

    def __init__(self, port: int):
        import errno

        try:
            super().__init__(("127.0.0.1", port), PageHandler)
        except OverflowError as err:
            raise ConfigError(f"port {port} is out of range; choose one in 1-65535") from err
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on 127.0.0.1 is in use; choose another --serve port"
                ) from err
            raise ConfigError(
                f"cannot serve on 127.0.0.1:{port} ({err.strerror or err}); choose another "
                "--serve port (above 1023 without root)"
            ) from err
        self.page = b""

    def handle_error(self, request, client_address):
        """A client that hung up (it gave up while the page was being built) is no fault."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def run(self, html_text: str) -> None:
        """Serve ``html_text`` until Ctrl-C."""
        self.page = html_text.encode("utf-8")
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server_close()


class PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        if self.path.split("?")[0] not in ("/", "/index.html", "/view.html"):
            self.send_error(404, "only the page is served here: /")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.server.page)))
        self.end_headers()
        self.wfile.write(self.server.page)

    def log_message(self, format, *args):  # quiet: the terminal shows the URL only
        pass


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{TITLE}}</title>
<style>{{STYLE}}</style></head>
<body><h1>{{TITLE}}</h1>
<p class="hint">Click a column to sort, type to filter, click a run's name to open it, tick two
runs to see them side by side. Every number is recomputed from each run's saved predictions;
everything on this page is inside this file.</p>
<p><label>Filter: <input id="filter" type="search" placeholder="model, dataset, status..."></label>
<span id="count"></span></p>
<div class="scroll"><table id="runs"><thead></thead><tbody></tbody></table></div>
<div id="notes"></div>
<div id="detail"></div>
<script type="application/json" id="data">{{DATA}}</script>
<script>{{SCRIPT}}</script>
</body></html>
"""

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;line-height:1.4}
h1{font-size:1.4em}.hint{color:#555;max-width:60em}.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;white-space:nowrap}
th{background:#f0f0f0;cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:" ▲"}
th[aria-sort=descending]::after{content:" ▼"}tr.bad td{color:#a00}
button.open{border:none;background:none;color:#0645ad;cursor:pointer;padding:0;font:inherit;
text-decoration:underline}#detail{display:grid;grid-template-columns:repeat(auto-fit,minmax(
30em,1fr));gap:1.5em;margin-top:1em}.run{border-top:3px solid #446;padding-top:.5em;min-width:0}
.charts{display:flex;flex-wrap:wrap;gap:.8em}.chart{font-size:.8em}.chart svg{display:block}
.legend span{margin-right:.8em;white-space:nowrap}.wrong{display:flex;flex-wrap:wrap;gap:.6em}
.wrong figure{margin:0;font-size:.75em;width:8.5em}.wrong img{width:8em;height:8em;
image-rendering:pixelated;display:block;background:#000}.note{color:#a60}
.pair{display:flex;gap:.2em}.wrong figure.two{width:16.5em}
td.cm{text-align:right;min-width:2.5em}"""

SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const RUNS = DATA.runs;
const COLUMNS = [["", "pick"], ["run", "name"], ["model", "model"], ["dataset", "dataset"],
  ["task", "task"], ["seed", "seed"], ["status", "status"], ["val ACC", "val_acc"],
  ["val AUC", "val_auc"], ["test ACC", "test_acc"], ["test AUC", "test_auc"],
  ["kept epoch", "epoch"], ["epochs", "epochs"], ["time (s)", "seconds"]];
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
let sortKey = null, sortUp = true;
const picked = [];

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;"}[c]));
}
function num(v, d) { return v === null || v === undefined ? "—" : (+v).toFixed(d); }

function cell(run, key) {
  const v = run[key];
  if (["val_acc", "val_auc", "test_acc", "test_auc"].includes(key)) return num(v, 4);
  if (key === "seconds") return num(v, 1);
  return v === null || v === undefined ? "—" : esc(v);
}

function drawTable() {
  const head = document.querySelector("#runs thead");
  head.innerHTML = "<tr>" + COLUMNS.map(([t, k]) =>
    `<th data-key="${k}"${k === sortKey ? ` aria-sort="${sortUp ? "ascending" : "descending"}"`
      : ""}>${esc(t)}</th>`).join("") + "</tr>";
  head.querySelectorAll("th").forEach(th => th.addEventListener("click", () => {
    const k = th.dataset.key;
    if (k === "pick") return;
    sortUp = k === sortKey ? !sortUp : true;
    sortKey = k;
    drawTable();
  }));
  const rows = RUNS.map((r, i) => [r, i]);
  if (sortKey) rows.sort(([a], [b]) => compare(a[sortKey], b[sortKey], sortUp ? 1 : -1));
  document.querySelector("#runs tbody").innerHTML = rows.map(([r, i]) => {
    const bad = r.status === "damaged" || r.status === "unfinished";
    const cells = COLUMNS.slice(2).map(([, k]) => `<td>${cell(r, k)}</td>`).join("");
    return `<tr data-run="${i}"${bad ? ' class="bad"' : ""}><td><input type="checkbox" ` +
      `class="pick" data-run="${i}"${picked.includes(i) ? " checked" : ""}${bad ? " disabled" : ""}
      aria-label="compare"></td><td><button class="open" data-run="${i}">${esc(r.name)}</button>` +
      `</td>${cells}</tr>`;
  }).join("");
  document.querySelectorAll("button.open").forEach(b => b.addEventListener("click",
    () => show([+b.dataset.run])));
  document.querySelectorAll("input.pick").forEach(b => b.addEventListener("change", () => {
    const i = +b.dataset.run;
    if (b.checked) picked.push(i); else picked.splice(picked.indexOf(i), 1);
    while (picked.length > 2) picked.shift();
    drawTable();
    if (picked.length) show(picked.slice());
  }));
  filter();
}

function compare(a, b, sign) {  // missing values last either way, numbers as numbers
  const none = v => v === null || v === undefined;
  if (none(a) || none(b)) return none(a) - none(b);
  if (typeof a === "number" && typeof b === "number") return sign * (a - b);
  return sign * String(a).localeCompare(String(b), undefined, {numeric: true});
}

function filter() {
  const words = document.getElementById("filter").value.toLowerCase().split(/\s+/)
    .filter(Boolean);
  let shown = 0;
  document.querySelectorAll("#runs tbody tr").forEach(tr => {
    const text = tr.textContent.toLowerCase();
    const ok = words.every(w => text.includes(w));
    tr.hidden = !ok;
    shown += ok;
  });
  document.getElementById("count").textContent = ` ${shown} of ${RUNS.length} runs shown`;
}

function chart(title, series, xlabel, ylabel, diagonal) {
  // series: [{name, xy: [xs, ys], color}] on [0, max] axes, as one SVG string
  const W = 260, H = 200, L = 38, B = 30, T = 8, R = 8;
  const xs = series.flatMap(s => s.xy[0]), ys = series.flatMap(s => s.xy[1]);
  const x0 = Math.min(0, ...xs), x1 = Math.max(1, ...xs), y0 = Math.min(0, ...ys);
  const y1 = Math.ceil(Math.max(1, ...ys) * 10) / 10;  // a loss may pass 1
  const X = x => L + (x - x0) / (x1 - x0 || 1) * (W - L - R);
  const Y = y => H - B - (y - y0) / (y1 - y0 || 1) * (H - B - T);
  let svg = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img">`;
  svg += `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - B - T}" fill="none" ` +
    `stroke="#999"/>`;
  for (const t of [0, 0.5, 1]) {
    const xv = x0 + t * (x1 - x0), yv = y0 + t * (y1 - y0);
    svg += `<text x="${X(xv)}" y="${H - B + 12}" font-size="9" text-anchor="middle">` +
      `${+xv.toFixed(2)}</text><text x="${L - 3}" y="${Y(yv) + 3}" font-size="9" ` +
      `text-anchor="end">${+yv.toFixed(2)}</text>`;
  }
  svg += `<text x="${(L + W - R) / 2}" y="${H - 4}" font-size="10" text-anchor="middle">` +
    `${esc(xlabel)}</text><text x="10" y="${(T + H - B) / 2}" font-size="10" ` +
    `text-anchor="middle" transform="rotate(-90 10 ${(T + H - B) / 2})">${esc(ylabel)}</text>`;
  if (diagonal) svg += `<line x1="${X(0)}" y1="${Y(0)}" x2="${X(1)}" y2="${Y(1)}" ` +
    `stroke="#bbb" stroke-dasharray="4 3"/>`;
  series.forEach((s, i) => {
    const pts = s.xy[0].map((x, j) => [x, s.xy[1][j]]).filter(([, y]) => y !== null);
    const color = s.color || COLORS[i % COLORS.length];
    svg += `<polyline fill="none" stroke="${color}" stroke-width="1.6" points="` +
      pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ") + `"/>`;
    if (s.dots) svg += pts.map(([x, y]) => `<circle cx="${X(x).toFixed(1)}" ` +
      `cy="${Y(y).toFixed(1)}" r="2.5" fill="${color}"/>`).join("");
  });
  svg += "</svg>";
  const legend = series.map((s, i) => `<span style="color:${s.color ||
    COLORS[i % COLORS.length]}">━ ${esc(s.name)}</span>`).join("");
  return `<div class="chart"><b>${esc(title)}</b>${svg}<div class="legend">${legend}</div></div>`;
}

function historyCharts(h) {
  if (!h.length) return "<p class='note'>no history.json to draw</p>";
  const ep = h.map(r => r.epoch);
  const line = (name, key, color) => ({name, color, dots: true, xy: [ep, h.map(r => r[key])]});
  return chart("loss per epoch", [line("train", "train_loss", COLORS[0]),
      line("validation", "val_loss", COLORS[1])], "epoch", "loss") +
    chart("accuracy and AUC per epoch", [line("train ACC", "train_acc", COLORS[0]),
      line("val ACC", "val_acc", COLORS[1]), line("val AUC", "val_auc", COLORS[2])],
      "epoch", "");
}

function confusionTable(r) {
  if (!r.confusion) return "<p class='note'>no confusion matrix (multi-label task)</p>";
  const m = r.confusion, most = Math.max(1, ...m.flat());
  let t = "<div class='scroll'><table><tr><th>true ↓ / predicted →</th>" +
    r.classes.map(c => `<th>${esc(c)}</th>`).join("") + "</tr>";
  m.forEach((row, i) => {
    t += `<tr><th>${esc(r.classes[i])}</th>` + row.map(v => `<td class="cm" ` +
      `style="background:rgba(31,119,180,${(v / most * 0.8).toFixed(2)})">${v}</td>`)
      .join("") + "</tr>";
  });
  return t + "</table></div>";
}

function wrongImages(r) {
  if (!r.wrong || !r.wrong.length) return `<p class="note">${esc(r.images_note ||
    "no test images")}</p>`;
  const maps = r.wrong.some(w => w.saliency);  // else the note says why there are none
  const why = r.saliency_note ? `<p class="${maps ? "hint" : "note"} saliency">` +
    `${esc(r.saliency_note)}</p>` : "";
  return why + "<div class='wrong'>" + r.wrong.map(w => `<figure${w.saliency ? " class='two'"
    : ""}><div class="pair"><img alt="test image ${w.index}" src="${w.image}">` +
    (w.saliency ? `<img class="map" alt="saliency ${w.index}" src="${w.saliency}">` : "") +
    `</div><figcaption>#${w.index}: true <b>${esc(w.true)}</b>, predicted ` +
    `<b>${esc(w.predicted)}</b>${w.confidence === null ? "" :
      ` (${(100 * w.confidence).toFixed(1)} %)`}</figcaption></figure>`).join("") + "</div>";
}

function robustness(r) {
  const rob = r.robustness;
  if (!rob) return "<p class='note'>not measured (no robustness.csv)</p>";
  if (!rob.rows.length) return `<p class="note">${esc(rob.note)}</p>`;
  const clean = rob.rows.find(x => x.corruption === "none");
  const names = [...new Set(rob.rows.map(x => x.corruption))].filter(n => n !== "none");
  const series = names.map(n => {
    const rows = rob.rows.filter(x => x.corruption === n).sort((a, b) => a.severity - b.severity);
    if (clean) rows.unshift(clean);
    return {name: n, dots: true, xy: [rows.map(x => x.severity), rows.map(x => x.acc)]};
  });
  let t = "<div class='scroll'><table><tr><th>corruption</th><th>severity</th><th>ACC</th>" +
    "<th>AUC</th><th>balanced ACC</th></tr>" + rob.rows.map(x => `<tr><td>${esc(x.corruption)}` +
    `</td><td>${x.severity}</td><td>${num(x.acc, 4)}</td><td>${num(x.auc, 4)}</td>` +
    `<td>${num(x.balanced_acc, 4)}</td></tr>`).join("") + "</table></div>";
  return (series.length ? chart("test ACC per severity", series, "severity", "ACC") : "") + t;
}

function runHtml(r) {
  let s = `<section class="run"><h2>${esc(r.name)}</h2>`;
  s += `<p>${esc(r.model)} on ${esc(r.dataset || "?")} (${esc(r.task || "?")}), seed ` +
    `${esc(r.seed)}, ${esc(r.status)}; kept epoch ${esc(r.epoch)} of ${esc(r.epochs)}; ` +
    `test split ${esc(r.test_split || "?")}: ACC ${num(r.test_acc, 4)}, AUC ` +
    `${num(r.test_auc, 4)}, ECE ${num(r.ece, 4)}.</p>`;
  if (r.note) s += `<p class="note">${esc(r.note)}</p>`;
  if (r.history) s += `<h3>Training curves</h3><div class="charts">${historyCharts(r.history)}` +
    "</div>";
  if (r.roc) {
    const named = c => ({name: `${c.name} (${c.area.toFixed(3)})`, xy: c.xy});
    s += "<h3>Test split: ROC, precision-recall, reliability</h3><div class='charts'>" +
      chart("ROC (AUC)", r.roc.map(named), "false positive rate", "true positive rate", true) +
      chart("precision-recall (AP)", r.pr.map(named), "recall", "precision") +
      (r.reliability ? chart("reliability", [{name: "model", dots: true, xy: r.reliability}],
        "confidence", "accuracy", true) : "<p class='note'>no probabilities: no reliability " +
        "diagram</p>") + "</div>";
    s += `<h3>Confusion matrix (test)</h3>${confusionTable(r)}`;
    s += `<h3>Most confidently wrong test images</h3>${wrongImages(r)}`;
  }
  if (r.status !== "damaged" && r.status !== "unfinished") {
    s += `<h3>Robustness</h3>${robustness(r)}`;
  }
  return s + "</section>";
}

function show(indices) {
  document.getElementById("detail").innerHTML = indices.map(i => runHtml(RUNS[i])).join("");
}

const bad = RUNS.filter(r => r.status === "damaged" || r.status === "unfinished");
document.getElementById("notes").innerHTML = bad.length ? "<p class='note'>" + bad.map(r =>
  `${esc(r.name)}: ${esc(r.status)} (${esc(r.note)})`).join("<br>") + "</p>" : "";
document.getElementById("filter").addEventListener("input", filter);
drawTable();
"""
