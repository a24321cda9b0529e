"""Ensembles as runs (medclf.run.family_ensemble): `medclf ensemble RUN... --out DIR` averages
the members' saved probabilities into a run folder that evaluate, predict, runs and ONNX export
read like any other; bad members and outputs are one line each, with no DIR left behind."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, roc_auc_score

import medclf
from medclf.cli import cli
from medclf.data.synthetic import write_synthetic

FFN = {"epochs": 1, "hidden_size": 16, "select": "val_auc", "quiet": True}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_refusal(result, out: Path | None = None):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    if out is not None:
        assert not out.exists(), f"{out} was left behind"
        assert not list(out.parent.glob(f".{out.name}.*")), "a temporary folder was left"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three BreastMNIST-like runs of one file (two seeds of torch-ffn, numpy-logreg) and
    runs that must not join them: another file, other val images, a perceptron."""
    root = tmp_path_factory.mktemp("ens")
    breast = write_synthetic(root / "breast.npz", "breastmnist", 0.1, 0)
    other = write_synthetic(root / "breast_b.npz", "breastmnist", 0.1, 1)  # other images
    pneu = write_synthetic(root / "pneu.npz", "pneumoniamnist", 0.02, 0)
    rd = root / "runs"
    made = {
        "a": medclf.train("torch-ffn", dataset=str(breast), seed=1, out=rd / "a", **FFN),
        "b": medclf.train("torch-ffn", dataset=str(breast), seed=2, out=rd / "b", **FFN),
        "c": medclf.train("numpy-logreg", dataset=str(breast), epochs=1, out=rd / "c", quiet=True),
        "other": medclf.train("torch-ffn", dataset=str(other), out=rd / "other", **FFN),
        "pneu": medclf.train("torch-ffn", dataset=str(pneu), out=rd / "pneu", **FFN),
        "half": medclf.train(
            "torch-ffn", dataset=str(breast), train_fraction=0.5, out=rd / "half", **FFN
        ),
        "perc": medclf.train(
            "numpy-perceptron", dataset=str(breast), epochs=1, out=rd / "perc", quiet=True
        ),
    }
    paths = {k: r.path for k, r in made.items()}
    result = invoke("ensemble", paths["a"], paths["b"], paths["c"], "--out", root / "ens")
    assert result.exit_code == 0, result.output
    np.savez(root / "few.npz", images=medclf.load_dataset(str(breast)).test.images[:7])
    return {**paths, "root": root, "data": breast, "ens": root / "ens"}


def saved(run, key):
    with np.load(Path(run) / "predictions.npz") as npz:
        return npz[key]


def test_ensemble_scores_are_the_members_mean_and_metrics_are_sklearns(runs):
    for split in ("val", "test"):
        members = [saved(runs[k], f"{split}_scores") for k in "abc"]
        mean = np.mean(members, axis=0)
        np.testing.assert_allclose(saved(runs["ens"], f"{split}_scores"), mean, atol=1e-12)
        labels = saved(runs["a"], f"{split}_labels").ravel()
        metrics = medclf.evaluate([runs["ens"]], split, resamples=0)[0]
        assert metrics["auc"] == pytest.approx(roc_auc_score(labels, mean[:, 1]))
        assert metrics["acc"] == pytest.approx(accuracy_score(labels, mean.argmax(axis=1)))
    m = json.loads((runs["ens"] / "metrics.json").read_text())
    test = saved(runs["a"], "test_labels").ravel()
    mean = np.mean([saved(runs[k], "test_scores") for k in "abc"], axis=0)
    assert m["test_auc"] == pytest.approx(roc_auc_score(test, mean[:, 1]))
    assert m["status"] == "done" and len(m["members"]) == 3


def test_ensemble_is_a_run_for_predict_evaluate_and_runs(runs):
    images = medclf.load_dataset(str(runs["data"])).test.images[:7]
    members = [medclf.open_run(runs[k]).predict_proba(images) for k in "abc"]
    ens = medclf.open_run(runs["ens"])
    np.testing.assert_allclose(ens.predict_proba(images), np.mean(members, axis=0), atol=1e-12)
    assert (ens.predict(images) == np.mean(members, axis=0).argmax(axis=1)).all()
    result = invoke("predict", runs["ens"], runs["root"] / "few.npz")
    assert result.exit_code == 0 and len(result.output.splitlines()) == 8, result.output
    result = invoke("evaluate", runs["ens"])
    assert result.exit_code == 0 and "ensemble of 3 runs" in result.output, result.output
    rows = {r["run"]: r for r in medclf.list_runs(runs["root"])}
    assert rows["ens"]["model"] == "ensemble" and rows["ens"]["settings"].endswith("members=3")


