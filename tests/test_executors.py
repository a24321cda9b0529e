"""Executors as peers: the local pool and Ray behind one interface, both ending in run_one."""

from pathlib import Path

import pytest

import medclf
from medclf.errors import ConfigError
from medclf.experiments.executors import Executor, LocalExecutor, RayExecutor, executor
from medclf.experiments.specs import run_key
from medclf.models.config import make_config
from medclf.run.folder import finished, run_dir_of


def test_each_backend_is_an_executor_and_others_are_refused():
    assert isinstance(executor("local", 2), LocalExecutor)
    assert isinstance(executor("ray", 2, "auto"), RayExecutor)
    assert all(isinstance(executor(b), Executor) for b in ("local", "ray"))
    with pytest.raises(ConfigError, match="backend 'slurm' is unknown; choose local or ray"):
        executor("slurm")


def test_the_local_executor_trains_each_entry_into_its_folder(tmp_path, synth_file):
    config = make_config("numpy-logreg", dataset=str(synth_file), epochs=1, train_fraction=0.2)
    entry = {"key": run_key(config), "config": config, "questions": []}
    results = []
    LocalExecutor(1).run([entry], tmp_path, None, results.append)
    [result] = results
    assert result["status"] == "done" and result["key"] == entry["key"]
    assert finished(run_dir_of(tmp_path, entry["key"]), config) is not None
    # the same run through the API gives the same numbers: one path below both
    again = medclf.train(config=config, out=tmp_path / "api")
    assert again.metrics["test_acc"] == result["test_acc"]


def test_no_test_hook_in_medclf():
    src = Path(medclf.__file__).parent
    hooks = [p for p in src.rglob("*.py") if "MEDCLF_TEST" in p.read_text()]
    assert hooks == []
