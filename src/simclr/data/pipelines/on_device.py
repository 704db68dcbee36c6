"""``data.pipeline=per_image`` with ``augment_on_device``: the workers only stack uint8
images, and every view is drawn per image but in batches, on the device
(:class:`~simclr.data.augment.batch_augment.BatchAugmentation`)."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from simclr.data.pipelines.base import ViewPipeline
from simclr.data.resumable import SeededViews


class OnDevicePipeline(ViewPipeline):
    """uint8 images in the batch; V views drawn after the transfer."""

    def training_dataset(self, images: Dataset, seed: int, trainer: L.Trainer | None) -> Dataset:
        return SeededViews(images, v2.ToImage(), seed)

    def after_transfer(self, batch, trainer: L.Trainer, seed: int):
        images, labels = batch
        # Only the training loader yields uint8 images; the monitors' batches are float.
        if not isinstance(images, Tensor) or images.dtype != torch.uint8:
            return batch
        return self.draw_views([images] * self.num_views, labels, trainer, seed, cropped=False)

    def preview(self, images: Dataset, count: int) -> list[Tensor]:
        firsts = [images[i][0] for i in range(min(count, len(images)))]
        batch = torch.stack([v2.functional.to_image(image) for image in firsts])
        augment = self.batch_augmenter(batch.device)
        return [augment(batch) for _ in range(self.num_views)]
