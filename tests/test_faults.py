"""Issue 9 §2: every failure is one line, a non-zero exit and no traceback, with no partial file.

Filesystem faults are real where the machine allows: a tiny tmpfs for a full disk, a read-only
tmpfs, /proc, a 300-character name, a file or folder in the way. Run folders are trained once
per module (1 epoch on a small synthetic file) and damaged in copies.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from medclf.cli import cli
from medclf.run.predict import read_images


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(result, *words, code=1) -> str:
    """The result failed with exactly one 'Error: ...' line holding ``words``, no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs of 64 KiB (options given by the test) on a fresh folder; skip if not root."""
    mounted = []

    def mount(options="size=64k"):
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True)  # fmt: skip
        if done.returncode != 0:
            pytest.skip("mounting a tmpfs is not permitted here (needs root)")
        mounted.append(where)
        return where

    yield mount
    gc.collect()  # a failed writer may still hold a file open on the mount
    for where in mounted:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)  # detach it anyway


# --- filesystem faults, turned into one line by the CLI's Group -----------------------------


def test_full_disk(tmpfs):
    disk = tmpfs("size=64k")
    one_line(run("data", "synth", "--scale", "0.01", "--out", disk / "s.npz"),
             f"disk full while writing {disk / 's.npz'}", "free some space")  # fmt: skip
    assert os.listdir(disk) == []  # no partial file, not even the temporary one


def test_torch_full_disk(tmpfs, synth_file):
    out = tmpfs("size=24k") / "run"  # a torch-logreg file is about 13 KB: the disk fills
    one_line(run("train", "torch-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet",
                 "--out", out), f"disk full while writing {out} (torch: 'unexpected pos",
             "free some space")  # fmt: skip
    assert not [name for name in os.listdir(out) if "tmp" in name]  # no partial file
    assert not (out / "model.pt").exists()


def test_torch_full_disk_message_is_translated(monkeypatch, synth_file, tmp_path):
    import torch

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . "
                           "unexpected pos 6144 vs 6038")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "run"
    one_line(run("train", "torch-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet",
                 "--out", out), f"disk full while writing {out}",
             "unexpected pos 6144 vs 6038", "free some space")  # fmt: skip
    assert not (out / "model.pt").exists()


def test_read_only_folder(tmpfs):
    disk = tmpfs("ro,size=64k")
    one_line(run("data", "synth", "--scale", "0.01", "--out", disk / "s.npz"),
             "is on a read-only file system; choose a writable folder")  # fmt: skip
    assert os.listdir(disk) == []


def test_a_folder_the_system_refuses():
    one_line(run("data", "synth", "--scale", "0.01", "--out", "/proc/medclf-test.npz"),
             "cannot find or create /proc/medclf-test.npz")  # fmt: skip


def test_a_name_too_long(tmp_path):
    out = tmp_path / ("a" * 300 + ".npz")
    one_line(run("data", "synth", "--scale", "0.01", "--out", out),
             "is too long for the file system; choose a shorter one", "(")  # fmt: skip
    assert os.listdir(tmp_path) == []


def test_output_folder_under_a_file(tmp_path, synth_file):
    (tmp_path / "file").write_text("x")
    one_line(run("train", "numpy-logreg", "--dataset", synth_file, "--epochs", 1,
                 "--out", tmp_path / "file" / "run"),
             "is a file, not a folder")  # fmt: skip


def test_a_folder_in_the_way(tmp_path, synth_file):
    (tmp_path / "config.json").mkdir()
    one_line(run("train", "numpy-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet",
                 "--out", tmp_path),
             f"{tmp_path / 'config.json'} is a folder where a file is needed")  # fmt: skip
    assert os.listdir(tmp_path) == ["config.json"] and os.listdir(tmp_path / "config.json") == []


def test_ctrl_c_says_how_to_continue(monkeypatch, synth_file, tmp_path):
    import medclf.data.load

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(medclf.data.load, "load_dataset", interrupted)
    line = one_line(run("train", "numpy-logreg", "--dataset", synth_file, "--out", tmp_path),
                    "interrupted", "checkpointed", "--resume --out", "medclf reproduce",
                    code=130)  # fmt: skip
    assert "Aborted" not in line


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--lr", "inf", "lr == inf, must be > 0 and finite"),
    ("--lr", "nan", "lr == nan, must be > 0 and finite"),
    ("--l2", "inf", "l2 == inf, must be >= 0 and finite"),
    ("--seed", "-1", "seed == -1, must be an integer in 0..4294967295"),
    ("--seed", str(2**70), f"seed == {2**70}, must be an integer in 0..4294967295"),
    ("--device", "bogus", "device 'bogus' is not one medclf can use; use --device cpu, cuda"),
])  # fmt: skip
def test_bad_numbers_and_devices(tmp_path, synth_file, flag, value, message):
    out = tmp_path / "run"
    one_line(run("train", "torch-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet",
                 flag, value, "--out", out), message)  # fmt: skip
    assert not (out / "metrics.json").exists()


# --- plots and single output files -----------------------------------------------------------


def test_plot_with_an_unknown_suffix(tmp_path):
    out = tmp_path / "fig18.txt"
    one_line(run("theory", "interval", "--D", 2, "--A", -1, "--B", 1, "--plot", out),
             "'.txt' is not a figure format; end the name in", ".png", ".pdf")  # fmt: skip
    assert os.listdir(tmp_path) == []


def test_show_with_an_unknown_suffix(tmp_path, synth_file):
    one_line(run("data", "show", synth_file, "--out", tmp_path / "grid.jpgx"),
             "'.jpgx' is not a figure format")  # fmt: skip
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["show", "synth"])
def test_a_missing_parent_of_an_output_file_is_refused(tmp_path, synth_file, command):
    out = tmp_path / "no" / "such" / ("grid.png" if command == "show" else "s.npz")
    args = [synth_file] if command == "show" else ["--scale", "0.01"]
    one_line(run("data", command, *args, "--out", out),
             f"the folder {out.parent} does not exist; create it first")  # fmt: skip
    assert not (tmp_path / "no").exists()


# --- predict: the run folder and the inputs ---------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_file):
    """Finished run folders (1 epoch): torch-ffn (hidden 8) and numpy-logreg. The torch one is
    written into folders that do not exist yet: an output folder is created."""
    root = tmp_path_factory.mktemp("runs")
    torch_run, numpy_run = root / "new" / "torch", root / "numpy"
    for args, out in ((["torch-ffn", "--hidden-size", 8, "--layers", 1], torch_run),
                      (["numpy-logreg"], numpy_run)):  # fmt: skip
        result = run("train", *args, "--dataset", synth_file, "--epochs", 1, "--quiet",
                     "--out", out)  # fmt: skip
        assert result.exit_code == 0, result.output
    return {"torch": torch_run, "numpy": numpy_run}


@pytest.fixture(scope="module")
def images(tmp_path_factory, synth_file):
    folder = tmp_path_factory.mktemp("images")
    with np.load(synth_file) as npz:
        test = npz["test_images"][:3]
    np.savez(folder / "three.npz", images=test)
    return folder / "three.npz", test


def copy_run(runs, kind, tmp_path):
    return shutil.copytree(runs[kind], tmp_path / kind)


def test_predict_shows_whole_class_names(runs, images):
    result = run("predict", runs["torch"], images[0])
    assert result.exit_code == 0, result.output
    head, *rows = result.output.strip().splitlines()
    assert "choroidal neovascularization" in head and "diabetic macular edema" in head
    assert len(rows) == 3 and all(len(row.split()) >= 6 for row in rows)


class Evil:  # unpickling this runs a shell command that leaves a file
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("damage", ["random", "truncated", "pickle", "tensor", "empty"])
def test_predict_refuses_a_damaged_model_pt(runs, images, tmp_path, damage):
    import torch

    folder = copy_run(runs, "torch", tmp_path)
    model = folder / "model.pt"
    marker = tmp_path / "pwned"
    if damage == "random":
        model.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "truncated":
        model.write_bytes(model.read_bytes()[:300])
    elif damage == "pickle":
        model.write_bytes(pickle.dumps(Evil(marker)))
    elif damage == "tensor":
        torch.save(torch.zeros(4, 785), model)
    else:
        model.write_bytes(b"")
    one_line(run("predict", folder, images[0]),
             f"{model} is not a model file that medclf wrote", "train the run again")  # fmt: skip
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["zero bytes", "random", "pickle", "plain npy", "no meta",
                                    "object array", "wrong shape"])  # fmt: skip
def test_predict_refuses_a_damaged_model_npz(runs, images, tmp_path, damage):
    folder = copy_run(runs, "numpy", tmp_path)
    model = folder / "model.npz"
    with np.load(model) as npz:
        saved = dict(npz)
    if damage == "zero bytes":
        model.write_bytes(b"")
    elif damage == "random":
        model.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "pickle":
        model.write_bytes(pickle.dumps(Evil(tmp_path / "pwned")))
    elif damage == "plain npy":
        with model.open("wb") as f:
            np.save(f, saved["W"])
    elif damage == "no meta":
        np.savez(model, W=saved["W"])
    elif damage == "object array":
        np.savez(model, meta=saved["meta"], W=np.array([None] * 3, dtype=object))
    else:
        np.savez(model, meta=saved["meta"], W=saved["W"][:2])
    one_line(run("predict", folder, images[0]),
             f"{model} is not a model file that medclf wrote", "delete it")  # fmt: skip
    assert not (tmp_path / "pwned").exists()


def test_a_damaged_numpy_checkpoint_says_how_to_start_afresh(tmp_path, synth_file):
    out = tmp_path / "run"
    assert run("train", "numpy-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet",
               "--out", out).exit_code == 0  # fmt: skip
    (out / "checkpoint.npz").write_bytes(b"")
    one_line(run("train", "numpy-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet",
                 "--out", out, "--resume"),
             f"{out / 'checkpoint.npz'} is not a model file that medclf wrote",
             "delete it")  # fmt: skip


@pytest.mark.parametrize(("name", "content", "message"), [
    ("config.json", None, "config.json is missing, so"),
    ("config.json", "{not json", "config.json is damaged (not valid JSON)"),
    ("config.json", '{"model": "torch-ffn", "lr": "fast"}', "config.json is damaged"),
    ("metrics.json", None, "is not a finished run folder (no metrics.json)"),
    ("metrics.json", "[1, 2]", "metrics.json is damaged (not a JSON object)"),
    ("metrics.json", '{"image_shape": [28, 28]}', "'class_names' is not a list of names"),
])  # fmt: skip
def test_predict_refuses_a_damaged_run_folder(runs, images, tmp_path, name, content, message):
    folder = copy_run(runs, "torch", tmp_path)
    if content is None:
        (folder / name).unlink()
    else:
        (folder / name).write_text(content)
    one_line(run("predict", folder, images[0]), message)


def test_predict_refuses_weights_that_do_not_fit_the_config(runs, images, tmp_path):
    folder = copy_run(runs, "torch", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 16}))
    one_line(run("predict", folder, images[0]), "model.pt does not fit config.json", "shape")


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_predict_refuses_the_wrong_number_of_classes(runs, images, tmp_path, kind):
    folder = copy_run(runs, kind, tmp_path)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["class_names"] = ["a", "b"]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    one_line(run("predict", folder, images[0]), "gives 4 classes, but metrics.json names 2")


def test_predict_refuses_a_diverged_model(runs, images, tmp_path):
    import torch

    folder = copy_run(runs, "torch", tmp_path)
    state = torch.load(folder / "model.pt", weights_only=True)
    torch.save({k: torch.full_like(v, float("nan")) for k, v in state.items()},
               folder / "model.pt")  # fmt: skip
    one_line(run("predict", folder, images[0]), "non-finite outputs", "diverged")


def test_predict_uses_a_sigmoid_per_label_for_multi_label_runs(runs, images, tmp_path):
    from medclf.run.predict import predict_run

    folder = copy_run(runs, "torch", tmp_path)
    metrics = json.loads((folder / "metrics.json").read_text())
    _, softmax = predict_run(folder, images[1])
    (folder / "metrics.json").write_text(json.dumps({**metrics,
                                                     "task": "multi-label, binary-class"}))
    labels, sigmoid = predict_run(folder, images[1])
    np.testing.assert_allclose(softmax.sum(axis=1), 1)
    assert not np.allclose(sigmoid.sum(axis=1), 1)
    # softmax is the sigmoids' odds, normalised: p_k ∝ s_k / (1 - s_k)
    odds = sigmoid / (1 - sigmoid)
    np.testing.assert_allclose(odds / odds.sum(axis=1, keepdims=True), softmax, rtol=1e-5)
    assert labels.shape == sigmoid.shape and set(np.unique(labels)) <= {0, 1}


def png(path, pixels):
    from PIL import Image

    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize(("case", "message"), [
    ("truncated png", "is a damaged or truncated image"),
    ("zero images", "holds no images ('images' is empty)"),
    ("plain npy", "is a plain .npy array, not an .npz archive"),
    ("folder", "is a folder; give PNG images or .npz files"),
    ("transparent png", "has transparent pixels; save it without transparency"),
])  # fmt: skip
def test_predict_refuses_bad_inputs(runs, images, tmp_path, case, message):
    if case == "truncated png":
        whole = png(tmp_path / "whole.png", images[1][0]).read_bytes()
        bad = tmp_path / "cut.png"
        bad.write_bytes(whole[: len(whole) // 2])
    elif case == "zero images":
        bad = tmp_path / "none.npz"
        np.savez(bad, images=np.zeros((0, 28, 28), np.uint8))
    elif case == "plain npy":
        bad = tmp_path / "plain.npz"
        with bad.open("wb") as f:
            np.save(f, images[1])
    elif case == "folder":
        bad = tmp_path
    else:
        rgba = np.dstack([np.repeat(images[1][0][..., None], 3, axis=2),
                          np.full((28, 28), 128, np.uint8)])  # fmt: skip
        bad = png(tmp_path / "seethrough.png", rgba)
    one_line(run("predict", runs["torch"], bad), message)


def test_predict_accepts_opaque_rgba_as_matplotlib_writes_it(runs, images, tmp_path):
    import matplotlib.pyplot as plt

    gray = images[1][0]
    plt.imsave(tmp_path / "rgba.png", gray, cmap="gray", vmin=0, vmax=255)
    png(tmp_path / "gray.png", gray)
    result = run("predict", runs["torch"], tmp_path / "rgba.png", tmp_path / "gray.png")
    assert result.exit_code == 0, result.output
    rgba_row, gray_row = result.output.strip().splitlines()[1:]
    assert rgba_row.split()[1] == gray_row.split()[1]  # the same class
    read, _ = read_images([tmp_path / "rgba.png"], (28, 28))  # alpha dropped, gray kept
    assert np.abs(read[0].astype(int) - gray).max() <= 1  # matplotlib's colormap rounds
