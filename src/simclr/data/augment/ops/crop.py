"""Random resized crop (Chen et al., 2020, appendix A): an area of ``crop_scale`` of the image
with an aspect ratio in ``crop_ratio``, resized to the view size."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torchvision.ops import roi_align
from torchvision.transforms import v2

from simclr.data.augment.ops.base import Draw, Operation, Option, Params
from simclr.rules import is_number

CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its fallback


def _range(low_ok: Callable, high_ok: Callable) -> Callable[[object], bool]:
    """``ok`` for a pair ``[low, high]`` of numbers with low <= high, each passing its test."""

    def ok(value) -> bool:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
            return False
        if not all(is_number(v) for v in value):
            return False
        low, high = value
        return low <= high and low_ok(low) and high_ok(high)

    return ok


class RandomResizedCrop(Operation):
    name = "crop"
    options: ClassVar[dict[str, Option]] = {
        "crop_scale": Option(
            (0.08, 1.0),
            _range(lambda low: low > 0, lambda high: high <= 1),
            "[low, high] with 0 < low <= high <= 1 (shares of the image's area)",
        ),
        "crop_ratio": Option(
            (3 / 4, 4 / 3),
            _range(lambda low: low > 0, lambda high: True),
            "[low, high] with 0 < low <= high (width / height)",
        ),
    }
    position = 10
    draw_rank = 10
    crop_stage = True

    def per_image(self) -> v2.Transform:
        s = self.settings
        return v2.RandomResizedCrop(
            self.image_size, scale=s.crop_scale, ratio=s.crop_ratio, antialias=True
        )

    def sample(self, draw: Draw, height: int, width: int) -> Params:
        """Boxes ``(B, 4)`` (x0, y0, x1, y1 in pixels) drawn as torchvision's
        RandomResizedCrop.get_params draws them: up to 10 tries of area ~ U(scale) x HW and
        log-ratio ~ U(log ratio) for a box that fits, then the fallback (the whole image,
        ratio clamped to the range)."""
        crop_scale, crop_ratio = self.settings.crop_scale, self.settings.crop_ratio
        batch, device = draw.batch, draw.device
        area = height * width
        scale = draw.uniform(*crop_scale, CROP_ATTEMPTS)
        log_ratio = draw.uniform(math.log(crop_ratio[0]), math.log(crop_ratio[1]), CROP_ATTEMPTS)
        ratio = torch.exp(log_ratio)
        box_w = torch.sqrt(area * scale * ratio).round()
        box_h = torch.sqrt(area * scale / ratio).round()
        fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
        first = torch.where(fits.any(dim=1), fits.float().argmax(dim=1), -1)
        rows = torch.arange(batch, device=device)
        pick = first.clamp(min=0)
        box_w, box_h = box_w[rows, pick], box_h[rows, pick]
        # Fallback: a central crop of the whole image with its ratio clamped to the range.
        in_ratio = width / height
        if in_ratio < crop_ratio[0]:
            fb_w, fb_h = width, round(width / crop_ratio[0])
        elif in_ratio > crop_ratio[1]:
            fb_h, fb_w = height, round(height * crop_ratio[1])
        else:
            fb_w, fb_h = width, height
        fallback = first < 0
        box_w = torch.where(fallback, torch.full_like(box_w, fb_w), box_w)
        box_h = torch.where(fallback, torch.full_like(box_h, fb_h), box_h)
        # Top-left corner uniform over the integer positions where the box fits.
        top = (draw.rand() * (height - box_h + 1)).floor()
        left = (draw.rand() * (width - box_w + 1)).floor()
        top = torch.where(fallback, ((height - box_h) / 2).round(), top)
        left = torch.where(fallback, ((width - box_w) / 2).round(), left)
        return {"boxes": torch.stack([left, top, left + box_w, top + box_h], dim=1)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Crop and resize in one step. aligned=True puts pixel centres at half-integers, as a
        bilinear resize does; the adaptive sampling (sampling_ratio=0) averages
        ceil(box / size) samples a bin, so a shrinking crop is antialiased."""
        index = torch.arange(x.shape[0], device=x.device, dtype=x.dtype)[:, None]
        rois = torch.cat([index, params["boxes"].to(x.dtype)], dim=1)
        return roi_align(
            x, rois, output_size=self.image_size, spatial_scale=1.0, sampling_ratio=0, aligned=True
        )
