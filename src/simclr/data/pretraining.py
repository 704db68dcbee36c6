"""The pre-training DataModule: V augmented views per image for SimCLR, and the labelled
splits with the deterministic evaluation transform for the monitors (and fine-tuning).

It pre-trains on ``data.pretrain_split`` (one split or several joined by ``+``) of the data
set ``data.name`` (:mod:`simclr.data.sources`), drawing the views per image in the loader's
workers or, with ``augment_on_device``, per batch on the accelerator; image files can be read
crop-first instead (``data.pipeline``, :mod:`simclr.data.augment.crop_first`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision.transforms import v2

from simclr.data.augment.batch_augment import BatchAugmentation
from simclr.data.augment.crop_first import read_crop_first, require_cuda
from simclr.data.augment.transforms import (
    AugmentSettings,
    MultiViewTransform,
    evaluation_transform,
    simclr_augmentation,
)
from simclr.data.containers import LabelledSplits, Transformed
from simclr.data.device_views import views_after_transfer
from simclr.data.image_files import undecodable_in
from simclr.data.loaders import LoaderSettings, make_loader, world_size
from simclr.data.previews import preview_views
from simclr.data.resumable import DataStream, SeededViews
from simclr.data.sources import DATASETS, load_dataset
from simclr.errors import ConfigError
from simclr.models.backbones import SMALL_IMAGE_MAX_SIZE
from simclr.rules import BATCH_SIZE, VIEW_PIPELINE, batch_division_problem

log = logging.getLogger(__name__)

# The official evaluation's centre crop for images above 32 px (data_util.CROP_PROPORTION).
OFFICIAL_EVAL_CROP = 0.875

# The splits pre-training may use (``data.pretrain_split``, joined by "+"); never ``test``.
PRETRAIN_SPLITS = ("train", "val", "unlabeled")


class SimCLRDataModule(L.LightningDataModule):
    """Serves ``num_views`` augmented views per image for pre-training, and the labelled
    splits with the evaluation transform for the monitors.

    ``batch_size`` is the global batch: each of the trainer's devices gets
    ``batch_size / world_size`` images (V views each), so the number of negatives does not
    change with the device count.

    The loader settings (``num_workers`` ... ``drop_last``) are those of
    :class:`LoaderSettings`; :func:`make_loader` makes every loader from them.

    The views of image ``i`` in epoch ``e`` are drawn from ``(seed, e, i)`` (per image in the
    workers) or from ``(seed, e, batch)`` (on the device), and the epoch's order from
    ``(seed, e)``; the checkpoint keeps the seed, the position in the epoch and the main
    process's random states (:mod:`simclr.data.resumable`), so a resumed run reads what an
    uninterrupted one would have. ``seed=None``: a random seed, kept by the checkpoint.

    ``pipeline`` (image files only; README "Loading speed"): ``per_image`` decodes whole files
    and draws every step of the views per image (``augment_on_device`` applies to it alone);
    ``crop_first`` and ``device_decode`` draw the crop boxes first, decode what they need
    (in the workers, or on the GPU) and draw the rest of the views in batches after the
    transfer (:mod:`simclr.data.augment.crop_first`).
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
        num_workers: int | None = 0,
        eval_batch_size: int = 256,
        options: dict | None = None,
        download: bool = False,
        pretrain_split: str = "train",
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 2,
        drop_last: bool = True,
        augment_on_device: bool | None = None,
        eval_crop_fraction: float | None = None,
        seed: int | None = None,
        pipeline: str = "per_image",
    ):
        super().__init__()
        DATASETS.canonical(name)
        BATCH_SIZE.check(batch_size)
        parts = pretrain_split.split("+")
        if not parts or any(part not in PRETRAIN_SPLITS for part in parts):
            raise ConfigError(
                f"data.pretrain_split={pretrain_split!r}: use one of {', '.join(PRETRAIN_SPLITS)}"
                " or several joined by '+' (e.g. train+unlabeled)"
            )
        self.name = name
        self.root = root
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_views = num_views
        self.mean, self.std = list(mean), list(std)
        self.augment = dict(augment)
        self.loader_settings = LoaderSettings(
            num_workers, pin_memory, persistent_workers, prefetch_factor, drop_last
        )
        self.eval_batch_size = eval_batch_size
        self.options = dict(options or {})
        self.download = download
        self.pretrain_split = pretrain_split
        self.augment_on_device = augment_on_device
        self.pipeline = VIEW_PIPELINE.check(pipeline)
        self.eval_crop_fraction = eval_crop_fraction
        self.batch_augmentation: BatchAugmentation | None = None
        self.stream = DataStream(seed)
        self.splits: LabelledSplits | None = None

    @property
    def num_classes(self) -> int:
        return self.load_splits().num_classes

    @property
    def class_names(self) -> list[str]:
        """The data set's names of the labels, or the label numbers where it has none."""
        splits = self.load_splits()
        return list(splits.class_names or map(str, range(splits.num_classes)))

    def load_splits(self) -> LabelledSplits:
        if self.splits is None:
            self.splits = load_dataset(
                self.name, self.root, self.image_size, self.download, self.options
            )
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        self.load_splits()

    def pretrain_dataset(self) -> Dataset:
        """The raw images pre-training reads: the splits named by ``pretrain_split``."""
        splits = self.load_splits()
        parts = []
        for name in self.pretrain_split.split("+"):
            part = getattr(splits, name)
            if part is None:
                raise ConfigError(
                    f"data.pretrain_split={self.pretrain_split!r}: {self.name!r} has no "
                    f"{name!r} split; use train, val or train+val"
                )
            parts.append(part)
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def file_views(self) -> Dataset:
        """The pre-training image files, each read by the worker side of ``pipeline``."""
        return read_crop_first(
            self.pretrain_dataset(),
            self.pipeline,
            self.name,
            self.image_size,
            self.num_views,
            AugmentSettings(**self.augment),
        )

    def per_device_batch_size(self) -> int:
        devices = world_size(self.trainer)
        problem = batch_division_problem(self.batch_size, devices)
        if problem:
            raise ConfigError(problem)
        return self.batch_size // devices

    def pretrain_transform(self) -> MultiViewTransform:
        view = simclr_augmentation(self.image_size, self.mean, self.std, **self.augment)
        return MultiViewTransform(view, self.num_views)

    def eval_transform(self):
        """Deterministic views for the monitors, fine-tuning's val/test and export checks: the
        central ``eval_crop_fraction`` of the short side; ``None`` follows the official code,
        0.875 above 32 px (the usual ImageNet centre crop), the whole image at 32 px and less."""
        fraction = self.eval_crop_fraction
        if fraction is None:
            fraction = OFFICIAL_EVAL_CROP if self.image_size > SMALL_IMAGE_MAX_SIZE else 1.0
        return evaluation_transform(self.image_size, self.mean, self.std, fraction)

    def streaming_loader(self, streams, batch_size: int) -> DataLoader:
        """litdata's stateful loader over shards; the views are drawn per image in its workers
        (the images have different sizes, and the crop-first pipeline reads files)."""
        if self.views_on_device() or self.pipeline != "per_image":
            raise ConfigError(
                "data=streaming draws its views per image in the loader's workers: set "
                "data.augment_on_device=false and data.pipeline=per_image "
                f"(got {self.views_on_device()} and {self.pipeline!r})"
            )
        loader = streams(
            self.pretrain_transform(),
            self.stream.seed,
            batch_size,
            self.loader_settings.stream_options("pretrain", self.trainer),
            self.stream.trained_batches(self.trainer),
        )
        return self.stream.attach(loader)

    def train_dataloader(self) -> DataLoader:
        images = self.pretrain_dataset()
        batch_size = self.per_device_batch_size()
        if len(images) < batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} gives {batch_size} images per device, more "
                f"than the {len(images)} training images of {self.name!r}; lower data.batch_size"
            )
        streams = getattr(images, "training_loader", None)
        if streams is not None:  # shards (data=streaming): litdata's stateful loader
            return self.streaming_loader(streams, batch_size)
        if self.pipeline != "per_image":
            if self.pipeline == "device_decode":
                strategy = getattr(self.trainer, "strategy", None)
                require_cuda(strategy.root_device if strategy else torch.device("cpu"))
            dataset = SeededViews(self.file_views(), None, self.stream.seed)
        else:
            # On-device augmentation: the loader only stacks uint8 images; the views are
            # drawn after the batch reached the accelerator (on_after_batch_transfer).
            transform = v2.ToImage() if self.views_on_device() else self.pretrain_transform()
            dataset = SeededViews(images, transform, self.stream.seed)
        sampler = self.stream.sampler(len(dataset), batch_size, self.trainer)
        return make_loader(
            dataset, batch_size, "pretrain", self.loader_settings, self.trainer, sampler
        )

    def state_dict(self) -> dict:
        return self.stream.state_dict(self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self.stream.load_state_dict(state_dict)

    def views_on_device(self) -> bool:
        """``augment_on_device``, where ``None`` means: on an accelerator, not on a CPU. On this
        project's 2-core CPU (bench/cpu.py) the two pipelines gave the same step speed at 32 px
        (step_vs_ceiling 0.92 batched, 0.90 per image), and one worker's per-image pipeline
        out-ran the batched one at 96 px (1,057 against 781 views/s). Crop-first pipelines
        always finish their views in batches, after the transfer."""
        if self.pipeline != "per_image":
            return True
        if self.augment_on_device is not None:
            return self.augment_on_device
        strategy = getattr(self.trainer, "strategy", None)
        return strategy is not None and strategy.root_device.type != "cpu"

    def batch_augmenter(self, device) -> BatchAugmentation:
        if self.batch_augmentation is None:
            self.batch_augmentation = BatchAugmentation(
                self.image_size, self.mean, self.std, **self.augment
            )
        return self.batch_augmentation.to(device)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With ``augment_on_device``, turns a training batch into V views drawn on the device
        (:func:`~simclr.data.device_views.views_after_transfer`); other batches pass through."""
        return views_after_transfer(self, batch) if self.views_on_device() else batch

    def preview_views(self, count: int) -> list[Tensor]:
        """V views ``(n, 3, S, S)`` of the first ``n <= count`` pre-training images, drawn by
        the pipeline that trains (per image, or batched on the device), for pictures."""
        return preview_views(self, count)

    def labelled_dataloader(self, split: str) -> DataLoader:
        """A labelled split (``train``, ``val`` or ``test``) with the evaluation transform."""
        dataset = Transformed(getattr(self.load_splits(), split), self.eval_transform())
        return make_loader(
            dataset, self.eval_batch_size, "eval", self.loader_settings, self.trainer
        )

    def skipped_images(self) -> list[str]:
        """Image files found undecodable (and skipped) so far, in any split."""
        return [] if self.splits is None else undecodable_in(self.splits)

    def teardown(self, stage: str | None = None) -> None:
        skipped = self.skipped_images()
        if skipped:
            log.warning(
                "skipped %d image file(s) that could not be decoded (data.options.skip_corrupt):"
                " %s",
                len(skipped),
                ", ".join(skipped[:20]) + (" ..." if len(skipped) > 20 else ""),
            )
