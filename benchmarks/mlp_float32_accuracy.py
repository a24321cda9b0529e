"""Accuracy cost of float32 for the Q1.2b MLP: the same run in float64 and float32.

Run: python benchmarks/mlp_float32_accuracy.py FILE.npz [EPOCHS]   (e.g. a full-size synthetic
file from `medclf data synth --like octmnist --scale 1`, or the real octmnist.npz)
"""

from __future__ import annotations

import sys
import time

import numpy as np

from medclf.data.features import make_features
from medclf.data.load import load_dataset
from medclf.models.numpy_models import MLP


def main():
    path, epochs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    dataset = load_dataset(path)
    print(f"{dataset.display_name}, {epochs} epochs, MLP 200 hidden, lr 0.001, batch 1")
    print("| dtype | seconds per epoch | final train loss | val acc | test acc |")
    print("|---|---|---|---|---|")
    for dtype in ("float64", "float32"):
        f = make_features(dataset, dtype=np.float64 if dtype == "float64" else np.float32)
        model = MLP(lr=0.001, dtype=dtype)
        start = time.perf_counter()
        model.fit(f.X_train, f.y_train, epochs, f.X_val, f.y_val)
        per_epoch = (time.perf_counter() - start) / epochs
        last = model.history_[-1]
        print(
            f"| {dtype} | {per_epoch:.2f} | {last['train_loss']:.4f} | {last['val_acc']:.4f} | "
            f"{model.score(f.X_test, f.y_test):.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
