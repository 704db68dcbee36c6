"""Gradient caching: the NT-Xent gradient of a large batch with the memory of a micro-batch.

The contrastive loss couples every image of the batch, so splitting the batch into pieces
that each get their own loss changes the loss (fewer negatives). Gradient caching (Gao et al.,
2021, "Scaling deep contrastive learning batch size under memory limited setup") keeps the
loss exact:

1. forward every micro-batch without a graph and keep only its projections z (small);
2. compute NT-Xent over the projections of the whole batch, and its gradient dL/dz;
3. forward each micro-batch again, with a graph, and back-propagate its slice of dL/dz
   (``backward((z * dL/dz).sum())``); the parameter gradients add up over micro-batches.

Memory is one micro-batch's activations plus the batch's projections; compute is one extra
forward. The batch this replaces in the original project ("batch accumulation") kept every
micro-batch's graph alive, which saved no memory.

What is exact, and BatchNorm: step 3 reproduces step 1 exactly (same BatchNorm mode, the same
random state restored for each micro-batch, BatchNorm running statistics updated in step 1
only). So the gradients are exactly those of one backward pass through the loss of the whole
batch *computed micro-batch by micro-batch*. That equals the plain full-batch gradient
whenever an image's projection does not depend on the other images of its pass: an encoder
without BatchNorm, with BatchNorm frozen (eval mode), or a single micro-batch. With BatchNorm
in training mode and several micro-batches, each micro-batch is normalised by its own
statistics (as in "ghost" BatchNorm, and as on a device of a DDP run without synchronised
BatchNorm): the loss still sees every negative of the batch, but the normalisation statistics
are those of the micro-batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import get_device_states, set_device_states

from simclr.losses.ntxent import ContrastiveOutput
from simclr.rules import MICRO_BATCH_SIZE

# images (B, 3, H, W) -> (h (B, F), z (B, D))
EncodeFn = Callable[[Tensor], tuple[Tensor, Tensor]]


class CachedStep(NamedTuple):
    """Loss and contrastive accuracy of the whole batch (no graph), and the first view's
    representations ``(N, F)`` (detached), for the monitors."""

    loss: Tensor
    accuracy: Tensor
    features: Tensor


class _RandomState(NamedTuple):
    cpu: Tensor
    devices: list[int]
    device_states: list[Tensor]


def _capture_random_state(*tensors: Tensor) -> _RandomState:
    devices, states = get_device_states(*tensors)
    return _RandomState(torch.get_rng_state(), devices, states)


def _restore_random_state(state: _RandomState) -> None:
    torch.set_rng_state(state.cpu)
    set_device_states(state.devices, state.device_states)


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics (and batch counters) as they were on entry, on exit.

    Training-mode normalisation still uses the batch statistics inside the block; only the
    running averages are left untouched, so a re-run forward does not count a batch twice.
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [
        [buf.clone() for buf in (m.running_mean, m.running_var, m.num_batches_tracked)]
        for m in layers
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, (mean, var, count) in zip(layers, saved, strict=True):
                layer.running_mean.copy_(mean)
                layer.running_var.copy_(var)
                layer.num_batches_tracked.copy_(count)


def micro_batches(num_images: int, micro_batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``micro_batch_size`` images covering ``num_images``."""
    MICRO_BATCH_SIZE.check(micro_batch_size)
    return [
        slice(start, min(start + micro_batch_size, num_images))
        for start in range(0, num_images, micro_batch_size)
    ]


def gradient_cached_step(
    model: nn.Module,
    encode: EncodeFn,
    views: Sequence[Tensor],
    criterion: Callable[[Tensor], ContrastiveOutput],
    micro_batch_size: int,
    backward: Callable[[Tensor], None] = Tensor.backward,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> CachedStep:
    """Accumulate into ``model``'s ``.grad`` the gradient of ``criterion`` over the whole batch.

    Args:
        model: the module whose BatchNorm running statistics ``encode`` updates.
        encode: one forward pass, images ``(B, 3, H, W)`` -> ``(h (B, F), z (B, D))``.
        views: V tensors ``(N, 3, H, W)``, the views of the same N images.
        criterion: NT-Xent over projections ``(V, N, D)``.
        micro_batch_size: images per forward pass (each with its V views, one pass of V x m).
        backward: back-propagates a scalar (``LightningModule.manual_backward`` in training).
        no_sync: a context in which a backward skips the gradient all-reduce of DDP; every
            micro-batch but the last runs in it, so gradients are reduced once per step.
    """
    num_views, num_images = len(views), views[0].shape[0]
    slices = micro_batches(num_images, micro_batch_size)

    def encode_slice(piece: slice) -> tuple[Tensor, Tensor]:
        h, z = encode(torch.cat([view[piece] for view in views]))
        return h, z.view(num_views, piece.stop - piece.start, -1)

    # 1. Projections of every micro-batch, no graph; the random state each one started from.
    states, cached_z, features = [], [], []
    with torch.no_grad():
        for piece in slices:
            states.append(_capture_random_state(views[0]))
            h, z = encode_slice(piece)
            cached_z.append(z)
            features.append(h[: piece.stop - piece.start])
    # 2. The loss over the whole batch and its gradient with respect to the projections.
    z_all = torch.cat(cached_z, dim=1).detach().requires_grad_()
    with torch.enable_grad():
        loss, accuracy = criterion(z_all)
    (grad_z,) = torch.autograd.grad(loss, z_all)
    # 3. Each micro-batch again, with a graph, in the random state of its first pass.
    after_first_pass = _capture_random_state(views[0])
    with frozen_running_stats(model):
        for index, (piece, state) in enumerate(zip(slices, states, strict=True)):
            _restore_random_state(state)
            last = index == len(slices) - 1
            with contextlib.nullcontext() if last else no_sync():
                _, z = encode_slice(piece)
                # d/dθ of sum(z * dL/dz) is this micro-batch's share of dL/dθ.
                backward((z.float() * grad_z[:, piece]).sum())
    # Leave the random streams where the first pass left them.
    _restore_random_state(after_first_pass)
    return CachedStep(loss.detach(), accuracy, torch.cat(features))
