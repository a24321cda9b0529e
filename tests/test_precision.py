"""Issue 20 §2: --precision bf16|fp32 and --compile for the conv nets: detected, recorded in
config.json and env.json, refused in one line where the hardware or the model cannot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medclf.cli import cli
from medclf.models.training import precision


@pytest.fixture(scope="module")
def breast(tmp_path_factory):
    from medclf.data.synthetic import write_synthetic

    return write_synthetic(
        tmp_path_factory.mktemp("data") / "breastmnist.npz", "breastmnist", 0.1, 0
    )


def train(args, out):
    small = ["--epochs", "1", "--width", "4", "--threads", "1", "--quiet", "--out", str(out)]
    return CliRunner().invoke(cli, ["train", *map(str, args), *small])


def one_line_error(result, code=1):
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_the_detector_reads_torch_and_agrees_with_the_cpu_flags():
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to check torch's detection against")
    flags = set(cpuinfo.read_text().split())
    found = precision.cpu_bf16()
    assert (found is not None) == bool({"avx512_bf16", "amx_tile"} & flags)
    assert found is None or set(found.split("+")) <= {"amx", "avx512_bf16"}
    assert precision.bf16_support("cuda") is None or torch.cuda.is_available()


def test_bf16_without_hardware_support_is_refused_before_anything_is_written(
    breast, tmp_path, monkeypatch
):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)
    out = tmp_path / "run"
    line = one_line_error(train(["torch-cnn", "--dataset", breast, "--precision", "bf16"], out))
    assert "neither AVX512-BF16 nor AMX" in line and "--precision fp32" in line
    assert not out.exists() or not any(out.iterdir())  # no half-written run folder


@pytest.mark.parametrize(
    "args, words",
    [
        (["numpy-mlp", "--precision", "bf16"], "numpy-mlp has no setting 'precision'"),
        (["sklearn-svm", "--precision", "fp32"], "sklearn-svm has no setting 'precision'"),
        (["torch-ffn", "--precision", "bf16"], "torch-ffn has no setting 'precision'"),
        (["sklearn-hgb", "--compile"], "sklearn-hgb has no setting 'compile'"),
        (["numpy-logreg", "--compile"], "numpy-logreg has no setting 'compile'"),
    ],
)
def test_precision_and_compile_on_a_model_without_them_is_one_line(breast, tmp_path, args, words):
    result = CliRunner().invoke(cli, ["train", *args, "--dataset", str(breast)])
    line = one_line_error(result, 2)
    assert words in line and "torch-cnn" in line  # and which models have it


def test_an_unknown_precision_is_one_line(breast, tmp_path):
    one_line_error(train(["torch-cnn", "--dataset", breast, "--precision", "fp16"], tmp_path), 2)
    from medclf import api
    from medclf.errors import ConfigError

    with pytest.raises(ConfigError, match="precision == 'fp16', must be one of fp32, bf16"):
        api.train("torch-cnn", dataset=str(breast), precision="fp16", out=tmp_path / "r")


@pytest.mark.skipif(precision.cpu_bf16() is None, reason="this CPU has no native bf16")
def test_bf16_trains_in_bf16_and_says_so_in_config_and_env(breast, tmp_path, monkeypatch):
    import torch

    from medclf.models.training import torch_engine

    dtypes = []
    real = torch_engine.loss_fn

    def spy(logits, y, reduction="mean"):
        dtypes.append(logits.dtype)
        return real(logits, y, reduction)

    monkeypatch.setattr(torch_engine, "loss_fn", spy)
    runs = {}
    for p in ("fp32", "bf16"):
        dtypes.clear()
        result = train(["torch-cnn", "--dataset", breast, "--precision", p], tmp_path / p)
        assert result.exit_code == 0, result.output
        runs[p] = tmp_path / p
        assert set(dtypes) == {torch.float32}  # the loss always in float32
    config = json.loads((runs["bf16"] / "config.json").read_text())
    env = json.loads((runs["bf16"] / "env.json").read_text())
    assert config["precision"] == "bf16" and env["precision"] == "bf16"
    assert env["bf16_hardware"] == precision.cpu_bf16()
    assert json.loads((runs["fp32"] / "config.json").read_text())["precision"] == "fp32"
    a, b = (json.loads((r / "history.json").read_text())[0] for r in runs.values())
    assert a["train_loss"] != b["train_loss"]  # bf16 arithmetic really ran: other rounding
    assert abs(a["train_loss"] - b["train_loss"]) < 0.1  # ... of the same network
    # the kept model is scored in float32, as its ONNX graph computes it: export agrees
    pytest.importorskip("onnxruntime")
    result = CliRunner().invoke(cli, ["export", "onnx", str(runs["bf16"])])
    assert result.exit_code == 0, result.output


def test_bf16_autocast_runs_the_convolutions_in_bf16(monkeypatch):
    import torch

    from medclf.models.training import torch_engine

    if precision.cpu_bf16() is None:
        pytest.skip("this CPU has no native bf16")
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
    seen = []
    conv[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    X = torch.zeros((4, 1, 8, 8))
    out = torch_engine.logits_of(conv, X, precision="bf16")
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
    seen.clear()
    torch_engine.logits_of(conv, X)
    assert seen == [torch.float32]


def test_compile_trains_through_torch_compile_and_saves_a_plain_model(
    breast, tmp_path, monkeypatch
):
    import torch

    compiled = []
    real = torch.compile

    def spy(model, *args, **kwargs):
        compiled.append(type(model).__name__)
        return real(model, *args, backend="eager")  # the wrapper without inductor's build

    monkeypatch.setattr(torch, "compile", spy)
    result = train(["torch-cnn", "--dataset", breast, "--compile"], tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert compiled == ["SmallCNN"]
    assert json.loads((tmp_path / "c" / "config.json").read_text())["compile"] is True
    assert json.loads((tmp_path / "c" / "env.json").read_text())["compile"] is True
    state = torch.load(tmp_path / "c" / "model.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state)  # loads into the plain network
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "c"), str(breast)])
    assert result.exit_code == 0, result.output


def history_losses(run_dir):
    return [r["train_loss"] for r in json.loads((run_dir / "history.json").read_text())]


@pytest.mark.parametrize("hardware", ["none", "native"])
def test_auto_is_bf16_where_the_hardware_has_it_and_fp32_elsewhere(
    breast, tmp_path, monkeypatch, hardware
):
    """--precision auto (the fast preset's) trains exactly as the precision it resolves to,
    which env.json names beside the hardware; config.json keeps what was asked."""
    if hardware == "none":
        monkeypatch.setattr(precision, "cpu_bf16", lambda: None)
    elif precision.cpu_bf16() is None:
        pytest.skip("this CPU has no native bf16")
    expected = "fp32" if hardware == "none" else "bf16"
    for p in ("auto", expected):
        result = train(["torch-cnn", "--dataset", breast, "--precision", p], tmp_path / p)
        assert result.exit_code == 0, result.output
    env = json.loads((tmp_path / "auto" / "env.json").read_text())
    assert env["precision"] == expected and env["bf16_hardware"] == precision.cpu_bf16()
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["precision"] == "auto"
    # and beside the results, where a benchmark's rows read it
    assert json.loads((tmp_path / "auto" / "metrics.json").read_text())["precision"] == expected
    assert history_losses(tmp_path / "auto") == history_losses(tmp_path / expected)
    if expected == "bf16":  # bf16 really ran: not fp32's arithmetic
        train(["torch-cnn", "--dataset", breast, "--precision", "fp32"], tmp_path / "fp32")
        assert history_losses(tmp_path / "auto") != history_losses(tmp_path / "fp32")


def test_a_checkpoint_of_auto_goes_on_only_in_the_precision_it_began_in(
    breast, tmp_path, monkeypatch
):
    """Begun where auto is fp32 (no bf16), refused where auto is bf16; resumed where it began.
    The refusal comes before any bf16 arithmetic, so no bf16 hardware is needed."""
    import torch

    from conftest import Killed, kill_after
    from medclf.data.load import load_dataset
    from medclf.errors import ConfigError
    from medclf.models.config import make_config
    from medclf.run.lifecycle import run_job

    config = make_config(
        "torch-cnn", dataset=str(breast), epochs=2, width=4, precision="auto", select="val_auc"
    )
    dataset, out = load_dataset(str(breast)), tmp_path / "run"
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)
    with pytest.raises(Killed):
        run_job(config, dataset, out, quiet=True, threads=1, after_epoch=kill_after(1))
    monkeypatch.setattr(precision, "cpu_bf16", lambda: "amx")  # another machine: auto is bf16
    with pytest.raises(ConfigError, match="was trained in fp32, but precision auto is bf16") as e:
        run_job(config, dataset, out, quiet=True, threads=1)
    assert "\n" not in str(e.value)
    # a checkpoint written before it said its precision trained in its config's: not refused
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "precision"}, out / "checkpoint.pt")
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)  # where it began
    done = run_job(config, dataset, out, quiet=True, threads=1)
    assert len(history_losses(out)) == 2 and done["val_auc"] is not None
    assert json.loads((out / "env.json").read_text())["precision"] == "fp32"


def test_the_3d_conv_net_takes_precision_auto_and_records_what_ran(tmp_path):
    from medclf import api

    volumes = api.synthesize("adrenalmnist3d", tmp_path / "a.npz", scale=0.04, seed=1)
    args = ["torch-cnn3d", "--dataset", volumes, "--precision", "auto"]
    result = CliRunner().invoke(
        cli,
        [
            "train",
            *map(str, args),
            "--epochs",
            "1",
            "--threads",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 0, result.output
    ran = precision.resolve("auto", "cpu")
    assert json.loads((tmp_path / "r" / "env.json").read_text())["precision"] == ran
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["precision"] == ran


def test_a_gpu_without_native_bf16_is_no_bf16_gpu(monkeypatch):
    """torch.cuda.is_bf16_supported() says yes to pre-Ampere GPUs, which emulate bf16."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, native in (((7, 0), None), ((7, 5), None), ((8, 0), "cuda sm_80")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d, c=capability: c)
        assert precision.bf16_support("cuda:0") == native
        assert precision.resolve("auto", torch.device("cuda")) == ("bf16" if native else "fp32")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: (7, 0))
    with pytest.raises(Exception, match="no native bfloat16"):
        precision.check_precision("bf16", "cuda")


def test_benchmark_precision_replaces_the_presets_for_the_conv_nets_only():
    from medclf.experiments.benchmark import grid

    models = ["torch-cnn", "torch-cnn3d", "torch-ffn", "sklearn-svm"]
    fast = {"torch-cnn": "auto", "torch-cnn3d": "fp32"}  # the fast preset's own
    paper = {"torch-cnn": "fp32", "torch-cnn3d": "fp32"}  # MedMNIST v2's arithmetic
    for asked, preset in (("fp32", "fast"), ("bf16", "paper"), (None, "paper"), (None, "fast")):
        entries = grid(["a.npz"], models, preset, 1, precision=asked)
        got = {e["model"]: e["config"].get("precision") for e in entries}
        conv = {m: asked for m in fast} if asked else {"fast": fast, "paper": paper}[preset]
        assert got == {**conv, "torch-ffn": None, "sklearn-svm": None}


def test_benchmark_bf16_without_hardware_is_one_line_before_anything_trains(
    breast, tmp_path, monkeypatch
):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)
    args = ["benchmark", "--dataset", str(breast), "--model", "torch-cnn", "--seeds", "1"]
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, [*args, "--precision", "bf16", "--out", str(out)])
    assert "neither AVX512-BF16 nor AMX" in one_line_error(result)
    assert not (out / "runs").exists()


