"""The pre-training DataModule: V augmented views per image for SimCLR, drawn by the view
pipeline of ``data.pipeline`` (:mod:`simclr.data.pipelines`), and the labelled splits with the
evaluation transform for the monitors (:class:`~simclr.data.labelled.LabelledData`)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from simclr.data.dataloaders import DataLoaderSettings, world_size
from simclr.data.datamodule import LabelledDataModule
from simclr.data.labelled import LabelledData, check_pretrain_split
from simclr.data.pipelines import ViewPipeline, view_pipeline_class
from simclr.errors import ConfigError
from simclr.rules import BATCH_SIZE, VIEW_PIPELINE, batch_division_problem


class SimCLRDataModule(LabelledDataModule):
    """Serves ``num_views`` augmented views per image of ``data.pretrain_split`` (one split
    or several joined by ``+``) of data set ``name``, and its labelled splits with the
    evaluation transform for the monitors.

    ``batch_size`` is the global batch: each of the trainer's devices gets
    ``batch_size / world_size`` images (V views each), so the number of negatives does not
    change with the device count. The DataLoader settings (``num_workers`` ... ``drop_last``)
    are those of :class:`~simclr.data.dataloaders.DataLoaderSettings`.

    The views of image ``i`` in epoch ``e`` are drawn from ``(seed, e, i)`` (in the workers)
    or from ``(seed, e, batch)`` (on the device), and the epoch's order from ``(seed, e)``; the
    checkpoint keeps the seed, the position in the epoch and the main process's random states
    (:mod:`simclr.data.resumable`), so a resumed run reads what an uninterrupted one would
    have. ``seed=None``: a random seed, kept by the checkpoint.

    ``pipeline`` (README "Loading speed"): ``per_image`` draws every step of the views per
    decoded image, in the workers or, with ``augment_on_device``, in batches on the device;
    ``crop_first`` and ``device_decode`` (image files only) draw the crop boxes first, decode
    what they need (in the workers, or on the GPU) and draw the rest of the views in batches
    after the transfer.
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
        settings = DataLoaderSettings(
            num_workers, pin_memory, persistent_workers, prefetch_factor, drop_last
        )
        self.labelled = LabelledData(
            name, root, image_size, mean, std, settings, eval_batch_size, eval_crop_fraction,
            options, download, seed,
        )  # fmt: skip
        BATCH_SIZE.check(batch_size)
        self.pretrain_split = check_pretrain_split(pretrain_split)
        self.name, self.image_size, self.batch_size = name, image_size, batch_size
        self.num_views = num_views
        self.mean, self.std = list(mean), list(std)
        self.augment = dict(augment)
        self.augment_on_device = augment_on_device
        self.pipeline = VIEW_PIPELINE.check(pipeline)
        self._views: ViewPipeline | None = None

    def pretrain_dataset(self) -> Dataset:
        """The raw images pre-training reads: the splits named by ``pretrain_split``."""
        return self.labelled.joined_splits(self.pretrain_split)

    def views_on_device(self) -> bool:
        """Whether the views are finished on the device: ``augment_on_device``, where
        ``None`` means on an accelerator, not on a CPU (README "Speed" compares the two);
        always for the crop-first pipelines."""
        if self.pipeline != "per_image":
            return True
        if self.augment_on_device is not None:
            return self.augment_on_device
        strategy = getattr(self.trainer, "strategy", None)
        return strategy is not None and strategy.root_device.type != "cpu"

    def view_pipeline(self) -> ViewPipeline:
        """The pipeline that draws the views on this trainer (built once per kind)."""
        kind = view_pipeline_class(self.pipeline, self.views_on_device())
        if type(self._views) is not kind:
            self._views = kind(
                self.name, self.image_size, self.mean, self.std, self.num_views, self.augment
            )
        return self._views

    def per_device_batch_size(self) -> int:
        devices = world_size(self.trainer)
        problem = batch_division_problem(self.batch_size, devices)
        if problem:
            raise ConfigError(problem)
        return self.batch_size // devices

    def train_dataloader(self) -> DataLoader:
        images = self.pretrain_dataset()
        batch_size = self.per_device_batch_size()
        if len(images) < batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} gives {batch_size} images per device, more "
                f"than the {len(images)} training images of {self.name!r}; lower data.batch_size"
            )
        views = self.view_pipeline()
        streams = getattr(images, "training_loader", None)
        if streams is not None:  # shards (data=streaming): litdata's stateful loader
            transform = views.streaming_transform()
            return self.labelled.streaming_dataloader(
                streams, transform, batch_size, "pretrain", self.trainer
            )
        dataset = views.training_dataset(images, self.labelled.stream.seed, self.trainer)
        return self.labelled.training_dataloader(dataset, batch_size, "pretrain", self.trainer)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """A training batch becomes V views where the pipeline finishes them on the device;
        other batches pass through."""
        seed = self.labelled.stream.seed
        return self.view_pipeline().after_transfer(batch, self.trainer, seed)

    def preview_views(self, count: int) -> list[Tensor]:
        """V views ``(n, 3, S, S)`` of the first ``n <= count`` pre-training images, drawn by
        the pipeline that trains, for pictures."""
        return self.view_pipeline().preview(self.pretrain_dataset(), count)
