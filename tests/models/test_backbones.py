import pytest
import torch

from simclr.models.backbones import BACKBONES, build_backbone, use_small_stem


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("width,paper_millions", [(1, 24), (2, 94), (4, 375)])
def test_wide_resnet50_parameter_counts_match_the_paper(width, paper_millions):
    with torch.device("meta"):  # the 4x has 375M parameters: count without allocating
        encoder, feature_dim = build_backbone("wide_resnet50", image_size=224, width=width)
    assert feature_dim == 2048 * width
    assert count(encoder) / 1e6 == pytest.approx(paper_millions, rel=0.05)


def test_torchvision_resnet50_has_the_paper_1x_size():
    encoder, feature_dim = build_backbone("resnet50", image_size=224)
    assert feature_dim == 2048
    assert count(encoder) / 1e6 == pytest.approx(24, rel=0.05)


def test_depthwise_variant_about_halves_the_wide_resnet():
    with torch.device("meta"):
        plain, _ = build_backbone("wide_resnet50", image_size=224, width=2)
        depthwise, _ = build_backbone("wide_resnet50", image_size=224, width=2, depthwise=True)
    assert 0.4 < count(depthwise) / count(plain) < 0.6


@pytest.mark.parametrize(
    "name,options,feature_dim",
    [
        ("resnet18", {}, 512),
        ("resnet34", {}, 512),
        ("resnet50", {}, 2048),
        ("wide_resnet50", {"width": 1}, 2048),
        ("slim_resnet18", {"width": 0.25}, 128),
        ("slim_resnet18", {"width": 0.25, "depthwise": True}, 128),
    ],
)
@pytest.mark.parametrize("image_size", [32, 64])
def test_encoders_return_pooled_features(name, options, feature_dim, image_size):
    encoder, dim = build_backbone(name, image_size=image_size, **options)
    encoder.eval()
    with torch.no_grad():
        features = encoder(torch.randn(2, 3, image_size, image_size))
    assert dim == feature_dim
    assert features.shape == (2, feature_dim)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "slim_resnet18", "wide_resnet50"])
def test_small_stem_keeps_resolution_for_32px_images(name):
    encoder, _ = build_backbone(name, image_size=32)
    assert encoder.conv1.kernel_size == (3, 3) and encoder.conv1.stride == (1, 1)
    assert isinstance(encoder.maxpool, torch.nn.Identity)
    stem = torch.nn.Sequential(encoder.conv1, encoder.bn1, encoder.maxpool)
    assert stem(torch.randn(2, 3, 32, 32)).shape[-2:] == (32, 32)


def test_large_images_get_the_imagenet_stem_unless_overridden():
    encoder, _ = build_backbone("resnet18", image_size=96)
    assert encoder.conv1.kernel_size == (7, 7) and encoder.conv1.stride == (2, 2)
    forced, _ = build_backbone("resnet18", image_size=96, small_stem=True)
    assert forced.conv1.kernel_size == (3, 3)
    assert use_small_stem(32, None) and not use_small_stem(33, None)
    assert not use_small_stem(32, False)


def test_blocks_do_not_share_activation_modules():
    # The original project's single ReLU shared by every block is a defect not to repeat.
    encoder, _ = build_backbone("slim_resnet18", image_size=32)
    relus = [m for m in encoder.modules() if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == len({id(m) for m in relus})


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        build_backbone("resnet19", image_size=32)
    for name in BACKBONES:
        assert name in str(error.value)


@pytest.mark.parametrize("width", [3, 0.5])
def test_wide_resnet_rejects_other_widths(width):
    with pytest.raises(ValueError, match=rf"backbone.width={width}: must be one of 1, 2, 4"):
        build_backbone("wide_resnet50", image_size=32, width=width)


def test_torchvision_backbones_reject_width_options():
    with pytest.raises(ValueError, match="fixed-width"):
        build_backbone("resnet18", image_size=32, width=2)


@pytest.mark.parametrize(
    "name, options",
    [("resnet18", {}), ("resnet50", {}), ("slim_resnet18", {"width": 0.25})],
)
@pytest.mark.parametrize("zero_init_residual", [True, False])
def test_residual_branches_start_at_zero_as_the_official_code(name, options, zero_init_residual):
    encoder, _ = build_backbone(
        name, image_size=32, zero_init_residual=zero_init_residual, **options
    )
    blocks = [m for m in encoder.modules() if hasattr(m, "downsample") and hasattr(m, "bn2")]
    last_norms = [getattr(block, "bn3", block.bn2) for block in blocks]
    assert len(last_norms) in (8, 16)
    for norm in last_norms:
        assert bool((norm.weight == 0).all()) == zero_init_residual
    # The stem's and the other BatchNorms keep scale one.
    assert bool((encoder.bn1.weight == 1).all())
