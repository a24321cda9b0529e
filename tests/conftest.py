"""Shared fixtures: MedMNIST-format files written by hand, independent of medclf's own writer."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") and shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM, reason="needs Debian's chromium and chromium-driver (.ci/run installs them)"
)


@pytest.fixture
def chromium(tmp_path):
    """A real headless Chromium (selenium) with its console log kept, quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def medmnist_arrays(n=(40, 12, 1000), size=28, n_classes=4, seed=0, test_labels=None):
    """Arrays in the exact MedMNIST layout: (N, 28, 28) uint8 images, (N, 1) uint8 labels."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
        labels = rng.integers(0, n_classes, (count, 1)).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    if test_labels is not None:
        arrays["test_labels"] = np.asarray(test_labels, dtype=np.uint8)[:, None]
        arrays["test_images"] = rng.integers(0, 256, (len(test_labels), size, size), np.uint8)
    return arrays


def write_npz(path, arrays):
    np.savez_compressed(path, **arrays)
    return path


class Killed(Exception):
    """Raised from an after-epoch hook to simulate a run killed after that epoch."""


def kill_after(epoch):
    def hook(rec):
        if rec["epoch"] == epoch:
            raise Killed

    return hook


@pytest.fixture
def octmnist_file(tmp_path):
    """A format-exact octmnist.npz (random pixels) whose name ties it to the registry entry."""
    return write_npz(tmp_path / "octmnist.npz", medmnist_arrays())


@pytest.fixture(scope="session")
def synth_file(tmp_path_factory):
    """A small synthetic OCTMNIST-like file written by medclf's own generator."""
    from medclf.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synth") / "synth.npz", "octmnist", 0.02, 0)
