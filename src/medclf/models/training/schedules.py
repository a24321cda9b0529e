"""Learning rate per epoch as a pure function, so a run's schedule can be checked, and resumed
from the epoch number alone (no scheduler state to save).

``epoch`` is 0-based: the learning rate used while training epoch ``epoch`` of ``epochs``.

"paper" is MedMNIST v2's protocol as its experiments script runs it (train_and_eval_pytorch.py:
``MultiStepLR(milestones=[0.5 * num_epochs, 0.75 * num_epochs], gamma=0.1)``, stepped once after
each epoch): base_lr for epochs 0..49 of 100, base_lr/10 for 50..74, base_lr/100 for 75..99.
Its milestones are floats, and MultiStepLR only drops when the epoch count equals one, so with
an epoch count not divisible by 4 (2 for the first drop) the script never drops at that
milestone. We follow the stated protocol instead: each drop applies from the first epoch that
starts at or past 50 % (75 %) of the run, i.e. epochs ``ceil(0.5 * epochs)`` and
``ceil(0.75 * epochs)``: identical to the script whenever its milestones are whole numbers, and
epoch 0 always runs at base_lr.
"""

from __future__ import annotations

import math

from medclf.errors import ConfigError

SCHEDULES = ("constant", "paper", "cosine")


def lr_at(epoch: int, epochs: int, base_lr: float, schedule: str, warmup: int = 0) -> float:
    """Learning rate for 0-based ``epoch`` of ``epochs``.

    "constant": base_lr throughout. "paper": x0.1 at 50 % and again at 75 % of the epochs.
    "cosine": linear warm-up from base_lr / warmup to base_lr over the first ``warmup`` epochs,
    then cosine annealing from base_lr towards 0 over the remaining ones (with warmup 0 it
    equals CosineAnnealingLR(T_max=epochs, eta_min=0) stepped once per epoch).
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule == {schedule!r}, must be one of {SCHEDULES}")
    if not 0 <= epoch < epochs:
        raise ConfigError(f"epoch == {epoch}, must be in [0, epochs == {epochs})")
    if not 0 <= warmup < epochs:
        raise ConfigError(f"warmup == {warmup}, must be in [0, epochs == {epochs})")
    if schedule == "constant":
        return base_lr
    if schedule == "paper":
        drops = (epoch >= 0.5 * epochs) + (epoch >= 0.75 * epochs)
        return base_lr * 0.1**drops
    if epoch < warmup:
        return base_lr * (epoch + 1) / warmup
    return base_lr * (1 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup))) / 2
