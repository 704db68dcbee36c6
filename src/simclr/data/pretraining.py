"""The pre-training DataModule: V augmented views per image for SimCLR, drawn by the view
pipeline of ``data.pipeline`` (:mod:`simclr.data.pipelines`), and the labelled splits with the
evaluation transform for the monitors (:class:`~simclr.data.labelled.LabelledData`)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from simclr.data.dataloaders import per_device_batch_size
from simclr.data.datamodule import LabelledDataModule
from simclr.data.labelled import LabelledData, check_pretrain_split
from simclr.data.pipelines import ViewPipeline, view_pipeline_class
from simclr.errors import ConfigError
from simclr.rules import BATCH_SIZE, VIEW_PIPELINE


class SimCLRDataModule(LabelledDataModule):
    """Serves ``num_views`` augmented views per image of ``data.pretrain_split`` (one split
    or several joined by ``+``) of data set ``name``, and its labelled splits with the
    evaluation transform for the monitors.

    ``batch_size`` is the global batch: each of the trainer's devices gets
    ``batch_size / world_size`` images (V views each), so the number of negatives does not
    change with the device count. ``labelled`` holds the other keys of the data config:
    :class:`~simclr.data.labelled.LabelledData`'s and the DataLoader settings
    (:class:`~simclr.data.dataloaders.DataLoaderSettings`).

    The views of image ``i`` in epoch ``e`` are drawn from ``(seed, e, i)`` (in the workers)
    or from ``(seed, e, batch)`` (on the device), and the epoch's order from ``(seed, e)``, so
    a resumed run reads what an uninterrupted one would have (:mod:`simclr.data.resumable`).
    ``seed=None``: a random seed, kept by the checkpoint. ``pipeline`` and
    ``augment_on_device`` choose where the views are drawn (docs/datasets.md "Loading speed";
    :func:`~simclr.data.pipelines.view_pipeline_class`).
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
        pipeline: str = "per_image",
        augment_on_device: bool | None = None,
        pretrain_split: str = "train",
        seed: int | None = None,
        **labelled,
    ):
        super().__init__()
        data = {"name": name, "root": root, "image_size": image_size, "mean": mean, "std": std}
        self.labelled = LabelledData.from_data_config({**data, **labelled}, seed=seed)
        self.batch_size = BATCH_SIZE.check(batch_size)
        self.pretrain_split = check_pretrain_split(pretrain_split)
        self.num_views, self.augment = num_views, dict(augment)
        self.augment_on_device = augment_on_device
        self.pipeline = VIEW_PIPELINE.check(pipeline)
        self._views: ViewPipeline | None = None

    def pretrain_dataset(self) -> Dataset:
        """The raw images pre-training reads: the splits named by ``pretrain_split``."""
        return self.labelled.joined_splits(self.pretrain_split)

    def view_pipeline(self) -> ViewPipeline:
        """The pipeline that draws the views on this trainer (built once per kind)."""
        kind = view_pipeline_class(self.pipeline, self.augment_on_device, self.trainer)
        if type(self._views) is not kind:
            data = self.labelled
            self._views = kind(
                data.name, data.image_size, data.mean, data.std, self.num_views, self.augment
            )
        return self._views

    def train_dataloader(self) -> DataLoader:
        images = self.pretrain_dataset()
        batch_size = per_device_batch_size(self.batch_size, self.trainer)
        if len(images) < batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} gives {batch_size} images per device, more "
                f"than the {len(images)} training images of {self.labelled.name!r}; lower "
                "data.batch_size"
            )
        views = self.view_pipeline()
        return self.labelled.training_dataloader(
            images, views, batch_size, "pretrain", self.trainer
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """A training batch becomes V views where the pipeline finishes them on the device;
        other batches pass through."""
        seed = self.labelled.stream.seed
        return self.view_pipeline().after_transfer(batch, self.trainer, seed)

    def preview_views(self, count: int) -> list[Tensor]:
        """V views ``(n, 3, S, S)`` of the first ``n <= count`` pre-training images, drawn by
        the pipeline that trains, for pictures."""
        return self.view_pipeline().preview(self.pretrain_dataset(), count)
