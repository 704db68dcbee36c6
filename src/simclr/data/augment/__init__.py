"""SimCLR's augmentations: one class per operation (:mod:`simclr.data.augment.ops`), drawn per
image (in the loader's workers) or batched (on the device)."""

from simclr.data.augment.batch_augment import BatchAugmentation
from simclr.data.augment.settings import AugmentSettings, augment_problems
from simclr.data.augment.transforms import (
    MultiViewTransform,
    evaluation_transform,
    simclr_augmentation,
)

__all__ = [
    "AugmentSettings",
    "BatchAugmentation",
    "MultiViewTransform",
    "augment_problems",
    "evaluation_transform",
    "simclr_augmentation",
]
