"""Learning-rate schedules: linear warm-up over a number of epochs, then cosine decay to
``min_lr_ratio`` x peak, evaluated at every optimiser step.

The official code counts warm-up in epochs of runs of 100 epochs or more (10 of 100 at the
least). A run much shorter than its warm-up would train in warm-up alone, so the warm-up is
cut to ``max_warmup_fraction`` of the run (0.2 by default, with one log line saying so);
``null`` keeps it as given, as the official code does.
"""

from __future__ import annotations

import logging
import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from simclr.rules import EPOCHS, Rule, probability, state

log = logging.getLogger(__name__)

MAX_WARMUP_FRACTION = state(
    Rule(
        "scheduler.max_warmup_fraction",
        lambda v: v is None or probability(v),
        "a fraction of the run in [0, 1], or null (the warm-up as given)",
    )
)


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
    max_warmup_fraction: float | None = 0.2,
) -> LambdaLR:
    """Warm-up (given in epochs, at most ``max_warmup_fraction`` of the run) then cosine
    decay, as a per-step LambdaLR."""
    EPOCHS.check(warmup_epochs)
    MAX_WARMUP_FRACTION.check(max_warmup_fraction)
    warmup_steps = min(total_steps, round(warmup_epochs * steps_per_epoch))
    if max_warmup_fraction is not None and warmup_steps > max_warmup_fraction * total_steps:
        fitted = math.floor(max_warmup_fraction * total_steps)
        log.warning(
            "scheduler.warmup_epochs=%g is %d steps of this %d-step run: warming up over %d "
            "steps instead (scheduler.max_warmup_fraction=%g; null keeps the warm-up as given)",
            warmup_epochs,
            warmup_steps,
            total_steps,
            fitted,
            max_warmup_fraction,
        )
        warmup_steps = fitted

    def factor(step: int) -> float:
        return warmup_cosine_factor(step, warmup_steps, total_steps, min_lr_ratio)

    return LambdaLR(optimizer, factor)
