"""Gaussian blur: sigma ~ U(0.1, 2); the batched blur is torchvision's, separable; PIL's blur
(the uint8 version) agrees with it where the kernel is wide enough."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from simclr.data.augment.ops.base import Draw
from simclr.data.augment.ops.blur import GaussianBlur, blur_kernel_size, gaussian_blur
from simclr.data.augment.pipeline import from_pil, to_pil
from simclr.data.augment.settings import AugmentSettings


def test_blur_sigma_is_uniform_between_0_1_and_2():
    params = GaussianBlur(AugmentSettings(blur_prob=0.5), 96).sample(Draw(20000), 96, 96)
    assert params["sigma"].min() >= 0.1 and params["sigma"].max() <= 2.0
    assert params["sigma"].mean().item() == pytest.approx(1.05, abs=0.02)
    assert params["blur"].float().mean().item() == pytest.approx(0.5, abs=0.015)


@pytest.mark.parametrize("size,kernel", [(32, 3), (96, 9), (224, 23), (64, 7)])
def test_blur_kernel_is_an_odd_tenth_of_the_side(size, kernel):
    assert blur_kernel_size(size) == kernel


def test_blur_matches_torchvision_per_image():
    images = torch.rand(3, 3, 20, 20)
    sigma = torch.tensor([0.3, 1.0, 2.0])
    expected = torch.stack(
        [TF.gaussian_blur(x, [9, 9], [float(s)] * 2) for x, s in zip(images, sigma, strict=True)]
    )
    torch.testing.assert_close(gaussian_blur(images, 9, sigma), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_uint8_blur_agrees_with_the_float_blur_at_224_px(sigma):
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 28, 28, generator=generator)
    image = (torch.nn.functional.interpolate(coarse, size=224, mode="nearest") * 255).round()
    blur = GaussianBlur(AugmentSettings(blur_prob=1.0), 224)
    params = {"blur": torch.tensor([True]), "sigma": torch.tensor([sigma])}
    expected = blur.apply(image / 255, params)[0] * 255
    ours = from_pil(
        blur.apply_pil(to_pil(image[0].to(torch.uint8)), {"blur": True, "sigma": sigma})
    )
    difference = (ours.float() - expected).abs()
    # Sharp edges, blurred: PIL's three box blurs approximate the Gaussian to a few levels,
    # a twentieth of what the blur changes. (Below sigma 0.5, where the blur changes about a
    # level, PIL's blurs less.)
    assert difference.mean() < 1.0 and difference.max() < 5
    assert difference.mean() < 0.05 * (image[0] - expected).abs().mean()
