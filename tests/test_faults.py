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
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
        )
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
    one_line(
        run("data", "synth", "--scale", "0.01", "--out", disk / "s.npz"),
        f"disk full while writing {disk / 's.npz'}",
        "free some space",
    )
    assert os.listdir(disk) == []  # no partial file, not even the temporary one


def test_torch_full_disk(tmpfs, synth_file):
    out = tmpfs("size=24k") / "run"  # a torch-logreg file is about 13 KB: the disk fills
    one_line(
        run(
            "train", "torch-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet", "--out", out
        ),
        f"disk full while writing {out} (torch: 'unexpected pos",
        "free some space",
    )
    assert not [name for name in os.listdir(out) if "tmp" in name]  # no partial file
    assert not (out / "model.pt").exists()


def test_torch_full_disk_message_is_translated(monkeypatch, synth_file, tmp_path):
    import torch

    def full(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . unexpected pos 6144 vs 6038"
        )

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "run"
    one_line(
        run(
            "train", "torch-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet", "--out", out
        ),
        f"disk full while writing {out}",
        "unexpected pos 6144 vs 6038",
        "free some space",
    )
    assert not (out / "model.pt").exists()


def test_read_only_folder(tmpfs):
    disk = tmpfs("ro,size=64k")
    one_line(
        run("data", "synth", "--scale", "0.01", "--out", disk / "s.npz"),
        "is on a read-only file system; choose a writable folder",
    )
    assert os.listdir(disk) == []


def test_a_folder_the_system_refuses():
    one_line(
        run("data", "synth", "--scale", "0.01", "--out", "/proc/medclf-test.npz"),
        "cannot find or create /proc/medclf-test.npz",
    )


def test_a_name_too_long(tmp_path):
    out = tmp_path / ("a" * 300 + ".npz")
    one_line(
        run("data", "synth", "--scale", "0.01", "--out", out),
        "is too long for the file system; choose a shorter one",
        "(",
    )
    assert os.listdir(tmp_path) == []


def test_output_folder_under_a_file(tmp_path, synth_file):
    (tmp_path / "file").write_text("x")
    one_line(
        run(
            "train",
            "numpy-logreg",
            "--dataset",
            synth_file,
            "--epochs",
            1,
            "--out",
            tmp_path / "file" / "run",
        ),
        "is a file, not a folder",
    )


def test_a_folder_in_the_way(tmp_path, synth_file):
    (tmp_path / "config.json").mkdir()
    one_line(
        run(
            "train",
            "numpy-logreg",
            "--dataset",
            synth_file,
            "--epochs",
            1,
            "--quiet",
            "--out",
            tmp_path,
        ),
        f"{tmp_path / 'config.json'} is a folder where a file is needed",
    )
    assert os.listdir(tmp_path) == ["config.json"] and os.listdir(tmp_path / "config.json") == []


def test_ctrl_c_says_how_to_continue(monkeypatch, synth_file, tmp_path):
    import medclf.data.load

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(medclf.data.load, "load_dataset", interrupted)
    line = one_line(
        run("train", "numpy-logreg", "--dataset", synth_file, "--out", tmp_path),
        "interrupted",
        "checkpointed",
        "--resume --out",
        "medclf reproduce",
        code=130,
    )
    assert "Aborted" not in line


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--lr", "inf", "lr == inf, must be > 0 and finite"),
        ("--lr", "nan", "lr == nan, must be > 0 and finite"),
        ("--l2", "inf", "l2 == inf, must be >= 0 and finite"),
        ("--seed", "-1", "seed == -1, must be an integer in 0..4294967295"),
        ("--seed", str(2**70), f"seed == {2**70}, must be an integer in 0..4294967295"),
        ("--device", "bogus", "device 'bogus' is not one medclf can use; use --device cpu, cuda"),
    ],
)
def test_bad_numbers_and_devices(tmp_path, synth_file, flag, value, message):
    out = tmp_path / "run"
    one_line(
        run(
            "train",
            "torch-logreg",
            "--dataset",
            synth_file,
            "--epochs",
            1,
            "--quiet",
            flag,
            value,
            "--out",
            out,
        ),
        message,
        code=1 if flag == "--device" else 2,
    )
    assert not (out / "metrics.json").exists()


# --- plots and single output files -----------------------------------------------------------


