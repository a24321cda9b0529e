"""Issue 16: a file a user hands medclf never runs code.

Every payload here creates a marker file when it is loaded the unsafe way (each test proves
that first, so the payload is live), then meets medclf's real entry points: the CLI and the
Python API. Each must refuse it in one line with no traceback, leave no marker, and leave the
run folder (or the --out) as it was.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import medclf
from conftest import Killed, kill_after
from medclf.cli import cli
from medclf.errors import MedclfError

MODEL_FILES = {"numpy": "model.npz", "torch": "model.pt", "sklearn": "model.skops"}
HAS_ONNX = importlib.util.find_spec("onnx") is not None
TRAINED = {"numpy": "numpy-logreg", "torch": "torch-logreg", "sklearn": "sklearn-logreg"}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def refused(result, *words, code: int = 1) -> str:
    """Exit ``code`` with exactly one 'Error: ...' line holding ``words``, no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes: what 'nothing half-written' compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- payloads --------------------------------------------------------------------------------


NESTED = "[" * 100_000 + "]" * 100_000  # JSON runs no code, but this overflows its parser


def code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


class Evil:
    """Unpickling this runs code that creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (code(self.marker),))


def exec_node(marker: Path) -> dict:
    """A skops reduce node: builtins.exec called with code that creates the marker."""
    text = {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(code(marker)),
        "is_json": True,
    }
    args = {
        "__class__": "tuple",
        "__module__": "builtins",
        "__loader__": "TupleNode",
        "content": [text],
    }
    return {
        "__class__": "exec",
        "__module__": "builtins",
        "__loader__": "ConstructorFromReduceNode",
        "content": args,
    }


def write_skops_payload(path: Path, marker: Path, inside: Path | None = None) -> None:
    """An exec node alone, or hidden in the Pipeline of a real model file (as its 'memory',
    which is None, so the model still works after the payload ran)."""
    if inside is None:
        schema = {**exec_node(marker), "protocol": 2, "_skops_version": "0.16.0"}
        members = {}
    else:
        with zipfile.ZipFile(inside) as z:
            members = {n: z.read(n) for n in z.namelist() if n != "schema.json"}
            schema = json.loads(z.read("schema.json"))
        schema["content"]["content"]["memory"] = exec_node(marker)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("schema.json", json.dumps(schema))
        for name, data in members.items():
            z.writestr(name, data)


def live(load, marker: Path) -> None:
    """The payload runs its code when loaded the unsafe way; the marker is removed again."""
    try:
        load()
    except Exception:  # the payload ran before what it returned failed to load
        pass
    assert marker.exists(), "the payload is not live: the test would prove nothing"
    marker.unlink()


def savez(path: Path, **arrays) -> None:
    """np.savez under exactly this name (given a path, it appends .npz to model.pt)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def unsafe_npz(path):
    with np.load(path, allow_pickle=True) as npz:
        return [npz[k] for k in npz.files]


def unsafe_torch(path):
    import torch

    return torch.load(path, weights_only=False)


def unsafe_skops(path):
    import skops.io as sio

    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(synth_file, tmp_path_factory):
    """One finished run per family (model.npz, model.pt, model.skops), and test images."""
    top = tmp_path_factory.mktemp("payload-runs")
    runs = {}
    for family, model in TRAINED.items():
        settings = {"epochs": 1} if family != "sklearn" else {"max_iter": 50}
        runs[family] = medclf.train(model, dataset=str(synth_file), out=top / family, **settings)
    images = medclf.load_dataset(synth_file).test.images[:3]
    np.savez(top / "images.npz", images=images)
    return runs, images, top / "images.npz"


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "pwned"


def copy_run(trained, family, tmp_path) -> Path:
    return Path(shutil.copytree(trained[0][family].path, tmp_path / family))


