"""The fine-tuning DataModule: a class-balanced fraction of a data set's training labels,
with the paper's linear-evaluation augmentation, and its own val and test splits."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from simclr.data.augment.transforms import simclr_augmentation
from simclr.data.loaders import make_loader, world_size
from simclr.data.pretraining import SimCLRDataModule
from simclr.data.resumable import SeededViews
from simclr.data.splits import balanced_subset


def dataset_labels(dataset: Dataset) -> Tensor:
    """Every label of a labelled data set ``(N,)``, without decoding images when it can."""
    for attribute in ("labels", "targets"):
        if hasattr(dataset, attribute):
            return torch.as_tensor(getattr(dataset, attribute), dtype=torch.long)
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])


class FineTuneDataModule(L.LightningDataModule):
    """The labelled splits of a registered data set for fine-tuning.

    Training uses ``label_fraction`` of the training split, the same number of images from
    every class (:func:`~simclr.data.balanced_subset`, fixed by ``label_seed``), with random
    resized crops and flips (the paper's linear-evaluation augmentation); validation (model
    selection) and test use the data set's own val and test splits with the evaluation
    transform, so neither is ever trained on. The training images' order and crops are
    drawn from ``seed`` as pre-training's are (:mod:`simclr.data.resumable`), so a resumed
    run reads what an uninterrupted one would have.
    """

    def __init__(
        self,
        data: dict,
        label_fraction: float,
        label_seed: int = 0,
        crop_scale: Sequence[float] = (0.08, 1.0),
        flip_prob: float = 0.5,
        seed: int | None = None,
    ):
        super().__init__()
        # The DataModule of pre-training serves the splits; its views are not used here.
        self.source = SimCLRDataModule(num_views=2, seed=seed, **data)
        self.batch_size = self.source.batch_size
        self.label_fraction = label_fraction
        self.label_seed = label_seed
        self.crop_scale, self.flip_prob = tuple(crop_scale), flip_prob
        self._train_indices: Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def train_indices(self) -> Tensor:
        """Indices into the training split of the images trained on (sorted)."""
        if self._train_indices is None:
            labels = dataset_labels(self.source.load_splits().train)
            self._train_indices = balanced_subset(labels, self.label_fraction, self.label_seed)
        return self._train_indices

    def train_dataset(self) -> Dataset:
        source = self.source
        augment = simclr_augmentation(
            source.image_size,
            source.mean,
            source.std,
            color_prob=0.0,
            grayscale_prob=0.0,
            crop_scale=self.crop_scale,
            flip_prob=self.flip_prob,
        )
        train = Subset(source.load_splits().train, self.train_indices.tolist())
        return SeededViews(train, augment, source.stream.seed)

    def setup(self, stage: str | None = None) -> None:
        # The source makes the val and test loaders: its worker count and pinning must follow
        # this run's trainer (devices, accelerator), which Lightning only hands to this module.
        self.source.trainer = self.trainer
        self.source.setup(stage)

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset()
        batch_size = min(max(1, self.batch_size // world_size(self.trainer)), len(dataset))
        sampler = self.source.stream.sampler(len(dataset), batch_size, self.trainer)
        return make_loader(
            dataset, batch_size, "train", self.source.loader_settings, self.trainer, sampler
        )

    def state_dict(self) -> dict:
        return self.source.stream.state_dict(self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self.source.stream.load_state_dict(state_dict)

    def val_dataloader(self) -> DataLoader:
        return self.source.labelled_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.source.labelled_dataloader("test")
