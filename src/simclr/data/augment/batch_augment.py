"""SimCLR's augmentation applied to a whole batch at once, on the batch's device.

The per-image pipeline (:mod:`simclr.data.augment.transforms`) runs in CPU data-loader
workers, which can starve a GPU. For data sets held in memory as equal-size uint8 images
(digits, CIFAR), this module draws the same random parameters per image (crop box, flip,
colour jitter factors and order, grayscale, blur sigma), with the same distributions as
torchvision's transforms, and applies them as batched tensor operations after the batch reached
the device.

Input: uint8 images ``(B, 3, H, W)``. Output: normalised float views ``(B, 3, S, S)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from simclr.data.augment.transforms import AugmentSettings, blur_kernel_size

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's grayscale
CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its fallback

# Colour-jitter operations, in the index order of torchvision's ColorJitter.
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


@dataclass
class AugmentParams:
    """Random parameters for a batch of B images; every field has B rows."""

    boxes: Tensor  # (B, 4) crop boxes x0, y0, x1, y1 in pixels
    flip: Tensor  # (B,) bool
    jitter: Tensor  # (B,) bool: colour jitter applied
    factors: Tensor  # (B, 4) brightness, contrast, saturation factors, hue shift
    order: Tensor  # (B, 4) permutation of the four jitter operations
    grayscale: Tensor  # (B,) bool
    blur: Tensor  # (B,) bool
    sigma: Tensor  # (B,) blur sigma
    angle: Tensor  # (B,) rotation in degrees (0: not rotated)


def grayscale(images: Tensor) -> Tensor:
    """Luma ``(B, 1, H, W)`` of float RGB images in [0, 1]."""
    weights = images.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    return _blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    return _blend(images, grayscale(images), factor)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of float RGB images by ``shift`` (in turns, per image)."""
    r, g, b = images.unbind(dim=1)
    maximum, _ = images.max(dim=1)
    minimum, _ = images.min(dim=1)
    chroma = maximum - minimum
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(
        maximum == r,
        ((g - b) / safe) % 6,
        torch.where(maximum == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    # HSV -> RGB with value = maximum and chroma unchanged.
    k = (
        torch.tensor([5.0, 3.0, 1.0], device=images.device).view(1, 3, 1, 1) + hue[:, None] * 6
    ) % 6
    weight = (torch.minimum(k, 4 - k)).clamp(0, 1)
    return maximum[:, None] - chroma[:, None] * weight


JITTER_OPS = {
    BRIGHTNESS: adjust_brightness,
    CONTRAST: adjust_contrast,
    SATURATION: adjust_saturation,
    HUE: adjust_hue,
}


def rotate(images: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image about its centre by its angle (bilinear, black outside), as
    torchvision's RandomRotation does with its defaults."""
    radians = degrees.to(images.dtype) * (math.pi / 180)
    cos, sin = radians.cos(), radians.sin()
    zero = torch.zeros_like(cos)
    # Output pixel -> input pixel in normalised coordinates (square images).
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gaussian_blur(images: Tensor, kernel_size: int, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with one sigma per image and reflect padding."""
    batch, channels, height, width = images.shape
    radius = kernel_size // 2
    offsets = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - radius
    kernels = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernels.view(-1, 1, 1, kernel_size), groups=batch * channels)
    flat = F.conv2d(flat, kernels.view(-1, 1, kernel_size, 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


class BatchAugmentation(nn.Module):
    """One random SimCLR view of every image of a uint8 batch; see the module docstring.

    The arguments are those of :func:`simclr.data.augment.transforms.simclr_augmentation`:
    ``augment`` holds :class:`~simclr.data.augment.transforms.AugmentSettings`' fields, which
    become this module's attributes of the same names.
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], **augment):
        super().__init__()
        self.image_size = image_size
        settings = AugmentSettings(**augment)
        for field in fields(settings):
            setattr(self, field.name, getattr(settings, field.name))
        self.kernel_size = blur_kernel_size(image_size)
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1), persistent=False)

    def sample_crop_boxes(
        self, batch: int, height: int, width: int, device, generator: torch.Generator | None = None
    ) -> Tensor:
        """Boxes ``(B, 4)`` drawn as torchvision's RandomResizedCrop.get_params draws them:
        up to 10 tries of area ~ U(scale) x HW and log-ratio ~ U(log ratio) for a box that
        fits, then the fallback (the whole image, ratio clamped to the range)."""
        area = height * width
        scale = torch.empty(batch, CROP_ATTEMPTS, device=device).uniform_(
            *self.crop_scale, generator=generator
        )
        log_ratio = torch.empty(batch, CROP_ATTEMPTS, device=device).uniform_(
            math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]), generator=generator
        )
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
        if in_ratio < self.crop_ratio[0]:
            fb_w, fb_h = width, round(width / self.crop_ratio[0])
        elif in_ratio > self.crop_ratio[1]:
            fb_h, fb_w = height, round(height * self.crop_ratio[1])
        else:
            fb_w, fb_h = width, height
        fallback = first < 0
        box_w = torch.where(fallback, torch.full_like(box_w, fb_w), box_w)
        box_h = torch.where(fallback, torch.full_like(box_h, fb_h), box_h)
        # Top-left corner uniform over the integer positions where the box fits.
        top = (torch.rand(batch, device=device, generator=generator) * (height - box_h + 1)).floor()
        left = (torch.rand(batch, device=device, generator=generator) * (width - box_w + 1)).floor()
        top = torch.where(fallback, ((height - box_h) / 2).round(), top)
        left = torch.where(fallback, ((width - box_w) / 2).round(), left)
        return torch.stack([left, top, left + box_w, top + box_h], dim=1)

    def sample(
        self,
        batch: int,
        height: int,
        width: int,
        device=None,
        generator: torch.Generator | None = None,
    ) -> AugmentParams:
        """Draw the random parameters of ``batch`` views of ``height x width`` images, from
        ``generator`` (on ``device``) or else the device's global generator."""
        s = self.color_strength

        def coin(p: float) -> Tensor:
            return torch.rand(batch, device=device, generator=generator) < p

        def uniform(low: float, high: float) -> Tensor:
            return torch.empty(batch, device=device).uniform_(low, high, generator=generator)

        factors = torch.stack(
            [
                uniform(max(0.0, 1 - 0.8 * s), 1 + 0.8 * s),
                uniform(max(0.0, 1 - 0.8 * s), 1 + 0.8 * s),
                uniform(max(0.0, 1 - 0.8 * s), 1 + 0.8 * s),
                uniform(-0.2 * s, 0.2 * s),
            ],
            dim=1,
        )
        return AugmentParams(
            boxes=self.sample_crop_boxes(batch, height, width, device, generator),
            flip=coin(self.flip_prob),
            jitter=coin(self.color_prob),
            factors=factors,
            order=torch.rand(batch, 4, device=device, generator=generator).argsort(dim=1),
            grayscale=coin(self.grayscale_prob),
            blur=coin(self.blur_prob),
            sigma=uniform(0.1, 2.0),
            angle=torch.where(
                coin(self.rotation_prob),
                uniform(-self.rotation_degrees, self.rotation_degrees),
                torch.zeros(batch, device=device),
            ),
        )

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """The views of ``images`` (uint8 or float in [0, 1]) for the given parameters."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        # Crop and resize in one step. aligned=True puts pixel centres at half-integers, as
        # a bilinear resize does; the adaptive sampling (sampling_ratio=0) averages
        # ceil(box / size) samples a bin, so a shrinking crop is antialiased.
        batch = x.shape[0]
        rois = torch.cat(
            [
                torch.arange(batch, device=x.device, dtype=x.dtype)[:, None],
                params.boxes.to(x.dtype),
            ],
            dim=1,
        )
        x = roi_align(
            x, rois, output_size=self.image_size, spatial_scale=1.0, sampling_ratio=0, aligned=True
        )
        x = torch.where(params.flip.view(-1, 1, 1, 1), x.flip(-1), x)
        return self.after_crop(x, params)

    def after_crop(self, x: Tensor, params: AugmentParams) -> Tensor:
        """What follows the crop and flip: rotation, colour jitter, grayscale, blur and
        normalisation of float views ``(B, 3, S, S)`` in [0, 1]."""
        if bool((params.angle != 0).any()):
            x = rotate(x, params.angle)
        x = self._color_jitter(x, params)
        gray = grayscale(x).expand_as(x)
        x = torch.where(params.grayscale.view(-1, 1, 1, 1), gray, x)
        if params.blur.any():
            chosen = params.blur.nonzero().flatten()
            x = x.index_copy(
                0, chosen, gaussian_blur(x[chosen], self.kernel_size, params.sigma[chosen])
            )
        return (x - self.mean) / self.std

    def _color_jitter(self, x: Tensor, params: AugmentParams) -> Tensor:
        for position in range(4):
            for op, adjust in JITTER_OPS.items():
                chosen = (params.jitter & (params.order[:, position] == op)).nonzero().flatten()
                if len(chosen):
                    x = x.index_copy(0, chosen, adjust(x[chosen], params.factors[chosen, op]))
        return x

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
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return self.after_crop(x, params)