def model_payloads(family: str, path: Path, marker: Path):
    """(name, writer, unsafe loader) for each payload in place of a model file."""
    import torch

    original = path.read_bytes()
    inside = path.parent.parent / ("original" + path.suffix)
    inside.write_bytes(original)
    cases = [
        (
            "pickle",
            lambda: path.write_bytes(pickle.dumps(Evil(marker))),
            lambda: pickle.loads(path.read_bytes()),
        ),
        ("torch.save", lambda: torch.save(Evil(marker), path), lambda: unsafe_torch(path)),
        (
            "object array",
            lambda: savez(path, W=np.array([Evil(marker)], dtype=object)),
            lambda: unsafe_npz(path),
        ),
        ("skops exec", lambda: write_skops_payload(path, marker), lambda: unsafe_skops(path)),
        (
            "skops exec in a real model",
            lambda: write_skops_payload(path, marker, inside),
            lambda: unsafe_skops(path),
        ),
    ]
    if family == "torch":  # a state dict whose tensor is an object that unpickles into code
        cases.append(
            (
                "state dict",
                lambda: torch.save({"linear.weight": Evil(marker)}, path),
                lambda: unsafe_torch(path),
            )
        )
    if family != "sklearn":
        cases = [c for c in cases if c[0] != "skops exec in a real model"]
    return cases


# --- model files: predict, export onnx, the API ------------------------------------------------


@pytest.mark.parametrize("entry", ["predict", "export onnx", "api"])
@pytest.mark.parametrize("family", list(MODEL_FILES))
def test_a_model_file_payload_never_runs(trained, tmp_path, marker, family, entry):
    if entry == "export onnx" and not HAS_ONNX:
        pytest.skip("export onnx needs the onnx extra (pip install medclf[onnx])")
    runs, images, images_file = trained
    folder = copy_run(trained, family, tmp_path)
    path = folder / MODEL_FILES[family]
    onnx = tmp_path / "model.onnx"
    for name, write, load in model_payloads(family, path, marker):
        write()
        live(load, marker)
        before = snapshot(folder)
        if entry == "predict":
            refused(run("predict", folder, images_file), str(path))
        elif entry == "export onnx":
            refused(run("export", "onnx", folder, "--out", onnx), str(path))
        else:
            with pytest.raises(MedclfError, match=str(path)):
                medclf.open_run(folder).predict_proba(images)
        assert not marker.exists(), name
        assert not onnx.exists(), name
        assert snapshot(folder) == before, name


def test_the_exact_allow_list_refuses_a_builtin_callable(tmp_path, marker):
    """Types skops does not trust by default are refused by name, exec first of all."""
    from medclf.run.family_sklearn import load_model_file

    write_skops_payload(tmp_path / "model.skops", marker)
    with pytest.raises(MedclfError, match=r"holds types medclf never writes \(builtins\.exec\)"):
        load_model_file(tmp_path / "model.skops")
    assert not marker.exists()
    # A trusted type alone is no model: a KD-tree built from a reduce node is refused too.
    kd_tree = {
        **exec_node(marker),
        "__class__": "KDTree",
        "__module__": "sklearn.neighbors._kd_tree",
    }
    kd_tree["content"]["content"][0]["content"] = "[[1.0, 2.0]]"
    with zipfile.ZipFile(tmp_path / "tree.skops", "w") as z:
        z.writestr("schema.json", json.dumps({**kd_tree, "protocol": 2}))
    with pytest.raises(MedclfError, match="holds a KDTree, not a scikit-learn model"):
        load_model_file(tmp_path / "tree.skops")


# --- crafted tree arrays: out-of-bounds indices in trusted Cython trees -----------------------


# Trusted types whose node arrays scikit-learn's Cython code indexes without bounds checks. Each
# run goes through predict, export onnx and the API in a subprocess: a segfault fails the test.
TREE_RUNS = {
    "sklearn-rf": {"n_estimators": 5},
    "sklearn-hgb": {"max_iter": 3},
    "sklearn-knn": {"pca_components": 5},  # few components: sklearn builds a KD-tree
}
ENTRY_CODE = """
import sys, numpy as np, medclf
from medclf.cli import cli
from medclf.errors import MedclfError
entry, folder, images = sys.argv[1:4]
if entry == "api":
    try:
        medclf.open_run(folder).predict_proba(np.load(images)["images"])
    except MedclfError as err:
        print(f"Error: {err}")
        sys.exit(1)
else:
    inputs = [images] if entry == "predict" else []
    cli([*entry.split(), folder, *inputs, *sys.argv[4:]], prog_name="medclf")
"""


