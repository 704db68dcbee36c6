"""SimCLR v2's memory buffer (``model.memory``): keys of earlier batches as extra negatives.

SimCLR v2 (Chen et al. 2020, arXiv:2006.10029) adds MoCo's memory to SimCLR: "a memory network
(with a moving average of weights for stabilization) whose output will be buffered as negative
examples" (section 2), 64K keys with a moving-average decay of 0.999 (section 3.1's settings),
worth about 1% of linear-evaluation accuracy at batch 4096. The in-batch loss stays SimCLR's;
the buffer only adds negatives. Each step:

1. the momentum encoder moves towards the encoder (:mod:`simclr.models.momentum_encoder`);
2. the loss contrasts every anchor with the batch's projections (every rank's) and the queued
   keys of earlier steps (:mod:`simclr.losses.negative_queue`); the step's own keys are not
   yet in the queue, so no anchor meets a key of its own image from this step;
3. this step's keys join the queue: ``source: momentum`` (v2), the momentum encoder's
   projections of the step's views; ``source: online``, the step's own projections, detached
   (a memory bank without the second network: no extra forward pass, but keys from weights
   that change every step).

The queue should hold fewer keys than an epoch has views: keys older than an epoch include the
anchors' own images, as negatives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from simclr.losses.negative_queue import MEMORY_SIZE, NegativeQueue
from simclr.memory.gradcache import micro_batches
from simclr.models.momentum_encoder import MomentumEncoder
from simclr.rules import Rule, state

MEMORY_SOURCES = ("momentum", "online")
MEMORY_SOURCE = state(
    Rule(
        "model.memory.source",
        lambda v: v in MEMORY_SOURCES,
        "one of " + ", ".join(MEMORY_SOURCES) + " (where the queued keys come from)",
    )
)


class MemoryBuffer(nn.Module):
    """The queue of ``size`` keys of dimension ``dim`` and, for ``source="momentum"``, the
    momentum encoder that fills it (a copy of ``encoder`` and ``projection``, taking images in
    ``memory_format``)."""

    def __init__(
        self,
        encoder: nn.Module,
        projection: nn.Module,
        dim: int,
        size: int,
        momentum: float = 0.999,
        source: str = "momentum",
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        super().__init__()
        MEMORY_SIZE.check(size)
        self.source = MEMORY_SOURCE.check(source)
        self.queue = NegativeQueue(size, dim)
        self.momentum_encoder = None
        if source == "momentum":
            self.momentum_encoder = MomentumEncoder(encoder, projection, momentum, memory_format)

    def start_step(self, encoder: nn.Module, projection: nn.Module) -> None:
        """Before a step's keys are made: the momentum encoder's moving-average update."""
        if self.momentum_encoder is not None:
            self.momentum_encoder.update(encoder, projection)

    def negatives(self) -> Tensor:
        return self.queue.negatives()

    def keys(
        self,
        views: Sequence[Tensor],
        projections: Tensor,
        view_passes: bool = False,
        micro_batch_size: int | None = None,
    ) -> Tensor:
        """This step's keys ``(V, N, D)``, from ``views`` (V tensors ``(N, 3, H, W)``) or from
        the step's own ``projections`` ``(V, N, D)`` (``source="online"``).

        The momentum encoder forwards the views in the passes the encoder made (all views at
        once; one pass per view with ``view_passes``; the V views of ``micro_batch_size``
        images at a time with gradient caching), so its BatchNorm sees what the encoder's did.
        """
        if self.momentum_encoder is None:
            return projections.detach()
        project = self.momentum_encoder
        if view_passes:
            return torch.stack([project(view) for view in views])
        num_views, num_images = len(views), views[0].shape[0]
        pieces = micro_batches(num_images, micro_batch_size or num_images)
        return torch.cat(
            [
                project(torch.cat([view[piece] for view in views])).view(
                    num_views, piece.stop - piece.start, -1
                )
                for piece in pieces
            ],
            dim=1,
        )

    def enqueue(self, keys: Tensor) -> None:
        self.queue.enqueue(keys)
