"""Importing medclf changes nothing outside it: no matplotlib backend forced, no folders."""

import json
import os
import subprocess
import sys

MODULES = [
    "medclf",
    "medclf.cli",
    "medclf.plots",
    "medclf.report.figures",
    "medclf.theory.explain",
    "medclf.models.numpy_models",
]

DRAW = """
import json, sys, numpy as np, matplotlib
{imports}
from medclf.plots import confusion_figure, history_figures, sample_grid, save_figure
from medclf.theory.explain import figure18
save_figure(sample_grid(np.zeros((4, 28, 28)), np.array([0, 0, 1, 1]), ["a", "b"]), "grid.png")
save_figure(confusion_figure([[3, 1], [0, 4]], ["a", "b"]), "confusion.pdf")
save_figure(figure18(-1, 1), "fig18.svg")
history_figures([{{"epoch": 1, "train_acc": 0.5, "val_acc": 0.4}}], ".")
print(json.dumps([matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules]))
"""


def run(code, cwd, **env):
    env = {**os.environ, **env}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_and_drawing_leaves_the_backend_and_pyplot_alone(tmp_path):
    imports = "\n".join(f"import {m}" for m in MODULES)
    for backend in ("svg", "pdf"):
        backend_now, pyplot_loaded = run(DRAW.format(imports=imports), tmp_path, MPLBACKEND=backend)
        assert backend_now == backend and not pyplot_loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "accuracy.pdf",  # every PNG gets its PDF beside it
        "accuracy.png",
        "confusion.pdf",
        "fig18.svg",
        "grid.pdf",
        "grid.png",
    ]


def test_import_creates_no_folders(tmp_path):
    home, cwd, mpl = tmp_path / "home", tmp_path / "cwd", tmp_path / "mpl"
    for d in (home, cwd, mpl):
        d.mkdir()
    code = "\n".join(f"import {m}" for m in MODULES) + "\nprint('[]')"
    run(code, cwd, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), MPLCONFIGDIR=str(mpl))
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == []
