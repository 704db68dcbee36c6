"""The fine-tuning DataModule: a class-balanced fraction of a data set's training labels (or a
published label subset), with the paper's linear-evaluation augmentation, and its own val and
test splits."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from simclr.data.augment.transforms import simclr_augmentation
from simclr.data.containers import TensorImages
from simclr.data.image_files import ImageFiles
from simclr.data.label_subsets import LABEL_SUBSETS, take_label_subset
from simclr.data.loaders import make_loader, world_size
from simclr.data.pretraining import SimCLRDataModule
from simclr.data.resumable import SeededViews
from simclr.data.splits import balanced_subset
from simclr.errors import ConfigError


def dataset_labels(dataset: Dataset) -> Tensor:
    """Every label of a labelled data set ``(N,)``, without decoding images when it can."""
    for attribute in ("labels", "targets"):
        if hasattr(dataset, attribute):
            return torch.as_tensor(getattr(dataset, attribute), dtype=torch.long)
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])


def joined(first: Dataset, second: Dataset) -> TensorImages | ImageFiles:
    """Two splits of one data set as one (``first``'s images, then ``second``'s)."""
    if isinstance(first, TensorImages) and isinstance(second, TensorImages):
        images = torch.cat([first.images, second.images])
        return TensorImages(images, torch.cat([first.labels, second.labels]))
    if isinstance(first, ImageFiles) and isinstance(second, ImageFiles):
        paths = np.concatenate([first.paths, second.paths])
        return ImageFiles(paths, torch.cat([first.labels, second.labels]), first.skip_corrupt)
    raise ConfigError(
        f"select_on_val=false cannot join this data set's splits ({type(first).__name__}, "
        f"{type(second).__name__}); keep select_on_val=true"
    )


class FineTuneDataModule(L.LightningDataModule):
    """The labelled splits of a registered data set for fine-tuning.

    Training uses ``label_fraction`` of the training split, the same number of images from
    every class (:func:`~simclr.data.balanced_subset`, fixed by ``label_seed``), with random
    resized crops and flips (the paper's linear-evaluation augmentation); validation (model
    selection) and test use the data set's own val and test splits with the evaluation
    transform, so neither is ever trained on. The training images' order and crops are
    drawn from ``seed`` as pre-training's are (:mod:`simclr.data.resumable`), so a resumed
    run reads what an uninterrupted one would have.

    ``label_subset`` (``imagenet_1pct``, ``imagenet_10pct``) trains on exactly the images of a
    published list instead (:mod:`simclr.data.label_subsets`); ``label_fraction`` must then
    be 1.

    ``select_on_val=False`` (the official evaluations: every training image, the last epoch
    reported) joins the validation split to the training images the labels are chosen from,
    and leaves no validation split.
    """

    def __init__(
        self,
        data: dict,
        label_fraction: float,
        label_seed: int = 0,
        crop_scale: Sequence[float] = (0.08, 1.0),
        flip_prob: float = 0.5,
        label_subset: str | None = None,
        select_on_val: bool = True,
        seed: int | None = None,
    ):
        super().__init__()
        self.select_on_val = select_on_val
        if label_subset is not None:
            LABEL_SUBSETS.canonical(label_subset)
            if label_fraction != 1:
                raise ConfigError(
                    f"label_subset={label_subset} and label_fraction={label_fraction} both "
                    "choose the labelled images: set label_fraction=1.0 with a label_subset"
                )
        self.label_subset = label_subset
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
        """Indices into the training split of the images trained on (sorted). With a
        ``label_subset``, the training split first takes back the listed images that the
        validation split held."""
        if self._train_indices is None:
            splits = self.source.load_splits()
            if not self.select_on_val:  # validation images join the training images
                splits.train = joined(splits.train, splits.val)
                splits.val = splits.val.select(torch.zeros(0, dtype=torch.long))
            if self.label_subset is not None:
                where = f"data.root={self.source.root}"
                self._train_indices = take_label_subset(splits, self.label_subset, where)
            else:
                labels = dataset_labels(splits.train)
                self._train_indices = balanced_subset(labels, self.label_fraction, self.label_seed)
        return self._train_indices

    def train_augmentation(self):
        """The paper's linear-evaluation augmentation: random resized crops and flips."""
        source = self.source
        return simclr_augmentation(
            source.image_size,
            source.mean,
            source.std,
            color_prob=0.0,
            grayscale_prob=0.0,
            crop_scale=self.crop_scale,
            flip_prob=self.flip_prob,
        )

    def train_dataset(self) -> Dataset:
        indices = self.train_indices  # before reading the split, which a label subset changes
        train = Subset(self.source.load_splits().train, indices.tolist())
        return SeededViews(train, self.train_augmentation(), self.source.stream.seed)

    def setup(self, stage: str | None = None) -> None:
        # The source makes the val and test loaders: its worker count and pinning must follow
        # this run's trainer (devices, accelerator), which Lightning only hands to this module.
        self.source.trainer = self.trainer
        self.source.setup(stage)
        self.train_indices  # noqa: B018 (a label subset settles the val split before its loader)

    def train_dataloader(self) -> DataLoader:
        indices = self.train_indices
        batch_size = min(max(1, self.batch_size // world_size(self.trainer)), len(indices))
        train = self.source.load_splits().train
        streams = getattr(train, "training_loader", None)
        if streams is not None:  # shards (data=streaming): litdata's stateful loader
            stream = self.source.stream
            loader = streams(
                self.train_augmentation(),
                stream.seed,
                batch_size,
                self.source.loader_settings.stream_options("train", self.trainer),
                stream.trained_batches(self.trainer),
                indices=None if len(indices) == len(train) else indices.tolist(),
            )
            return stream.attach(loader)
        dataset = self.train_dataset()  # the labelled images of train_indices, one each
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
