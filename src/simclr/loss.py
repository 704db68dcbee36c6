"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020, eq. 1).

Generalised to V >= 2 views per image (the "contrastive channels" of the project this
framework grew from): for an anchor, every other view of the same image is a positive and
every view of another image a negative. Each (anchor, positive) pair is one cross-entropy term
over the VN - 1 candidates that are not the anchor itself; the loss is their mean. With V = 2
this is exactly the paper's loss, and identical embeddings give log(VN - 1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simclr.errors import ConfigError


class ContrastiveOutput(NamedTuple):
    """The loss (scalar, differentiable) and the contrastive top-1 accuracy (scalar, no grad):
    the fraction of anchors whose most similar candidate is one of their positives."""

    loss: Tensor
    accuracy: Tensor


class NTXentLoss(nn.Module):
    """NT-Xent over ``z`` of shape ``(V, N, D)``: V views of N images, D-dim projections.

    Cosine similarities are divided by ``temperature`` and fed to a log-sum-exp, never to a
    raw ``exp``, so the loss stays finite at temperatures of 0.05 and below.
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"model.temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, z: Tensor) -> ContrastiveOutput:
        if z.dim() != 3:
            raise ValueError(f"expected projections of shape (V, N, D), got {tuple(z.shape)}")
        if z.shape[0] < 2:
            raise ConfigError(f"NT-Xent needs at least 2 views per image, got {z.shape[0]}")
        # Float32 at least, with autocast off: the logits feed a log-sum-exp.
        with torch.autocast(z.device.type, enabled=False):
            return self._contrast(z.to(torch.promote_types(z.dtype, torch.float32)))

    @staticmethod
    def _positive_index(rows: Tensor, num_views: int, num_images: int) -> Tensor:
        shifts = torch.arange(1, num_views, device=rows.device) * num_images
        return (rows[:, None] + shifts) % (num_views * num_images)

    def _contrast(self, z: Tensor) -> ContrastiveOutput:
        num_views, num_images, _ = z.shape
        z = F.normalize(z, dim=-1)
        flat = z.reshape(num_views * num_images, -1)
        # logits[i, k] = cos(z_i, z_k) / t; an anchor is never its own candidate.
        logits = (flat / self.temperature) @ flat.T
        logits.fill_diagonal_(float("-inf"))
        # Row i (view a, image n) has its positives at the same image in the other views.
        rows = torch.arange(flat.shape[0], device=z.device)
        positives = logits.gather(1, self._positive_index(rows, num_views, num_images))
        # One cross-entropy term per (anchor, positive): logsumexp(row) - positive logit.
        loss = (torch.logsumexp(logits, dim=1, keepdim=True) - positives).mean()
        with torch.no_grad():
            nearest = logits.argmax(dim=1)
            accuracy = (nearest % num_images == rows % num_images).float().mean()
        return ContrastiveOutput(loss, accuracy)
