"""The momentum encoder: a slowly moving copy of the encoder and its head, SimCLR v2's "memory
network" (Chen et al. 2020, arXiv:2006.10029, section 2, after MoCo, He et al. 2019).

Its projections fill the memory buffer of negatives. Its weights follow the trained ones by
an exponential moving average, ``w_k <- m w_k + (1 - m) w``, applied at the start of every
training step, before it projects that step's views (MoCo's order), so a checkpoint written
after a step holds the copy that step used and a resumed run continues exactly. Only the
parameters move this way; its BatchNorm running statistics are its own (its forward passes
run in training mode, as the encoder's do, with the same synchronised BatchNorm under DDP).
No gradient reaches it, and the optimiser never sees it (its parameters do not require
gradients).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from simclr.rules import Rule, probability, state

MEMORY_MOMENTUM = state(
    Rule(
        "model.memory.momentum",
        probability,
        "in [0, 1] (the moving average's decay; SimCLR v2 and MoCo: 0.999)",
    )
)


class MomentumEncoder(nn.Module):
    """Copies of ``encoder`` and ``projection`` (their weights, buffers and memory format),
    moved towards them by :meth:`update`; images ``(B, 3, H, W)`` -> projections ``(B, D)``,
    without gradients, the images in ``memory_format`` as the encoder takes them."""

    def __init__(
        self,
        encoder: nn.Module,
        projection: nn.Module,
        momentum: float,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        super().__init__()
        self.momentum = float(MEMORY_MOMENTUM.check(momentum))
        self.memory_format = memory_format
        self.encoder = copy.deepcopy(encoder)
        self.projection = copy.deepcopy(projection)
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, encoder: nn.Module, projection: nn.Module) -> None:
        """``w_k <- m w_k + (1 - m) w`` for every parameter of the copies."""
        mine = [*self.encoder.parameters(), *self.projection.parameters()]
        theirs = [*encoder.parameters(), *projection.parameters()]
        if len(mine) != len(theirs):
            raise ValueError("the momentum encoder is not a copy of this encoder and head")
        torch._foreach_lerp_(mine, [p.detach() for p in theirs], 1.0 - self.momentum)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.projection(self.encoder(images.contiguous(memory_format=self.memory_format)))
