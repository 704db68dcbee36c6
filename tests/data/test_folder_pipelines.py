"""data.pipeline for image folders and ImageNet: each pipeline pre-trains through the real
config, and a pipeline that cannot work says what to use instead."""

from __future__ import annotations

import pytest
import torch

from conftest import FAST_OVERRIDES, compose_config
from data_files import write_image_folder
from simclr.config.checks import validate_config
from simclr.data import SimCLRDataModule
from simclr.errors import ConfigError
from simclr.tasks.pretrain import build_datamodule, run


def folder_overrides(name: str, root) -> list[str]:
    """Tiny files for data=``name`` (JPEG, PNG, grey and palette images for imagefolder; RGB
    JPEGs in train/ and val/ for imagenet) and the overrides that train on them."""
    if name == "imagenet":
        for split, count in (("train", 6), ("val", 2)):
            write_image_folder(root / split, ("n01", "n02"), count, (40, 30), jpeg_only=True)
    else:
        write_image_folder(root, per_class=10, size=(50, 36))
    return [f"data={name}", f"data.root={root}", "data.options.val_fraction=0.2"]


@pytest.mark.parametrize(
    "name, pipeline",
    [
        ("imagefolder", "crop_first"),
        ("imagefolder", "per_image"),
        ("imagenet", "per_image"),
        # Also run through train.py and finetune.py by tests/tasks/test_end_to_end.py.
        pytest.param("imagenet", "crop_first", marks=pytest.mark.slow),
    ],
)
def test_pretraining_runs_with_each_folder_pipeline(name, pipeline, tmp_path):
    cfg = compose_config(
        [
            *FAST_OVERRIDES,
            *folder_overrides(name, tmp_path / "data"),
            f"data.pipeline={pipeline}",
            "data.batch_size=4",
            "data.num_workers=1",
            "data.image_size=32",
            "trainer.fast_dev_run=true",
        ],
        tmp_path,
    )
    metrics = run(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss_step"]))


def test_the_folder_configs_default_to_crop_first(tmp_path):
    for name in ("imagefolder", "imagenet"):
        assert compose_config([f"data={name}"], tmp_path).data.pipeline == "crop_first"
    assert compose_config(["data=cifar10"], tmp_path).data.pipeline == "per_image"


def test_an_unknown_pipeline_is_a_config_error(tmp_path):
    cfg = compose_config(["data=imagefolder", "data.pipeline=dali"], tmp_path)
    with pytest.raises(ConfigError, match=r"data\.pipeline='dali': must be one of per_image, "):
        validate_config(cfg)


def datamodule(name: str, root, pipeline: str) -> SimCLRDataModule:
    return SimCLRDataModule(name, str(root), 32, 4, 2, [0.5] * 3, [0.25] * 3, {}, pipeline=pipeline)


def test_crop_first_needs_image_files(tmp_path):
    with pytest.raises(ConfigError, match=r"'fake' holds its images in memory; use data\.pipel"):
        datamodule("fake", tmp_path, "crop_first").train_dataloader()


def test_device_decode_needs_cuda_and_jpeg_files(tmp_path):
    write_image_folder(tmp_path, per_class=10)  # PNG files among the JPEGs
    dm = datamodule("imagefolder", tmp_path, "device_decode")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="decodes the JPEG files on a CUDA GPU"):
            dm.train_dataloader()
    with pytest.raises(ConfigError, match=r"decodes JPEG files only, and .*\.png is not one"):
        dm.view_pipeline().worker_dataset(dm.pretrain_dataset())


def test_crop_first_batches_hold_uint8_views_of_the_view_size(tmp_path):
    cfg = compose_config(
        [*folder_overrides("imagefolder", tmp_path / "data"), "data.batch_size=4"], tmp_path
    )
    dm = build_datamodule(cfg)
    views, labels = next(iter(dm.train_dataloader()))
    size = cfg.data.image_size
    assert len(views) == 2 and all(v.shape == (4, 3, size, size) for v in views)
    assert all(v.dtype == torch.uint8 for v in views) and labels.shape == (4,)
