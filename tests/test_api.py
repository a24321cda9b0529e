"""The Python API in a fresh interpreter (no CLI): train, reopen, evaluate, predict."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys
import numpy as np
import medclf
from medclf.data.synthetic import write_synthetic

path = write_synthetic(sys.argv[1] + "/b.npz", "breastmnist", 0.1, 0)
ds = medclf.load_dataset(path)
run = medclf.train("torch-ffn", dataset=str(path), epochs=2, hidden_size=16,
                   out=sys.argv[1] + "/run")
again = medclf.open_run(run.path)
proba = again.predict_proba(ds.test.images)
saved = again.predictions["test_scores"]
try:
    medclf.train("no-such-model")
    refused = None
except medclf.errors.MedclfError as err:
    refused = str(err)
print(json.dumps({
    "same_scores": float(np.abs(proba - saved).max()),
    "classes": again.predict(ds.test.images[:5]).tolist(),
    "auc_recomputed": again.evaluate("test")["auc"], "auc_saved": again.metrics["test_auc"],
    "epochs": len(again.history), "config_model": again.config["model"], "refused": refused,
    "estimator": type(medclf.LogisticRegression()).__name__,
}))
"""


def test_api_trains_reopens_and_predicts_in_a_fresh_interpreter(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["same_scores"] < 1e-6  # the reopened model gives the saved test scores
    assert len(result["classes"]) == 5 and set(result["classes"]) <= {0, 1}
    assert result["auc_recomputed"] == result["auc_saved"]
    assert result["epochs"] == 2 and result["config_model"] == "torch-ffn"
    assert "unknown model 'no-such-model'" in result["refused"]
    assert result["estimator"] == "LogisticRegression"


def test_import_medclf_loads_nothing_heavy():
    code = (
        "import sys, medclf; heavy = [m for m in ('torch', 'numba', 'sklearn', "
        "'matplotlib', 'numpy') if m in sys.modules]; print(heavy, medclf.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("[] "), out.stdout + out.stderr
