"""Data sets that need no files: scikit-learn's bundled digits and random images for tests.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes),
  upsampled to ``image_size`` RGB; a stratified split fixed by ``split_seed``. Runs offline.
- ``fake``: random images with random labels, for tests.

Neither reads or downloads anything: the source's ``root`` and ``download`` go unused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simclr.data.containers import LabelledSplits, TensorImages
from simclr.data.sources.catalogue import DATASETS, Source
from simclr.data.splits import stratified_split


@DATASETS.register("digits")
def load_digits(
    source: Source, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> LabelledSplits:
    """scikit-learn's digits (grey levels 0..16), upsampled bilinearly to RGB ``image_size``."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(
        images, size=(source.image_size, source.image_size), mode="bilinear", align_corners=False
    )
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    train_fraction = 1.0 - val_fraction - test_fraction
    splits = stratified_split(
        labels, (train_fraction, val_fraction, test_fraction), source.split_seed
    )
    train, val, test = (TensorImages(images[i].contiguous(), labels[i]) for i in splits)
    return LabelledSplits(train, val, test, num_classes=10)


@DATASETS.register("fake")
def load_fake(
    source: Source,
    num_train: int = 64,
    num_val: int = 32,
    num_test: int = 32,
    num_classes: int = 10,
) -> LabelledSplits:
    """Random uint8 images and labels, fixed by ``split_seed``; for tests."""
    generator = torch.Generator().manual_seed(source.split_seed)

    def split(count: int) -> TensorImages:
        images = torch.randint(
            0,
            256,
            (count, 3, source.image_size, source.image_size),
            dtype=torch.uint8,
            generator=generator,
        )
        return TensorImages(images, torch.randint(0, num_classes, (count,), generator=generator))

    return LabelledSplits(split(num_train), split(num_val), split(num_test), num_classes)
