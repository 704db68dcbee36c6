import pytest
import torch

from conftest import compose_config
from simclr.config import validate_config
from simclr.errors import ConfigError
from simclr.memory.activation_checkpointing import checkpoint_stages
from simclr.models.backbones import BACKBONES, build_backbone, same_architecture
from simclr.models.resnet_v2 import (
    ResNetDPool,
    SelectiveKernelConv,
    build_resnet_v2,
)

SK = 0.0625  # the paper's sk_ratio

# SimCLR v2 (Chen et al. 2020, arXiv:2006.10029), table 1, "Param (M)" (the same figures as
# the google-research/simclr README's "Pre-trained models for SimCLRv2" table, HEAD 383d414):
# depth, width, selective kernels, parameters in millions, as printed (whole millions). The
# plain ResNet-50s are backbones.py's resnet50_w1/_w2; the others are built here.
OFFICIAL_MILLIONS = [
    (50, 1, False, 24),
    (50, 1, True, 35),
    (50, 2, False, 94),
    (50, 2, True, 140),
    (101, 1, False, 43),
    (101, 1, True, 65),
    (101, 2, False, 170),
    (101, 2, True, 257),
    (152, 1, False, 58),
    (152, 1, True, 89),
    (152, 2, False, 233),
    (152, 2, True, 354),
    (152, 3, True, 795),
]


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def registered_name(depth: int, width: int, sk: bool) -> str:
    """The backbone registered for a row of the table."""
    return f"resnet{depth}_sk_w{width}" if depth == 50 and sk else f"resnet{depth}_w{width}"


@pytest.mark.parametrize("depth,width,sk,millions", OFFICIAL_MILLIONS)
def test_parameter_counts_match_the_papers_table(depth, width, sk, millions, tmp_path):
    # Each row's backbone as its config file builds it (sk_ratio 0.0625 set where SK).
    backbone = compose_config([f"backbone={registered_name(depth, width, sk)}"], tmp_path).backbone
    options = {k: v for k, v in backbone.items() if k != "name"}
    if depth > 50:  # ResNet-101/152: one config per width, selective kernels an option
        options["sk_ratio"] = SK if sk else 0.0
    assert options.get("sk_ratio", 0.0) == (SK if sk else 0.0)
    with torch.device("meta"):  # the 152 3x SK has 795M parameters: count, never allocate
        encoder, feature_dim = build_backbone(backbone.name, image_size=224, **options)
    assert feature_dim == 2048 * width
    ours = count(encoder) / 1e6
    # Within 1%, or within the table's rounding to whole millions (ResNet-101 1x: 42.50M,
    # torchvision's resnet101 less its classifier, printed 43).
    assert abs(ours - millions) <= max(0.01 * millions, 0.5), f"{ours:.3f}M vs {millions}M"


def test_selective_kernels_add_the_published_share_of_parameters():
    # The official table: ResNet-152 1x goes from 58M to 89M with SK (about +53%).
    with torch.device("meta"):
        plain, _ = build_backbone("resnet152_w1", image_size=224)
        sk, _ = build_backbone("resnet152_w1", image_size=224, sk_ratio=SK)
    assert count(sk) / count(plain) == pytest.approx(89 / 58, rel=0.01)


@pytest.mark.parametrize("sk_ratio", [0.0, SK])
@pytest.mark.parametrize("image_size", [32, 64])
def test_encoders_return_pooled_features(sk_ratio, image_size):
    encoder, dim = build_backbone(
        "resnet101_w1", image_size=image_size, sk_ratio=sk_ratio, zero_init_residual=False
    )
    encoder.eval()
    with torch.no_grad():
        features = encoder(torch.randn(2, 3, image_size, image_size))
    assert dim == 2048 and features.shape == (2, 2048)
    assert torch.isfinite(features).all()


def test_resnet_d_stem_and_shortcuts_only_with_selective_kernels():
    plain, _ = build_resnet_v2(50, small_stem=False, width=1)
    sk, _ = build_resnet_v2(50, small_stem=False, width=1, sk_ratio=SK)
    assert isinstance(plain.conv1, torch.nn.Conv2d) and plain.conv1.kernel_size == (7, 7)
    assert [m.out_channels for m in (sk.conv1.conv_a, sk.conv1.conv_b, sk.conv1.conv_c)] == [
        32,
        32,
        64,
    ]
    assert isinstance(sk.layer2[0].downsample[0], ResNetDPool)
    assert sk.layer2[0].downsample[1].stride == (1, 1)  # the pooling strides, not the 1x1
    assert plain.layer2[0].downsample[0].stride == (2, 2)
    assert isinstance(sk.layer3[5].conv2, SelectiveKernelConv)
    stem = torch.nn.Sequential(sk.conv1, sk.bn1, sk.maxpool)
    assert stem(torch.randn(1, 3, 64, 64)).shape == (1, 64, 16, 16)


