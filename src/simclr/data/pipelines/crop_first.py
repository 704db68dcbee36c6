"""``data.pipeline=crop_first``: the workers draw each view's crop box and flip from an image
file's header, decode only what the boxes need and yield V uint8 crops; the colour, grayscale
and blur steps are drawn in batches after the transfer
(:mod:`simclr.data.augment.crop_first`)."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset

from simclr.data.augment.crop_first import read_crop_first
from simclr.data.augment.transforms import AugmentSettings
from simclr.data.pipelines.base import ViewPipeline
from simclr.data.resumable import SeededViews


class CropFirstPipeline(ViewPipeline):
    """V uint8 crops per image file from the workers; the rest of the views on the device."""

    pipeline = "crop_first"

    def worker_dataset(self, images: Dataset) -> Dataset:
        """The image files of ``images`` read by this pipeline's worker side (a data set held
        in memory is a ConfigError saying what to use instead)."""
        return read_crop_first(
            images,
            self.pipeline,
            self.data_name,
            self.image_size,
            self.num_views,
            AugmentSettings(**self.augment),
        )

    def training_dataset(self, images: Dataset, seed: int, trainer: L.Trainer | None) -> Dataset:
        # The crop boxes are drawn as a file is read: SeededViews seeds the read itself.
        return SeededViews(self.worker_dataset(images), None, seed)

    def device_inputs(self, images, device) -> list[Tensor] | None:
        """The V crops of a training batch's ``images`` on ``device``, or None for another
        batch (the monitors')."""
        return images if isinstance(images, list) else None

    def after_transfer(self, batch, trainer: L.Trainer, seed: int):
        images, labels = batch
        inputs = self.device_inputs(images, labels.device)
        if inputs is None:
            return batch
        return self.draw_views(inputs, labels, trainer, seed, cropped=True)

    def preview_inputs(self, items: list) -> list[Tensor]:
        """The V crops of the worker side's ``items`` (one per image), on the CPU."""
        return [torch.stack([item[v] for item in items]) for v in range(self.num_views)]

    def preview(self, images: Dataset, count: int) -> list[Tensor]:
        dataset = self.worker_dataset(images)
        items = [dataset[i][0] for i in range(min(count, len(dataset)))]
        augment = self.batch_augmenter(torch.device("cpu"))
        return [augment(x, cropped=True) for x in self.preview_inputs(items)]
