import pytest
import torch
from torchvision.transforms import v2

from simclr.data.augment.transforms import (
    MultiViewTransform,
    blur_kernel_size,
    evaluation_transform,
    simclr_augmentation,
)

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def image(size: int = 40) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (3, size, size), dtype=torch.uint8)


def unnormalise(view: torch.Tensor) -> torch.Tensor:
    return view * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]


def find(transform: v2.Compose, kind: type) -> list:
    found = []
    for step in transform.transforms:
        inner = step.transforms if isinstance(step, v2.RandomApply) else [step]
        found += [(step, t) for t in inner if isinstance(t, kind)]
    return found


@pytest.mark.parametrize("size", [32, 96])
def test_views_have_size_dtype_and_range(size):
    views = MultiViewTransform(simclr_augmentation(size, MEAN, STD), num_views=3)(image(120))
    assert len(views) == 3
    for view in views:
        assert view.shape == (3, size, size) and view.dtype == torch.float32
        pixels = unnormalise(view)
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert not torch.equal(views[0], views[1])


def test_accepts_pil_images():
    pil = v2.ToPILImage()(image(50))
    view = simclr_augmentation(32, MEAN, STD)(pil)
    assert view.shape == (3, 32, 32)


def test_paper_parameters():
    augment = simclr_augmentation(96, MEAN, STD, color_strength=1.0, blur_prob=0.5)
    ((_, crop),) = find(augment, v2.RandomResizedCrop)
    assert crop.scale == (0.08, 1.0) and crop.ratio == pytest.approx((3 / 4, 4 / 3))
    ((jitter_apply, jitter),) = find(augment, v2.ColorJitter)
    assert jitter_apply.p == 0.8
    assert jitter.brightness == pytest.approx((0.2, 1.8)) and jitter.hue == pytest.approx(
        (-0.2, 0.2)
    )
    ((_, gray),) = find(augment, v2.RandomGrayscale)
    assert gray.p == 0.2
    ((blur_apply, blur),) = find(augment, v2.GaussianBlur)
    assert blur_apply.p == 0.5 and list(blur.kernel_size) == [9, 9]
    assert list(blur.sigma) == [0.1, 2.0]


def test_small_image_preset_has_no_blur_and_half_strength():
    augment = simclr_augmentation(32, MEAN, STD, color_strength=0.5, blur_prob=0.0)
    assert find(augment, v2.GaussianBlur) == []
    ((_, jitter),) = find(augment, v2.ColorJitter)
    assert jitter.brightness == pytest.approx((0.6, 1.4)) and jitter.hue == pytest.approx(
        (-0.1, 0.1)
    )


@pytest.mark.parametrize("size,kernel", [(32, 3), (96, 9), (224, 23), (64, 7)])
def test_blur_kernel_is_an_odd_tenth_of_the_side(size, kernel):
    assert blur_kernel_size(size) == kernel


def test_evaluation_transform_is_deterministic_and_centre_crops():
    transform = evaluation_transform(32, MEAN, STD)
    rectangle = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    first, second = transform(rectangle), transform(rectangle)
    assert first.shape == (3, 32, 32)
    assert torch.equal(first, second)


def test_multiview_rejects_fewer_than_two_views():
    with pytest.raises(ValueError, match=r"model\.num_views=1: must be an integer >= 2"):
        MultiViewTransform(lambda x: x, num_views=1)


def test_evaluation_transform_takes_the_official_central_crop():
    # 256 x 320 image whose central 87.5% of the short side (224 px) is bright, the rest dark.
    image = torch.zeros(3, 256, 320, dtype=torch.uint8)
    image[:, 16:240, 48:272] = 255
    view = evaluation_transform(224, [0.0] * 3, [1.0] * 3, crop_fraction=0.875)(image)
    assert view.shape == (3, 224, 224)
    assert view.min() > 0.99  # only the bright centre is left, at its original scale
    whole = evaluation_transform(224, [0.0] * 3, [1.0] * 3)(image)
    assert whole.min() < 0.01  # without the crop fraction the dark border stays
    with pytest.raises(ValueError, match=r"data.eval_crop_fraction=0.0: must be in \(0, 1\]"):
        evaluation_transform(32, MEAN, STD, crop_fraction=0.0)
