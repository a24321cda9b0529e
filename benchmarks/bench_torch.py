"""One epoch of the Table 1 feed-forward network on OCTMNIST-shaped data: medclf's engine
(whole split as tensors, batched by index) vs the standard DataLoader loop over a map-style
Dataset, same model, same process, same thread count. Also 1 vs 2 threads for medclf's engine,
which sets its default threads per batch size. Run: python benchmarks/bench_torch.py
"""

from __future__ import annotations

import torch
from common import N_PIXELS, N_TRAIN, machine, median_time, octmnist_shaped
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from medclf.models.torch_models import FeedforwardNetwork
from medclf.models.training import torch_engine as engine

FLOP_PER_EPOCH = 6 * N_TRAIN * (N_PIXELS * 200 + 200 * 200 + 200 * 4)  # fwd 2, bwd 4 per MAC


class Images(Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def dataloader_epoch(model, opt, X, y, batch_size, n):
    loader = DataLoader(Images(X[:n], y[:n]), batch_size=batch_size, shuffle=True)
    model.train()
    for xb, yb in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()


def main():
    Xn, yn = octmnist_shaped(dtype="float32")
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn).long()
    model = FeedforwardNetwork(N_PIXELS, 4)
    opt = engine.make_optimizer(model, "sgd", 0.1, 0.0)
    gen = engine.seed_everything(0)
    print(f"machine: {machine()}")
    print("| one epoch | DataLoader loop | medclf | speed-up | medclf GFLOP/s | threads |")
    print("|---|---|---|---|---|---|")
    for batch in (16, 256, 1024):
        threads = {t: None for t in (1, 2)}
        for t in threads:
            torch.set_num_threads(t)
            threads[t] = median_time(
                lambda b=batch: engine.train_epoch(model, opt, X, y, b, gen), repeats=3
            )
        best = engine.default_threads(batch)
        torch.set_num_threads(best)
        n = N_TRAIN if batch >= 256 else 30_000  # per-example cost: scale a prefix
        base = (
            median_time(lambda b=batch, n=n: dataloader_epoch(model, opt, X, y, b, n), repeats=2)
            * N_TRAIN
            / n
        )
        ours = threads[best]
        print(
            f"| batch {batch} | {base:.2f} s | {ours:.2f} s | {base / ours:.1f}× | "
            f"{FLOP_PER_EPOCH / ours / 1e9:.0f} | default {best} "
            f"(1 thread {threads[1]:.2f} s, 2 threads {threads[2]:.2f} s) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
