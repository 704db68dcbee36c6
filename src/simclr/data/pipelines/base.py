"""What every view pipeline (``data.pipeline``) is: the worker side that reads the
pre-training images, the step after a batch reaches the device, and the previews."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset

from simclr.data.augment.batch_augment import BatchAugmentation
from simclr.data.resumable import derived_seed
from simclr.errors import ConfigError


class ViewPipeline:
    """How ``num_views`` SimCLR views of each pre-training image are drawn.

    A pipeline makes the data set its loader's workers read (:meth:`training_dataset`),
    finishes the views of a batch once it is on the device (:meth:`after_transfer`; the
    labelled batches of the monitors pass through), and draws the views the pictures callback
    shows (:meth:`preview`) the way it trains. ``augment`` holds
    :class:`~simclr.data.augment.transforms.AugmentSettings`' fields; ``data_name`` names the
    data set in error messages.
    """

    # data.pipeline's value, and whether the views are finished on the device.
    pipeline = "per_image"
    on_device = True

    def __init__(
        self,
        data_name: str,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        num_views: int,
        augment: dict,
    ):
        self.data_name = data_name
        self.image_size = image_size
        self.mean, self.std = list(mean), list(std)
        self.num_views = num_views
        self.augment = dict(augment)
        self.batch_augmentation: BatchAugmentation | None = None

    def training_dataset(self, images: Dataset, seed: int, trainer: L.Trainer | None) -> Dataset:
        """What the loader's workers read of the pre-training ``images`` (raw ``(image,
        label)`` items), each sample drawn from ``(seed, epoch, index)``."""
        raise NotImplementedError

    def after_transfer(self, batch, trainer: L.Trainer, seed: int):
        """The training ``batch`` once on the device, as ``(V views, labels)``; other batches
        as they are."""
        return batch

    def preview(self, images: Dataset, count: int) -> list[Tensor]:
        """V views ``(n, 3, S, S)`` of the first ``n <= count`` of ``images``, drawn as in
        training, for pictures."""
        raise NotImplementedError

    def streaming_transform(self):
        """The per-image transform a streaming loader's workers apply (data=streaming)."""
        raise ConfigError(
            "data=streaming draws its views per image in the loader's workers: set "
            "data.augment_on_device=false and data.pipeline=per_image "
            f"(got {self.on_device} and {self.pipeline!r})"
        )

    def batch_augmenter(self, device) -> BatchAugmentation:
        """The batched augmentation, built once, on ``device``."""
        if self.batch_augmentation is None:
            self.batch_augmentation = BatchAugmentation(
                self.image_size, self.mean, self.std, **self.augment
            )
        return self.batch_augmentation.to(device)

    def draw_views(
        self, inputs: list, labels: Tensor, trainer: L.Trainer, seed: int, cropped: bool
    ) -> tuple[list[Tensor], Tensor]:
        """V views of a batch on the labels' device, view ``v`` of ``inputs[v]`` (uint8 images,
        or crops when ``cropped``), each drawn from ``(seed, epoch, batch of the epoch, v)``
        and not from the device's global generator, so a resumed run draws the same views."""
        augment = self.batch_augmenter(labels.device)
        progress = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        generator = torch.Generator(device=labels.device)
        views = []
        for view in range(self.num_views):
            generator.manual_seed(derived_seed(seed, trainer.current_epoch, progress, view))
            views.append(augment(inputs[view], generator, cropped=cropped))
        return views, labels
