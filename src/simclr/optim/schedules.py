"""Learning-rate schedules: linear warm-up over a number of epochs, then cosine decay to
``min_lr_ratio`` x peak, evaluated at every optimiser step."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from simclr.rules import EPOCHS


def warmup_cosine_factor(
    step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> float:
    """Multiplier of the peak rate at optimiser step ``step`` (0-based).

    Linear from 1/warmup_steps up to 1 over the first ``warmup_steps`` steps, then a half
    cosine from 1 down to ``min_lr_ratio`` at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: Optimizer,
    total_steps: int,
    steps_per_epoch: float,
    warmup_epochs: float = 10.0,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Warm-up (given in epochs) then cosine decay, as a per-step LambdaLR."""
    EPOCHS.check(warmup_epochs)
    warmup_steps = min(total_steps, round(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        return warmup_cosine_factor(step, warmup_steps, total_steps, min_lr_ratio)

    return LambdaLR(optimizer, factor)
