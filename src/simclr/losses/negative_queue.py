"""A first-in first-out queue of keys, SimCLR v2's memory buffer of extra negatives.

SimCLR v2 (Chen et al. 2020, arXiv:2006.10029, section 2) borrows MoCo's memory (He et al.
2019): the projections of earlier batches, kept in a buffer, join every anchor's negatives, so
the loss contrasts with more images than one batch holds. This module is the buffer only; what
fills it (a momentum encoder's projections, or the step's own) is
:mod:`simclr.models.memory_buffer`'s choice.

- **Only what was filled counts**: the queue starts empty, and :meth:`NegativeQueue.negatives`
  returns the keys enqueued so far (at most ``size``), never zeros or random vectors.
- **Exact under DDP**: every rank enqueues the keys of *every* rank (gathered, no gradient), in
  the order of one process whose batch is the ranks' batches one after the other, so the ranks'
  queues stay identical, and equal to that one process's.
- **Saved and resumed**: the keys, the write position and the fill count are persistent
  buffers, in the module's ``state_dict`` and so in every checkpoint.
- **Finite keys only**: a batch whose keys are not all finite (a step the non-finite guard
  skips) is dropped, by tensor arithmetic (no Python branch on a device value).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from simclr.losses.ntxent import distributed_world
from simclr.rules import Rule, integer_at_least, state

MEMORY_SIZE = state(
    Rule(
        "model.memory.size",
        integer_at_least(0),
        "an integer >= 0 (keys in the memory buffer; 0: off; SimCLR v2: 65536)",
    )
)


def gather_keys(keys: Tensor) -> Tensor:
    """Every rank's keys ``(V, N, D)`` (no gradient) as ``(V, W N, D)``: view by view, the
    ranks' images in rank order, as one process would hold the whole batch."""
    world_size = distributed_world()[1]
    keys = keys.detach()
    if world_size == 1:
        return keys
    parts = [torch.empty_like(keys) for _ in range(world_size)]
    dist.all_gather(parts, keys.contiguous())
    return torch.cat(parts, dim=1)


class NegativeQueue(nn.Module):
    """A queue of ``size`` keys of dimension ``dim``, the oldest overwritten first.

    Buffers (float32 keys, whatever the training precision): ``keys`` ``(size, dim)``,
    ``pointer`` (the row the next key goes to) and ``filled`` (how many rows hold keys).
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        MEMORY_SIZE.check(size)
        if size < 1:
            raise ValueError("a NegativeQueue holds at least one key (model.memory.size >= 1)")
        self.size = size
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def negatives(self) -> Tensor:
        """The keys enqueued so far ``(min(enqueued, size), dim)``, in storage order (which
        does not change the loss)."""
        return self.keys[: int(self.filled)]

    def gather(self, keys: Tensor) -> Tensor:
        """Every rank's keys ``(V, N, D)`` as ``(V, W N, D)`` (:func:`gather_keys`)."""
        return gather_keys(keys)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Add this step's keys ``(V, N, D)`` of every rank (gathered here) to the queue.

        Written view by view, all ranks' images of view 0 first; if a step brings more than
        ``size`` keys, only its last ``size`` stay. Keys that are not all finite are dropped.
        """
        flat = self.gather(keys).reshape(-1, keys.shape[-1]).to(self.keys.dtype)[-self.size :]
        count = flat.shape[0]
        rows = (self.pointer + torch.arange(count, device=flat.device)) % self.size
        finite = torch.isfinite(flat).all()
        self.keys[rows] = torch.where(finite, flat, self.keys[rows])
        added = count * finite.long()
        self.pointer.copy_((self.pointer + added) % self.size)
        self.filled.copy_(torch.clamp(self.filled + added, max=self.size))
