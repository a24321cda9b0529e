"""examples/quickstart.ipynb runs headless from top to bottom, in a temporary folder."""

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
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
REAL = NOTEBOOK.parents[2] / "shared" / "data" / "pneumoniamnist.npz"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_quickstart_runs_headless(tmp_path, data):
    cwd = tmp_path / "work"
    cwd.mkdir()
    if data == "real":  # the notebook looks for ../shared/data/pneumoniamnist.npz
        if not REAL.exists():
            pytest.skip(f"the genuine PneumoniaMNIST is absent ({REAL})")
        (tmp_path / "shared" / "data").mkdir(parents=True)
        (tmp_path / "shared" / "data" / REAL.name).symlink_to(REAL)
    before = sorted(p.name for p in NOTEBOOK.parent.iterdir())
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.monotonic()
    # raises CellExecutionError, naming the cell, on any error
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    seconds = time.monotonic() - start
    texts = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    said = "the real PneumoniaMNIST" if data == "real" else "a SYNTHETIC look-alike"
    assert f"using {said}" in texts, texts
    assert "3-fold accuracy" in texts and "numpy-logreg" in texts
    pngs = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(pngs) == 4  # samples, curves, confusion matrices, predictions: drawn inline
    assert (cwd / "runs" / "quickstart-torch-ffn" / "metrics.json").exists()
    for model in ("torch-ffn", "numpy-logreg"):  # no kept epoch whose validation loss jumped
        folder = cwd / "runs" / f"quickstart-{model}"
        history = json.loads((folder / "history.json").read_text())
        kept = json.loads((folder / "metrics.json").read_text())["selected_epoch"]
        losses = [r["val_loss"] for r in history]
        assert losses[kept - 1] <= 1.1 * min(losses), (model, kept, losses)
        assert f"{model:13} kept epoch {kept}: validation loss" in texts
    assert sorted(p.name for p in NOTEBOOK.parent.iterdir()) == before  # nothing in the repo
    assert seconds < 120, f"the quickstart took {seconds:.0f} s"


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