def test_plot_with_an_unknown_suffix(tmp_path):
    out = tmp_path / "fig18.txt"
    one_line(
        run("theory", "interval", "--D", 2, "--A", -1, "--B", 1, "--plot", out),
        "'.txt' is not a figure format; end the name in",
        ".png",
        ".pdf",
    )
    assert os.listdir(tmp_path) == []


def test_show_with_an_unknown_suffix(tmp_path, synth_file):
    one_line(
        run("data", "show", synth_file, "--out", tmp_path / "grid.jpgx"),
        "'.jpgx' is not a figure format",
    )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["show", "synth"])
def test_a_missing_parent_of_an_output_file_is_refused(tmp_path, synth_file, command):
    out = tmp_path / "no" / "such" / ("grid.png" if command == "show" else "s.npz")
    args = [synth_file] if command == "show" else ["--scale", "0.01"]
    one_line(
        run("data", command, *args, "--out", out),
        f"the folder {out.parent} does not exist; create it first",
    )
    assert not (tmp_path / "no").exists()


# --- predict: the run folder and the inputs ---------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_file):
    """Finished run folders (1 epoch): torch-ffn (hidden 8) and numpy-logreg. The torch one is
    written into folders that do not exist yet: an output folder is created."""
    root = tmp_path_factory.mktemp("runs")
    torch_run, numpy_run = root / "new" / "torch", root / "numpy"
    for args, out in (
        (["torch-ffn", "--hidden-size", 8, "--layers", 1], torch_run),
        (["numpy-logreg"], numpy_run),
    ):
        result = run(
            "train", *args, "--dataset", synth_file, "--epochs", 1, "--quiet", "--out", out
        )
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
    one_line(
        run("predict", folder, images[0]),
        f"{model} is not a model file that medclf wrote",
        "train the run again",
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage",
    ["zero bytes", "random", "pickle", "plain npy", "no meta", "object array", "wrong shape"],
)
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
    one_line(
        run("predict", folder, images[0]),
        f"{model} is not a model file that medclf wrote",
        "delete it",
    )
    assert not (tmp_path / "pwned").exists()


def test_a_damaged_numpy_checkpoint_says_how_to_start_afresh(tmp_path, synth_file):
    out = tmp_path / "run"
    assert (
        run(
            "train", "numpy-logreg", "--dataset", synth_file, "--epochs", 1, "--quiet", "--out", out
        ).exit_code
        == 0
    )
    (out / "checkpoint.npz").write_bytes(b"")
    one_line(
        run(
            "train",
            "numpy-logreg",
            "--dataset",
            synth_file,
            "--epochs",
            1,
            "--quiet",
            "--out",
            out,
            "--resume",
        ),
        f"{out / 'checkpoint.npz'} is not a model file that medclf wrote",
        "delete it",
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("config.json", None, "config.json is missing, so"),
        ("config.json", "{not json", "config.json is damaged (not valid JSON)"),
        ("config.json", '{"model": "torch-ffn", "lr": "fast"}', "config.json is damaged"),
        ("metrics.json", None, "is not a finished run folder (no metrics.json)"),
        ("metrics.json", "[1, 2]", "metrics.json is damaged (not a JSON object)"),
        ("metrics.json", '{"image_shape": [28, 28]}', "'class_names' is not a list of names"),
    ],
)
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
    torch.save({k: torch.full_like(v, float("nan")) for k, v in state.items()}, folder / "model.pt")
    one_line(run("predict", folder, images[0]), "non-finite outputs", "diverged")


def test_predict_uses_a_sigmoid_per_label_for_multi_label_runs(runs, images, tmp_path):
    from medclf.run.predict import predict_run

    folder = copy_run(runs, "torch", tmp_path)
    metrics = json.loads((folder / "metrics.json").read_text())
    _, softmax = predict_run(folder, images[1])
    (folder / "metrics.json").write_text(
        json.dumps({**metrics, "task": "multi-label, binary-class"})
    )
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


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated png", "is a damaged or truncated image"),
        ("zero images", "holds no images ('images' is empty)"),
        ("plain npy", "is a plain .npy array, not an .npz archive"),
        ("folder", "is a folder; give PNG images or .npz files"),
        ("transparent png", "has transparent pixels; save it without transparency"),
    ],
)
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
        rgba = np.dstack(
            [np.repeat(images[1][0][..., None], 3, axis=2), np.full((28, 28), 128, np.uint8)]
        )
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


# --- issue 16: tracebacks and silent acceptance -----------------------------------------------


