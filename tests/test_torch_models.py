"""PyTorch models and engine: structure, dropout, weight decay, determinism, resume, predict."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from conftest import Killed, kill_after
from medclf.cli import cli
from medclf.data.features import make_features
from medclf.data.load import load_dataset
from medclf.errors import ConfigError
from medclf.models.config import make_config
from medclf.models.torch_models import FeedforwardNetwork, LogisticRegression
from medclf.models.training import torch_engine as engine
from medclf.run.lifecycle import run_job as run_torch
from medclf.run.predict import predict_run


@pytest.mark.parametrize(
    ("hidden", "layers", "activation"), [(200, 2, "relu"), (50, 1, "tanh"), (8, 3, "relu")]
)
def test_structure_and_parameter_count(hidden, layers, activation):
    net = FeedforwardNetwork(784, 4, hidden, layers, activation, dropout=0.3)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == layers + 1
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == layers
    act = nn.ReLU if activation == "relu" else nn.Tanh
    assert sum(isinstance(m, act) for m in net.modules()) == layers
    expected = 784 * hidden + hidden + (layers - 1) * (hidden * hidden + hidden) + hidden * 4 + 4
    assert sum(p.numel() for p in net.parameters()) == expected
    assert sum(p.numel() for p in LogisticRegression(784, 4).parameters()) == 785 * 4


def test_table1_defaults():
    c = make_config("torch-ffn")
    assert (
        c["epochs"],
        c["lr"],
        c["hidden_size"],
        c["layers"],
        c["dropout"],
        c["batch_size"],
        c["activation"],
        c["l2"],
        c["optimizer"],
    ) == (20, 0.1, 200, 2, 0.0, 16, "relu", 0.0, "sgd")


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    net = FeedforwardNetwork(10, 3, 64, 2, dropout=0.5)
    x = torch.randn(4, 10)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def test_weight_decay_equals_the_hand_added_l2_gradient():
    torch.manual_seed(0)
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    a = FeedforwardNetwork(10, 3, 8, 2)
    b = FeedforwardNetwork(10, 3, 8, 2)
    b.load_state_dict(a.state_dict())
    opt_a = engine.make_optimizer(a, "sgd", 0.1, l2=0.01)
    opt_b = engine.make_optimizer(b, "sgd", 0.1, l2=0.0)
    for net, opt in ((a, opt_a), (b, opt_b)):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
    for p in b.parameters():
        p.grad += 0.01 * p.detach()  # d/dp of (0.01 / 2) ||p||^2
    opt_a.step()
    opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-7)


@pytest.mark.parametrize("mode", [True, False])
def test_evaluate_restores_mode_and_builds_no_graph(mode):
    net = FeedforwardNetwork(10, 3, 8, 1, dropout=0.5)
    net.train(mode)
    x, y = torch.randn(20, 10, requires_grad=True), torch.randint(0, 3, (20,))
    loss, acc = engine.evaluate(net, x, y)
    assert net.training is mode and isinstance(loss, float) and 0 <= acc <= 1
    assert all(p.grad is None for p in net.parameters()) and x.grad is None


def _config(**kw):
    return make_config("torch-ffn", epochs=3, hidden_size=16, **kw)


def test_same_seed_same_history(tmp_path, synth_file):
    ds = load_dataset(synth_file)
    runs = [run_torch(_config(dropout=0.2), ds, tmp_path / f"r{i}", quiet=True) for i in (0, 1)]
    h = [json.loads((tmp_path / f"r{i}" / "history.json").read_text()) for i in (0, 1)]
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in hist] for hist in h]
    assert strip[0] == strip[1] and runs[0]["test_acc"] == runs[1]["test_acc"]
    other = run_torch(_config(dropout=0.2, seed=1), ds, tmp_path / "r2", quiet=True)
    hist2 = json.loads((tmp_path / "r2" / "history.json").read_text())
    assert hist2[0]["train_loss"] != h[0][0]["train_loss"] or other != runs[0]


def test_killed_run_resumes_to_the_same_numbers(tmp_path, synth_file):
    ds = load_dataset(synth_file)
    config = _config(dropout=0.3)
    whole = run_torch(config, ds, tmp_path / "whole", quiet=True)

    with pytest.raises(Killed):
        run_torch(config, ds, tmp_path / "killed", quiet=True, after_epoch=kill_after(1))
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    with pytest.raises(ConfigError, match="pass --resume"):
        run_torch(config, ds, tmp_path / "killed", quiet=True, resume=False)
    resumed = run_torch(config, ds, tmp_path / "killed", quiet=True)
    assert resumed["test_acc"] == whole["test_acc"]
    a = json.loads((tmp_path / "whole" / "history.json").read_text())
    b = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]
    sa = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    sb = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not (tmp_path / "killed" / "checkpoint.pt").exists()


def test_checkpoint_of_another_config_is_refused(tmp_path, synth_file):
    ds = load_dataset(synth_file)

    with pytest.raises(Killed):
        run_torch(_config(), ds, tmp_path / "r", quiet=True, after_epoch=kill_after(1))
    with pytest.raises(ConfigError, match="another config"):
        run_torch(_config(lr=0.5), ds, tmp_path / "r", quiet=True)


@pytest.mark.parametrize("model", ["torch-ffn", "torch-logreg"])
def test_predict_reproduces_the_test_accuracy(tmp_path, synth_file, model):
    out = tmp_path / model
    result = CliRunner().invoke(
        cli, ["train", model, "--dataset", str(synth_file), "--epochs", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "epoch   2" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    ds = load_dataset(synth_file)
    f = make_features(ds)
    from medclf.data.features import select_test

    test = select_test(ds)
    classes, proba = predict_run(out, test.images)
    assert np.mean(classes == f.y_test) == pytest.approx(metrics["test_acc"], abs=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    npz = tmp_path / "imgs.npz"
    np.savez(npz, images=test.images[:5])
    printed = CliRunner().invoke(cli, ["predict", str(out), str(npz)])
    assert printed.exit_code == 0 and printed.output.count("imgs.npz[") == 5


def test_predict_rejects_wrong_sizes_and_channels(tmp_path, synth_file):
    from PIL import Image

    out = tmp_path / "run"
    CliRunner().invoke(
        cli,
        [
            "train",
            "torch-logreg",
            "--dataset",
            str(synth_file),
            "--epochs",
            "1",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "rgb.png")
    for name, message in (("big.png", "(32, 32)"), ("rgb.png", "(28, 28, 3)")):
        result = CliRunner().invoke(cli, ["predict", str(out), str(tmp_path / name)])
        assert result.exit_code == 1 and message in result.output
        assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-0.1"], "lr == -0.1, must be > 0"),
        (["--dropout", "1"], "dropout == 1.0, must be in [0, 1)"),
        (["--activation", "sigmoid"], "'sigmoid' is not one of 'relu', 'tanh'"),
        (
            ["--device", "cuda:7"] if not torch.cuda.is_available() else ["--threads", "0"],
            "cuda" if not torch.cuda.is_available() else "threads",
        ),
    ],
)
def test_bad_flags_are_one_clear_line(tmp_path, synth_file, args, message):
    result = CliRunner().invoke(
        cli,
        ["train", "torch-ffn", "--dataset", str(synth_file), "--out", str(tmp_path / "x"), *args],
    )
    assert result.exit_code != 0 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("layers", "activation", "dropout", "l2"),
    [(1, "relu", 0.0, 0.0), (2, "relu", 0.3, 1e-3), (3, "tanh", 0.2, 0.0), (0, None, 0.0, 1e-2)],
)
def test_fused_sgd_step_equals_autograd_and_torch_sgd(layers, activation, dropout, l2):
    from medclf.models.training.fused_sgd import fusable, sgd_step, structure

    torch.manual_seed(0)
    x, y = torch.rand(16, 30, dtype=torch.float64), torch.randint(0, 4, (16,))
    a = (
        LogisticRegression(30, 4)
        if layers == 0
        else FeedforwardNetwork(30, 4, 12, layers, activation, dropout)
    ).double()
    b = (
        type(a)(30, 4)
        if layers == 0
        else FeedforwardNetwork(30, 4, 12, layers, activation, dropout)
    )
    b = b.double()
    b.load_state_dict(a.state_dict())
    opt_b = engine.make_optimizer(b, "sgd", 0.1, l2)
    assert fusable(a, engine.make_optimizer(a, "sgd", 0.1, l2))
    assert not fusable(a, engine.make_optimizer(a, "adam", 0.1, l2))
    masks = [
        (torch.rand(16, 12, dtype=torch.float64) >= dropout).double() / (1 - dropout)
        for _ in range(layers)
    ]
    # reference: autograd through the same masks, then torch.optim.SGD with weight decay
    h = x
    linears_b = [m for m in b.modules() if isinstance(m, nn.Linear)]
    for l, layer in enumerate(linears_b[:-1]):
        h = layer(h)
        h = (torch.relu(h) if activation == "relu" else torch.tanh(h)) * masks[l]
    ref = nn.functional.cross_entropy(linears_b[-1](h), y)
    opt_b.zero_grad()
    ref.backward()
    opt_b.step()
    linears, act, p = structure(a)
    loss = sgd_step(linears, act, p, x, y, 0.1, l2, masks=masks if layers else None)
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=0)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-12)


def test_adam_takes_the_autograd_path(tmp_path, synth_file):
    metrics = run_torch(
        make_config("torch-ffn", epochs=1, hidden_size=8, optimizer="adam", lr=0.001),
        load_dataset(synth_file),
        tmp_path / "a",
        quiet=True,
    )
    assert 0 <= metrics["test_acc"] <= 1
