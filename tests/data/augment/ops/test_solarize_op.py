"""Solarisation: pixels at or above half the range inverted in the chosen images, the same in
floats and in uint8 (PIL); off by default; it draws after every earlier operation."""

import math

import pytest
import torch

from simclr.data.augment import augment_problems
from simclr.data.augment.batch_augment import BatchAugmentation
from simclr.data.augment.ops.base import Draw
from simclr.data.augment.ops.solarize import Solarize
from simclr.data.augment.pipeline import from_pil, to_pil
from simclr.data.augment.settings import AugmentSettings
from simclr.data.augment.transforms import simclr_augmentation


def test_bright_pixels_of_the_chosen_images_are_inverted():
    images = torch.tensor([0.1, 0.49, 0.5, 0.9]).view(1, 1, 2, 2).expand(2, 3, 2, 2)
    out = Solarize(AugmentSettings(), 2).apply(images, {"solarize": torch.tensor([True, False])})
    torch.testing.assert_close(out[0, 0].flatten(), torch.tensor([0.1, 0.49, 0.5, 0.1]))
    torch.testing.assert_close(out[1], images[1])


def test_uint8_version_is_the_float_one():
    image = torch.arange(256, dtype=torch.uint8).view(1, 16, 16).expand(3, 16, 16)
    solarize = Solarize(AugmentSettings(), 16)
    ours = from_pil(solarize.apply_pil(to_pil(image), {"solarize": torch.tensor(True)}))
    expected = solarize.apply(image[None].float() / 255, {"solarize": torch.tensor([True])})
    torch.testing.assert_close(ours.float(), expected[0] * 255, atol=1e-4, rtol=0)


def test_applied_at_its_rate_and_off_by_default():
    draw = Draw(20000)
    rate = Solarize(AugmentSettings(solarize_prob=0.2), 32).sample(draw, 32, 32)["solarize"]
    assert rate.float().mean().item() == pytest.approx(0.2, abs=4 * math.sqrt(0.16 / 20000))
    assert AugmentSettings().solarize_prob == 0.0
    assert augment_problems({"solarize_prob": 1.2}) == [
        "data.augment.solarize_prob=1.2: must be a probability in [0, 1]"
    ]


@pytest.mark.parametrize("pixel_dtype", ["float32", "uint8"])
def test_every_view_solarised_with_probability_one(pixel_dtype):
    options = dict(color_prob=0.0, grayscale_prob=0.0, pixel_dtype=pixel_dtype)
    bright = torch.full((3, 40, 40), 230, dtype=torch.uint8)
    view = simclr_augmentation(32, [0.0] * 3, [1.0] * 3, solarize_prob=1.0, **options)(bright)
    torch.testing.assert_close(view, torch.full((3, 32, 32), 25 / 255), atol=1e-2, rtol=0)
    batched = BatchAugmentation(32, [0.0] * 3, [1.0] * 3, solarize_prob=1.0, **options)
    views = batched(bright.expand(4, 3, 40, 40))
    torch.testing.assert_close(views, torch.full((4, 3, 32, 32), 25 / 255), atol=1e-2, rtol=0)


def test_earlier_draws_are_unchanged_by_it():
    on = BatchAugmentation(32, [0.5] * 3, [0.25] * 3, solarize_prob=0.5)
    off = BatchAugmentation(32, [0.5] * 3, [0.25] * 3)
    first = on.sample(8, 40, 40, generator=torch.Generator().manual_seed(0))
    second = off.sample(8, 40, 40, generator=torch.Generator().manual_seed(0))
    for name, params in second.items():
        if name != "solarize":
            for key, value in params.items():
                assert torch.equal(first[name][key], value), (name, key)
