"""SimCLR v2's ResNets: ResNet-101 and -152 at widths 1x to 3x with optional selective-kernel
convolutions, and ResNet-50 with selective kernels at 1x and 2x (Chen et al. 2020, "Big
Self-Supervised Models are Strong Semi-Supervised Learners", arXiv:2006.10029; SK: Li et al.
2019, arXiv:1903.06586).

Registered names (each the name of its config file, ``configs/backbone/<name>.yaml``):
``resnet101_w1``, ``resnet101_w2``, ``resnet101_w3``, ``resnet152_w1``, ``resnet152_w2``,
``resnet152_w3``; ``resnet50_sk_w1``, ``resnet50_sk_w2``. The names of a family build the
same network, and ``width`` (1, 2 or 3; 1 or 2 for the ResNet-50 with SK, the widths of the
paper's table 1) decides, as for ``resnet50_w1/_w2/_w4``. ``sk_ratio`` (0: plain 3x3
convolutions, the ResNet-101/152 default; the paper's 0.0625, the ResNet-50 SK's default, which
must be above 0: the plain ResNet-50 is ``resnet50_w1/_w2``) switches on what the official code
(google-research/simclr, ``tf2/resnet.py``) does with selective kernels:

- every bottleneck's 3x3 convolution becomes a :class:`SelectiveKernelConv`;
- the ImageNet stem is ResNet-D's (He et al. 2019, arXiv:1812.01187): three 3x3 convolutions
  (64w/2, 64w/2, 64w channels, the first of stride 2) instead of one 7x7;
- each projection shortcut average-pools before its 1x1 convolution (ResNet-D), which then
  has stride 1.

Without SK the network is the plain bottleneck ResNet whose channels are all multiplied by
``width``. The parameter counts equal the official checkpoint table's (``tests/models/
test_resnet_v2.py``); module names follow torchvision's (``conv1``, ``bn1``, ``layer1`` to
``layer4``), so activation checkpointing finds the four stages.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from simclr.models.backbones import BACKBONES, use_small_stem
from simclr.models.resnet_blocks import ResNetTrunk
from simclr.rules import Rule, is_number

# Bottleneck blocks per stage, by depth. The ResNet-50 built here is the one with selective
# kernels; the plain ResNet-50s are those of backbones.py.
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
V2_WIDTHS = (1, 2, 3)
V2_WIDTH = Rule(
    "backbone.width",
    lambda v: v in V2_WIDTHS,
    f"one of {', '.join(map(str, V2_WIDTHS))} (x1/x2/x3) for SimCLR v2's ResNet-101/152",
)
SK_RATIO = Rule(
    "backbone.sk_ratio",
    lambda v: is_number(v) and 0 <= v < 1,
    "a number in [0, 1): 0 for plain 3x3 convolutions, 0.0625 for SimCLR v2's selective kernels",
)
# SimCLR v2's sk_ratio (the official --sk_ratio for its SK checkpoints).
PAPER_SK_RATIO = 0.0625
# SimCLR v2's table 1 has the ResNet-50 with selective kernels at 1x and 2x.
R50_SK_WIDTHS = (1, 2)
R50_SK_WIDTH = Rule(
    "backbone.width",
    lambda v: v in R50_SK_WIDTHS,
    f"one of {', '.join(map(str, R50_SK_WIDTHS))} (x1/x2) for SimCLR v2's ResNet-50 with "
    "selective kernels",
)
SELECTIVE_KERNELS = Rule(
    "backbone.sk_ratio",
    lambda v: is_number(v) and 0 < v < 1,
    "a number in (0, 1) for the ResNet-50 with selective kernels (SimCLR v2's 0.0625; the "
    "plain ResNet-50 is resnet50_w1/_w2)",
)
# The official selective kernel's fusion layer never has fewer channels than this.
SK_MIN_DIM = 32


class SelectiveKernelConv(nn.Module):
    """A 3x3 convolution of two streams mixed per channel by attention: ``(B, C_in, H, W) ->
    (B, C_out, H / stride, W / stride)``, BatchNorm and ReLU included.

    As the official SimCLR v2 code: both streams are 3x3 (one convolution with ``2 C_out``
    outputs, split in two), each followed by BatchNorm and ReLU; their sum, averaged over
    space, passes a 1x1 convolution to ``max(C_out * sk_ratio, 32)`` channels, BatchNorm,
    ReLU and a 1x1 convolution to ``2 C_out`` logits; a softmax over the two streams weights
    each channel of each stream.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, sk_ratio: float):
        super().__init__()
        self.out_ch = out_ch
        self.conv = nn.Conv2d(in_ch, 2 * out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2 * out_ch)
        mid_ch = max(int(out_ch * sk_ratio), SK_MIN_DIM)
        self.fuse = nn.Conv2d(out_ch, mid_ch, 1, bias=False)
        self.fuse_bn = nn.BatchNorm2d(mid_ch)
        self.select = nn.Conv2d(mid_ch, 2 * out_ch, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        streams = F.relu(self.bn(self.conv(x))).unflatten(1, (2, self.out_ch))  # B,2,C,H,W
        summary = streams.sum(1).mean((2, 3), keepdim=True)  # B,C,1,1
        logits = self.select(F.relu(self.fuse_bn(self.fuse(summary))))
        weights = logits.unflatten(1, (2, self.out_ch)).softmax(dim=1)  # B,2,C,1,1
        return (streams * weights).sum(1)


class ResNetDPool(nn.Module):
    """ResNet-D's average pooling in front of a projection shortcut's 1x1 convolution, as the
    official code pads it: a 2x2 window, one row and column of padding at the bottom and
    right; at stride 2 the padding counts as zeros (it is never reached on even sizes), at
    stride 1 only real pixels are averaged (TensorFlow's ``SAME`` pooling)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        padded = F.pad(x, (0, 1, 0, 1))
        if self.stride > 1:
            return F.avg_pool2d(padded, 2, self.stride)
        ones = F.pad(x.new_ones(1, 1, *x.shape[-2:]), (0, 1, 0, 1))
        return F.avg_pool2d(padded, 2, 1) / F.avg_pool2d(ones, 2, 1)


class BottleneckV2(nn.Module):
    """1x1 reduce, 3x3 (or a selective kernel), 1x1 expand by 4, with a shortcut that is a
    1x1 projection where the shape changes (average pooling first with SK, as ResNet-D)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, sk_ratio: float):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        if sk_ratio > 0:
            # BatchNorm and ReLU happen inside, before the streams are mixed.
            self.conv2 = SelectiveKernelConv(planes, planes, stride, sk_ratio)
            self.bn2 = None
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        if stride == 1 and in_ch == out_ch:
            self.downsample = nn.Identity()
        elif sk_ratio > 0:
            self.downsample = nn.Sequential(
                ResNetDPool(stride), nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)
            )
        else:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    @property
    def residual_norm(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        if self.bn2 is not None:
            out = F.relu(self.bn2(out))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.downsample(x))