def test_activation_checkpointing_finds_the_four_stages():
    encoder, _ = build_resnet_v2(50, small_stem=False, width=1, sk_ratio=SK)
    stages = checkpoint_stages(encoder)
    assert [len(stage) for stage in stages] == [3, 4, 6, 3]  # the deep stem is not a stage


def test_resnet_d_pool_averages_real_pixels_only_at_stride_one():
    x = torch.full((1, 2, 5, 5), 3.0)
    assert torch.equal(ResNetDPool(1)(x), x)  # TensorFlow's SAME pooling: no zeros averaged
    y = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])
    assert torch.equal(ResNetDPool(2)(y), expected)


def test_selective_kernel_mixes_the_two_streams_with_weights_summing_to_one():
    torch.manual_seed(0)
    layer = SelectiveKernelConv(8, 4, stride=2, sk_ratio=SK).eval()
    with torch.no_grad():
        # Both streams equal: whatever the mixing weights, the output is that stream.
        layer.conv.weight[4:] = layer.conv.weight[:4]
        x = torch.randn(3, 8, 10, 10)
        stream = torch.relu(layer.bn(layer.conv(x)))[:, :4]
        assert torch.allclose(layer(x), stream, atol=1e-6)
    assert layer.fuse.out_channels == 32  # max(4 x 0.0625, 32), the official minimum


def test_resnet50_with_selective_kernels_is_registered_at_widths_1_and_2(tmp_path):
    assert {"resnet50_sk_w1", "resnet50_sk_w2"} <= set(BACKBONES.names())
    with torch.device("meta"):  # 140M parameters: look, never allocate
        sk, dim = build_backbone("resnet50_sk_w2", image_size=224, width=2)
    assert dim == 4096 and isinstance(sk.layer1[0].conv2, SelectiveKernelConv)
    assert sk.layer1[0].conv2.fuse.out_channels == 32  # max(128 x 0.0625, 32)
    assert [len(stage) for stage in checkpoint_stages(sk)] == [3, 4, 6, 3]
    assert same_architecture(
        {"name": "resnet50_sk_w1", "width": 2}, {"name": "resnet50_sk_w2", "width": 2}
    )
    assert not same_architecture({"name": "resnet50_sk_w1"}, {"name": "resnet50_w1"})
    with pytest.raises(ConfigError, match=r"backbone.width=3: must be one of 1, 2 \(x1/x2\)"):
        build_backbone("resnet50_sk_w1", image_size=224, width=3)
    with pytest.raises(ConfigError, match=r"backbone.sk_ratio=0.0: must be a number in \(0, 1\)"):
        build_backbone("resnet50_sk_w1", image_size=224, sk_ratio=0.0)
    cfg = compose_config(["backbone=resnet50_sk_w2", "backbone.width=4"], tmp_path)
    with pytest.raises(ConfigError, match=r"backbone.width=4: must be one of 1, 2 \(x1/x2\)"):
        validate_config(cfg)
    validate_config(compose_config(["backbone=resnet50_sk_w2"], tmp_path))


def test_registered_names_widths_and_sk_ratio_are_checked():
    names = [f"resnet{d}_w{w}" for d in (101, 152) for w in (1, 2, 3)]
    assert set(names) <= set(BACKBONES.names())
    # The three names of a depth are one family: the width decides, as for resnet50_w1/2/4.
    assert same_architecture(
        {"name": "resnet152_w1", "width": 3}, {"name": "resnet152_w3", "width": 3}
    )
    with pytest.raises(ConfigError, match=r"backbone.width=4: must be one of 1, 2, 3"):
        build_backbone("resnet101_w1", image_size=224, width=4)
    with pytest.raises(ConfigError, match=r"backbone.sk_ratio=1.5"):
        build_backbone("resnet101_w1", image_size=224, sk_ratio=1.5)


def test_the_config_checks_refuse_a_bad_width_or_sk_ratio_before_any_work(tmp_path):
    cfg = compose_config(
        ["backbone=resnet152_w3", "backbone.width=4", "backbone.sk_ratio=2"], tmp_path
    )
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    assert "backbone.width=4: must be one of 1, 2, 3" in str(error.value)
    assert "backbone.sk_ratio=2: must be a number in [0, 1)" in str(error.value)
    validate_config(compose_config(["backbone=resnet152_w3", "backbone.sk_ratio=0.0625"], tmp_path))
