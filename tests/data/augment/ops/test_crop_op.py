"""The crop operation's batched boxes follow torchvision's RandomResizedCrop, and its batched
cut matches torchvision's resized crop."""

import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from simclr.data.augment.ops.base import Draw
from simclr.data.augment.ops.crop import RandomResizedCrop
from simclr.data.augment.settings import AugmentSettings

SAMPLES = 20000


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
    crop = RandomResizedCrop(AugmentSettings(), 32)
    boxes = crop.sample(Draw(SAMPLES), height, width)["boxes"]
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


def test_crop_matches_torchvision_resized_crop_inside_the_box():
    images = torch.rand(4, 3, 24, 24)
    crop = RandomResizedCrop(AugmentSettings(), 12)
    boxes = torch.tensor([[3.0, 3.0, 9.0, 9.0]] * 4)  # 6x6 box upsampled to 12x12
    expected = TF.resized_crop(images, 3, 3, 6, 6, [12, 12], antialias=True)
    # Identical but on the border, where the per-image crop repeats its edge and the batched
    # one reads the true neighbouring pixels.
    ours = crop.apply(images, {"boxes": boxes})
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "value,problem",
    [
        ([0.5, 0.2], "data.augment.crop_scale=[0.5, 0.2]: must be [low, high] with 0 < low"),
        ([0.0, 1.0], "data.augment.crop_scale=[0.0, 1.0]: must be"),
        ([0.1, 1.5], "data.augment.crop_scale=[0.1, 1.5]: must be"),
        (0.5, "data.augment.crop_scale=0.5: must be"),
    ],
)
def test_crop_scale_is_checked(value, problem):
    (found,) = RandomResizedCrop.problems({"crop_scale": value})
    assert found.startswith(problem)
    assert RandomResizedCrop.problems({"crop_scale": [0.08, 1.0], "crop_ratio": [0.75, 1.33]}) == []
