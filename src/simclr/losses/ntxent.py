"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020, eq. 1).

Generalised to V >= 2 views per image (the "contrastive channels" of the project this
framework grew from): for an anchor, every other view of the same image is a positive and
every view of another image a negative. Each (anchor, positive) pair is one cross-entropy term
over the VN - 1 candidates that are not the anchor itself; the loss is their mean. With V = 2
this is exactly the paper's loss, and identical embeddings give log(VN - 1).

Across devices (DDP, several processes): each rank's anchors are its own VN projections, its
candidates the projections of every rank, gathered by :func:`gather_across_ranks`. Its backward
sums the gradients that every rank's loss sends to a rank's projections and hands that rank its
slice: without that sum, a rank's projections only learn from its own anchors and the gradient
is wrong (the most reported bug of public SimCLR code). With the mean over the W ranks that DDP
applies to the parameter gradients, loss and gradients are those of one process holding the
whole global batch.

Extra negatives (SimCLR v2's memory buffer, :mod:`simclr.losses.negative_queue`): ``K`` more
candidates that are no anchor's positive, the same on every rank, appended after the
projections; each anchor's softmax runs over its VN - 1 (W VN - 1 under DDP) in-batch
candidates and the K queued keys.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from simclr.rules import NUM_VIEWS, TEMPERATURE


class ContrastiveOutput(NamedTuple):
    """The loss (scalar, differentiable) and the contrastive top-1 accuracy (scalar, no grad):
    the fraction of anchors whose most similar candidate is one of their positives."""

    loss: Tensor
    accuracy: Tensor


def distributed_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGradient(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns this rank's slice of the summed gradient.

    Forward: every rank's ``(n, ...)`` tensor, concatenated in rank order: ``(W n, ...)``.
    Backward: each rank holds the gradient of *its own* loss with respect to all W slices; the
    gradient of the sum of the losses with respect to this rank's input is the sum over ranks
    of their gradients for this rank's slice (all-reduce, then slice).
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        rank, world_size = distributed_world()
        tensor = tensor.contiguous()
        gathered = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(gathered, tensor)
        ctx.rank, ctx.size = rank, tensor.shape[0]
        return torch.cat(gathered)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def gather_across_ranks(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` (same shape on all), concatenated along dim 0 in rank order,
    with gradients flowing back to the rank each slice came from. The tensor itself when there
    is a single process."""
    if distributed_world()[1] == 1:
        return tensor
    return _GatherWithGradient.apply(tensor)


class _NTXent(torch.autograd.Function):
    """NT-Xent from L2-normalised anchors ``(A, D)`` and candidates ``(C, D)``, fused.

    ``logits = anchors @ candidates.T / t`` with each anchor's own column (``self_index``) at
    -inf; the loss is the mean over anchors and their P positives (``positive_index``, (A, P))
    of ``logsumexp(row) - logit(positive)``. The backward is written out: the gradient with
    respect to the logits is ``(softmax - positives / P) / A``, formed in place in the saved
    logits, then two matrix products. This keeps one (A, C) matrix alive instead of the four
    that autograd keeps for the same expression, and was measured faster than a plain masked
    cross-entropy (bench/cpu.py, loss_vs_reference_n4096). Also returns each anchor's nearest
    candidate (no gradient), for the contrastive accuracy.
    """

    @staticmethod
    def forward(ctx, anchors, candidates, self_index, positive_index, temperature):
        logits = anchors @ candidates.T
        logits.mul_(1.0 / temperature)
        rows = torch.arange(anchors.shape[0], device=anchors.device)
        logits[rows, self_index] = float("-inf")
        log_normaliser = torch.logsumexp(logits, dim=1)
        positives = logits.gather(1, positive_index)
        # Each term is >= 0 in floating point too: logsumexp(row) >= max(row).
        loss = (log_normaliser[:, None] - positives).mean()
        nearest = logits.argmax(dim=1)
        ctx.mark_non_differentiable(nearest)
        ctx.save_for_backward(anchors, candidates, logits, log_normaliser, positive_index)
        ctx.temperature = temperature
        ctx.spent = False
        return loss, nearest

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, _grad_nearest):
        if ctx.spent:
            raise RuntimeError("NT-Xent's backward runs once: it reuses its saved logits")
        ctx.spent = True
        anchors, candidates, logits, log_normaliser, positive_index = ctx.saved_tensors
        num_positives = positive_index.shape[1]
        grad = logits.sub_(log_normaliser[:, None]).exp_()  # softmax over each row
        grad.scatter_add_(
            1,
            positive_index,
            torch.full(
                positive_index.shape, -1.0 / num_positives, dtype=grad.dtype, device=grad.device
            ),
        )
        grad.mul_(grad_loss / (anchors.shape[0] * ctx.temperature))
        grad_anchors = grad @ candidates if ctx.needs_input_grad[0] else None
        grad_candidates = grad.T @ anchors if ctx.needs_input_grad[1] else None
        return grad_anchors, grad_candidates, None, None, None


class NTXentLoss(nn.Module):
    """NT-Xent over ``z`` of shape ``(V, N, D)``: V views of N images, D-dim projections.

    Cosine similarities are divided by ``temperature`` and fed to a log-sum-exp, never to a
    raw ``exp``, so the loss stays finite at temperatures of 0.05 and below.

    Under DDP (W > 1 processes) ``z`` is this rank's share of the batch: its anchors are
    contrasted with the ``(W V N)`` projections of every rank, and the loss is the mean over
    this rank's anchors (the mean over ranks, which DDP's gradient averaging takes, is the
    global loss).
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.temperature = float(TEMPERATURE.check(temperature))

    def forward(self, z: Tensor, negatives: Tensor | None = None) -> ContrastiveOutput:
        """``negatives``: ``(K, D)`` extra candidates for every anchor, none of them a positive
        (keys of a memory buffer; no gradient reaches them). They are L2-normalised here."""
        if z.dim() != 3:
            raise ValueError(f"expected projections of shape (V, N, D), got {tuple(z.shape)}")
        NUM_VIEWS.check(z.shape[0])  # the views of each image
        # Float32 at least, with autocast off: the logits feed a log-sum-exp.
        dtype = torch.promote_types(z.dtype, torch.float32)
        with torch.autocast(z.device.type, enabled=False):
            if negatives is not None:
                negatives = F.normalize(negatives.detach().to(dtype), dim=-1)
            return self._contrast(z.to(dtype), negatives)

    def gather(self, flat: Tensor) -> Tensor:
        """The candidates: every rank's ``(V N, D)`` projections, ``(W V N, D)`` in rank order."""
        return gather_across_ranks(flat)

    @staticmethod
    def _positive_index(rows: Tensor, num_views: int, num_images: int) -> Tensor:
        shifts = torch.arange(1, num_views, device=rows.device) * num_images
        return (rows[:, None] + shifts) % (num_views * num_images)

    def _contrast(self, z: Tensor, negatives: Tensor | None) -> ContrastiveOutput:
        num_views, num_images, _ = z.shape
        z = F.normalize(z, dim=-1)
        flat = z.reshape(num_views * num_images, -1)
        gathered = self.gather(flat)
        # This rank's anchors sit at rows offset ... offset + VN - 1 of the candidates.
        offset = distributed_world()[0] * flat.shape[0] if gathered is not flat else 0
        # Queued keys go after every rank's projections: no index above moves.
        candidates = gathered if negatives is None else torch.cat([gathered, negatives])
        rows = torch.arange(flat.shape[0], device=z.device)
        # Row i (view a, image n) has its positives at the same image in the other views.
        positive_index = self._positive_index(rows, num_views, num_images) + offset
        loss, nearest = _NTXent.apply(
            flat, candidates, rows + offset, positive_index, self.temperature
        )
        with torch.no_grad():
            # Correct when the nearest candidate is on this rank and is the same image.
            nearest = nearest - offset
            same_rank = (nearest >= 0) & (nearest < flat.shape[0])
            accuracy = (same_rank & (nearest % num_images == rows % num_images)).float().mean()
        return ContrastiveOutput(loss, accuracy)
