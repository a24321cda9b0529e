"""k runs of one network trained as one: the fused SGD step (fused_sgd) over k weight sets.

Runs of a sweep that share their data, batch order, architecture and initial weights (one seed;
only lr, L2 or dropout differ) take the same minibatch at every step, so their GEMMs can be
batched: the first layer's k weight sets multiply the shared batch as one GEMM, the later layers
by ``bmm``. Each run keeps its own maths: its learning rate, weight decay and dropout, its masks
drawn from its own generator (the stream its global RNG would give it alone). Only the order of
float32 summations inside a GEMM changes, so a stacked run equals its run alone within rounding
(tests/test_stacked.py). The point is per-step overhead: at batch 16 a step's Python and
dispatch cost is most of its time, paid once for k runs here.
"""

from __future__ import annotations

import time

import torch

from medclf.models.training.fused_sgd import structure
from medclf.models.training.torch_engine import score_epoch


class Stack:
    """The weights of k networks of one shape, stacked: ``W[l]`` (k, out, in), ``b[l]`` (k, out)."""

    def __init__(self, models):
        self.models = list(models)
        parts = [structure(m) for m in self.models]  # (linears, activation, dropout) each
        layers = list(zip(*(linears for linears, _, _ in parts), strict=True))
        self.act = parts[0][1]
        self.ps = [float(p) for _, _, p in parts]
        self.W = [torch.stack([m.weight.detach() for m in ms]).contiguous() for ms in layers]
        self.b = [torch.stack([m.bias.detach() for m in ms]).contiguous() for ms in layers]

    def __len__(self) -> int:
        return len(self.models)

    @torch.no_grad()
    def write_back(self, j: int) -> None:
        """Copy run j's weights into its own network (before its checkpoint or scoring)."""
        for layer, W, b in zip(structure(self.models[j])[0], self.W, self.b, strict=True):
            layer.weight.copy_(W[j])
            layer.bias.copy_(b[j])

    def _masks(self, a, generators):
        """Dropout masks (k, B, n) scaled by 1/(1-p), drawn as fused_sgd draws them alone; None
        where no run drops units."""
        if not any(self.ps):
            return None
        mask = torch.ones_like(a)
        for j, p in enumerate(self.ps):
            if p > 0:
                mask[j].bernoulli_(1 - p, generator=generators[j]).div_(1 - p)
        return mask

    @torch.no_grad()
    def step(self, x, y, lrs, wds, generators, masks=None) -> torch.Tensor:
        """One minibatch step of all k runs in place; their mean losses, (k,). ``lrs``, ``wds``:
        (k,) tensors; ``masks``: optional dropout masks per hidden layer, (k, B, n)."""
        k, B = len(self), len(x)
        hs, acts, used = [x], [], []
        for l in range(len(self.W)):
            a = self._linear(l, hs[-1])
            if l == len(self.W) - 1:
                break
            a = a.relu_() if self.act == "relu" else a.tanh_()
            mask = masks[l] if masks is not None else self._masks(a, generators)
            acts.append(a)
            used.append(mask)
            hs.append(a if mask is None else a * mask)
        logp = a.log_softmax(dim=2)
        target = y.expand(k, B)[:, :, None]
        loss = -logp.gather(2, target).squeeze(2).mean(dim=1)
        delta = logp.exp_().scatter_add_(2, target, _minus_ones(k, B, x)).div_(B)
        deltas = [delta]
        for l in range(len(self.W) - 1, 0, -1):  # propagate before any weight changes
            d = torch.bmm(deltas[0], self.W[l])
            if used[l - 1] is not None:
                d *= used[l - 1]
            a = acts[l - 1]
            if self.act == "relu":
                d = torch.ops.aten.threshold_backward(d, a, 0)
            else:
                d *= 1 - a * a
            deltas.insert(0, d)
        keep = 1 - lrs * wds
        decay = bool((keep != 1).any())
        for l, (d, h) in enumerate(zip(deltas, hs, strict=True)):
            if decay:
                self.W[l].mul_(keep[:, None, None])
                self.b[l].mul_(keep[:, None])
            step = d * -lrs[:, None, None]
            self._update(l, step, h)
            self.b[l].add_(step.sum(dim=1))
        return loss

    def _linear(self, l: int, h):
        """Layer l's pre-activations, (k, B, out): the shared input (B, in) of layer 0 takes one
        GEMM over the k weight sets stacked as rows."""
        W, b = self.W[l], self.b[l]
        if h.dim() == 2:
            k, out, n = W.shape
            a = torch.addmm(b.reshape(-1), h, W.reshape(k * out, n).T)
            return a.view(len(h), k, out).transpose(0, 1).contiguous()
        return torch.baddbmm(b[:, None, :], h, W.transpose(1, 2))

    def _update(self, l: int, step, h) -> None:
        """W[l] += step^T h, per run: one GEMM where h is the shared input."""
        W = self.W[l]
        if h.dim() == 2:
            k, out, n = W.shape
            rows = step.transpose(0, 1).reshape(len(h), k * out)
            W.view(k * out, n).addmm_(rows.T, h)
        else:
            W.baddbmm_(step.transpose(1, 2), h)


def _minus_ones(k: int, B: int, like) -> torch.Tensor:
    return torch.full((k, B, 1), -1.0, device=like.device, dtype=like.dtype)


def train_epoch(stack, X, y, batch_size, generator, lrs, wds, generators, progress=None):
    """torch_engine.train_epoch for k stacked runs: one seeded order, every run's mean loss."""
    order = torch.randperm(len(X), generator=generator).to(X.device)
    total = torch.zeros(len(stack), device=X.device)
    n_batches, report_every = 0, max(1, 8192 // batch_size)
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        total += stack.step(X.index_select(0, idx), y[idx], lrs, wds, generators)
        n_batches += 1
        if progress is not None and n_batches % report_every == 0:
            progress(report_every * batch_size)
    return [float(t) / max(n_batches, 1) for t in total]  # as train_epoch divides


def fit(
    stack,
    data,
    epochs,
    batch_size,
    generator,
    histories,
    lrs_at,
    wds,
    generators,
    callbacks,
    train_acc=True,
    progress=None,
    chunk=65536,
):
    """torch_engine.fit for k stacked runs, in lockstep from ``len(histories[0]) + 1``:
    ``lrs_at(epoch)`` their (k,) learning rates; after each epoch run j's weights go back into
    its network, which is scored alone, and ``callbacks[j](record, val_logits)`` hears of it
    (True: run j stops; the others go on, and the stack still carries it, untouched by
    anyone). Each record's seconds are the run's share of the stacked epoch."""
    active = list(range(len(stack)))
    for epoch in range(len(histories[0]) + 1, epochs + 1):
        start = time.perf_counter()
        losses = train_epoch(
            stack,
            data["X_train"],
            data["y_train"],
            batch_size,
            generator,
            lrs_at(epoch),
            wds,
            generators,
            progress,
        )
        seconds = (time.perf_counter() - start) / len(active)  # a share for each run still on
        for j in list(active):
            stack.write_back(j)
            rec, val_logits = score_epoch(
                stack.models[j], data, epoch, losses[j], seconds, train_acc, chunk
            )
            histories[j].append(rec)
            if callbacks[j](rec, val_logits):
                active.remove(j)
        if not active:
            break
