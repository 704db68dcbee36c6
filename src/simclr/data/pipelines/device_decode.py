"""``data.pipeline=device_decode``: the workers read each JPEG file's bytes and draw its crop
boxes; the batch's files are decoded together on the GPU (nvJPEG), where the crops are cut and
the rest of the views drawn (:mod:`simclr.data.augment.crop_first`)."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from simclr.data.augment.crop_first import decode_views, require_cuda
from simclr.data.pipelines.crop_first import CropFirstPipeline


class DeviceDecodePipeline(CropFirstPipeline):
    """JPEG bytes and crop boxes from the workers; decoding and the views on a CUDA device."""

    pipeline = "device_decode"

    def training_dataset(self, images: Dataset, seed: int, trainer: L.Trainer | None) -> Dataset:
        strategy = getattr(trainer, "strategy", None)
        require_cuda(strategy.root_device if strategy else torch.device("cpu"))
        return super().training_dataset(images, seed, trainer)

    def device_inputs(self, images, device) -> list[Tensor] | None:
        if not isinstance(images, dict):  # not JPEG bytes and boxes: the monitors' batch
            return None
        return decode_views(images, self.image_size, device)

    def preview_inputs(self, items: list) -> list[Tensor]:
        # Decoded on the CPU, as the device would decode them.
        return decode_views(default_collate(items), self.image_size, "cpu")
