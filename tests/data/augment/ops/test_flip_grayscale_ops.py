"""Flip and grayscale: applied at their rates, to the chosen images only; PIL's grayscale (the
uint8 version) is the float luma to rounding."""

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from simclr.data.augment.ops.base import Draw
from simclr.data.augment.ops.color_jitter import ColorJitter
from simclr.data.augment.ops.flip import HorizontalFlip
from simclr.data.augment.ops.grayscale import Grayscale
from simclr.data.augment.pipeline import from_pil, to_pil
from simclr.data.augment.settings import AugmentSettings

SAMPLES = 20000


@pytest.mark.parametrize(
    "operation,field,option,probability",
    [
        (HorizontalFlip, "flip", "flip_prob", 0.5),
        (ColorJitter, "jitter", "color_prob", 0.8),
        (Grayscale, "gray", "grayscale_prob", 0.2),
    ],
)
def test_application_rates(operation, field, option, probability):
    torch.manual_seed(0)
    params = operation(AugmentSettings(**{option: probability}), 32).sample(Draw(SAMPLES), 32, 32)
    rate = params[field].float().mean().item()
    tolerance = 4 * math.sqrt(probability * (1 - probability) / SAMPLES)
    assert rate == pytest.approx(probability, abs=tolerance)


def test_flip_and_grayscale_apply_to_the_chosen_images_only():
    images = torch.rand(4, 3, 8, 8)
    settings = AugmentSettings()
    out = HorizontalFlip(settings, 8).apply(images, {"flip": torch.tensor([1, 0, 0, 0]).bool()})
    out = Grayscale(settings, 8).apply(out, {"gray": torch.tensor([0, 1, 0, 0]).bool()})
    torch.testing.assert_close(out[0], images[0].flip(-1))
    torch.testing.assert_close(out[1], TF.rgb_to_grayscale(images[1], 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[2:], images[2:])


def test_uint8_grayscale_is_the_luma():
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    gray = Grayscale(AugmentSettings(), 16)
    ours = from_pil(gray.apply_pil(to_pil(image), {"gray": torch.tensor(True)}))
    expected = TF.rgb_to_grayscale(image.float() / 255, 3) * 255
    assert (ours.float() - expected).abs().max() <= 1
    assert torch.equal(
        from_pil(gray.apply_pil(to_pil(image), {"gray": torch.tensor(False)})), image
    )
