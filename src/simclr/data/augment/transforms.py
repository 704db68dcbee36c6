"""SimCLR's data augmentations (Chen et al., 2020, appendix A), per image, in the paper's order.

1. Random resized crop, scale (0.08, 1), aspect ratio (3/4, 4/3), resized to the image size;
   horizontal flip with p = 0.5.
2. Colour distortion of strength s: colour jitter (0.8s, 0.8s, 0.8s, 0.2s) with p = 0.8, then
   grayscale with p = 0.2 (s = 0.5 for CIFAR-sized images, 1.0 for STL-10 and ImageNet).
3. Gaussian blur with a kernel of 10% of the image side (odd), sigma ~ U(0.1, 2.0), with
   probability ``blur_prob`` (0.5 for 96 px and larger; never for 32 px images).

Each operation is a class of :mod:`simclr.data.augment.ops`; the presets live in
``configs/data/augment/``. Images come in as PIL images or uint8 tensors ``(3, H, W)``; views
go out as normalised float tensors ``(3, size, size)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2

from simclr.data.augment.ops.base import Draw
from simclr.data.augment.ops.blur import blur_kernel_size
from simclr.data.augment.pipeline import Normalise, Pipeline, from_pil, to_pil
from simclr.data.augment.settings import AugmentSettings
from simclr.rules import EVAL_CROP_FRACTION, NUM_VIEWS

__all__ = [
    "AugmentSettings",
    "MultiViewTransform",
    "blur_kernel_size",
    "evaluation_transform",
    "simclr_augmentation",
]


def _to_normalised_float(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


class StepsAfterCrop:
    """The steps after the crop stage on one view, their parameters drawn as a batch of one
    from torch's global generator.

    With ``pixel_dtype=uint8`` (photographs): a PIL image or uint8 tensor ``(3, S, S)`` in,
    PIL's uint8 operations, a normalised float view out. With ``float32``: a float view
    ``(3, S, S)`` in [0, 1] in and out (normalised after).
    """

    def __init__(self, pipeline: Pipeline, mean: Sequence[float], std: Sequence[float]):
        self.pipeline = pipeline
        self.normalise = Normalise(mean, std)

    def __call__(self, view: Image.Image | Tensor) -> Tensor:
        pipeline = self.pipeline
        if isinstance(view, Image.Image):
            height, width = view.height, view.width
        else:
            height, width = view.shape[-2:]
        params = pipeline.sample(Draw(1), height, width, pipeline.after_crop)
        if not pipeline.on_pil:
            return pipeline.finish(view[None], params)[0]
        image = view if isinstance(view, Image.Image) else to_pil(view)
        return self.normalise(from_pil(pipeline.finish_pil(image, params, 0)))

    def __repr__(self) -> str:
        names = ", ".join(op.name for op in self.pipeline.after_crop)
        return f"StepsAfterCrop({names}; {self.pipeline.settings.pixel_dtype})"


def simclr_augmentation(
    image_size: int, mean: Sequence[float], std: Sequence[float], **augment
) -> v2.Compose:
    """One random view of an image, as the paper draws it (see the module docstring);
    ``augment`` holds :class:`AugmentSettings`' fields. The crop and flip are torchvision's;
    the steps after them follow ``pixel_dtype`` (:class:`StepsAfterCrop`)."""
    pipeline = Pipeline(AugmentSettings(**augment), image_size)
    crop_stage = [op.per_image() for op in pipeline.crop_stage]
    after_crop = StepsAfterCrop(pipeline, mean, std)
    if pipeline.on_pil:
        return v2.Compose([*crop_stage, after_crop])
    # The crop rounds to uint8 as before; the steps after it compute in floats.
    to_float = v2.ToDtype(torch.float32, scale=True)
    normalise = v2.Normalize(list(mean), list(std))
    return v2.Compose([v2.ToImage(), *crop_stage, to_float, after_crop, normalise])


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
