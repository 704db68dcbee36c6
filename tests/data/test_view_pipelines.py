"""The view pipelines (simclr.data.pipelines): which one a DataModule picks, the step each takes
after the batch reaches the device, and what each refuses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import default_collate

from data_files import write_image_folder
from simclr.data import SimCLRDataModule
from simclr.data.pipelines import (
    CropFirstPipeline,
    DeviceDecodePipeline,
    OnDevicePipeline,
    PerImagePipeline,
    view_pipeline_class,
)
from simclr.errors import ConfigError

ARGS = ("fake", 16, [0.5] * 3, [0.25] * 3, 2, {"blur_prob": 0.0})


def trainer_at(epoch: int, batch: int) -> SimpleNamespace:
    """What a view pipeline reads of a Trainer: the epoch and the batch it is at."""
    current = SimpleNamespace(ready=batch)
    loop = SimpleNamespace(
        epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(current=current))
    )
    return SimpleNamespace(fit_loop=loop, current_epoch=epoch)


@pytest.mark.parametrize(
    "pipeline, on_device, kind",
    [
        ("per_image", False, PerImagePipeline),
        ("per_image", True, OnDevicePipeline),
        ("crop_first", False, CropFirstPipeline),
        ("device_decode", True, DeviceDecodePipeline),
    ],
)
def test_each_pipeline_value_has_its_class(pipeline, on_device, kind):
    assert view_pipeline_class(pipeline, on_device) is kind


def test_the_datamodule_draws_on_the_device_where_the_trainer_is_an_accelerator():
    dm = SimCLRDataModule("fake", ".", 16, 8, 2, [0.5] * 3, [0.25] * 3, {})
    assert type(dm.view_pipeline()) is PerImagePipeline  # no trainer: a CPU
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda")))
    assert type(dm.view_pipeline()) is OnDevicePipeline


def test_on_device_views_are_drawn_from_the_position_in_the_run():
    views = OnDevicePipeline(*ARGS)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    labels = torch.arange(4)
    first, same = (views.after_transfer((images, labels), trainer_at(1, 3), 7) for _ in range(2))
    later = views.after_transfer((images, labels), trainer_at(1, 4), 7)
    assert len(first[0]) == 2 and first[0][0].shape == (4, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(first[0], same[0], strict=True))
    assert not torch.equal(first[0][0], later[0][0]) and not torch.equal(*first[0])
    evaluation = (torch.zeros(4, 3, 16, 16), labels)  # a monitor's batch passes through
    assert views.after_transfer(evaluation, trainer_at(1, 3), 7) is evaluation


@pytest.mark.parametrize("kind", [CropFirstPipeline, DeviceDecodePipeline])
def test_crop_first_pipelines_finish_the_views_of_their_workers_batch(kind, tmp_path):
    write_image_folder(tmp_path, per_class=10, size=(40, 30), jpeg_only=True)
    dm = SimCLRDataModule("imagefolder", str(tmp_path), 16, 4, 2, [0.5] * 3, [0.25] * 3, {})
    views = kind("imagefolder", 16, [0.5] * 3, [0.25] * 3, 2, {})
    workers = views.worker_dataset(dm.pretrain_dataset())
    batch = default_collate([workers[i] for i in range(4)])
    drawn, labels = views.after_transfer(batch, trainer_at(0, 0), 7)
    assert len(drawn) == 2 and all(
        v.shape == (4, 3, 16, 16) and v.is_floating_point() for v in drawn
    )
    assert torch.equal(labels, batch[1])
    preview = views.preview(dm.pretrain_dataset(), 3)
    assert [v.shape for v in preview] == [(3, 3, 16, 16)] * 2


@pytest.mark.parametrize("kind", [OnDevicePipeline, CropFirstPipeline])
def test_streaming_takes_the_per_image_pipeline_alone(kind):
    with pytest.raises(ConfigError, match="data=streaming draws its views per image"):
        kind(*ARGS).streaming_transform()
    assert len(PerImagePipeline(*ARGS).streaming_transform()(torch.zeros(3, 20, 20))) == 2
