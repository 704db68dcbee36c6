"""Optimisers and learning-rate schedules for pre-training.

- LARS (You et al., 2017) as SimCLR uses it: SGD with momentum 0.9 whose per-layer step is
  scaled by ``trust_coefficient * ||w|| / ||g + wd * w||``. Biases and BatchNorm parameters
  (every parameter with fewer than 2 dimensions) get neither weight decay nor the adaptation.
- SGD, AdamW and NAdam, with the same exclusion of biases and BatchNorm from weight decay.
- Learning-rate scaling with the global batch B: ``linear`` (base x B / 256), ``sqrt``
  (base x sqrt(B)) or ``none``.
- Linear warm-up over a number of epochs, then cosine decay to ``min_lr_ratio`` x peak,
  evaluated at every optimiser step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from simclr.errors import ConfigError

if TYPE_CHECKING:
    import lightning as L


class LARS(Optimizer):
    """Layer-wise adaptive rate scaling on top of SGD with momentum.

    ``v <- momentum * v + lr * trust * (g + wd * w)``, ``w <- w - v``: the learning rate is
    applied before the momentum buffer, as google-research/simclr's LARS does
    (``classic_momentum=True``), unlike ``torch.optim.SGD``, which scales the buffer by the
    current rate.

    A parameter group with ``lars_exclude=True`` is plain SGD with momentum (no weight decay
    is expected there either; see :func:`parameter_groups`).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ):
        if lr <= 0:
            raise ConfigError(f"optimizer.lr must be > 0, got {lr}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if group["weight_decay"]:
                    update = update.add(p, alpha=group["weight_decay"])
                if not group["lars_exclude"]:
                    weight_norm = torch.linalg.vector_norm(p)
                    update_norm = torch.linalg.vector_norm(update)
                    trust = group["trust_coefficient"] * weight_norm / (update_norm + group["eps"])
                    # A layer with zero weights or zero update keeps the plain step.
                    trust = torch.where((weight_norm > 0) & (update_norm > 0), trust, 1.0)
                    update = update.mul(trust)
                # The rate goes into the momentum buffer, as the official LARS does: a step
                # taken at a higher rate (warm-up, decay) keeps its size while it echoes.
                step = update.mul(group["lr"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = step
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(step)
                p.sub_(state["momentum_buffer"])
        return loss


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights (decayed, adapted by LARS) and biases/BatchNorm (neither)."""
    decayed, excluded = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decayed if param.ndim > 1 else excluded).append(param)
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": excluded, "weight_decay": 0.0, "lars_exclude": True},
    ]


def scaled_learning_rate(base_lr: float, batch_size: int, scaling: str) -> float:
    """The paper's learning-rate scaling with the global batch (appendix B.1)."""
    rules = {
        "linear": lambda: base_lr * batch_size / 256,
        "sqrt": lambda: base_lr * math.sqrt(batch_size),
        "none": lambda: base_lr,
    }
    if scaling not in rules:
        raise ConfigError(f"unknown optimizer.lr_scaling {scaling!r}; valid: {', '.join(rules)}")
    return rules[scaling]()


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    batch_size: int,
    lr_scaling: str = "none",
    weight_decay: float = 0.0,
    **options,
) -> Optimizer:
    """The optimiser named ``name`` over ``model``'s parameter groups, at the scaled rate.

    ``options`` are the optimiser's own keyword arguments (momentum, betas, ...).
    """
    if lr <= 0:
        raise ConfigError(f"optimizer.lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay must be >= 0, got {weight_decay}")
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}")
    groups = parameter_groups(model, weight_decay)
    if name != "lars":
        for group in groups:
            group.pop("lars_exclude", None)
    peak_lr = scaled_learning_rate(lr, batch_size, lr_scaling)
    return OPTIMIZERS[name](groups, lr=peak_lr, **options)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "lars": LARS,
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
    "nadam": torch.optim.NAdam,
}


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
    if warmup_epochs < 0:
        raise ConfigError(f"scheduler.warmup_epochs must be >= 0, got {warmup_epochs}")
    warmup_steps = min(total_steps, round(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        return warmup_cosine_factor(step, warmup_steps, total_steps, min_lr_ratio)

    return LambdaLR(optimizer, factor)


def lightning_optimization(
    module: L.LightningModule, batch_size: int, optimizer: dict, scheduler: dict
) -> dict:
    """``configure_optimizers``' answer for ``module``: the optimiser over its parameter groups
    at the rate scaled for ``batch_size``, and the warm-up + cosine schedule stepped at every
    optimiser step, its length from the trainer's estimated stepping batches."""
    built = build_optimizer(module, batch_size=batch_size, **optimizer)
    total_steps = int(module.trainer.estimated_stepping_batches)
    # Known once estimated_stepping_batches has set up the training loader.
    steps_per_epoch = max(
        1, module.trainer.num_training_batches // module.trainer.accumulate_grad_batches
    )
    schedule = build_scheduler(built, total_steps, steps_per_epoch, **scheduler)
    return {
        "optimizer": built,
        "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1},
    }