def test_onnx_export_is_one_graph_equal_to_predict_proba(runs, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is missing: pip install onnx")
    onnx = pytest.importorskip("onnx", reason="onnx is missing: pip install -e '.[onnx]'")
    out = tmp_path / "ens.onnx"
    result = invoke("export", "onnx", runs["ens"], "--out", out)
    assert result.exit_code == 0, result.output
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node].count("Mean") == 1
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    images = medclf.load_dataset(str(runs["data"])).test.images
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images})[0]
    expected = medclf.open_run(runs["ens"]).predict_proba(images)
    assert np.abs(got - expected).max() <= 1e-5


def test_a_moved_results_folder_keeps_its_ensemble(runs, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(runs["root"] / "runs", moved / "runs")
    shutil.copytree(runs["ens"], moved / "ens")
    images = medclf.load_dataset(str(runs["data"])).test.images[:3]
    expected = medclf.open_run(runs["ens"]).predict_proba(images)
    np.testing.assert_allclose(medclf.open_run(moved / "ens").predict_proba(images), expected)
    shutil.rmtree(moved / "runs" / "b")
    result = invoke("predict", moved / "ens", runs["root"] / "few.npz")
    one_line_refusal(result)
    assert "runs/b" in result.output and "unusable" in result.output


@pytest.mark.parametrize("change", ["model", "predictions", "config", "gone"])
def test_a_changed_or_missing_member_is_refused_by_predict_and_export(runs, tmp_path, change):
    work = tmp_path / "w"
    shutil.copytree(runs["root"] / "runs", work / "runs")
    shutil.copytree(runs["ens"], work / "ens")
    member = work / "runs" / "b"
    if change == "model":
        import torch

        state = torch.load(member / "model.pt")
        first = next(iter(state))
        state[first] = state[first] + 1
        torch.save(state, member / "model.pt")
    elif change == "predictions":
        arrays = dict(np.load(member / "predictions.npz"))
        arrays["test_scores"] = arrays["test_scores"][:, ::-1].copy()
        np.savez(member / "predictions.npz", **arrays)
    elif change == "config":
        config = json.loads((member / "config.json").read_text())
        (member / "config.json").write_text(json.dumps({**config, "lr": 0.5}))
    else:
        shutil.rmtree(member)
    images = medclf.load_dataset(str(runs["data"])).test.images[:3]
    with pytest.raises(medclf.errors.DataError, match="make the ensemble again"):
        medclf.open_run(work / "ens").predict_proba(images)
    result = invoke("predict", work / "ens", runs["root"] / "few.npz")
    one_line_refusal(result)
    pytest.importorskip("onnx", reason="onnx is missing: pip install -e '.[onnx]'")
    pytest.importorskip("onnxruntime", reason="onnxruntime is missing")
    out = tmp_path / "x.onnx"
    one_line_refusal(invoke("export", "onnx", work / "ens", "--out", out), out)


def damage(runs, tmp_path, how):
    """A folder ``how`` describes, made in tmp_path from the fixture's runs."""
    run = tmp_path / how
    if how == "missing":
        return run
    shutil.copytree(runs["a"], run)
    if how == "unfinished":
        (run / "metrics.json").unlink()
    elif how == "damaged":
        (run / "metrics.json").write_text("{not json")
    elif how == "no-model":
        (run / "model.pt").unlink()
    elif how == "garbage-model":
        (run / "model.pt").write_bytes(b"not a model")
    elif how == "bad-scores":  # saved scores that are not probabilities (NaN is diverged)
        with np.load(run / "predictions.npz") as npz:
            arrays = dict(npz)
        arrays["test_scores"] = arrays["test_scores"] * 100 - 50
        np.savez(run / "predictions.npz", **arrays)
    return run


@pytest.mark.parametrize(
    "members, words",
    [
        (["a", "a"], "same run folder"),
        (["a", "./a/"], "same run folder"),
        (["a", "link-to-a"], "same run folder"),
        (["a", "copy-of-a"], "copies of one run"),
        (["a", "pneu"], "dataset_name"),
        (["a", "other"], "data_md5"),
        (["a", "half"], "different val images"),
        (["a", "perc"], "not probabilities"),
        (["a", "ens"], "is an ensemble"),
        (["a", "missing"], "not a folder"),
        (["a", "unfinished"], "not a finished run"),
        (["a", "damaged"], "damaged"),
        (["a", "no-model"], "no model.pt"),
        (["a", "garbage-model"], "not a model file"),
        (["a", "bad-scores"], "bad-scores/predictions.npz: 'test_scores' holds values outside"),
    ],
)
def test_bad_members_are_one_line_and_leave_nothing(runs, tmp_path, members, words):
    os.symlink(runs["a"], tmp_path / "link-to-a")
    shutil.copytree(runs["a"], tmp_path / "copy-of-a")

    def path_of(name):
        if name in runs:
            return runs[name]
        if name == "./a/":
            return f"{runs['a']}/./"
        if (tmp_path / name).exists():
            return tmp_path / name
        return damage(runs, tmp_path, name)

    out = tmp_path / "new"
    result = invoke("ensemble", *map(path_of, members), "--out", out)
    one_line_refusal(result, out)
    assert words in result.output, result.output


def test_bad_outputs_and_one_member_are_refused(runs, tmp_path):
    one = invoke("ensemble", runs["a"], "--out", tmp_path / "one")
    one_line_refusal(one, tmp_path / "one")
    assert one.exit_code == 2 and "two runs or more" in one.output
    with pytest.raises(medclf.errors.ConfigError, match="two runs or more"):
        medclf.ensemble([runs["a"]], tmp_path / "one")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    result = invoke("ensemble", runs["a"], runs["b"], "--out", full)
    one_line_refusal(result)
    assert "not an empty folder" in result.output and os.listdir(full) == ["keep.txt"]
    (tmp_path / "file").write_text("")
    one_line_refusal(invoke("ensemble", runs["a"], runs["b"], "--out", tmp_path / "file" / "e"))
    one_line_refusal(invoke("ensemble", runs["a"], runs["b"], "--out", tmp_path / "no" / "e"))
    assert not (tmp_path / "no").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("ensemble", runs["a"], runs["b"], "--out", empty).exit_code == 0
    assert (empty / "metrics.json").is_file()


def test_a_fault_while_writing_leaves_no_folder(runs, tmp_path, monkeypatch):
    def fail(*args):
        raise OSError(28, "No space left on device", str(args[-1]))

    monkeypatch.setattr(os, "rename", fail)
    out = tmp_path / "ens"
    result = invoke("ensemble", runs["a"], runs["b"], "--out", out)
    one_line_refusal(result, out)
    assert os.listdir(tmp_path) == []


REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "breastmnist.npz"


@pytest.mark.skipif(
    not REAL.exists(), reason="the genuine breastmnist.npz in ../shared/data is absent"
)
def test_an_ensemble_of_genuine_breastmnist_runs(tmp_path):
    made = [
        medclf.train("torch-ffn", dataset=str(REAL), seed=s, out=tmp_path / f"s{s}", **FFN)
        for s in (1, 2)
    ]
    ens = medclf.ensemble([r.path for r in made], tmp_path / "ens")
    labels = saved(made[0].path, "test_labels").ravel()
    mean = np.mean([saved(r.path, "test_scores") for r in made], axis=0)
    assert ens.metrics["n_test"] == 156 == len(labels)
    assert ens.metrics["test_auc"] == pytest.approx(roc_auc_score(labels, mean[:, 1]))
    assert ens.metrics["test_acc"] == pytest.approx(accuracy_score(labels, mean.argmax(axis=1)))
    images = medclf.load_dataset(str(REAL)).test.images
    np.testing.assert_allclose(ens.predict_proba(images), mean, atol=1e-5)


@pytest.mark.parametrize(
    "edit",
    [
        {"family": []},
        {"family": "torch", "model": "nope"},
        {"family": "nope"},
        {"members": "a"},
        {"members": [{"run": 3}]},
        {"members": [{"run": "."}]},
    ],
)
def test_a_hand_edited_ensemble_config_is_one_line(runs, tmp_path, edit):
    work = tmp_path / "w"
    shutil.copytree(runs["root"] / "runs", work / "runs")
    shutil.copytree(runs["ens"], work / "ens")
    config = json.loads((work / "ens" / "config.json").read_text())
    (work / "ens" / "config.json").write_text(json.dumps({**config, **edit}))
    one_line_refusal(invoke("predict", work / "ens", runs["root"] / "few.npz"))


def test_a_hand_edited_ensemble_naming_one_member_twice_is_refused(runs, tmp_path):
    """Averaging a run with itself would weigh it double, which 'medclf ensemble' refuses: a
    config.json edited to do so (the MD5s copied) is refused too."""
    work = tmp_path / "w"
    shutil.copytree(runs["root"] / "runs", work / "runs")
    shutil.copytree(runs["ens"], work / "ens")
    config = json.loads((work / "ens" / "config.json").read_text())
    first = config["members"][0]
    twice = {**first, "run": first["run"].replace("../", "../runs/../", 1)}
    assert (work / "ens" / twice["run"]).resolve() == (work / "ens" / first["run"]).resolve()
    config["members"] = [first, twice]
    (work / "ens" / "config.json").write_text(json.dumps(config))
    result = invoke("predict", work / "ens", runs["root"] / "few.npz")
    one_line_refusal(result)
    assert "named twice" in result.output, result.output


def test_a_racing_out_is_refused_and_kept(runs, tmp_path, monkeypatch):
    """Two commands making an ensemble into one --out: the later one names the race in one
    line and touches neither the other's files nor leaves its own temporary folder."""
    import medclf.run.family_ensemble as fe

    out, draw = tmp_path / "ens", fe.confusion_png

    def race(*args):
        out.mkdir(exist_ok=True)
        (out / "other.txt").write_text("the other command's")
        return draw(*args)

    monkeypatch.setattr(fe, "confusion_png", race)
    result = invoke("ensemble", runs["a"], runs["b"], "--out", out)
    assert result.exit_code != 0 and "filled by another command" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert os.listdir(out) == ["other.txt"] and os.listdir(tmp_path) == ["ens"]
