"""Stacked sweeps (medclf.models.training.stacked_sgd): k runs fitted as one give each run's
own numbers, against the fused step and the plain one-run-at-a-time lifecycle as oracles."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import Killed, kill_after
from medclf.data.load import load_dataset
from medclf.experiments.worker import jobs
from medclf.models.config import make_config
from medclf.models.registry import MODELS
from medclf.models.torch_models import FeedforwardNetwork, LogisticRegression
from medclf.models.training.fused_sgd import sgd_step, structure
from medclf.models.training.stacked_sgd import Stack
from medclf.run.lifecycle import run_group, run_job

SWEEP = [(0.1, 0.0, 0.0), (0.01, 1e-3, 0.0), (0.1, 0.0, 0.3), (0.5, 1e-4, 0.2)]  # lr, l2, p


def network(layers, activation, p):
    n, hidden = 30, 12
    if layers == 0:
        return LogisticRegression(n, 4).double()
    return FeedforwardNetwork(n, 4, hidden, layers, activation, p).double()


@pytest.mark.parametrize(
    ("layers", "activation"), [(0, None), (1, "relu"), (2, "relu"), (3, "tanh")]
)
def test_a_stacked_step_is_each_runs_own_fused_step(layers, activation):
    """Float64, five steps: every run's loss and weights as its fused step gives them alone,
    dropout masks included (each run draws from its own copy of the global stream)."""
    ps = [p if layers else 0.0 for _, _, p in SWEEP]
    torch.manual_seed(1)
    init = network(layers, activation, 0.0).state_dict()
    alone, stacked = [], []
    for p in ps:
        for group in (alone, stacked):
            group.append(network(layers, activation, p))
            group[-1].load_state_dict(init)
    stack = Stack(stacked)
    torch.manual_seed(5)
    streams = [torch.get_rng_state() for _ in ps]  # each run's global stream, alone
    generators = [torch.Generator() for _ in ps]
    for g, state in zip(generators, streams, strict=True):
        g.set_state(state)
    lrs = torch.tensor([lr for lr, _, _ in SWEEP], dtype=torch.float64)
    wds = torch.tensor([l2 for _, l2, _ in SWEEP], dtype=torch.float64)
    for _ in range(5):
        x, y = torch.rand(16, 30, dtype=torch.float64), torch.randint(0, 4, (16,))
        losses = stack.step(x, y, lrs, wds, generators)
        for j, model in enumerate(alone):
            torch.set_rng_state(streams[j])
            linears, act, p = structure(model)
            loss = sgd_step(linears, act, p, x, y, float(lrs[j]), float(wds[j]))
            streams[j] = torch.get_rng_state()
            torch.testing.assert_close(losses[j], loss, rtol=1e-12, atol=0)
    for j, model in enumerate(alone):
        stack.write_back(j)
        for a, b in zip(model.parameters(), stacked[j].parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.fixture
def ffn_stacks(monkeypatch):
    """torch-ffn as a stackable entry (the registry keeps it alone: a non-convex loss turns
    rounding differences into other trajectories), to check the mechanism with hidden layers
    and dropout."""
    spec = dataclasses.replace(MODELS["torch-ffn"], stack=("lr", "l2", "dropout"))
    monkeypatch.setitem(MODELS, "torch-ffn", spec)


def sweep_configs(data, epochs=3, **common):
    return [
        make_config(
            "torch-ffn",
            dataset=str(data),
            epochs=epochs,
            hidden_size=32,
            lr=lr,
            l2=l2,
            dropout=p,
            **common,
        )
        for lr, l2, p in SWEEP
    ]


def test_a_stacked_sweep_equals_its_runs_trained_one_by_one(tmp_path, synth_file, ffn_stacks):
    """The oracle is run_job, one run at a time: float32, so equal within rounding (the GEMMs
    sum in another order), the same accuracies, the same selected epochs."""
    dataset = load_dataset(synth_file)
    configs = sweep_configs(synth_file)
    alone = [run_job(c, dataset, tmp_path / f"a{j}", quiet=True) for j, c in enumerate(configs)]
    dirs = [tmp_path / f"s{j}" for j in range(len(configs))]
    stacked = run_group(configs, dataset, dirs, [True] * len(configs), quiet=True)
    for j, (a, s) in enumerate(zip(alone, stacked, strict=True)):
        assert s["test_acc"] == pytest.approx(a["test_acc"], abs=2e-3)
        assert s["selected_epoch"] == a["selected_epoch"]
        pa, ps = np.load(tmp_path / f"a{j}/predictions.npz"), np.load(dirs[j] / "predictions.npz")
        np.testing.assert_allclose(ps["test_scores"], pa["test_scores"], atol=1e-4)
        ha = json.loads((tmp_path / f"a{j}/history.json").read_text())
        hs = json.loads((dirs[j] / "history.json").read_text())
        for ra, rs in zip(ha, hs, strict=True):
            assert rs["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4)
            assert rs["train_acc"] == pytest.approx(ra["train_acc"], abs=2e-3)
        env = json.loads((dirs[j] / "env.json").read_text())
        assert env["stacked"] == len(configs)


def test_a_stacked_run_killed_mid_way_resumes_alone_to_the_same_numbers(
    tmp_path, synth_file, ffn_stacks
):
    """Each run's checkpoint holds its own shuffling and dropout state: killed after epoch 2
    of a stacked fit, the dropout run continues alone and ends as it ends uninterrupted."""
    dataset = load_dataset(synth_file)
    configs = sweep_configs(synth_file, epochs=4)
    whole = run_job(configs[2], dataset, tmp_path / "whole", quiet=True)
    dirs = [tmp_path / f"s{j}" for j in range(len(configs))]
    with pytest.raises(Killed):
        run_group(configs, dataset, dirs, [True] * 4, quiet=True, after_epoch=kill_after(2))
    resumed = run_job(configs[2], dataset, dirs[2], quiet=True)
    assert resumed["test_acc"] == pytest.approx(whole["test_acc"], abs=2e-3)
    hw = json.loads((tmp_path / "whole/history.json").read_text())
    hr = json.loads((dirs[2] / "history.json").read_text())
    assert [r["epoch"] for r in hr] == [1, 2, 3, 4]
    for rw, rr in zip(hw, hr, strict=True):
        assert rr["train_loss"] == pytest.approx(rw["train_loss"], rel=1e-4)


def test_runs_that_cannot_share_a_pass_are_trained_one_by_one(tmp_path, synth_file, ffn_stacks):
    """Another batch size, Adam or another seed is another job; a group whose runs stand at
    different epochs is trained one by one, each as run_job trains it."""
    entries = [
        {"key": str(n), "config": c, "questions": ["Q"]}
        for n, c in enumerate(
            sweep_configs(synth_file)[:2]
            + [make_config("torch-ffn", dataset=str(synth_file), batch_size=32)]
            + [make_config("torch-ffn", dataset=str(synth_file), optimizer="adam")]
            + [make_config("torch-ffn", dataset=str(synth_file), epochs=3, hidden_size=32, seed=7)]
            + [make_config("torch-ffn", dataset=str(synth_file), batch_size=256, lr=0.01)]
            + [make_config("torch-ffn", dataset=str(synth_file), batch_size=256, lr=0.1)]
        )
    ]
    groups = [[e["key"] for e in job] for job in jobs(entries)]
    assert sorted(groups) == [["0", "1"], ["2"], ["3"], ["4"], ["5"], ["6"]]
    assert groups[0] in (["2"], ["3"])  # the costliest job first: 20 epochs at batch 32
    dataset = load_dataset(synth_file)
    configs = sweep_configs(synth_file, epochs=2)[:2]
    dirs = [tmp_path / "s0", tmp_path / "s1"]
    with pytest.raises(Killed):  # s0 stands at epoch 1, s1 at 0
        run_job(configs[0], dataset, dirs[0], quiet=True, after_epoch=kill_after(1))
    results = run_group(configs, dataset, dirs, [True, True], quiet=True)
    for j, config in enumerate(configs):
        alone = run_job(config, dataset, tmp_path / f"a{j}", quiet=True)
        assert results[j]["test_acc"] == alone["test_acc"]  # one by one: bit for bit
        assert "one by one" in results[j]["note"] and "nothing is lost" in results[j]["note"]
        assert "stacked" not in json.loads((dirs[j] / "env.json").read_text())


def test_the_study_stacks_its_logistic_regressions_only(tmp_path, synth_file):
    """By default Q2.1's three learning rates are one job, trained as one, equal to each run
    alone within rounding; Q2.2b's batch-16 networks stay four jobs."""
    from medclf.experiments.specs import STUDY, expand

    entries = expand(STUDY, str(synth_file), quick=True, only={"Q2.1", "Q2.2b"})
    stacked = [job for job in jobs(entries) if len(job) > 1]
    assert [[e["config"]["model"] for e in job] for job in stacked] == [["torch-logreg"] * 3]
    dataset = load_dataset(synth_file)
    configs = [e["config"] for e in stacked[0]]
    dirs = [tmp_path / f"s{j}" for j in range(3)]
    results = run_group(configs, dataset, dirs, [False] * 3, quiet=True)
    for j, config in enumerate(configs):
        alone = run_job(config, dataset, tmp_path / f"a{j}", quiet=True, train_acc=False)
        assert results[j]["test_acc"] == pytest.approx(alone["test_acc"], abs=1e-9)
        pa, ps = np.load(tmp_path / f"a{j}/predictions.npz"), np.load(dirs[j] / "predictions.npz")
        np.testing.assert_allclose(ps["test_scores"], pa["test_scores"], rtol=1e-4, atol=1e-6)
        assert json.loads((dirs[j] / "env.json").read_text())["stacked"] == 3


def test_a_damaged_checkpoint_fails_its_run_only(tmp_path, synth_file):
    """One member's checkpoint is garbage: that run fails in one line, its stack-mates train
    alone (run_one) and finish."""
    from medclf.experiments.specs import STUDY, expand
    from medclf.experiments.worker import run_stack
    from medclf.run.folder import CHECKPOINT_PT, entry_dir

    entries = expand(STUDY, str(synth_file), quick=True, only={"Q2.1"})
    damaged = entry_dir(tmp_path, entries[1])
    damaged.mkdir(parents=True)
    (damaged / CHECKPOINT_PT).write_bytes(b"not a checkpoint")
    results = run_stack(entries, str(tmp_path), 1)
    assert [r["status"] for r in results] == ["done", "failed", "done"]
    assert "cannot be read" in results[1]["error"]
    for entry, result in zip(entries, results, strict=True):
        assert result["key"] == entry["key"]
