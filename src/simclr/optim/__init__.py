"""Optimisers (LARS and torch's, one registry), learning-rate scaling and schedules."""

from simclr.optim.lars import LARS
from simclr.optim.optimizers import (
    OPTIMIZERS,
    build_optimizer,
    lightning_optimization,
    parameter_groups,
    scaled_learning_rate,
)
from simclr.optim.schedules import build_scheduler, warmup_cosine_factor

__all__ = [
    "LARS",
    "OPTIMIZERS",
    "build_optimizer",
    "build_scheduler",
    "lightning_optimization",
    "parameter_groups",
    "scaled_learning_rate",
    "warmup_cosine_factor",
]
