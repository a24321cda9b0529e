"""Hand-written backward pass with the SGD update fused into it, for the study's networks.

For plain SGD (no momentum) the update W <- (1 - lr*wd) W - lr dW can be written straight into
W by one in-place GEMM, ``W.addmm_(delta.T, a, beta=1 - lr*wd, alpha=-lr)``: no gradient
tensors, no autograd graph, no separate optimizer pass over the weights. At batch 16 that is
most of the time an autograd step spends. The same maths as autograd + torch.optim.SGD with
weight_decay (checked against it in the tests):

    forward   a_l = h_{l-1} W_l^T + b_l,  h_l = act(a_l) * mask_l  (mask: dropout, train mode)
    loss      mean_i( logsumexp(z_i) - z_i[y_i] ),  z = a_L
    backward  d_L = (softmax(z) - onehot(y)) / B
              d_{l-1} = (d_l W_l) * mask_{l-1} * act'(a_{l-1})   (W_l before its update)
    update    W_l <- (1 - lr wd) W_l - lr d_l^T h_{l-1},  b_l <- (1 - lr wd) b_l - lr sum_i d_l
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

from medclf.models.torch_models import FeedforwardNetwork, LogisticRegression


def fusable(model: nn.Module, optimizer) -> bool:
    if not isinstance(model, FeedforwardNetwork | LogisticRegression):
        return False
    if type(optimizer) is not torch.optim.SGD or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    return group["momentum"] == 0 and not group["nesterov"] and not group["maximize"]


def structure(model: nn.Module) -> tuple[list[nn.Linear], str, float]:
    """(linear layers in order, hidden activation, dropout probability)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    act = "tanh" if any(isinstance(m, nn.Tanh) for m in model.modules()) else "relu"
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    return linears, act, drops[0] if drops else 0.0


@lru_cache(maxsize=8)
def _minus_ones_cached(n: int, device: str, dtype) -> torch.Tensor:
    return torch.full((n, 1), -1.0, device=device, dtype=dtype)


def _minus_ones(n: int, like: torch.Tensor) -> torch.Tensor:
    return _minus_ones_cached(n, str(like.device), like.dtype)


@torch.no_grad()
def sgd_step(linears, act, p, x, y, lr, wd, training=True, masks=None) -> torch.Tensor:
    """One minibatch step in place; returns the minibatch's mean loss (a 0-d tensor).
    ``masks``: optional dropout masks per hidden layer (already scaled by 1/(1-p))."""
    hs, acts, used = [x], [], []  # layer inputs, activations before dropout, masks
    for l, layer in enumerate(linears[:-1]):
        a = torch.addmm(layer.bias, hs[-1], layer.weight.T)
        a = a.relu_() if act == "relu" else a.tanh_()
        mask = None
        if training and p > 0:
            mask = (
                masks[l] if masks is not None else torch.empty_like(a).bernoulli_(1 - p).div_(1 - p)
            )
        acts.append(a)
        used.append(mask)
        hs.append(a if mask is None else a * mask)
    last = linears[-1]
    logp = torch.addmm(last.bias, hs[-1], last.weight.T).log_softmax(dim=1)
    loss = F.nll_loss(logp, y)
    delta = logp.exp_().scatter_add_(1, y[:, None], _minus_ones(len(y), x)).div_(len(y))
    deltas = [delta]
    for l in range(len(linears) - 1, 0, -1):  # propagate before any weight changes
        d = deltas[0] @ linears[l].weight
        if used[l - 1] is not None:
            d *= used[l - 1]
        a = acts[l - 1]
        if act == "relu":  # relu's own backward kernel: masked_fill_(a <= 0, 0), 30x faster
            d = torch.ops.aten.threshold_backward(d, a, 0)
        else:
            d *= 1 - a * a
        deltas.insert(0, d)
    keep = 1 - lr * wd
    for layer, d, h in zip(linears, deltas, hs, strict=True):
        layer.weight.addmm_(d.T, h, beta=keep, alpha=-lr)
        if keep != 1:
            layer.bias.mul_(keep)
        layer.bias.sub_(d.sum(dim=0), alpha=lr)
    return loss
