"""The batched, on-device augmentation draws the per-image pipeline's distribution and applies
the same operations."""

import math

import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from simclr.data.augment.batch_augment import (
    BatchAugmentation,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    rotate,
)

SAMPLES = 20000


def augmentation(size=32, **options) -> BatchAugmentation:
    return BatchAugmentation(size, [0.0] * 3, [1.0] * 3, **options)


def plain_params(aug: BatchAugmentation, batch: int, height: int, width: int):
    params = aug.sample(batch, height, width)
    for flag in (params.flip, params.jitter, params.grayscale, params.blur):
        flag.zero_()
    return params


def crop_statistics(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    centre_x, centre_y = (
        (boxes[:, 0] + boxes[:, 2]) / 2 / width,
        (boxes[:, 1] + boxes[:, 3]) / 2 / height,
    )
    features = torch.stack([w * h / (height * width), torch.log(w / h), centre_x, centre_y], 1)
    return torch.stack([features.mean(0), features.std(0)])


@pytest.mark.parametrize("height,width", [(32, 32), (96, 96), (40, 64)])
def test_crop_boxes_follow_torchvision_random_resized_crop(height, width):
    torch.manual_seed(0)
    boxes = augmentation().sample_crop_boxes(SAMPLES, height, width, device=None)
    image = torch.zeros(3, height, width)
    reference = []
    for _ in range(SAMPLES):
        top, left, h, w = T.RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3))
        reference.append([left, top, left + w, top + h])
    ours = crop_statistics(boxes, height, width)
    theirs = crop_statistics(torch.tensor(reference, dtype=torch.float32), height, width)
    # Means and standard deviations of area, log-ratio and centre agree to sampling noise.
    torch.testing.assert_close(ours, theirs, atol=0.012, rtol=0)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height).all()


def test_jitter_factors_and_order_follow_torchvision_color_jitter():
    torch.manual_seed(0)
    s = 1.0
    params = augmentation(color_strength=s).sample(SAMPLES, 32, 32)
    reference = [
        T.ColorJitter.get_params((0.2, 1.8), (0.2, 1.8), (0.2, 1.8), (-0.2, 0.2))
        for _ in range(SAMPLES)
    ]
    factors = torch.tensor([[b, c, sat, h] for _, b, c, sat, h in reference])
    torch.testing.assert_close(params.factors.mean(0), factors.mean(0), atol=0.01, rtol=0)
    torch.testing.assert_close(params.factors.std(0), factors.std(0), atol=0.01, rtol=0)
    # Each operation comes first in a quarter of the images, as torchvision's random order.
    first = torch.bincount(params.order[:, 0], minlength=4).float() / SAMPLES
    reference_first = (
        torch.bincount(torch.tensor([int(r[0][0]) for r in reference]), minlength=4).float()
        / SAMPLES
    )
    torch.testing.assert_close(first, reference_first, atol=0.015, rtol=0)


@pytest.mark.parametrize(
    "field,option,probability",
    [
        ("flip", "flip_prob", 0.5),
        ("jitter", "color_prob", 0.8),
        ("grayscale", "grayscale_prob", 0.2),
        ("blur", "blur_prob", 0.5),
    ],
)
def test_application_rates(field, option, probability):
    torch.manual_seed(0)
    params = augmentation(**{option: probability}).sample(SAMPLES, 32, 32)
    rate = getattr(params, field).float().mean().item()
    tolerance = 4 * math.sqrt(probability * (1 - probability) / SAMPLES)
    assert rate == pytest.approx(probability, abs=tolerance)


def test_blur_sigma_is_uniform_between_0_1_and_2():
    params = augmentation(blur_prob=0.5).sample(SAMPLES, 96, 96)
    assert params.sigma.min() >= 0.1 and params.sigma.max() <= 2.0
    assert params.sigma.mean().item() == pytest.approx(1.05, abs=0.02)


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


def test_blur_matches_torchvision_per_image():
    images = torch.rand(3, 3, 20, 20)
    sigma = torch.tensor([0.3, 1.0, 2.0])
    expected = torch.stack(
        [TF.gaussian_blur(x, [9, 9], [float(s)] * 2) for x, s in zip(images, sigma, strict=True)]
    )
    torch.testing.assert_close(gaussian_blur(images, 9, sigma), expected, atol=1e-5, rtol=0)


def test_crop_matches_torchvision_resized_crop_inside_the_box():
    images = torch.rand(4, 3, 24, 24)
    aug = augmentation(size=12)
    params = plain_params(aug, 4, 24, 24)
    params.boxes = torch.tensor([[3.0, 3.0, 9.0, 9.0]] * 4)  # 6x6 box upsampled to 12x12
    expected = TF.resized_crop(images, 3, 3, 6, 6, [12, 12], antialias=True)
    # Identical but on the border, where the per-image crop repeats its edge and the batched
    # one reads the true neighbouring pixels.
    torch.testing.assert_close(
        aug.apply(images, params)[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-6, rtol=0
    )


def test_flip_and_grayscale_apply_to_the_chosen_images_only():
    images = torch.rand(4, 3, 8, 8)
    aug = augmentation(size=8)
    params = plain_params(aug, 4, 8, 8)
    params.boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 4)
    params.flip = torch.tensor([True, False, False, False])
    params.grayscale = torch.tensor([False, True, False, False])
    out = aug.apply(images, params)
    torch.testing.assert_close(out[0], images[0].flip(-1))
    torch.testing.assert_close(out[1], TF.rgb_to_grayscale(images[1], 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[2:], images[2:])


def test_views_are_normalised_float_of_the_configured_size():
    aug = BatchAugmentation(32, [0.5] * 3, [0.25] * 3, blur_prob=0.5)
    images = torch.randint(0, 256, (16, 3, 40, 40), dtype=torch.uint8)
    first, second = aug(images), aug(images)
    assert first.shape == (16, 3, 32, 32) and first.dtype == torch.float32
    pixels = first * 0.25 + 0.5
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert not torch.equal(first, second)


def test_rotation_matches_torchvision_random_rotation():
    images = torch.zeros(2, 3, 32, 32)
    images[:, :, 4:10, 8:24] = 1
    angles = torch.tensor([30.0, -12.5])
    rotated = rotate(images, angles)
    for image, angle, ours in zip(images, angles.tolist(), rotated, strict=True):
        reference = TF.rotate(image, angle, interpolation=TF.InterpolationMode.BILINEAR)
        torch.testing.assert_close(ours, reference, atol=1e-4, rtol=0)


def test_rotation_angles_are_uniform_and_applied_at_the_configured_rate():
    augment = BatchAugmentation(32, [0.5] * 3, [0.25] * 3, rotation_prob=0.5, rotation_degrees=15)
    angle = augment.sample(20000, 32, 32).angle
    rotated = angle[angle != 0]
    assert abs(len(rotated) / len(angle) - 0.5) < 0.02
    assert rotated.abs().max() <= 15 and abs(rotated.mean()) < 0.3
    assert abs(rotated.abs().mean() - 7.5) < 0.2  # |U(-15, 15)| has mean 7.5
    assert not BatchAugmentation(32, [0.5] * 3, [0.25] * 3).sample(100, 32, 32).angle.any()
