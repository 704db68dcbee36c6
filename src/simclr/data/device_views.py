"""The views of a pre-training batch drawn after it reached the device (``augment_on_device``,
and always for the crop-first pipelines): uint8 images, crops or JPEG bytes in, V augmented
views out, each drawn from ``(seed, epoch, batch, view)`` so that a resumed run draws the views
an uninterrupted one would."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from simclr.data.augment.crop_first import decode_views
from simclr.data.resumable import derived_seed

if TYPE_CHECKING:
    from simclr.data.pretraining import SimCLRDataModule


def views_after_transfer(data: SimCLRDataModule, batch):
    """V views of the images of pre-training batch ``(images, labels)``, drawn per image by
    :class:`~simclr.data.augment.batch_augment.BatchAugmentation` on the labels' device; any
    other batch is returned as it is."""
    images, labels = batch
    # Only the pre-training loader yields uint8 images (or crops, or JPEG bytes) here; the
    # monitors' labelled batches (float, already transformed) pass through untouched.
    cropped = data.pipeline != "per_image"
    if isinstance(images, dict):  # device_decode: JPEG bytes and crop boxes
        inputs = decode_views(images, data.image_size, labels.device)
    elif cropped and isinstance(images, list):  # crop_first: V uint8 views
        inputs = images
    elif not cropped and isinstance(images, Tensor) and images.dtype == torch.uint8:
        inputs = [images] * data.num_views
    else:
        return batch
    augment = data.batch_augmenter(labels.device)
    # Drawn from (seed, epoch, batch of the epoch, view), not the device's global generator.
    trainer = data.trainer
    progress = trainer.fit_loop.epoch_loop.batch_progress.current.ready
    generator = torch.Generator(device=labels.device)
    views = []
    for view in range(data.num_views):
        generator.manual_seed(derived_seed(data.stream.seed, trainer.current_epoch, progress, view))
        views.append(augment(inputs[view], generator, cropped=cropped))
    return views, labels
