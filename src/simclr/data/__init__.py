"""Data: the containers and splits of a data set, its sources (:mod:`simclr.data.sources`,
one registry), the augmentations (:mod:`simclr.data.augment`), the one loader factory, and
the DataModules of pre-training and fine-tuning, and what makes their training data
resumable (:mod:`simclr.data.resumable`)."""

from simclr.data.containers import LabelledSplits, TensorImages, Transformed
from simclr.data.finetuning import FineTuneDataModule
from simclr.data.image_files import ImageFiles, UndecodableImageError
from simclr.data.loaders import LoaderSettings, available_cpus, make_loader, world_size
from simclr.data.pretraining import SimCLRDataModule
from simclr.data.resumable import EpochShuffle, SeededViews
from simclr.data.sources import DATASETS, load_dataset
from simclr.data.splits import balanced_subset, hold_out, stratified_split

__all__ = [
    "DATASETS",
    "EpochShuffle",
    "FineTuneDataModule",
    "ImageFiles",
    "LabelledSplits",
    "LoaderSettings",
    "SeededViews",
    "SimCLRDataModule",
    "TensorImages",
    "Transformed",
    "UndecodableImageError",
    "available_cpus",
    "balanced_subset",
    "hold_out",
    "load_dataset",
    "make_loader",
    "stratified_split",
    "world_size",
]
