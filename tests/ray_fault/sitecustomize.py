"""Test-only fault injection for the Ray workers of tests/test_ray_backend.py, which puts this
folder on its cluster's PYTHONPATH (Python imports sitecustomize at start-up). Once a worker
imports medclf.experiments.executors, its per-epoch hook (mirror) is wrapped so that the worker
of a run whose key MEDCLF_TEST_KILL's file names dies after epoch 1. medclf itself holds no
test hook."""

import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

TARGET = "medclf.experiments.executors"


def patch(module) -> None:
    mirror, kill = module.mirror, os.environ.get("MEDCLF_TEST_KILL")

    def killing_mirror(run_dir, shared):
        after_epoch = mirror(run_dir, shared)

        def hook(record):
            after_epoch(record)
            if kill and record["epoch"] == 1 and Path(kill).is_file():
                if run_dir.name in Path(kill).read_text().split():
                    os._exit(1)

        return hook

    module.mirror = killing_mirror


class PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)  # find the real module without coming back here
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if os.environ.get("MEDCLF_TEST_KILL"):
    sys.meta_path.insert(0, PatchOnImport())
