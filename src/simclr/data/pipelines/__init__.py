"""The view pipelines of pre-training, one per ``data.pipeline`` value (and ``per_image`` with
``augment_on_device``), each in its own module over :class:`ViewPipeline`."""

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


def view_pipeline_class(pipeline: str, on_device: bool) -> type[ViewPipeline]:
    """The class of ``data.pipeline=pipeline``; ``on_device`` (``augment_on_device``, resolved)
    matters to ``per_image`` alone, the others always finish their views on the device."""
    if pipeline == "per_image" and on_device:
        return OnDevicePipeline
    return PIPELINES[pipeline]


__all__ = [
    "PIPELINES",
    "CropFirstPipeline",
    "DeviceDecodePipeline",
    "OnDevicePipeline",
    "PerImagePipeline",
    "ViewPipeline",
    "view_pipeline_class",
]