def test_benchmark_precision_no_model_takes_is_one_line(breast, tmp_path):
    args = ["benchmark", "--dataset", str(breast), "--model", "sklearn-svm", "--seeds", "1"]
    result = CliRunner().invoke(cli, [*args, "--precision", "fp32", "--out", str(tmp_path / "b")])
    line = one_line_error(result)
    assert "none of the benchmark's models takes it" in line and "torch-cnn" in line
    assert not (tmp_path / "b").exists()


def test_runs_of_two_precisions_are_two_ensembles_and_a_failed_run_keeps_its_plan():
    from medclf.experiments.benchmark import result_row, shared_precision
    from medclf.experiments.ensembles import seed_groups
    from medclf.models.config import make_config

    rows = [
        {"data_file": "a.npz", "model": "torch-cnn", "preset": "fast", "precision": p, "key": k}
        for k, p in (("x", "bf16"), ("y", "bf16"), ("z", "fp32"))
    ]
    groups = seed_groups(rows)
    assert sorted(len(g) for g in groups.values()) == [1, 2]
    assert shared_precision(rows[:2]) == "bf16" and shared_precision(rows) is None
    assert shared_precision([*rows[:1], {"model": "sklearn-svm"}]) == "bf16"
    config = make_config("torch-cnn", precision="auto")
    failed = result_row({"key": "k", "status": "failed", "config": config})
    assert failed["precision"] == precision.resolve("auto", "cpu")


@pytest.mark.parametrize("forged", ["tensor", "bf16", "fp16"])
def test_a_checkpoint_with_a_forged_precision_is_refused_in_one_line(breast, tmp_path, forged):
    import torch

    from conftest import Killed, kill_after
    from medclf.data.load import load_dataset
    from medclf.errors import ConfigError
    from medclf.models.config import make_config
    from medclf.run.lifecycle import run_job

    config = make_config("torch-ffn", dataset=str(breast), epochs=2, hidden_size=8)
    dataset, out = load_dataset(str(breast)), tmp_path / "run"
    with pytest.raises(Killed):
        run_job(config, dataset, out, quiet=True, threads=1, after_epoch=kill_after(1))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["precision"] = torch.zeros(3) if forged == "tensor" else forged
    torch.save(state, out / "checkpoint.pt")
    words = "was trained in bf16" if forged == "bf16" else "not a checkpoint medclf wrote"
    with pytest.raises(ConfigError, match=words) as e:
        run_job(config, dataset, out, quiet=True, threads=1)
    assert "\n" not in str(e.value) and "delete it" in str(e.value)
