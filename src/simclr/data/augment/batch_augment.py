"""SimCLR's augmentation applied to a whole batch at once, on the batch's device.

The per-image pipeline (:mod:`simclr.data.augment.transforms`) runs in CPU data-loader
workers, which can starve a GPU. For data sets held in memory as equal-size uint8 images
(digits, CIFAR), this module draws every operation's parameters for the whole batch
(:mod:`simclr.data.augment.ops`, with the distributions of torchvision's transforms) and applies
them as batched tensor operations after the batch reached the device; on a CPU with
``pixel_dtype=uint8``, the steps after the crop run image by image as PIL's uint8 operations.

Input: uint8 images ``(B, 3, H, W)``. Output: normalised float views ``(B, 3, S, S)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from simclr.data.augment.ops.base import Draw, Params
from simclr.data.augment.pipeline import Normalise, Pipeline
from simclr.data.augment.settings import AugmentSettings


class BatchAugmentation(nn.Module):
    """One random SimCLR view of every image of a uint8 batch; see the module docstring.

    The arguments are those of :func:`simclr.data.augment.transforms.simclr_augmentation`:
    ``augment`` holds :class:`~simclr.data.augment.settings.AugmentSettings`' fields
    (``self.settings``).
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], **augment):
        super().__init__()
        self.image_size = image_size
        self.settings = AugmentSettings(**augment)
        self.pipeline = Pipeline(self.settings, image_size)
        self.normalise_uint8 = Normalise(mean, std)  # the uint8 path, on a CPU
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1), persistent=False)

    def sample(
        self,
        batch: int,
        height: int,
        width: int,
        device=None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Params]:
        """Draw the random parameters of ``batch`` views of ``height x width`` images, from
        ``generator`` (on ``device``) or else the device's global generator: every
        operation's, keyed by its name, each drawn even where the operation is off."""
        return self.pipeline.sample(Draw(batch, device, generator), height, width)

    def apply(self, images: Tensor, params: dict[str, Params]) -> Tensor:
        """The views of ``images`` (uint8 or float in [0, 1]) for the given parameters."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return self.after_crop(self.pipeline.cut(x, params), params)

    def after_crop(self, views: Tensor, params: dict[str, Params]) -> Tensor:
        """What follows the crop and flip (rotation, colour jitter, grayscale, blur ...) and
        the normalisation, on views ``(B, 3, S, S)``: uint8, or float in [0, 1]."""
        if self.pipeline.on_pil and views.device.type == "cpu":
            if views.dtype != torch.uint8:
                views = (views * 255).round().to(torch.uint8)
            return self.pipeline.finish_uint8(views, params, self.normalise_uint8)
        x = views.float() / 255 if views.dtype == torch.uint8 else views.float()
        return (self.pipeline.finish(x, params) - self.mean) / self.std

    def forward(
        self, images: Tensor, generator: torch.Generator | None = None, cropped: bool = False
    ) -> Tensor:
        """Views ``(B, 3, S, S)`` of ``images``, drawn from ``generator`` where given (on the
        images' device: a resumable stream) or else the device's global generator.

        ``cropped``: the images are views already cropped to ``S`` and flipped (uint8, or
        float in [0, 1]), as ``data.pipeline=crop_first`` makes them in the workers
        (:mod:`simclr.data.augment.crop_first`); only the steps after the crop are drawn."""
        height, width = images.shape[-2], images.shape[-1]
        params = self.sample(images.shape[0], height, width, images.device, generator)
        if not cropped:
            return self.apply(images, params)
        if (height, width) != (self.image_size, self.image_size):
            raise ValueError(f"cropped views must be {self.image_size} px, got {height}x{width}")
        return self.after_crop(images, params)
