"""``data.pipeline=per_image`` with the views drawn in the loader's workers: every step of
every view per image (torchvision's transforms), as the official code does."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset

from simclr.data.augment.transforms import MultiViewTransform, simclr_augmentation
from simclr.data.pipelines.base import ViewPipeline
from simclr.data.resumable import SeededViews


class PerImagePipeline(ViewPipeline):
    """V views of each decoded image, drawn in the workers; batches reach the device done."""

    on_device = False

    def view_transform(self) -> MultiViewTransform:
        view = simclr_augmentation(self.image_size, self.mean, self.std, **self.augment)
        return MultiViewTransform(view, self.num_views)

    def training_dataset(self, images: Dataset, seed: int, trainer: L.Trainer | None) -> Dataset:
        return SeededViews(images, self.view_transform(), seed)

    def streaming_transform(self) -> MultiViewTransform:
        return self.view_transform()

    def preview(self, images: Dataset, count: int) -> list[Tensor]:
        firsts = [images[i][0] for i in range(min(count, len(images)))]
        transform = self.view_transform()
        views = [transform(image) for image in firsts]
        return [torch.stack([per_image[v] for per_image in views]) for v in range(self.num_views)]
