import pytest
import torch
from torchvision.transforms import v2

from simclr.data.augment.transforms import (
    MultiViewTransform,
    StepsAfterCrop,
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


def steps_after_crop(transform: v2.Compose) -> StepsAfterCrop:
    (steps,) = [t for t in transform.transforms if isinstance(t, StepsAfterCrop)]
    return steps


def test_paper_parameters():
    augment = simclr_augmentation(96, MEAN, STD, color_strength=1.0, blur_prob=0.5)
    (crop,) = [t for t in augment.transforms if isinstance(t, v2.RandomResizedCrop)]
    assert crop.scale == (0.08, 1.0) and crop.ratio == pytest.approx((3 / 4, 4 / 3))
    (flip,) = [t for t in augment.transforms if isinstance(t, v2.RandomHorizontalFlip)]
    assert flip.p == 0.5
    settings = steps_after_crop(augment).pipeline.settings
    assert (settings.color_prob, settings.grayscale_prob, settings.blur_prob) == (0.8, 0.2, 0.5)
    assert settings.color_strength == 1.0


@pytest.mark.parametrize("pixel_dtype", ["float32", "uint8"])
def test_views_of_both_pixel_types_are_normalised_floats(pixel_dtype):
    augment = simclr_augmentation(32, MEAN, STD, pixel_dtype=pixel_dtype, blur_prob=0.5)
    for source in (image(50), v2.ToPILImage()(image(50))):
        view = augment(source)
        assert view.shape == (3, 32, 32) and view.dtype == torch.float32
        pixels = unnormalise(view)
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_crop_and_flip_alone_are_torchvision_s_as_before():
    # Fine-tuning's augmentation (crops and flips only) gives the views it gave before the
    # operations became classes: torchvision's crop and flip, from the same draws.
    options = dict(color_prob=0.0, grayscale_prob=0.0, crop_scale=(0.08, 1.0), flip_prob=0.5)
    ours = simclr_augmentation(32, MEAN, STD, **options)
    reference = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(32, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(0.5),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )
    for seed in range(5):
        torch.manual_seed(seed)
        view = ours(image(40))
        torch.manual_seed(seed)
        assert torch.equal(view, reference(image(40)))


def photo_like(size: int = 96) -> torch.Tensor:
    """A colourful uint8 image with smooth regions and edges."""
    coarse = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(5))
    smooth = torch.nn.functional.interpolate(coarse[None], size=size, mode="bilinear")[0]
    return (smooth * 255).round().to(torch.uint8)


def view_statistics(transform, count: int) -> torch.Tensor:
    """Mean over ``count`` views of: each channel's mean and spread, the pixels' saturation
    (max - min over the channels) and sharpness (mean absolute step between neighbours)."""
    source = v2.ToPILImage()(photo_like())
    rows = []
    for _ in range(count):
        x = unnormalise(transform(source))
        saturation = (x.max(0).values - x.min(0).values).mean()
        sharpness = (x[:, :, 1:] - x[:, :, :-1]).abs().mean()
        rows.append(torch.cat([x.mean((1, 2)), x.std((1, 2)), saturation[None], sharpness[None]]))
    return torch.stack(rows).mean(0)


@pytest.fixture
def one_thread():
    """Views one at a time, as a loader worker draws them: threads only add overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_uint8_views_are_distributed_as_torchvision_s_float_views(one_thread):
    # The per-image pipeline before the operations became classes (torchvision's transforms
    # in floats, the large preset) against the uint8 one, over many views of one image.
    torch.manual_seed(0)
    before = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(64, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(blur_kernel_size(64), (0.1, 2.0))], p=0.5),
            v2.Normalize(MEAN, STD),
        ]
    )
    after = simclr_augmentation(
        64, MEAN, STD, color_strength=1.0, blur_prob=0.5, pixel_dtype="uint8"
    )
    # Over 1,000 views, sampling noise moves the statistics by up to 0.012 (sharpness: 0.0004);
    # a weaker colour jitter (strength 0.5) moves them by up to 0.04, no blur the sharpness
    # by 0.0012.
    difference = (view_statistics(after, 1000) - view_statistics(before, 1000)).abs()
    tolerance = torch.tensor([0.02] * 7 + [0.0008])
    assert (difference <= tolerance).all(), difference


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
