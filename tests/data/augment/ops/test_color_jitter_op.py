"""Colour jitter: its factors and order follow torchvision's ColorJitter; its batched float
adjustments are torchvision's, and its uint8 (PIL) version gives the same colours to rounding."""

import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from simclr.data.augment.ops.base import Draw
from simclr.data.augment.ops.color_jitter import (
    ColorJitter,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
)
from simclr.data.augment.pipeline import from_pil, to_pil
from simclr.data.augment.settings import AugmentSettings

SAMPLES = 20000


def smooth_images(count: int, size: int = 32) -> torch.Tensor:
    """Colourful uint8 images with smooth regions, as photographs have."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(count, 3, 4, 4, generator=generator)
    return (
        (torch.nn.functional.interpolate(coarse, size=size, mode="bilinear") * 255)
        .round()
        .to(torch.uint8)
    )


def test_jitter_factors_and_order_follow_torchvision_color_jitter():
    torch.manual_seed(0)
    jitter = ColorJitter(AugmentSettings(color_strength=1.0), 32)
    draw = Draw(SAMPLES)
    params = jitter.sample_early(draw) | jitter.sample(draw, 32, 32)
    reference = [
        T.ColorJitter.get_params((0.2, 1.8), (0.2, 1.8), (0.2, 1.8), (-0.2, 0.2))
        for _ in range(SAMPLES)
    ]
    factors = torch.tensor([[b, c, sat, h] for _, b, c, sat, h in reference])
    torch.testing.assert_close(params["factors"].mean(0), factors.mean(0), atol=0.01, rtol=0)
    torch.testing.assert_close(params["factors"].std(0), factors.std(0), atol=0.01, rtol=0)
    # Each operation comes first in a quarter of the images, as torchvision's random order.
    first = torch.bincount(params["order"][:, 0], minlength=4).float() / SAMPLES
    reference_first = (
        torch.bincount(torch.tensor([int(r[0][0]) for r in reference]), minlength=4).float()
        / SAMPLES
    )
    torch.testing.assert_close(first, reference_first, atol=0.015, rtol=0)


@pytest.mark.parametrize(
    "adjust,reference,factor",
    [
        (adjust_brightness, TF.adjust_brightness, 1.3),
        (adjust_contrast, TF.adjust_contrast, 0.6),
        (adjust_saturation, TF.adjust_saturation, 1.5),
        (adjust_hue, TF.adjust_hue, 0.17),
        (adjust_hue, TF.adjust_hue, -0.4),
    ],
)
def test_colour_operations_match_torchvision(adjust, reference, factor):
    images = torch.rand(5, 3, 12, 16)
    expected = torch.stack([reference(image, factor) for image in images])
    torch.testing.assert_close(
        adjust(images, torch.full((5,), factor)), expected, atol=2e-6, rtol=0
    )


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]])
def test_uint8_version_gives_the_float_colours_to_rounding(order):
    images = smooth_images(6)
    jitter = ColorJitter(AugmentSettings(color_strength=1.0), 32)
    factors = torch.tensor([[1.4, 0.7, 1.6, 0.15], [0.5, 1.5, 0.3, -0.18]]).repeat(3, 1)
    params = {
        "jitter": torch.tensor([True] * 5 + [False]),
        "factors": factors,
        "order": torch.tensor([order] * 6),
    }
    ours = jitter.apply(images.float() / 255, params) * 255
    pil = [
        from_pil(jitter.apply_pil(to_pil(image), {k: v[i] for k, v in params.items()}))
        for i, image in enumerate(images)
    ]
    difference = (torch.stack(pil).float() - ours).abs()
    # PIL rounds every step to 8 bits (its hue to 255 steps a turn): a few levels at most.
    assert difference.mean() < 1.5 and difference.quantile(0.99) < 6
    assert torch.equal(pil[-1], images[-1])  # not jittered: untouched
