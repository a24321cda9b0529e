"""The API does each command's work: the CLI's output is the API's result, printed."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import medclf
from medclf.cli import cli


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, synth_file):
    top = tmp_path_factory.mktemp("runs")
    settings = {"dataset": str(synth_file), "epochs": 1, "train_fraction": 0.3}
    a = medclf.train("numpy-logreg", out=top / "a", **settings)
    b = medclf.train("numpy-logreg", out=top / "b", lr=0.001, **settings)
    return top, a, b


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_evaluate_json_is_the_api_result(two_runs):
    _, a, _ = two_runs
    [result] = medclf.evaluate([a.path], "val", resamples=50, seed=3)
    printed = json.loads(
        invoke("evaluate", a.path, "--split", "val", "--json", "--resamples", 50, "--seed", 3)
    )
    assert printed["acc"] == result["acc"] and printed["intervals"] == result["intervals"]
    saved = np.load(a.path / "predictions.npz")  # the oracle: counted here
    hits = saved["val_scores"].argmax(axis=1) == saved["val_labels"].ravel()
    assert result["acc"] == pytest.approx(hits.mean())


def test_runs_and_compare_go_through_the_api(two_runs):
    top, a, b = two_runs
    rows = medclf.list_runs(top, "run")
    assert [r["run"] for r in rows] == ["a", "b"]
    assert json.loads(invoke("runs", top, "--json")) == rows
    paired = medclf.compare(a.path, b.path, "test", resamples=50)
    printed = json.loads(
        invoke("evaluate", a.path, b.path, "--compare", "--json", "--resamples", 50)
    )
    assert printed == json.loads(json.dumps(paired))


def test_predict_files_and_export_onnx(two_runs, tmp_path):
    _, a, _ = two_runs
    images = medclf.load_dataset(a.config["dataset"]).test.images[:3]
    np.savez(tmp_path / "three.npz", images=images)
    names, classes, proba = a.predict_files([tmp_path / "three.npz"])
    assert len(names) == 3 and (classes == a.predict(images)).all()
    np.testing.assert_allclose(proba, a.predict_proba(images))
    pytest.importorskip("onnxruntime", reason="onnxruntime is missing: pip install -e '.[onnx]'")
    done = medclf.export_onnx(a.path, tmp_path / "a.onnx")
    assert done["path"] == str(tmp_path / "a.onnx") and done["max_delta"] <= 1e-5


def test_data_commands_are_the_api(tmp_path):
    path = medclf.synthesize("breastmnist", tmp_path / "api.npz", scale=0.02, seed=5)
    invoke(
        "data",
        "synth",
        "--like",
        "breastmnist",
        "--out",
        tmp_path / "cli.npz",
        "--scale",
        0.02,
        "--seed",
        5,
    )
    api, cli_file = np.load(path), np.load(tmp_path / "cli.npz")
    assert sorted(api.files) == sorted(cli_file.files)
    assert all(np.array_equal(api[k], cli_file[k]) for k in api.files)
    figure = medclf.sample_figure(str(path), "val", per_class=2)
    assert len(figure.axes) == 2 * len(medclf.load_dataset(str(path)).class_names)
    assert medclf.verify(["breastmnist"], root=tmp_path) == {"breastmnist": "missing"}


def test_theory_is_the_api_answer(tmp_path):
    answer = medclf.interval_answer(3, -1, 1)
    assert json.loads(invoke("theory", "interval", "--D", 3, "--A", -1, "--B", 1, "--json")) == (
        answer
    )
    assert invoke("theory", "interval", "--D", 3, "--A", -1, "--B", 1, "--markdown").strip() == (
        medclf.interval_answer(3, -1, 1, "markdown").strip()
    )
    invoke("theory", "interval", "--D", 2, "--A", -1, "--B", 1, "--plot", tmp_path / "a.png")
    medclf.interval_figure(-1, 1, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == (tmp_path / "b.png").read_bytes()[:8]
    with pytest.raises(medclf.api.ConfigError, match="form must be one of"):
        medclf.interval_answer(3, -1, 1, "html")


@pytest.mark.parametrize("model", ["torch-ffn", "numpy-logreg"])
def test_repeated_predictions_load_the_model_once_until_it_changes(
    tmp_path, synth_file, model, monkeypatch
):
    """Run.predict_proba keeps the checked model while its file is unchanged (a notebook's
    image-by-image calls do not reload it); a changed file is loaded and checked again."""
    from medclf.run import folder

    monkeypatch.setattr(folder, "_KEPT", {})
    run = medclf.train(model, dataset=str(synth_file), epochs=1, out=tmp_path / "r", quiet=True)
    images = medclf.load_dataset(synth_file).test.images[:5]
    first = medclf.open_run(run.path).predict_proba(images)
    assert len(folder._KEPT) == 1
    for i in range(3):
        again = medclf.open_run(run.path).predict_proba(images[i : i + 2])
        np.testing.assert_array_equal(again, first[i : i + 2])
    assert len(folder._KEPT) == 1
    model_file = next(p for p in run.path.iterdir() if p.name.startswith("model."))
    model_file.write_bytes(b"not a model any more")
    with pytest.raises(medclf.api.DataError):
        medclf.open_run(run.path).predict_proba(images)
