"""The labelled data set that pre-training (its monitors) and fine-tuning both read: its splits,
loaded once, the deterministic evaluation transform and fine-tuning's training augmentation, the
DataLoaders of its labelled splits and of either job's training images, and the seed and
position that make those training loaders resumable."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lightning as L
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from simclr.data.augment.transforms import evaluation_transform, simclr_augmentation
from simclr.data.containers import LabelledSplits, Transformed
from simclr.data.dataloaders import (
    DATALOADER_KEYS,
    DataLoaderRole,
    DataLoaderSettings,
    make_dataloader,
)
from simclr.data.image_files import undecodable_in
from simclr.data.resumable import DataStream, SeededViews
from simclr.data.sources import DATASETS, load_dataset
from simclr.errors import ConfigError
from simclr.models.backbones import SMALL_IMAGE_MAX_SIZE

if TYPE_CHECKING:
    from simclr.data.pipelines import ViewPipeline

log = logging.getLogger(__name__)

# The official evaluation's centre crop for images above 32 px (data_util.CROP_PROPORTION).
OFFICIAL_EVAL_CROP = 0.875

# The splits pre-training may use (``data.pretrain_split``, joined by "+"); never ``test``.
PRETRAIN_SPLITS = ("train", "val", "unlabeled")
# Keys of the data config that the training jobs read, not the labelled data: pre-training's
# views and the images it uses, and the training batch.
TRAINING_KEYS = ("augment", "augment_on_device", "pipeline", "pretrain_split", "batch_size")

# Undecodable files named in the warning at the end of a run; the rest are counted.
SHOWN_SKIPPED = 20


def check_pretrain_split(pretrain_split: str) -> str:
    """``data.pretrain_split``: splits of :data:`PRETRAIN_SPLITS` joined by ``+``."""
    parts = pretrain_split.split("+")
    if not parts or any(part not in PRETRAIN_SPLITS for part in parts):
        raise ConfigError(
            f"data.pretrain_split={pretrain_split!r}: use one of {', '.join(PRETRAIN_SPLITS)}"
            " or several joined by '+' (e.g. train+unlabeled)"
        )
    return pretrain_split


@dataclass(frozen=True)
class LabelledViews:
    """Each labelled training image through the random ``transform`` (fine-tuning's
    augmentation), drawn per image in the loader's workers from ``(seed, epoch, index)``:
    what :meth:`LabelledData.training_dataloader` asks of a view pipeline."""

    transform: Callable

    def training_dataset(self, images: Dataset, seed: int, trainer: L.Trainer | None) -> Dataset:
        return SeededViews(images, self.transform, seed)

    def streaming_transform(self) -> Callable:
        return self.transform


class LabelledData:
    """The splits of data set ``name`` (:func:`~simclr.data.sources.load_dataset`, read once)
    and the DataLoaders made from them with ``settings``.

    Workers, pinning and the share of the global batch follow the trainer that each loader
    method is given (None: one CPU process). ``seed`` (None: drawn at random) and the position
    in the epoch live in :attr:`stream`, which the DataModule's ``state_dict`` saves.
    """

    def __init__(
        self,
        name: str,
        root: str,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        settings: DataLoaderSettings,
        eval_batch_size: int = 256,
        eval_crop_fraction: float | None = None,
        options: dict | None = None,
        download: bool = False,
        seed: int | None = None,
    ):
        DATASETS.canonical(name)
        self.name = name
        self.root = root
        self.image_size = image_size
        self.mean, self.std = list(mean), list(std)
        self.settings = settings
        self.eval_batch_size = eval_batch_size
        self.eval_crop_fraction = eval_crop_fraction
        self.options = dict(options or {})
        self.download = download
        self.stream = DataStream(seed)
        self.splits: LabelledSplits | None = None

    @classmethod
    def from_data_config(cls, data: dict, **given) -> LabelledData:
        """From a composed data config as plain values: its DataLoader settings and every
        other key but the training jobs' (:data:`TRAINING_KEYS`); ``given`` (``image_size``,
        ``seed``) replaces or adds keys."""
        settings = DataLoaderSettings(**{k: v for k, v in data.items() if k in DATALOADER_KEYS})
        unread = (*DATALOADER_KEYS, *TRAINING_KEYS)
        chosen = {key: value for key, value in data.items() if key not in unread}
        return cls(settings=settings, **{**chosen, **given})

    def load_splits(self) -> LabelledSplits:
        if self.splits is None:
            self.splits = load_dataset(
                self.name, self.root, self.image_size, self.download, self.options
            )
        return self.splits

    @property
    def num_classes(self) -> int:
        return self.load_splits().num_classes

    @property
    def has_labels(self) -> bool:
        """Whether the images have labels (an image folder read without them has none)."""
        return self.load_splits().has_labels

    def require_labels(self) -> None:
        """Fine-tuning trains a classifier: a :class:`ConfigError` for images read without
        labels (``options.labels=none``, refused without reading the folder, or ``auto`` finding
        no class folders). Other data sets, and ``labels=folders``, have labels."""
        labels = self.options.get("labels", "folders")
        if labels == "folders" or (labels == "auto" and self.has_labels):
            return
        found = "" if labels == "none" else " (no class folders found)"
        raise ConfigError(
            f"fine-tuning needs labels, but data.options.labels={labels} reads "
            f"data.root={self.root} without them{found}: give the images one sub-folder per "
            "class (data.root/<class>/<image>) and set data.options.labels=folders, or fine-tune "
            "on a labelled data set; unlabelled images serve pre-training (train.py)"
        )

    @property
    def class_names(self) -> list[str]:
        """The data set's names of the labels, or the label numbers where it has none."""
        splits = self.load_splits()
        return list(splits.class_names or map(str, range(splits.num_classes)))

    def joined_splits(self, pretrain_split: str) -> Dataset:
        """The raw images of the splits that ``pretrain_split`` names (joined by ``+``)."""
        splits = self.load_splits()
        parts = []
        for name in pretrain_split.split("+"):
            part = getattr(splits, name)
            if part is None:
                raise ConfigError(
                    f"data.pretrain_split={pretrain_split!r}: {self.name!r} has no "
                    f"{name!r} split; use train, val or train+val"
                )
            parts.append(part)
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def eval_transform(self):
        """Deterministic views for the monitors, fine-tuning's val/test and export checks: the
        central ``eval_crop_fraction`` of the short side; ``None`` follows the official code,
        0.875 above 32 px (the usual ImageNet centre crop), the whole image at 32 px and less."""
        fraction = self.eval_crop_fraction
        if fraction is None:
            fraction = OFFICIAL_EVAL_CROP if self.image_size > SMALL_IMAGE_MAX_SIZE else 1.0
        return evaluation_transform(self.image_size, self.mean, self.std, fraction)

    def labelled_dataloader(self, split: str, trainer: L.Trainer | None) -> DataLoader:
        """A labelled split (``train``, ``val`` or ``test``) with the evaluation transform."""
        dataset = Transformed(getattr(self.load_splits(), split), self.eval_transform())
        return make_dataloader(dataset, self.eval_batch_size, "eval", self.settings, trainer)

    def training_augmentation(self, crop_scale: Sequence[float], flip_prob: float) -> LabelledViews:
        """The paper's linear-evaluation augmentation of the training images: random resized
        crops of ``crop_scale`` and flips, no colour steps."""
        transform = simclr_augmentation(
            self.image_size,
            self.mean,
            self.std,
            color_prob=0.0,
            grayscale_prob=0.0,
            crop_scale=tuple(crop_scale),
            flip_prob=flip_prob,
        )
        return LabelledViews(transform)

    def training_dataloader(
        self,
        images: Dataset,
        views: ViewPipeline | LabelledViews,
        batch_size: int,
        role: DataLoaderRole,
        trainer: L.Trainer | None,
        indices: list[int] | None = None,
    ) -> DataLoader:
        """A training DataLoader over ``images`` (only those at ``indices``, if given) as
        ``views`` draws them: a view pipeline (:mod:`simclr.data.pipelines`) or
        :class:`LabelledViews`. Shards (``data=streaming``, whose split has a
        ``training_loader``) stream through litdata's stateful loader with
        ``views.streaming_transform()``; other images are read with ``(epoch, index)`` keys
        from ``views.training_dataset`` in the resumable order of :attr:`stream`."""
        streams = getattr(images, "training_loader", None)
        if streams is not None:  # shards (data=streaming): litdata's stateful loader
            loader = streams(
                views.streaming_transform(),
                self.stream.seed,
                batch_size,
                self.settings.stream_options(role, trainer),
                self.stream.trained_batches(trainer),
                indices=None if indices is None or len(indices) == len(images) else indices,
            )
            return self.stream.attach(loader)
        if indices is not None:
            images = Subset(images, indices)
        dataset = views.training_dataset(images, self.stream.seed, trainer)
        sampler = self.stream.sampler(len(dataset), batch_size, trainer)
        return make_dataloader(dataset, batch_size, role, self.settings, trainer, sampler)

    def skipped_images(self) -> list[str]:
        """Image files found undecodable (and skipped) so far, in any split."""
        return [] if self.splits is None else undecodable_in(self.splits)

    def report_skipped_images(self) -> None:
        """A warning naming the image files skipped as undecodable, if any."""
        skipped = self.skipped_images()
        if skipped:
            shown = ", ".join(skipped[:SHOWN_SKIPPED])
            log.warning(
                "skipped %d image file(s) that could not be decoded (data.options.skip_corrupt):"
                " %s",
                len(skipped),
                shown + (" ..." if len(skipped) > SHOWN_SKIPPED else ""),
            )
