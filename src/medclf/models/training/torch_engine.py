"""Training engine for the PyTorch models.

The whole split lives in tensors on the device and is batched by index with a seeded
permutation: no per-example ``Dataset.__getitem__`` and no collation, which is where the usual
DataLoader loop spends most of its time at small batch sizes.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from medclf.errors import ConfigError
from medclf.models.training.history import record
from medclf.models.training.precision import autocast


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return the generator that drives shuffling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_threads(batch_size: int) -> int:
    """One thread for small batches (less sync overhead than work), all cores for large ones."""
    import os

    return 1 if batch_size <= 64 else max(1, min(os.cpu_count() or 1, 4))


def pick_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"device '{device}' is not one medclf can use; use --device cpu, cuda or cuda:N"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device '{device}' asked for, but no CUDA device is available; use --device cpu"
        )
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device '{device}' asked for, but there are only "
            f"{torch.cuda.device_count()} CUDA devices; use cuda:0 .. "
            f"cuda:{torch.cuda.device_count() - 1}"
        )
    return dev


def make_optimizer(model: nn.Module, name: str, lr: float, l2: float):
    """L2 is the optimizer's weight decay, as in the study."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=l2)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=l2)
    raise ConfigError(f"optimizer == {name!r}, must be sgd or adam")


def loss_fn(logits, y, reduction="mean"):
    """The task decides the loss: float 0/1 label rows (multi-label) take one sigmoid per
    label with binary cross-entropy averaged over labels; class indices take softmax
    cross-entropy."""
    if y.is_floating_point():
        loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=1)
        return loss.mean() if reduction == "mean" else loss.sum()
    return F.cross_entropy(logits, y, reduction=reduction)


def n_correct(logits, y) -> float:
    """Correct predictions; for multi-label rows, the fraction of labels right per row
    (MedMNIST's multi-label ACC: mean per-label accuracy at probability 0.5)."""
    if y.is_floating_point():
        return float(((logits > 0).float() == y).float().mean(dim=1).sum())
    return float((logits.argmax(dim=1) == y).sum())


CHANNELS_LAST = True  # see channels_last(); benchmarks/bench_conv.py turns it off to compare
CHANNELS_LAST_3D = True  # the same for Conv3d (NDHWC): see memory_format()
FORMATS = {4: (nn.Conv2d, torch.channels_last), 5: (nn.Conv3d, torch.channels_last_3d)}


def memory_format(model, X):
    """The memory format convolutional models run in on a CPU, or None (leave as stored).
    2D: channels-last (NHWC), the same arithmetic with faster oneDNN kernels (one
    PneumoniaMNIST epoch: torch-cnn 1.29x, ResNet-18 1.16x; docs/benchmarks.md). 3D:
    channels_last_3d (NDHWC), likewise faster for medclf's 3D CNN (benchmarks/bench_conv3d.py
    measures both)."""
    conv, fmt = FORMATS.get(X.dim(), (None, None))
    on = CHANNELS_LAST if X.dim() == 4 else CHANNELS_LAST_3D
    if conv is None or not on or X.device.type != "cpu":
        return None
    return fmt if any(isinstance(m, conv) for m in model.modules()) else None


def channels_last(model, X):
    """Converts the model's conv weights in place to memory_format's format (the Parameter
    objects stay, so the optimizer keeps them; idempotent); the format, or None."""
    fmt = memory_format(model, X)
    if fmt is not None:
        model.to(memory_format=fmt)
    return fmt


