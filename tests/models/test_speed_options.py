"""Each speed option runs and gives the default path's loss within its precision."""

import pytest

from simclr.tasks.pretrain import run

# Augmentation that leaves every image as it is, so both pipelines feed identical views.
IDENTITY_AUGMENT = [
    "data.augment.crop_scale=[1.0,1.0]",
    "data.augment.crop_ratio=[1.0,1.0]",
    "data.augment.flip_prob=0.0",
    "data.augment.color_prob=0.0",
    "data.augment.grayscale_prob=0.0",
    "data.augment.blur_prob=0.0",
]


def first_loss(fast_config, *overrides: str) -> float:
    return run(fast_config("trainer.fast_dev_run=true", *overrides))["train/loss_step"]


def test_channels_last_gives_the_default_loss(fast_config):
    default = first_loss(fast_config, "model.channels_last=false")
    channels_last = first_loss(fast_config, "model.channels_last=true")
    assert channels_last == pytest.approx(default, rel=1e-4)


def test_bf16_mixed_precision_gives_the_default_loss(fast_config):
    default = first_loss(fast_config, "trainer.precision=32-true")
    mixed = first_loss(fast_config, "trainer.precision=bf16-mixed")
    assert mixed != default  # the encoder really ran in bfloat16
    assert mixed == pytest.approx(default, rel=2e-2)


def test_on_device_augmentation_feeds_the_same_views(fast_config):
    per_image = first_loss(fast_config, *IDENTITY_AUGMENT, "data.augment_on_device=false")
    batched = first_loss(fast_config, *IDENTITY_AUGMENT, "data.augment_on_device=true")
    assert batched == pytest.approx(per_image, rel=1e-5)


def test_on_device_augmentation_runs_with_blur(fast_config):
    loss = first_loss(fast_config, "data.augment_on_device=true", "data/augment=large")
    assert loss == loss and loss > 0  # finite and positive


def test_compiled_encoder_gives_the_default_loss(fast_config):
    # About 30 s with a cold inductor cache on 2 cores, 10 s warm.
    default = first_loss(fast_config, "model.compile_encoder=false")
    compiled = first_loss(fast_config, "model.compile_encoder=true")
    assert compiled == pytest.approx(default, rel=1e-4)
