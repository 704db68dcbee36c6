"""LARS (You et al., 2017) as SimCLR uses it: SGD with momentum 0.9 whose per-layer step is
scaled by ``trust_coefficient * ||w|| / ||g + wd * w||``. Biases and normalisation parameters
(every parameter with fewer than 2 dimensions), position embeddings and class tokens get
neither weight decay nor the adaptation (the rule:
:func:`simclr.optim.optimizers.no_decay_names`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim import Optimizer

from simclr.rules import LEARNING_RATE


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
        LEARNING_RATE.check(lr)
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
