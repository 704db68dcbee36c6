"""The views the pictures callback shows: the first images of the pre-training split, drawn
by the pipeline that trains (per image in the workers, batched after the transfer, crop-first,
or decoded as the device would)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import default_collate
from torchvision.transforms import v2

from simclr.data.augment.crop_first import decode_views

if TYPE_CHECKING:
    from simclr.data.pretraining import SimCLRDataModule


def preview_views(data: SimCLRDataModule, count: int) -> list[Tensor]:
    """V views ``(n, 3, S, S)`` of the first ``n <= count`` pre-training images, drawn by
    the pipeline that trains (per image, or batched on the device), for pictures."""
    if data.pipeline != "per_image":
        dataset = data.file_views()
        items = [dataset[i][0] for i in range(min(count, len(dataset)))]
        if data.pipeline == "device_decode":
            inputs = decode_views(default_collate(items), data.image_size, "cpu")
        else:
            inputs = [torch.stack([item[v] for item in items]) for v in range(data.num_views)]
        augment = data.batch_augmenter(torch.device("cpu"))
        return [augment(x, cropped=True) for x in inputs]
    dataset = data.pretrain_dataset()
    images = [dataset[i][0] for i in range(min(count, len(dataset)))]
    if data.views_on_device():
        batch = torch.stack([v2.functional.to_image(image) for image in images])
        augment = data.batch_augmenter(batch.device)
        return [augment(batch) for _ in range(data.num_views)]
    views = [data.pretrain_transform()(image) for image in images]
    return [torch.stack([per_image[v] for per_image in views]) for v in range(data.num_views)]
