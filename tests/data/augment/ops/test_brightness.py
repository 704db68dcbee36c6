"""data.augment.brightness: SimCLR v2's multiplicative brightness (the default) or SimCLR v1's
additive one (tf.image.random_brightness with max_delta = 0.8 x colour strength), the same in
the per-image and the batched pipelines, in floats and in uint8."""

import math

import pytest
import torch

from conftest import compose_config
from simclr.config import validate_config
from simclr.data.augment import augment_problems
from simclr.data.augment.batch_augment import BatchAugmentation
from simclr.data.augment.ops.base import Draw
from simclr.data.augment.ops.color_jitter import ColorJitter, shift_brightness
from simclr.data.augment.pipeline import from_pil, to_pil
from simclr.data.augment.settings import AugmentSettings
from simclr.data.augment.transforms import simclr_augmentation
from simclr.errors import ConfigError

SAMPLES = 20000
VIEWS = 600  # of each pipeline in the distribution test


def test_additive_brightness_adds_the_delta_and_clips():
    pixels = torch.tensor([0.1, 0.5, 0.95]).view(1, 1, 1, 3).expand(2, 3, 1, 3)
    out = shift_brightness(pixels, torch.tensor([0.1, -0.3]))
    expected = torch.tensor([[0.2, 0.6, 1.0], [0.0, 0.2, 0.65]])
    torch.testing.assert_close(out[:, 0, 0], expected)
    torch.testing.assert_close(out[:, 2], out[:, 0])  # every channel shifted alike


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_deltas_are_uniform_within_0_8_s_and_leave_the_other_draws_unchanged(strength):
    def draw_factors(brightness: str) -> torch.Tensor:
        settings = AugmentSettings(color_strength=strength, brightness=brightness)
        draw = Draw(SAMPLES, generator=torch.Generator().manual_seed(3))
        return ColorJitter(settings, 32).sample_early(draw)["factors"]

    additive, multiplicative = draw_factors("additive"), draw_factors("multiplicative")
    delta, factor, max_delta = additive[:, 0], multiplicative[:, 0], 0.8 * strength
    assert delta.abs().max() <= max_delta and delta.abs().max() > 0.99 * max_delta
    assert abs(delta.mean()) < 0.01
    assert delta.std() == pytest.approx(2 * max_delta / math.sqrt(12), rel=0.02)
    assert factor.min() >= max(0.0, 1 - max_delta) and factor.max() <= 1 + max_delta
    # Contrast, saturation and hue: the same draws whichever brightness.
    assert torch.equal(additive[:, 1:], multiplicative[:, 1:])


def test_uint8_version_gives_the_float_colours_to_rounding():
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(6, 3, 4, 4, generator=generator)
    images = (torch.nn.functional.interpolate(coarse, size=32, mode="bilinear") * 255).byte()
    jitter = ColorJitter(AugmentSettings(color_strength=1.0, brightness="additive"), 32)
    factors = torch.tensor([[0.6, 0.7, 1.6, 0.15], [-0.7, 1.5, 0.3, -0.18]]).repeat(3, 1)
    orders = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] * 2
    params = {
        "jitter": torch.tensor([True] * 5 + [False]),
        "factors": factors,
        "order": torch.tensor(orders),
    }
    ours = jitter.apply(images.float() / 255, params) * 255
    pil = [
        from_pil(jitter.apply_pil(to_pil(image), {k: v[i] for k, v in params.items()}))
        for i, image in enumerate(images)
    ]
    difference = (torch.stack(pil).float() - ours).abs()
    assert difference.mean() < 1.5 and difference.quantile(0.99) < 6
    assert torch.equal(pil[-1], images[-1])  # not jittered: untouched
    # Brightness alone on a grey level: 100 + 0.2 x 255 = 151 in uint8.
    grey = to_pil(torch.full((3, 2, 2), 100, dtype=torch.uint8))
    alone = {"jitter": torch.tensor(True), "factors": torch.tensor([0.2, 1.0, 1.0, 0.0])}
    shifted = jitter.apply_pil(grey, alone | {"order": torch.tensor([0, 1, 2, 3])})
    assert torch.equal(from_pil(shifted), torch.full((3, 2, 2), 151, dtype=torch.uint8))


def grey_levels(brightness: str, pixel_dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The level of ``VIEWS`` views of a uniform grey image (128), jittered every time,
    from the per-image and the batched pipelines: on grey, contrast, saturation and hue change
    nothing, so each view's level is the brightness change alone."""
    options = dict(
        color_strength=0.5,
        color_prob=1.0,
        grayscale_prob=0.0,
        brightness=brightness,
        pixel_dtype=pixel_dtype,
    )
    grey = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    torch.manual_seed(0)
    per_image = simclr_augmentation(8, [0.0] * 3, [1.0] * 3, **options)
    single = torch.stack([per_image(grey).mean() for _ in range(VIEWS)])
    batched = BatchAugmentation(8, [0.0] * 3, [1.0] * 3, **options)
    views = batched(grey.expand(VIEWS, 3, 8, 8), torch.Generator().manual_seed(1))
    return single, views.mean(dim=(1, 2, 3))


@pytest.mark.parametrize("pixel_dtype", ["float32", "uint8"])
@pytest.mark.parametrize(
    "brightness,low,high",
    # Grey 128/255 = 0.502 with s = 0.5: plus U(-0.4, 0.4), or times U(0.6, 1.4).
    [("additive", 0.502 - 0.4, 0.502 + 0.4), ("multiplicative", 0.502 * 0.6, 0.502 * 1.4)],
)
def test_per_image_and_batched_pipelines_draw_the_same_brightness(
    brightness, low, high, pixel_dtype
):
    single, batched = grey_levels(brightness, pixel_dtype)
    mean, std = (low + high) / 2, (high - low) / math.sqrt(12)
    for levels in (single, batched):
        assert levels.min() >= low - 0.003 and levels.max() <= high + 0.003
        assert levels.mean() == pytest.approx(mean, abs=4 * std / math.sqrt(VIEWS))
        assert levels.std() == pytest.approx(std, rel=0.06)
    # Against each other: the same distribution (two-sample Kolmogorov-Smirnov, 1% level).
    grid = torch.linspace(low, high, 200)
    cdf = [(levels[:, None] <= grid).float().mean(0) for levels in (single, batched)]
    assert (cdf[0] - cdf[1]).abs().max() < 1.63 * math.sqrt(2 / VIEWS)


def test_other_values_are_refused_by_the_config_checks(tmp_path):
    assert augment_problems({"brightness": "gamma"}) == [
        "data.augment.brightness='gamma': must be multiplicative or additive"
    ]
    with pytest.raises(ConfigError, match=r"data\.augment\.brightness='gamma'"):
        validate_config(compose_config(["data.augment.brightness=gamma"], tmp_path))
    validate_config(compose_config(["data.augment.brightness=additive"], tmp_path))
    assert AugmentSettings().brightness == "multiplicative"
