"""Timing helpers: median of repeats, one thread, OCTMNIST-shaped random data."""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

N_TRAIN, N_PIXELS = 97_477, 784


def one_thread():
    """Pin BLAS and torch to one core, so every figure is single-core."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def octmnist_shaped(n=N_TRAIN, seed=0, bias=False, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, N_PIXELS), dtype=np.uint8).astype(dtype) / 256
    if bias:
        X = np.hstack([X, np.ones((n, 1), dtype=dtype)])
    return X.astype(dtype), rng.integers(0, 4, n)


def median_time(fn, repeats=3, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