class DeepStem(nn.Module):
    """ResNet-D's stem convolutions: 3x3 stride 2 to ``channels / 2``, BatchNorm, ReLU, 3x3 to
    ``channels / 2``, BatchNorm, ReLU, 3x3 to ``channels`` (its BatchNorm is the network's
    ``bn1``). A module of its own, not a ``Sequential``, so it is not taken for a stage."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.conv_a = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(half)
        self.conv_b = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(half)
        self.conv_c = nn.Conv2d(half, channels, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn_a(self.conv_a(x)))
        x = F.relu(self.bn_b(self.conv_b(x)))
        return self.conv_c(x)


class ResNetV2(ResNetTrunk):
    """SimCLR v2's ResNet of ``depth`` 50, 101 or 152; images ``(B, 3, H, W)`` -> the pooled
    representation ``(B, 2048 * width)``."""

    def __init__(
        self,
        depth: int,
        width: int,
        small_stem: bool,
        sk_ratio: float = 0.0,
        zero_init_residual: bool = True,
    ):
        super().__init__()
        stem_ch = 64 * width
        # The official CIFAR stem with or without SK; at 224 px, SK models have the deep stem.
        deep = DeepStem(stem_ch) if sk_ratio > 0 and not small_stem else None
        self.add_stem(stem_ch, small_stem, deep)
        self.add_stages(
            lambda in_ch, planes, stride: BottleneckV2(in_ch, planes, stride, sk_ratio),
            STAGE_BLOCKS[depth],
            stem_ch,
            lambda index: 64 * 2**index * width,
        )
        self.initialise(zero_init_residual)


def build_resnet_v2(
    depth: int,
    small_stem: bool,
    width: int = 1,
    sk_ratio: float = 0.0,
    zero_init_residual: bool = True,
) -> tuple[ResNetV2, int]:
    """``(encoder, feature_dim)`` of SimCLR v2's ResNet of ``depth`` (50, 101 or 152)."""
    V2_WIDTH.check(width)
    SK_RATIO.check(sk_ratio)
    model = ResNetV2(depth, width, small_stem, sk_ratio, zero_init_residual)
    return model, model.feature_dim


def _registered(depth: int):
    def build(
        image_size: int,
        small_stem: bool | None = None,
        width: int = 1,
        sk_ratio: float = 0.0,
        zero_init_residual: bool = True,
    ):
        small_stem = use_small_stem(image_size, small_stem)
        return build_resnet_v2(depth, small_stem, width, sk_ratio, zero_init_residual)

    build.__doc__ = f"SimCLR v2's ResNet-{depth} (width x1/x2/x3, optional selective kernels)."
    return build


# The registered builders, one per depth (101, 152).
V2_BUILDERS = []
for _depth in (101, 152):
    V2_BUILDERS.append(_registered(_depth))
    for _width in V2_WIDTHS:
        BACKBONES.register(f"resnet{_depth}_w{_width}", rules=[V2_WIDTH, SK_RATIO])(V2_BUILDERS[-1])


def resnet50_sk(
    image_size: int,
    small_stem: bool | None = None,
    width: int = 1,
    sk_ratio: float = PAPER_SK_RATIO,
    zero_init_residual: bool = True,
) -> tuple[ResNetV2, int]:
    """SimCLR v2's ResNet-50 with selective kernels (width x1/x2: 35M / 140M parameters, the
    paper's table 1)."""
    R50_SK_WIDTH.check(width)
    SELECTIVE_KERNELS.check(sk_ratio)
    small_stem = use_small_stem(image_size, small_stem)
    return build_resnet_v2(50, small_stem, width, sk_ratio, zero_init_residual)


for _width in R50_SK_WIDTHS:
    BACKBONES.register(f"resnet50_sk_w{_width}", rules=[R50_SK_WIDTH, SELECTIVE_KERNELS])(
        resnet50_sk
    )
