"""The example notebooks run headless from top to bottom, in a temporary folder:
examples/quickstart.ipynb (2D images) and examples/volumes.ipynb (3D volumes)."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip(
    "nbformat",
    reason="needs the 'notebook' extra: pip install "
    "-e '.[notebook]' (nbformat, nbclient, ipykernel)",
)
nbclient = pytest.importorskip(
    "nbclient", reason="needs the 'notebook' extra: pip install -e '.[notebook]' (nbclient)"
)
pytest.importorskip(
    "ipykernel",
    reason="needs the 'notebook' extra: pip install -e "
    "'.[notebook]' (ipykernel, the kernel that runs the notebook)",
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOK = EXAMPLES / "quickstart.ipynb"
SHARED = ROOT.parent / "shared" / "data"  # where the notebooks look for the genuine files


@pytest.mark.parametrize("name", ["quickstart.ipynb", "volumes.ipynb"])
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def execute(notebook: Path, tmp_path: Path, real: str | None):
    """Run ``notebook`` in tmp_path/work; with ``real`` (a file name), the genuine file lies at
    tmp_path/shared/data, where the notebook looks for it (../shared/data), else it is skipped.
    Returns (its text outputs, its inline PNGs, its folder, the seconds it took)."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    if real is not None:
        if not (SHARED / real).exists():
            pytest.skip(f"the genuine {real} is absent ({SHARED / real})")
        (tmp_path / "shared" / "data").mkdir(parents=True)
        (tmp_path / "shared" / "data" / real).symlink_to(SHARED / real)
    before = sorted(p.name for p in EXAMPLES.iterdir())
    nb = nbformat.read(notebook, as_version=4)
    start = time.monotonic()
    # raises CellExecutionError, naming the cell, on any error
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    seconds = time.monotonic() - start
    assert sorted(p.name for p in EXAMPLES.iterdir()) == before  # nothing in the repo
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    texts = "".join(o.get("text", "") for o in outputs)
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    return texts, pngs, cwd, seconds


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_quickstart_runs_headless(tmp_path, data):
    real = "pneumoniamnist.npz" if data == "real" else None
    texts, pngs, cwd, seconds = execute(NOTEBOOK, tmp_path, real)
    said = "the real PneumoniaMNIST" if data == "real" else "a SYNTHETIC look-alike"
    assert f"using {said}" in texts, texts
    assert "3-fold accuracy" in texts and "numpy-logreg" in texts
    assert len(pngs) == 4  # samples, curves, confusion matrices, predictions: drawn inline
    assert (cwd / "runs" / "quickstart-torch-ffn" / "metrics.json").exists()
    for model in ("torch-ffn", "numpy-logreg"):  # no kept epoch whose validation loss jumped
        folder = cwd / "runs" / f"quickstart-{model}"
        history = json.loads((folder / "history.json").read_text())
        kept = json.loads((folder / "metrics.json").read_text())["selected_epoch"]
        losses = [r["val_loss"] for r in history]
        assert losses[kept - 1] <= 1.1 * min(losses), (model, kept, losses)
        assert f"{model:13} kept epoch {kept}: validation loss" in texts
    assert seconds < 120, f"the quickstart took {seconds:.0f} s"


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_volumes_notebook_runs_headless(tmp_path, data):
    real = "adrenalmnist3d.npz" if data == "real" else None
    texts, pngs, cwd, seconds = execute(EXAMPLES / "volumes.ipynb", tmp_path, real)
    said = "the real AdrenalMNIST3D" if data == "real" else "a SYNTHETIC look-alike"
    assert f"using {said}" in texts, texts
    n_train = 1188 if data == "real" else 238  # the synthetic file: 20 % of the real splits
    assert f"train ({n_train}, 28, 28, 28) (n, D, H, W) uint8" in texts, texts
    assert "task binary-class, classes ('normal', 'hyperplasia'), 3D volumes" in texts, texts
    assert "predict == argmax(predict_proba): True" in texts
    assert len(pngs) == 3  # mid-slices, curves, predictions: drawn inline
    for model in ("torch-cnn3d", "torch-ffn"):  # its printed test row is its run folder's
        metrics = json.loads((cwd / "runs" / f"volumes-{model}" / "metrics.json").read_text())
        assert metrics["status"] == "done" and metrics["image_shape"] == [28, 28, 28]
        assert metrics["synthetic"] is (data == "synthetic")
        row = re.search(rf"^{model} +([\d.]+) +([\d.]+)", texts, re.MULTILINE)
        assert row, f"no test row for {model}: {texts}"
        assert float(row[1]) == pytest.approx(metrics["test_acc"], abs=1e-4)
        assert float(row[2]) == pytest.approx(metrics["test_auc"], abs=1e-4)
    assert f"test split: {298 if data == 'real' else 60} volumes" in texts
    assert seconds < 300, f"the volumes notebook took {seconds:.0f} s"


def test_readme_command_runs_the_notebook(tmp_path):
    """The README's headless command, verbatim, from a temporary copy of the repository's layout
    (the notebook in examples/; synthetic data, as no ../shared/data lies beside it)."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r'`pip install [^`]*\[notebook\]" && (jupyter [^`]+)`', readme)
    assert commands, "the README names no command that runs the notebook with its extra"
    (tmp_path / "examples").mkdir()
    shutil.copy(NOTEBOOK, tmp_path / "examples")
    bin_dir = str(Path(sys.executable).parent)  # the venv's jupyter, where the extra installs it
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    for command in commands:
        done = subprocess.run(
            shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
    kept = [p for p in tmp_path.rglob("*.ipynb") if p != tmp_path / "examples" / NOTEBOOK.name]
    assert kept, f"{commands} keeps no executed notebook"
    cells = [c for p in kept for c in nbformat.read(p, as_version=4).cells]
    texts = "".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs)
    assert "using a SYNTHETIC look-alike" in texts and "3-fold accuracy" in texts, texts
    assert (tmp_path / "examples" / "runs" / "quickstart-torch-ffn" / "metrics.json").exists()
