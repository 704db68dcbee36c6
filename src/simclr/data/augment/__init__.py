"""SimCLR's augmentations: per image (in the loader's workers) and batched (on the device)."""

from simclr.data.augment.batch_augment import BatchAugmentation
from simclr.data.augment.transforms import (
    MultiViewTransform,
    evaluation_transform,
    simclr_augmentation,
)

__all__ = [
    "BatchAugmentation",
    "MultiViewTransform",
    "evaluation_transform",
    "simclr_augmentation",
]
