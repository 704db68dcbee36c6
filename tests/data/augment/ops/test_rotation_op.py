"""Rotation: the batched version is torchvision's RandomRotation; the uint8 one PIL's rotate."""

import torch
from torchvision.transforms.v2 import functional as TF

from simclr.data.augment.ops.base import Draw
from simclr.data.augment.ops.rotation import Rotation, rotate
from simclr.data.augment.pipeline import from_pil, to_pil
from simclr.data.augment.settings import AugmentSettings


def bar_images() -> torch.Tensor:
    images = torch.zeros(2, 3, 32, 32)
    images[:, :, 4:10, 8:24] = 1
    return images


def test_rotation_matches_torchvision_random_rotation():
    images = bar_images()
    angles = torch.tensor([30.0, -12.5])
    rotated = rotate(images, angles)
    for image, angle, ours in zip(images, angles.tolist(), rotated, strict=True):
        reference = TF.rotate(image, angle, interpolation=TF.InterpolationMode.BILINEAR)
        torch.testing.assert_close(ours, reference, atol=1e-4, rtol=0)


def test_uint8_rotation_turns_the_same_way():
    images = bar_images()
    rotation = Rotation(AugmentSettings(rotation_prob=1.0, rotation_degrees=30), 32)
    params = {"angle": torch.tensor([30.0, -12.5])}
    expected = rotation.apply(images, params) * 255
    for index, image in enumerate((images * 255).to(torch.uint8)):
        ours = from_pil(rotation.apply_pil(to_pil(image), {"angle": params["angle"][index]}))
        assert (ours.float() - expected[index]).abs().mean() < 3


def test_rotation_angles_are_uniform_and_applied_at_the_configured_rate():
    rotation = Rotation(AugmentSettings(rotation_prob=0.5, rotation_degrees=15), 32)
    angle = rotation.sample(Draw(20000), 32, 32)["angle"]
    rotated = angle[angle != 0]
    assert abs(len(rotated) / len(angle) - 0.5) < 0.02
    assert rotated.abs().max() <= 15 and abs(rotated.mean()) < 0.3
    assert abs(rotated.abs().mean() - 7.5) < 0.2  # |U(-15, 15)| has mean 7.5
    assert not Rotation(AugmentSettings(), 32).sample(Draw(100), 32, 32)["angle"].any()
