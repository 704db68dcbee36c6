"""The batched augmentation: the draws and views of earlier versions for the same generator
seed (a digits run trains on the same views), normalised views of the configured size, and
the uint8 path on a CPU close to the float one."""

import pytest
import torch

from simclr.data.augment.batch_augment import BatchAugmentation

PRESETS = {  # configs/data/augment: digits, small, large
    "digits": dict(
        color_strength=0.5,
        crop_scale=(0.3, 1.0),
        flip_prob=0.0,
        rotation_prob=0.5,
        rotation_degrees=15.0,
    ),
    "small": dict(color_strength=0.5),
    "large": dict(color_strength=1.0, blur_prob=0.5),
}
# Sums of each draw weighted by 1..n (order-sensitive), as the batched pipeline drew them
# before the operations became classes (commit ea8bd70), for generator seed 7, 8 images of 40
# px; with rotation at digits' settings only, blur at large's. Every draw is made even where
# the operation is off, so these are the same whatever the settings, but for the crop boxes
# (crop_scale), the factors (color_strength) and the coins of flip, blur and rotation.
DRAWS = {
    "digits": {"boxes": 10516.0, "factors": 385.94672, "angle": 21.658, "flip": 0.0, "blur": 0.0},
    "small": {"boxes": 10185.0, "factors": 385.94672, "angle": 0.0, "flip": 16.0, "blur": 0.0},
    "large": {"boxes": 10185.0, "factors": 387.893419, "angle": 0.0, "flip": 16.0, "blur": 24.0},
}
COMMON_DRAWS = {"jitter": 35.0, "order": 783.0, "gray": 8.0, "sigma": 37.434141}
# Sum and sum of squares of the views, uncropped (40 px images) and cropped (32 px views).
VIEWS = {
    ("digits", False): (4802.4063, 17724.9383),
    ("digits", True): (4744.3409, 26461.3265),
    ("small", False): (6087.3517, 21054.6996),
    ("small", True): (5898.2108, 34029.7815),
    ("large", False): (2982.7289, 24480.5497),
    ("large", True): (2193.2999, 28681.1785),
}


def weighted_sum(values: torch.Tensor) -> float:
    weights = torch.arange(1, values.numel() + 1, dtype=torch.float64).view(values.shape)
    return float((values.double() * weights).sum())


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("cropped", [False, True])
def test_draws_and_views_are_those_of_earlier_versions(preset, cropped):
    augment = BatchAugmentation(32, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3], **PRESETS[preset])
    size = 32 if cropped else 40
    seeded = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8, generator=seeded)
    params = augment.sample(8, size, size, generator=torch.Generator().manual_seed(7))
    flat = {key: value for op in params.values() for key, value in op.items()}
    expected = {**COMMON_DRAWS, **DRAWS[preset]}
    if cropped:  # the boxes of 32 px images
        expected["boxes"] = {"digits": 8400.0, "small": 8177.0, "large": 8177.0}[preset]
    for key, value in expected.items():
        assert weighted_sum(flat[key]) == pytest.approx(value, abs=1e-4), key
    views = augment(images, torch.Generator().manual_seed(7), cropped=cropped).double()
    total, squares = VIEWS[(preset, cropped)]
    assert float(views.sum()) == pytest.approx(total, abs=1e-2)
    assert float((views**2).sum()) == pytest.approx(squares, abs=1e-2)


def test_views_are_normalised_float_of_the_configured_size():
    aug = BatchAugmentation(32, [0.5] * 3, [0.25] * 3, blur_prob=0.5)
    images = torch.randint(0, 256, (16, 3, 40, 40), dtype=torch.uint8)
    first, second = aug(images), aug(images)
    assert first.shape == (16, 3, 32, 32) and first.dtype == torch.float32
    pixels = first * 0.25 + 0.5
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert not torch.equal(first, second)


@pytest.mark.parametrize("cropped", [False, True])
def test_uint8_path_on_a_cpu_gives_the_float_views_to_rounding(cropped):
    options = dict(color_strength=1.0, blur_prob=0.5, rotation_prob=0.5, rotation_degrees=20)
    as_float = BatchAugmentation(64, [0.5] * 3, [0.25] * 3, **options)
    as_uint8 = BatchAugmentation(64, [0.5] * 3, [0.25] * 3, pixel_dtype="uint8", **options)
    size = 64 if cropped else 80
    coarse = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    images = (torch.nn.functional.interpolate(coarse, size=size, mode="bilinear") * 255).byte()
    ours = as_uint8(images, torch.Generator().manual_seed(3), cropped=cropped)
    theirs = as_float(images, torch.Generator().manual_seed(3), cropped=cropped)
    assert ours.shape == theirs.shape == (16, 3, 64, 64)
    difference = (ours - theirs).abs() * 0.25 * 255  # in levels of the uint8 image
    assert difference.mean() < 2 and difference.median() < 1.5
