"""Data sets and the LightningDataModule that serves them to pre-training.

A registry maps ``data.name`` to a loader that returns the raw labelled splits (train, val,
test) of a data set, images untransformed. The DataModule wraps them with the augmentation
(V views per image) for pre-training and the deterministic evaluation transform for the
monitors.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes),
  upsampled to ``image_size`` RGB; a stratified split fixed by ``split_seed``. Runs offline.
- ``fake``: random images with random labels, for tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from simclr.batch_augment import BatchAugmentation
from simclr.errors import ConfigError
from simclr.transforms import MultiViewTransform, evaluation_transform, simclr_augmentation


@dataclass
class LabelledSplits:
    """Raw (untransformed) splits; each item is ``(image, label)``."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int


DatasetLoader = Callable[..., LabelledSplits]
DATASETS: dict[str, DatasetLoader] = {}


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Register a loader ``(root, image_size, **options) -> LabelledSplits`` as ``name``."""

    def decorator(loader: DatasetLoader) -> DatasetLoader:
        if name in DATASETS:
            raise ValueError(f"data set {name!r} is registered twice")
        DATASETS[name] = loader
        return loader

    return decorator


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


def _stratified_split(labels: Tensor, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Indices for consecutive splits of the given fractions, each class split alike."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[Tensor]] = [[] for _ in fractions]
    for cls in labels.unique():
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        # The first split takes what rounding leaves over, so no image is lost.
        sizes = [round(fraction * len(members)) for fraction in fractions[1:]]
        sizes.insert(0, len(members) - sum(sizes))
        for part, chunk in zip(parts, members.split(sizes), strict=True):
            part.append(chunk)
    return [torch.cat(part).sort().values for part in parts]


def balanced_subset(labels: Sequence[int] | Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Indices of a class-balanced labelled subset: ``round(fraction x count)`` images of each
    class (at least one), drawn at random but the same for the same ``seed``; sorted.

    This is the semi-supervised protocol's 1% / 10% of the labels (SimCLR, section 6), unlike
    taking the first images of the data set, which is neither balanced nor random.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"label_fraction must be in (0, 1], got {fraction}")
    labels = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in labels.unique():
        members = (labels == cls).nonzero().flatten()
        keep = max(1, round(fraction * len(members)))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:keep]])
    return torch.cat(chosen).sort().values


@register_dataset("digits")
def load_digits(
    root: str,
    image_size: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    **_,
) -> LabelledSplits:
    """scikit-learn's digits (grey levels 0..16), upsampled bilinearly to RGB ``image_size``."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    train_fraction = 1.0 - val_fraction - test_fraction
    splits = _stratified_split(labels, (train_fraction, val_fraction, test_fraction), split_seed)
    train, val, test = (TensorImages(images[i].contiguous(), labels[i]) for i in splits)
    return LabelledSplits(train, val, test, num_classes=10)


@register_dataset("fake")
def load_fake(
    root: str,
    image_size: int,
    num_train: int = 64,
    num_val: int = 32,
    num_test: int = 32,
    num_classes: int = 10,
    split_seed: int = 0,
    **_,
) -> LabelledSplits:
    """Random uint8 images and labels, fixed by ``split_seed``; for tests."""
    generator = torch.Generator().manual_seed(split_seed)

    def split(count: int) -> TensorImages:
        images = torch.randint(
            0, 256, (count, 3, image_size, image_size), dtype=torch.uint8, generator=generator
        )
        return TensorImages(images, torch.randint(0, num_classes, (count,), generator=generator))

    return LabelledSplits(split(num_train), split(num_val), split(num_test), num_classes)


class SimCLRDataModule(L.LightningDataModule):
    """Serves ``num_views`` augmented views per image for pre-training, and the labelled
    splits with the evaluation transform for the monitors.

    ``batch_size`` is the global batch: each of the trainer's devices gets
    ``batch_size / world_size`` images (V views each), so the number of negatives does not
    change with the device count.
    """

    def __init__(
        self,
        name: str,
        root: str,
        image_size: int,
        batch_size: int,
        num_views: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: dict,
        num_workers: int = 0,
        eval_batch_size: int = 256,
        options: dict | None = None,
        augment_on_device: bool | None = None,
    ):
        super().__init__()
        if name not in DATASETS:
            raise ConfigError(
                f"unknown data set {name!r}; valid names: {', '.join(sorted(DATASETS))}"
            )
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.name = name
        self.root = root
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_views = num_views
        self.mean, self.std = list(mean), list(std)
        self.augment = dict(augment)
        self.num_workers = num_workers
        self.eval_batch_size = eval_batch_size
        self.options = dict(options or {})
        self.augment_on_device = augment_on_device
        self.batch_augmentation: BatchAugmentation | None = None
        self.splits: LabelledSplits | None = None

    @property
    def num_classes(self) -> int:
        return self.load_splits().num_classes

    def load_splits(self) -> LabelledSplits:
        if self.splits is None:
            self.splits = DATASETS[self.name](self.root, self.image_size, **self.options)
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        self.load_splits()

    def per_device_batch_size(self) -> int:
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} (the global batch) does not divide by the "
                f"{world_size} devices; choose a multiple of {world_size}"
            )
        return self.batch_size // world_size

    def pretrain_transform(self) -> MultiViewTransform:
        view = simclr_augmentation(self.image_size, self.mean, self.std, **self.augment)
        return MultiViewTransform(view, self.num_views)

    def eval_transform(self):
        return evaluation_transform(self.image_size, self.mean, self.std)

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        # On-device augmentation: the loader only stacks uint8 images; the views are drawn
        # after the batch reached the accelerator (on_after_batch_transfer).
        transform = v2.ToImage() if self.views_on_device() else self.pretrain_transform()
        dataset = Transformed(self.load_splits().train, transform)
        batch_size = self.per_device_batch_size()
        if len(dataset) < batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} gives {batch_size} images per device, more "
                f"than the {len(dataset)} training images of {self.name!r}; lower data.batch_size"
            )
        return self._loader(dataset, batch_size, train=True)

    def views_on_device(self) -> bool:
        """``augment_on_device``, where ``None`` means: on an accelerator, not on a CPU (where
        bench/cpu.py measured the per-image pipeline in workers to be faster)."""
        if self.augment_on_device is not None:
            return self.augment_on_device
        return self.trainer is not None and self.trainer.strategy.root_device.type != "cpu"

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With ``augment_on_device``, turns a training batch of uint8 images into V views
        drawn per image by :class:`simclr.batch_augment.BatchAugmentation`, on the device."""
        if not self.views_on_device() or (self.trainer is not None and not self.trainer.training):
            return batch
        images, labels = batch
        if self.batch_augmentation is None:
            self.batch_augmentation = BatchAugmentation(
                self.image_size, self.mean, self.std, **self.augment
            )
        augment = self.batch_augmentation.to(images.device)
        return [augment(images) for _ in range(self.num_views)], labels

    def labelled_dataloader(self, split: str) -> DataLoader:
        """A labelled split (``train``, ``val`` or ``test``) with the evaluation transform."""
        dataset = Transformed(getattr(self.load_splits(), split), self.eval_transform())
        return self._loader(dataset, self.eval_batch_size, train=False)
