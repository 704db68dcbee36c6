"""What a data-set loader returns: the raw splits of a data set (images untransformed), the
in-memory image container, and the wrapper that transforms a split's images when read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

# The label of an image without one (STL-10's unlabeled split, an unlabelled image folder).
UNLABELLED = -1


@dataclass
class LabelledSplits:
    """Raw (untransformed) splits; each item is ``(image, label)``.

    ``unlabeled`` holds images without labels (label -1) for pre-training only, where the
    data set has them (STL-10); ``class_names`` names the labels where known. A data set
    without labels (``data.options.labels=none``) has ``num_classes`` 0 and every label -1 in
    every split: it can be pre-trained on, but neither monitored by class nor fine-tuned.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    unlabeled: Dataset | None = None
    class_names: list[str] | None = None

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0


class TensorImages(Dataset):
    """In-memory uint8 images ``(N, 3, H, W)`` with integer labels ``(N,)``."""

    def __init__(self, images: Tensor, labels: Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"expected uint8 images (N, 3, H, W), got {images.dtype} {images.shape}"
            )
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    def select(self, indices: Tensor) -> TensorImages:
        return TensorImages(self.images[indices], self.labels[indices])


class Transformed(Dataset):
    """Applies ``transform`` to the images of a labelled data set."""

    def __init__(self, dataset: Dataset, transform: Callable):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image), label