def test_evaluate_needs_only_the_task_and_class_names(runs, tmp_path):
    folder = copy_run(runs, "numpy", tmp_path)
    path = folder / "metrics.json"
    metrics = json.loads(path.read_text())
    for key in ("synthetic", "title", "dataset_name"):  # informational: defaults
        del metrics[key]
    path.write_text(json.dumps(metrics))
    result = run("evaluate", folder)
    assert result.exit_code == 0, result.output
    path.write_text(json.dumps({**metrics, "task": ["multi-class"]}))
    one_line(run("evaluate", folder), "lacks the task or class names")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("int-key.yaml", "model: torch-ffn\n1: 2\n", "the key 1 is not a setting name"),
        ("list.json", '{"model": ["torch-ffn"]}', "model == ['torch-ffn']"),
        (
            "bool.json",
            '{"model": "torch-ffn", "patience": true, "select": "val_auc"}',
            "patience == True",
        ),
        ("float-size.json", '{"model": "torch-ffn", "size": 28.0}', "size == 28.0"),
        ("text-epochs.yaml", "model: torch-ffn\nepochs: '3'\n", "epochs == '3'"),
        ("list-lr.json", '{"model": "torch-ffn", "lr": [0.1]}', "lr == [0.1]"),
        ("int-dataset.json", '{"model": "torch-ffn", "dataset": 5}', "dataset == 5"),
        ("typo.json", '{"model": "torch-ffn", "epoch": 3}', "did you mean 'epochs'?"),
    ],
)
def test_config_file_values_are_checked_by_type(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    one_line(run("train", "--config", tmp_path / name, "--out", tmp_path / "r"), message, code=2)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args", [["--lr", -1], ["--epochs", 0], ["--seed", -1]])
def test_a_value_the_config_refuses_is_a_usage_error(tmp_path, synth_file, args):
    result = run("train", "torch-ffn", "--dataset", synth_file, *args, "--out", tmp_path / "r")
    one_line(result, f"{args[0][2:]} == ", code=2)


def test_width_zero_is_a_usage_error(tmp_path, synth_file):
    result = run("train", "torch-cnn", "--dataset", synth_file, "--width", 0)
    one_line(result, "width == 0", code=2)


def unfinished_run(model, synth_file, out):
    """A run killed after its second of four epochs: checkpoint and best file on disk."""
    from medclf.data.load import load_dataset
    from medclf.models.config import make_config
    from medclf.run.lifecycle import run_job

    class Killed(Exception):
        pass

    def kill(record):
        if record["epoch"] == 2:
            raise Killed

    config = make_config(model, dataset=str(synth_file), epochs=4, select="val_loss")
    with pytest.raises(Killed):
        run_job(config, load_dataset(synth_file), out, quiet=True, after_epoch=kill)
    return [
        "train",
        model,
        "--dataset",
        synth_file,
        "--epochs",
        4,
        "--select",
        "val_loss",
        "--resume",
        "--quiet",
        "--out",
        out,
    ]


class Payload:
    """Unpickling this creates the marker file: it must never happen."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("model, suffix", [("torch-logreg", "pt"), ("numpy-logreg", "npz")])
@pytest.mark.parametrize("name", ["best", "checkpoint"])
@pytest.mark.parametrize("damage", ["cut", "pickle"])
def test_resume_refuses_a_damaged_or_foreign_file(
    tmp_path, synth_file, model, suffix, name, damage
):
    out = tmp_path / "run"
    args = unfinished_run(model, synth_file, out)
    path, marker = out / f"{name}.{suffix}", tmp_path / "marker"
    if damage == "cut":
        path.write_bytes(path.read_bytes()[:500])
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))
    line = one_line(run(*args), f"{name}.{suffix}", "delete")
    assert "afresh" in line
    assert not marker.exists()


def test_the_api_raises_medclf_errors_for_damaged_run_files(runs, tmp_path):
    import medclf
    from medclf.errors import MedclfError

    folder = copy_run(runs, "numpy", tmp_path)
    run_ = medclf.open_run(folder)
    assert len(run_.history) == 1 and run_.predictions["test_scores"].ndim == 2
    preds = dict(np.load(folder / "predictions.npz"))
    np.savez(folder / "predictions.npz", **{**preds, "test_scores": np.array([{}], object)})
    with pytest.raises(MedclfError, match="predictions.npz"):
        _ = medclf.open_run(folder).predictions
    history = folder / "history.json"
    history.write_text(history.read_text()[:20])
    with pytest.raises(MedclfError, match="history.json"):
        _ = medclf.open_run(folder).history
    history.unlink()
    with pytest.raises(MedclfError, match="history.json is missing"):
        _ = medclf.open_run(folder).history
    with pytest.raises(MedclfError, match="not a int"):
        medclf.open_run(5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", -1], "seed == -1"),
        (["--seed", 2**32], "seed == 4294967296"),
        (["--scale", "nan"], "scale == nan"),
        (["--scale", 0], "scale == 0.0"),
    ],
)
def test_synth_refuses_bad_numbers_as_usage_errors(tmp_path, args, message):
    one_line(run("data", "synth", "--out", tmp_path / "s.npz", *args), message, code=2)
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("args", [["--workers", 0], ["--seeds", -1]])
def test_reproduce_refuses_bad_counts_as_usage_errors(tmp_path, args):
    one_line(run("reproduce", "--out", tmp_path / "r", *args), args[0], code=2)


def not_regular(tmp_path, kind, suffix=".png"):
    """A FIFO, a symbolic link (to a regular file), a character device (root only)."""
    path = tmp_path / f"target-{kind}{suffix}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        (tmp_path / "real.png").write_bytes(b"keep")
        path.symlink_to(tmp_path / "real.png")
    else:
        if os.geteuid() != 0:
            pytest.skip("creating a character device needs root")
        os.mknod(path, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 3))  # like /dev/null
    return path


@pytest.mark.parametrize("kind", ["fifo", "symlink", "chardev"])
@pytest.mark.parametrize("command", ["synth", "show", "theory", "onnx"])
def test_an_output_that_is_not_a_regular_file_is_never_replaced(
    tmp_path, synth_file, runs, kind, command
):
    import stat

    suffix = {"synth": ".npz", "onnx": ".onnx"}.get(command, ".png")
    target = not_regular(tmp_path, kind, suffix)
    before = os.lstat(target).st_mode
    args = {
        "synth": ["data", "synth", "--out", target],
        "show": ["data", "show", synth_file, "--out", target],
        "theory": ["theory", "interval", "--D", 2, "--A", -1, "--B", 1, "--plot", target],
        "onnx": ["export", "onnx", runs["numpy"], "--out", target],
    }[command]
    if command == "onnx":
        pytest.importorskip("onnx")
    result = run(*args)
    assert "never replaces" in one_line(result, target.name)
    assert os.lstat(target).st_mode == before and not stat.S_ISREG(before)
    if kind == "symlink":
        assert (tmp_path / "real.png").read_bytes() == b"keep"


def test_atomic_writes_refuse_a_non_regular_target(tmp_path):
    from medclf.errors import MedclfError
    from medclf.files import atomic_path

    target = not_regular(tmp_path, "fifo")
    with pytest.raises(MedclfError, match="is a FIFO, which medclf never replaces"):
        with atomic_path(target) as tmp:
            tmp.write_text("x")
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.fixture(scope="module")
def file_64(tmp_path_factory):
    """A 64x64 OCTMNIST-like file without medclf's metadata, named as MedMNIST+ names it."""
    from medclf.data.synthetic import synthesize

    arrays = {k: v for k, v in synthesize("octmnist", 0.005, 0, 64).items() if k.endswith("s")}
    path = tmp_path_factory.mktemp("plus") / "octmnist_64.npz"
    np.savez(path, **arrays)
    return path


def test_a_files_size_is_read_from_it(tmp_path, file_64):
    out = tmp_path / "r"
    result = run(
        "train", "torch-logreg", "--dataset", file_64, "--epochs", 1, "--quiet", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["size"] == 64


@pytest.mark.parametrize("command", [["train", "torch-logreg", "--dataset"], ["data", "info"]])
def test_a_size_that_contradicts_the_file_is_refused(tmp_path, file_64, command):
    result = run(*command, file_64, "--size", 28)
    one_line(result, "holds 64x64 images", "--size", code=2)


HELP = [["-h"], ["data", "-h"], ["train", "-h"], ["export", "onnx", "-h"]]


@pytest.mark.parametrize("args", HELP)
def test_h_is_help(args):
    result = run(*args)
    assert result.exit_code == 0 and "Usage:" in result.output, result.output


@pytest.mark.parametrize(
    "args, hint",
    [
        (["train", "torch-fn"], "did you mean 'torch-ffn'?"),
        (["tarin"], "did you mean 'train'?"),
        (["data", "info", "octmnst"], "did you mean 'octmnist'?"),
        (["data", "synth", "--like", "pneumonia", "--out", "x.npz"], "'pneumoniamnist'"),
        (["runs", "--sort", "tst_auc"], "did you mean 'test_auc'?"),
    ],
)
def test_a_near_miss_gets_a_did_you_mean(tmp_path, args, hint):
    result = run(*args)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert hint in result.output, result.output


# --- found by the red-team pass after the issue-16 fixes ---------------------------------------


@pytest.fixture(scope="module")
def logreg_run(tmp_path_factory, synth_file):
    out = tmp_path_factory.mktemp("redteam") / "run"
    result = run("train", "sklearn-logreg", "--dataset", synth_file, "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("model", [[1], {"a": 1}, 7, None])
def test_a_run_whose_config_names_no_model_is_damaged_in_one_line(logreg_run, tmp_path, model):
    import medclf

    bad = tmp_path / "bad"
    shutil.copytree(logreg_run, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "model": model}))
    one_line(run("predict", bad, tmp_path / "x.npz"), "config.json")
    from medclf.errors import MedclfError

    with pytest.raises(MedclfError, match="config.json"):
        medclf.open_run(bad).predict_proba(np.zeros((1, 28, 28), np.uint8))


def test_predictions_of_strings_are_refused_by_export_too(logreg_run, tmp_path):
    pytest.importorskip("onnx")
    bad = tmp_path / "bad"
    shutil.copytree(logreg_run, bad)
    with np.load(bad / "predictions.npz") as npz:
        arrays = dict(npz)
    arrays["test_scores"] = np.array(["a"] * len(arrays["test_scores"]))
    np.savez(bad / "predictions.npz", **arrays)
    one_line(run("export", "onnx", bad, "--out", tmp_path / "m.onnx"), "predictions.npz")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    "name, text",
    [
        ("twice.json", '{"model": "torch-ffn", "epochs": 1, "epochs": 2}'),
        ("twice.yaml", "model: torch-ffn\nepochs: 1\nepochs: 2\n"),
    ],
)
def test_a_setting_given_twice_in_a_config_file_is_refused(tmp_path, synth_file, name, text):
    path = tmp_path / name
    path.write_text(text)
    args = ("train", "--config", path, "--dataset", synth_file, "--out", tmp_path / "r")
    one_line(run(*args), "'epochs' is given twice", code=2)
    assert not (tmp_path / "r").exists()


