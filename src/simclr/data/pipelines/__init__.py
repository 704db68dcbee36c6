"""The view pipelines of pre-training, one per ``data.pipeline`` value (and ``per_image`` with
``augment_on_device``), each in its own module over :class:`ViewPipeline`."""

from __future__ import annotations

import lightning as L

from simclr.data.pipelines.base import ViewPipeline
from simclr.data.pipelines.crop_first import CropFirstPipeline
from simclr.data.pipelines.device_decode import DeviceDecodePipeline
from simclr.data.pipelines.on_device import OnDevicePipeline
from simclr.data.pipelines.per_image import PerImagePipeline

# data.pipeline -> its pipeline; per_image's views drawn on the device are OnDevicePipeline's.
PIPELINES: dict[str, type[ViewPipeline]] = {
    "per_image": PerImagePipeline,
    "crop_first": CropFirstPipeline,
    "device_decode": DeviceDecodePipeline,
}


def view_pipeline_class(
    pipeline: str, augment_on_device: bool | None, trainer: L.Trainer | None = None
) -> type[ViewPipeline]:
    """The class of ``data.pipeline=pipeline`` on ``trainer``. ``augment_on_device`` matters to
    ``per_image`` alone (the others always finish their views on the device): ``None`` draws
    the views on the device on an accelerator, in the workers on a CPU (docs/scaling.md, "Speed
    options")."""
    if pipeline != "per_image":
        return PIPELINES[pipeline]
    if augment_on_device is None:
        strategy = getattr(trainer, "strategy", None)
        augment_on_device = strategy is not None and strategy.root_device.type != "cpu"
    return OnDevicePipeline if augment_on_device else PerImagePipeline


__all__ = [
    "PIPELINES",
    "CropFirstPipeline",
    "DeviceDecodePipeline",
    "OnDevicePipeline",
    "PerImagePipeline",
    "ViewPipeline",
    "view_pipeline_class",
]
