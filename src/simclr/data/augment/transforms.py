"""SimCLR's data augmentations (Chen et al., 2020, appendix A), in the paper's order.

1. Random resized crop, scale (0.08, 1), aspect ratio (3/4, 4/3), resized to the image size;
   horizontal flip with p = 0.5.
2. Colour distortion of strength s: colour jitter (0.8s, 0.8s, 0.8s, 0.2s) with p = 0.8, then
   grayscale with p = 0.2 (s = 0.5 for CIFAR-sized images, 1.0 for STL-10 and ImageNet).
3. Gaussian blur with a kernel of 10% of the image side (odd), sigma ~ U(0.1, 2.0), with
   probability ``blur_prob`` (0.5 for 96 px and larger; never for 32 px images).

The presets live in ``configs/data/augment/``; the numbers here are what they select.
Images come in as PIL images or uint8 tensors ``(3, H, W)``; views go out as normalised float
tensors ``(3, size, size)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import v2

from simclr.rules import EVAL_CROP_FRACTION, NUM_VIEWS


def blur_kernel_size(image_size: int) -> int:
    """10% of the image side, rounded down to an odd number of at least 3."""
    kernel = max(3, int(0.1 * image_size))
    return kernel if kernel % 2 == 1 else kernel + 1


def _to_normalised_float(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


@dataclass(frozen=True)
class AugmentSettings:
    """The settings of SimCLR's augmentation (``data.augment``), for both pipelines: this
    module's per-image one and :class:`~simclr.data.augment.batch_augment.BatchAugmentation`.

    ``rotation_prob`` > 0 adds a rotation by an angle ~ U(-``rotation_degrees``,
    ``rotation_degrees``) after the crop and flip (not in the paper; for digits).
    """

    color_strength: float = 0.5
    color_prob: float = 0.8
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    rotation_prob: float = 0.0
    rotation_degrees: float = 0.0

    def __post_init__(self):
        # Lists from a config become tuples, as the samplers take them.
        object.__setattr__(self, "crop_scale", tuple(self.crop_scale))
        object.__setattr__(self, "crop_ratio", tuple(self.crop_ratio))


def simclr_augmentation(
    image_size: int, mean: Sequence[float], std: Sequence[float], **augment
) -> v2.Compose:
    """One random view of an image, as the paper draws it (see the module docstring);
    ``augment`` holds :class:`AugmentSettings`' fields."""
    a = AugmentSettings(**augment)
    s = a.color_strength
    steps = [
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, scale=a.crop_scale, ratio=a.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(p=a.flip_prob),
    ]
    if a.rotation_prob > 0 and a.rotation_degrees > 0:
        rotation = v2.RandomRotation(
            a.rotation_degrees, interpolation=v2.InterpolationMode.BILINEAR
        )
        steps.append(v2.RandomApply([rotation], p=a.rotation_prob))
    # The colour operations work on floats: on uint8 every one of them would round its
    # output to 256 levels, which coarsens dark or low-contrast images (upsampled digits
    # have 17 grey levels to begin with). The batched pipeline computes in floats as well.
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=a.color_prob),
        v2.RandomGrayscale(p=a.grayscale_prob),
    ]
    if a.blur_prob > 0:
        blur = v2.GaussianBlur(blur_kernel_size(image_size), sigma=(0.1, 2.0))
        steps.append(v2.RandomApply([blur], p=a.blur_prob))
    return v2.Compose([*steps, v2.Normalize(list(mean), list(std))])


def evaluation_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], crop_fraction: float = 1.0
) -> v2.Compose:
    """Deterministic: the central ``crop_fraction`` of the short side, resized to
    ``image_size``, then normalised.

    The official code takes the central 87.5% (``CROP_PROPORTION``) for images above 32 px,
    the usual ImageNet evaluation (resize to 256, centre-crop 224), and the whole image for
    32 px ones; the data configs set ``data.eval_crop_fraction`` accordingly.
    """
    EVAL_CROP_FRACTION.check(crop_fraction)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(round(image_size / crop_fraction), antialias=True),
            v2.CenterCrop(image_size),
            *_to_normalised_float(mean, std),
        ]
    )


class MultiViewTransform:
    """Applies ``transform`` ``num_views`` times independently: image -> list of V views."""

    def __init__(self, transform: Callable[..., Tensor], num_views: int = 2):
        NUM_VIEWS.check(num_views)
        self.transform = transform
        self.num_views = num_views

    def __call__(self, image) -> list[Tensor]:
        return [self.transform(image) for _ in range(self.num_views)]

    def __repr__(self) -> str:
        return f"MultiViewTransform(num_views={self.num_views}, transform={self.transform})"