@pytest.fixture(scope="module")
def tree_runs(synth_file, tmp_path_factory):
    top = tmp_path_factory.mktemp("tree-runs")
    return {
        m: medclf.train(m, dataset=str(synth_file), out=top / m, **s).path
        for m, s in TREE_RUNS.items()
    }


def crafted_arrays(node, key=None):
    """(file name, edit) of each node array that a crafted file rewrites: tree and predictor
    'nodes' (children and features far out of range), a KD-tree's index and node arrays."""
    if isinstance(node, dict):
        if node.get("__loader__") == "NdArrayNode" and key == "nodes":
            yield node["file"], out_of_range
        if node.get("__class__") == "KDTree":
            state = node["content"]["content"]  # data, idx_array, node_data, node_bounds, ...
            yield state[1]["file"], lambda a: np.full_like(a, 10**8)
            yield state[2]["file"], kd_nodes_out_of_range
        for k, value in node.items():
            yield from crafted_arrays(value, k)
    elif isinstance(node, list):
        for value in node:
            yield from crafted_arrays(value, key)


def out_of_range(a: np.ndarray) -> np.ndarray:
    names = a.dtype.names
    left, right, feature = ("left_child", "right_child", "feature")
    if "left" in names:  # a gradient boosting predictor: no leaf is left, as the repro had it
        left, right, feature = "left", "right", "feature_idx"
        a["is_leaf"] = 0
    a[left][a[left] > 0] = 10**8
    a[right][a[right] > 0] = 10**8
    a[feature][a[feature] >= 0] = 10**6
    return a


def kd_nodes_out_of_range(a: np.ndarray) -> np.ndarray:
    a["idx_end"] = 10**8
    return a


def craft(folder: Path, out: Path, edits_of=None) -> Path:
    """A copy of the run whose model.skops has arrays rewritten by ``edits_of`` (default:
    crafted_arrays, the tree arrays)."""
    import io

    shutil.copytree(folder, out)
    with zipfile.ZipFile(folder / "model.skops") as z:
        edits = dict((edits_of or crafted_arrays)(json.loads(z.read("schema.json"))))
        assert edits, "no array to rewrite found: the test would prove nothing"
        with zipfile.ZipFile(out / "model.skops", "w") as crafted:
            for name in z.namelist():
                data = z.read(name)
                if name in edits:
                    buffer = io.BytesIO()
                    np.save(buffer, edits[name](np.load(io.BytesIO(data))))
                    data = buffer.getvalue()
                crafted.writestr(name, data)
    return out