def train_epoch(
    model,
    optimizer,
    X,
    y,
    batch_size,
    generator,
    progress=None,
    transform=None,
    prepare=None,
    precision="fp32",
    forward=None,
) -> float:
    """One pass in a seeded random order; returns the mean of the minibatch losses.
    Plain SGD on the study's models with a softmax loss takes the fused hand-written step
    (medclf.models.training.fused_sgd); anything else the autograd step. ``progress(n)`` hears about
    every ~8192 examples. ``prepare(x)`` turns stored inputs into model inputs batch by batch
    (uint8 images stay uint8 until a batch is formed); ``transform(x)`` augments them.
    ``precision``: the forward pass's (medclf.models.training.precision); ``forward``: what
    computes the logits (torch.compile's wrapper of ``model``; default ``model``)."""
    from medclf.models.training.fused_sgd import fusable, sgd_step, structure

    model.train()
    order = torch.randperm(len(X), generator=generator).to(X.device)
    total = torch.zeros((), device=X.device)
    n_batches = 0
    report_every = max(1, 8192 // batch_size)
    fused = (
        fusable(model, optimizer)
        and not y.is_floating_point()
        and transform is None
        and prepare is None
        and precision == "fp32"
        and forward is None
    )
    fmt = channels_last(model, X)
    forward = model if forward is None else forward
    if fused:
        linears, act, p = structure(model)
        group = optimizer.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        batch = X.index_select(0, idx)  # the rows X[idx], copied at 2-3x X[idx]'s speed
        if fused:
            loss = sgd_step(linears, act, p, batch, y[idx], lr, wd)
        else:
            x = batch if prepare is None else prepare(batch)
            x = x if transform is None else transform(x)
            x = x if fmt is None else x.contiguous(memory_format=fmt)
            with autocast(precision, X.device.type):
                logits = forward(x)
            loss = loss_fn(logits.float(), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total += loss.detach()
        n_batches += 1
        if progress is not None and n_batches % report_every == 0:
            progress(report_every * batch_size)
    return float(total) / max(n_batches, 1)


@torch.no_grad()
def logits_of(model, X, chunk: int = 65536, prepare=None, precision="fp32") -> torch.Tensor:
    """Float32 logits of a whole split in eval mode without a graph; restores the mode."""
    was_training = model.training
    model.eval()
    try:
        prepare = prepare or (lambda x: x)
        if (fmt := channels_last(model, X)) is not None:
            before = prepare
            prepare = lambda x: before(x).contiguous(memory_format=fmt)  # noqa: E731
        with autocast(precision, X.device.type):
            parts = [model(prepare(X[start : start + chunk])) for start in range(0, len(X), chunk)]
        return torch.cat(parts).float()
    finally:
        model.train(was_training)


def evaluate(
    model, X, y, chunk: int = 65536, prepare=None, precision="fp32"
) -> tuple[float, float]:
    """(mean loss, accuracy) of a whole split in eval mode, without a graph."""
    return loss_and_accuracy(logits_of(model, X, chunk, prepare, precision), y)


def loss_and_accuracy(logits, y) -> tuple[float, float]:
    """(mean loss, accuracy) of a split's logits."""
    n = max(len(logits), 1)
    return float(loss_fn(logits, y, reduction="sum")) / n, n_correct(logits, y) / n


def scores(
    model, X, multi_label: bool, chunk: int = 65536, prepare=None, precision="fp32"
) -> np.ndarray:
    """Probabilities as MedMNIST scores them: a sigmoid per label, or a softmax over classes."""
    return probabilities(logits_of(model, X, chunk, prepare, precision), multi_label)


def probabilities(logits, multi_label: bool) -> np.ndarray:
    """A split's logits as MedMNIST scores them (float64)."""
    logits = logits.double()
    return (logits.sigmoid() if multi_label else logits.softmax(dim=1)).cpu().numpy()


def fit(
    model,
    optimizer,
    data,
    epochs,
    batch_size,
    generator,
    history=None,
    train_acc=True,
    callback=None,
    progress=None,
    lr_at=None,
    transform=None,
    chunk=65536,
    prepare=None,
    precision="fp32",
    forward=None,
) -> list[dict]:
    """Train from ``len(history) + 1`` to ``epochs``, appending each epoch's record to
    ``history``; ``callback(record, val_logits)`` after each epoch, with the validation logits
    its val_loss and val_acc come from (checkpoints plug in there; returning True stops);
    ``precision``, ``forward``: see train_epoch. ``data``: dict of device tensors X_train,
    y_train, X_val, y_val.
    ``lr_at(epoch)``: the learning rate of an epoch (a schedule that depends on the epoch
    number only, so a resumed run continues it exactly); ``transform(x)``: augmentation of
    each training batch."""
    history = [] if history is None else history
    for epoch in range(len(history) + 1, epochs + 1):
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch)
        start = time.perf_counter()
        loss = train_epoch(
            model,
            optimizer,
            data["X_train"],
            data["y_train"],
            batch_size,
            generator,
            progress,
            transform,
            prepare,
            precision,
            forward,
        )
        seconds = time.perf_counter() - start
        rec, val_logits = score_epoch(
            model, data, epoch, loss, seconds, train_acc, chunk, prepare, precision
        )
        history.append(rec)
        if callback is not None and callback(rec, val_logits):
            break
    return history


def score_epoch(
    model, data, epoch, loss, seconds, train_acc, chunk=65536, prepare=None, precision="fp32"
):
    """(the epoch's record, the validation logits its val_loss and val_acc come from)."""
    val_logits = logits_of(model, data["X_val"], chunk, prepare, precision)
    val_loss, val_acc = loss_and_accuracy(val_logits, data["y_val"])
    tr_acc = (
        evaluate(model, data["X_train"], data["y_train"], chunk, prepare, precision)[1]
        if train_acc
        else None
    )
    return record(epoch, loss, tr_acc, val_loss, val_acc, seconds), val_logits


# --- checkpoints: tensors and plain Python types only, so weights_only=True can load them ---


def rng_states(generator: torch.Generator) -> dict:
    version, keys, gauss = random.getstate()
    name, np_keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(keys), gauss],
        "numpy": [name, torch.from_numpy(np_keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "shuffle": generator.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict, generator: torch.Generator) -> None:
    version, keys, gauss = states["python"]
    random.setstate((version, tuple(keys), gauss))
    name, np_keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np_keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    generator.set_state(states["shuffle"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