def test_an_alias_bomb_as_the_model_gives_a_short_line(tmp_path, synth_file):
    pytest.importorskip("yaml")
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for name, prev in zip("bcdefgh", "abcdefg", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*lines, "model: *h"]) + "\n")
    line = one_line(run("train", "--config", path, "--dataset", synth_file), "model ==", code=2)
    assert len(line) < 300


def test_synth_of_an_unknown_dataset_is_a_usage_error(tmp_path):
    line = one_line(run("data", "synth", "--like", "octmnst", "--out", tmp_path / "s.npz"), code=2)
    assert "did you mean 'octmnist'" in line and not (tmp_path / "s.npz").exists()


def test_a_pipe_or_device_given_as_a_file_is_refused_not_waited_on(tmp_path, synth_file):
    """zipfile and numpy would wait forever on a named pipe (and read /dev/zero to no end):
    a path that is not a regular file is refused in one line instead."""
    run = tmp_path / "run"
    done = CliRunner().invoke(
        cli,
        ["train", "numpy-logreg", "--dataset", str(synth_file), "--epochs", "1", "--quiet"]
        + ["--out", str(run)],
    )
    assert done.exit_code == 0, done.output
    pipe = tmp_path / "pipe.npz"
    os.mkfifo(pipe)
    (run / "predictions.npz").unlink()
    os.mkfifo(run / "predictions.npz")
    for args in (
        ["data", "info", str(pipe)],
        ["data", "info", "/dev/zero"],
        ["predict", str(run), str(pipe)],
        ["ensemble", str(run), str(run), "--out", str(tmp_path / "ens")],
    ):
        try:
            result = subprocess.run(["medclf", *args], capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"medclf {' '.join(args)} waited on a pipe or device")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "not a regular file" in result.stderr, (args, result.stderr)