def in_subprocess(entry: str, folder: Path, images: Path, *extra):
    """The entry point in a fresh Python running this checkout's medclf: (exit code, output)."""
    import os
    import subprocess
    import sys

    src = str(Path(medclf.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    args = [sys.executable, "-c", ENTRY_CODE, entry, str(folder), str(images), *map(str, extra)]
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    return out.returncode, (out.stdout + out.stderr).strip()


@pytest.mark.parametrize("entry", ["predict", "export onnx", "api"])
@pytest.mark.parametrize("model", list(TREE_RUNS))
def test_crafted_tree_arrays_are_refused_in_one_line(trained, tree_runs, tmp_path, model, entry):
    if entry == "export onnx" and not HAS_ONNX:
        pytest.skip("export onnx needs the onnx extra (pip install medclf[onnx])")
    folder = craft(tree_runs[model], tmp_path / "crafted")
    before = snapshot(folder)
    onnx = tmp_path / "model.onnx"
    extra = ["--out", onnx] if entry == "export onnx" else []
    code, output = in_subprocess(entry, folder, trained[2], *extra)
    assert code == 1, (code, output)  # -11 or 139: the crafted indices were used
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    if entry != "export onnx" or model == "sklearn-rf":  # the others have no ONNX graph
        assert "is not a model medclf wrote" in lines[0] and "train the run again" in lines[0]
    assert not onnx.exists() and snapshot(folder) == before


@pytest.mark.parametrize("model", list(TREE_RUNS))
def test_checked_tree_models_predict_as_skops_loads_them(trained, tree_runs, model):
    """The checks (and the rebuilt KD-tree) change no probability: bit-identical to the file
    as skops loads it unchecked, on the test images and on random ones."""
    import skops.io as sio

    from medclf.run.family_sklearn import TRUSTED_TYPES, load_model_file

    path = tree_runs[model] / "model.skops"
    images = trained[1].reshape(len(trained[1]), -1).astype(np.float32) / 255
    X = np.concatenate(
        [images, np.random.default_rng(0).random((100, images.shape[1]), np.float32)]
    )
    plain = sio.load(path, trusted=list(TRUSTED_TYPES)).predict_proba(X)
    np.testing.assert_array_equal(load_model_file(path).predict_proba(X), plain)
    code, output = in_subprocess("predict", tree_runs[model], trained[2])
    assert code == 0, output


def svm_counts_out_of_range(node, key=None):
    """(file name, edit) of an SVC's support-vector counts per class: the same total, which
    scikit-learn checks, but one count negative and one far beyond its class's vectors."""
    if isinstance(node, dict):
        if node.get("__loader__") == "NdArrayNode" and key == "_n_support":
            yield node["file"], shifted_counts
        for k, value in node.items():
            yield from svm_counts_out_of_range(value, k)
    elif isinstance(node, list):
        for value in node:
            yield from svm_counts_out_of_range(value, key)


def shifted_counts(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[0], a[-1] = a[0] - 10**6, a[-1] + 10**6
    return a


@pytest.mark.parametrize("entry", ["predict", "api"])
def test_a_crafted_svm_is_refused_in_one_line(trained, synth_file, tmp_path, entry):
    """libsvm reads the support vectors per class as counted in the file: counts beyond the
    arrays must be refused before libsvm sees them."""

    run = medclf.train("sklearn-svm", dataset=str(synth_file), out=tmp_path / "svm").path
    folder = craft(run, tmp_path / "crafted", svm_counts_out_of_range)
    code, output = in_subprocess(entry, folder, trained[2])
    assert code == 1, (code, output)
    assert output.startswith("Error: ") and "is not a model medclf wrote" in output, output
    assert in_subprocess(entry, run, trained[2])[0] == 0  # the file medclf wrote still works


def test_a_model_file_of_another_estimator_is_refused(tree_runs, trained, tmp_path):
    """Every type in a forest's file is trusted, but a forest is not the logistic regression
    that config.json names: the estimator's layout must be the one medclf builds."""
    folder = copy_run(trained, "sklearn", tmp_path)  # a sklearn-logreg run
    shutil.copyfile(tree_runs["sklearn-rf"] / "model.skops", folder / "model.skops")
    refused(run("predict", folder, trained[2]), "is not the sklearn-logreg", "config.json")


# --- checkpoints and best models: train --resume -------------------------------------------


def killed_run(synth_file, folder: Path, model: str) -> dict:
    """A run of 2 epochs killed after epoch 1 (checkpoint and best file on disk), whose
    history says epoch 1 cannot be beaten, so resuming ends by loading the best file."""
    from medclf.run.lifecycle import run_job

    config = medclf.make_config(model, dataset=str(synth_file), epochs=2, select="val_acc")
    with pytest.raises(Killed):
        run_job(
            config, medclf.load_dataset(synth_file), folder, quiet=True, after_epoch=kill_after(1)
        )
    if model.startswith("torch"):
        import torch

        state = torch.load(folder / "checkpoint.pt", weights_only=True)
        state["history"][0]["val_acc"] = 1.0
        torch.save(state, folder / "checkpoint.pt")
    else:
        with np.load(folder / "checkpoint.npz", allow_pickle=False) as npz:
            arrays = dict(npz)
        meta = json.loads(str(arrays["meta"][()]))
        meta["history"][0]["val_acc"] = 1.0
        np.savez(folder / "checkpoint.npz", **{**arrays, "meta": np.array(json.dumps(meta))})
    return config


@pytest.mark.parametrize("model", ["numpy-logreg", "torch-logreg"])
@pytest.mark.parametrize("which", ["checkpoint", "best"])
def test_a_checkpoint_or_best_payload_never_runs_on_resume(
    synth_file, tmp_path, marker, model, which
):
    import torch

    folder = tmp_path / "run"
    config = killed_run(synth_file, folder, model)
    suffix = ".pt" if model.startswith("torch") else ".npz"
    path = folder / f"{which}{suffix}"
    assert path.exists()
    args = (
        "train",
        model,
        "--dataset",
        synth_file,
        "--epochs",
        2,
        "--select",
        "val_acc",
        "--quiet",
        "--out",
        folder,
        "--resume",
    )
    cases = [
        (
            lambda: path.write_bytes(pickle.dumps(Evil(marker))),
            lambda: pickle.loads(path.read_bytes()),
        ),
        (lambda: torch.save(Evil(marker), path), lambda: unsafe_torch(path)),
        (
            lambda: savez(path, meta=np.array("{}"), W=np.array([Evil(marker)], dtype=object)),
            lambda: unsafe_npz(path),
        ),
    ]
    for write, load in cases:
        write()
        live(load, marker)
        before = snapshot(folder)
        refused(run(*args), str(path))
        with pytest.raises(MedclfError, match=str(path)):
            medclf.train(config=config, out=folder, resume=True)
        assert not marker.exists()
        after = snapshot(folder)  # no model, metrics or predictions written
        assert set(after) == set(before)
        if which == "checkpoint":
            assert after == before
        else:  # the last epoch trained before the best file was met: a whole checkpoint
            assert after[path.name] == before[path.name]


# --- predictions.npz: evaluate and the API -------------------------------------------------


@pytest.mark.parametrize("family", ["numpy", "sklearn"])
def test_a_predictions_payload_never_runs(trained, tmp_path, marker, family):
    folder = copy_run(trained, family, tmp_path)
    path = folder / "predictions.npz"
    with np.load(path, allow_pickle=False) as npz:
        saved = dict(npz)
    for key in ("test_scores", "test_labels"):
        np.savez(path, **{**saved, key: np.array([Evil(marker)], dtype=object)})
        live(lambda: unsafe_npz(path), marker)
        before = snapshot(folder)
        refused(run("evaluate", folder), str(path))
        if HAS_ONNX:  # export checks the model against the saved test scores
            refused(run("export", "onnx", folder, "--out", tmp_path / "m.onnx"), str(path))
            assert not (tmp_path / "m.onnx").exists()
        for read in (
            lambda: medclf.open_run(folder).predictions,
            lambda: medclf.open_run(folder).evaluate("test"),
        ):
            with pytest.raises(MedclfError, match=str(path)):
                read()
        assert not marker.exists()
        assert snapshot(folder) == before


# --- dataset files: train, data info, predict's inputs, the API ------------------------------


@pytest.mark.parametrize("key", ["train_images", "test_labels"])
def test_a_dataset_payload_never_runs(synth_file, trained, tmp_path, marker, key):
    with np.load(synth_file, allow_pickle=False) as npz:
        arrays = dict(npz)
    path = tmp_path / "octmnist.npz"
    np.savez(path, **{**arrays, key: np.array([Evil(marker)], dtype=object)})
    live(lambda: unsafe_npz(path), marker)
    out = tmp_path / "run"
    refused(run("train", "numpy-logreg", "--dataset", path, "--quiet", "--out", out), str(path))
    refused(run("data", "info", path), str(path))
    with pytest.raises(MedclfError, match=str(path)):
        medclf.load_dataset(path)
    with pytest.raises(MedclfError, match=str(path)):
        medclf.train("numpy-logreg", dataset=str(path), out=out)
    assert not out.exists()
    assert not marker.exists()


def test_a_payload_among_predict_inputs_never_runs(trained, tmp_path, marker):
    folder = copy_run(trained, "numpy", tmp_path)
    before = snapshot(folder)
    pickled, objects = tmp_path / "pickle.npz", tmp_path / "object.npz"
    pickled.write_bytes(pickle.dumps(Evil(marker)))
    np.savez(objects, images=np.array([Evil(marker)], dtype=object))
    live(lambda: pickle.loads(pickled.read_bytes()), marker)
    live(lambda: unsafe_npz(objects), marker)
    for path in (pickled, objects):
        refused(run("predict", folder, path), str(path))
        assert not marker.exists()
    assert snapshot(folder) == before


# --- config files: train --config ------------------------------------------------------------


def test_a_yaml_config_payload_never_runs(synth_file, tmp_path, marker):
    import yaml

    path = tmp_path / "evil.yaml"
    path.write_text(
        f"model: !!python/object/apply:os.system ['touch {marker}']\ndataset: {synth_file}\n"
    )
    live(lambda: yaml.unsafe_load(path.read_text()), marker)
    out = tmp_path / "run"
    refused(run("train", "--config", path, "--quiet", "--out", out), str(path))
    assert not marker.exists()
    assert not out.exists()


# --- JSON files of a run: a hostile document is refused in one line --------------------------


@pytest.mark.parametrize("name", ["config.json", "metrics.json", "history.json"])
def test_a_hostile_json_file_is_refused_in_one_line(trained, tmp_path, name):
    """JSON runs no code, but a deeply nested document makes json.loads raise RecursionError,
    which is not a ValueError."""
    folder = copy_run(trained, "numpy", tmp_path)
    path = folder / name
    path.write_text(NESTED)
    before = snapshot(folder)
    if name != "history.json":
        refused(run("predict", folder, trained[2]), str(path))
    if name == "metrics.json":
        refused(run("evaluate", folder), "no readable metrics.json")
        assert run("runs", folder.parent).exit_code == 0  # the table shows it as 'no metrics'
    if name != "history.json":  # train into that folder: refused as another run's
        refused(
            run(
                "train",
                "numpy-logreg",
                "--dataset",
                trained[0]["numpy"].config["dataset"],
                "--epochs",
                2,
                "--quiet",
                "--out",
                folder,
            ),
            str(folder),
        )
    with pytest.raises(MedclfError, match=str(path)):
        getattr(medclf.open_run(folder), name.split(".")[0])
    if importlib.util.find_spec("mlflow") is not None:
        mlruns = tmp_path / "mlruns"
        refused(run("export", "mlflow", folder, "--uri", mlruns.as_uri()), str(path))
    assert snapshot(folder) == before


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_deeply_nested_config_file_is_refused_in_one_line(tmp_path, suffix):
    path = tmp_path / f"config{suffix}"
    path.write_text(NESTED if suffix == ".json" else f"model: {NESTED}")
    out = tmp_path / "run"
    refused(run("train", "--config", path, "--quiet", "--out", out), str(path))
    assert not out.exists()


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path):
    """Eight aliases deep, lr stands for 9**8 strings: the message shows a short excerpt."""
    lines = ["model: torch-ffn", "lr:", '  - &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for name, prev in zip("bcdefgh", "abcdefg", strict=True):
        lines.append(f"  - &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    result = run("train", "--config", path, "--quiet", "--out", tmp_path / "run")
    line = refused(result, "lr ==", code=2)  # a bad value is a usage error
    assert len(line) < 300 and not (tmp_path / "run").exists()


def test_a_dataset_with_deeply_nested_meta_is_refused_in_one_line(synth_file, tmp_path):
    with np.load(synth_file, allow_pickle=False) as npz:
        arrays = dict(npz)
    path = tmp_path / "octmnist.npz"
    np.savez(path, **{**arrays, "medclf_meta": np.array(NESTED)})
    refused(run("data", "info", path), str(path))
    with pytest.raises(MedclfError, match=str(path)):
        medclf.load_dataset(path)
