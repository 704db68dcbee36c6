"""Data: the containers and splits of a data set, its sources (:mod:`simclr.data.sources`,
one registry), the augmentations (:mod:`simclr.data.augment`), the view pipelines of
pre-training (:mod:`simclr.data.pipelines`), the labelled data both jobs read
(:mod:`simclr.data.labelled`), the one DataLoader factory, the DataModules of pre-training and
fine-tuning, and what makes their training data resumable (:mod:`simclr.data.resumable`)."""

from simclr.data.containers import LabelledSplits, TensorImages, Transformed
from simclr.data.dataloaders import (
    DataLoaderSettings,
    available_cpus,
    make_dataloader,
    world_size,
)
from simclr.data.finetuning import FineTuneDataModule
from simclr.data.image_files import ImageFiles, UndecodableImageError
from simclr.data.labelled import LabelledData
from simclr.data.pretraining import SimCLRDataModule
from simclr.data.resumable import EpochShuffle, SeededViews
from simclr.data.sources import DATASETS, load_dataset
from simclr.data.splits import balanced_subset, hold_out, stratified_split

__all__ = [
    "DATASETS",
    "DataLoaderSettings",
    "EpochShuffle",
    "FineTuneDataModule",
    "ImageFiles",
    "LabelledData",
    "LabelledSplits",
    "SeededViews",
    "SimCLRDataModule",
    "TensorImages",
    "Transformed",
    "UndecodableImageError",
    "available_cpus",
    "balanced_subset",
    "hold_out",
    "load_dataset",
    "make_dataloader",
    "stratified_split",
    "world_size",
]
