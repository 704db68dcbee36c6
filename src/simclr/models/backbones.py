"""Backbone registry: every encoder the pre-training and fine-tuning modules can use.

A builder returns ``(encoder, feature_dim)``: the encoder maps images ``(B, 3, H, W)`` to the
representation ``h`` of shape ``(B, feature_dim)`` (global average pooling output, no
classifier), which is what fine-tuning and linear evaluation use (SimCLR, section 2.1).

Names (each the name of its config file, ``configs/backbone/<name>.yaml``):
- ``resnet18``, ``resnet34``, ``resnet50``: torchvision's ResNets (their parameter names, so an
  exported encoder loads into a plain torchvision model).
- ``resnet50_w1``, ``resnet50_w2``, ``resnet50_w4``: the paper's ResNet-50 (1x, 2x, 4x), where
  the width multiplier scales the channels of every layer, stem included, with ordinary 3x3
  convolutions (24M / 94M / 375M parameters). The three names build the same family; the
  ``width`` option (1, 2 or 4) decides. ``depthwise=True`` makes the 3x3 convolutions
  depth-wise, as the project this framework grew from allowed (about half the parameters at
  width >= 2).
- ``resnet18_slim``: a ResNet-18 with every layer's channels scaled by a width below 1, for
  quick runs on a CPU.

Checkpoints and exported encoders written before the names followed the config files store
``wide_resnet50`` and ``slim_resnet18``; those names stay valid as aliases.

Any model of the timm library is a backbone too (``timm``, :mod:`simclr.models.timm_backbones`).

Every builder takes the image size; the ResNets' use it to choose their stem: images of 32 px or
less get the small-image stem (3x3 stride-1 convolution, no max-pool) unless ``small_stem``
says otherwise. ``zero_init_residual`` (the official code's default) starts the
last BatchNorm scale of every residual branch at zero, so that each block starts as the
identity (Goyal et al., 2017).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from simclr.errors import ConfigError
from simclr.registry import Registry
from simclr.rules import Rule

BackboneBuilder = Callable[..., tuple[nn.Module, int]]

BACKBONES: Registry[BackboneBuilder] = Registry("backbone", "backbone.name")

SMALL_IMAGE_MAX_SIZE = 32
WIDE_RESNET_WIDTHS = (1, 2, 4)
WIDE_RESNET_WIDTH = Rule(
    "backbone.width",
    lambda v: v in WIDE_RESNET_WIDTHS,
    f"one of {', '.join(map(str, WIDE_RESNET_WIDTHS))} (x1/x2/x4) for the wide ResNet-50",
)


# Options that only choose how fresh weights are initialised (``pretrained``: timm's published
# weights): loaded weights make them moot, so two backbone descriptions that differ only in them
# describe the same architecture.
INIT_ONLY_OPTIONS = ("zero_init_residual", "pretrained")


def architecture(backbone: dict) -> dict:
    """``backbone`` (build_backbone's keyword arguments) without :data:`INIT_ONLY_OPTIONS`, and
    with the builder its name (or alias) chooses in place of the name: two names of one builder
    with the same options are one architecture."""
    described = {k: v for k, v in backbone.items() if k not in INIT_ONLY_OPTIONS}
    if described.get("name") in BACKBONES:
        described["name"] = BACKBONES[described["name"]]
    return described


def describe_backbone(backbone: dict) -> str:
    """``resnet18_slim (width=0.25, depthwise=False, small_stem=True)``"""
    options = ", ".join(f"{k}={v}" for k, v in backbone.items() if k != "name")
    return f"{backbone.get('name')} ({options})"


def use_small_stem(image_size: int, small_stem: bool | None) -> bool:
    """The small-image stem is used for images of 32 px or less, unless forced either way."""
    if small_stem is None:
        return image_size <= SMALL_IMAGE_MAX_SIZE
    return bool(small_stem)


def has_stem_choice(name: str) -> bool:
    """Whether the backbone ``name`` chooses its stem by image size (the ResNets built here; a
    timm model has its own)."""
    return name in BACKBONES and "small_stem" in inspect.signature(BACKBONES[name]).parameters


def resolved(backbone: dict, image_size: int) -> dict:
    """``backbone`` with what the image size decides written out: ``small_stem`` true or false
    for a backbone that chooses its stem (the stem a checkpoint's weights were made for), and
    ``pretrained`` false, since weights about to be loaded replace timm's published ones."""
    backbone = dict(backbone)
    if has_stem_choice(backbone.get("name")):
        backbone["small_stem"] = use_small_stem(image_size, backbone.get("small_stem"))
    if "pretrained" in backbone:
        backbone["pretrained"] = False
    return backbone


def build_backbone(name: str, image_size: int, **options) -> tuple[nn.Module, int]:
    """Build the encoder registered as ``name`` for images of ``image_size`` px; returns
    ``(encoder, feature_dim)``.

    ``options`` go to the builder (``small_stem``, ``width``, ``depthwise``,
    ``zero_init_residual``; timm's ``model``, ``pretrained``, ``model_args``). An unknown name
    raises a :class:`~simclr.errors.ConfigError` that lists the registered ones.
    """
    return BACKBONES[name](image_size=image_size, **options)


def _headless_torchvision(model: torchvision.models.ResNet, small_stem: bool):
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    if small_stem:
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model, feature_dim


def _torchvision_builder(name: str) -> BackboneBuilder:
    def build(
        image_size: int,
        small_stem: bool | None = None,
        width: float = 1.0,
        depthwise: bool = False,
        zero_init_residual: bool = True,
    ):
        if width != 1 or depthwise:
            raise ConfigError(
                f"backbone {name!r} is torchvision's fixed-width ResNet: width must be 1 and "
                "depthwise false (use resnet50_w1 or resnet18_slim to scale channels)"
            )
        model = getattr(torchvision.models, name)(
            weights=None, zero_init_residual=zero_init_residual
        )
        return _headless_torchvision(model, use_small_stem(image_size, small_stem))

    build.__doc__ = f"torchvision's {name} without its classifier."
    return build


for _name in ("resnet18", "resnet34", "resnet50"):
    BACKBONES.register(_name)(_torchvision_builder(_name))


def _conv3x3(in_ch: int, out_ch: int, stride: int, depthwise: bool) -> nn.Conv2d:
    # A depth-wise 3x3 cannot change the channel count; every 3x3 in these blocks is used
    # where it does not, except the basic block's first, which keeps an ordinary conv.
    groups = in_ch if depthwise and in_ch == out_ch else 1
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, depthwise: bool = False):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, planes, stride, depthwise)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1, depthwise)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(in_ch, planes, stride)

    @property
    def residual_norm(self) -> nn.BatchNorm2d:
        """The residual branch's last BatchNorm (zero-initialised: the block starts as identity)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (optionally depth-wise), 1x1 expand by 4, with a shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, depthwise: bool = False):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, depthwise)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    @property
    def residual_norm(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.downsample(x))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
    )


class ResNetTrunk(nn.Module):
    """What every ResNet built here shares after its stem (``conv1``, ``bn1``, ``maxpool``,
    set by the subclass): four stages of residual blocks (``layer1``...``layer4``), global
    average pooling, He initialisation, and zero-initialised residual branches."""

    def add_stem(self, channels: int, small_stem: bool, large: nn.Module | None = None) -> None:
        """``conv1``, ``bn1`` and ``maxpool``: for small images a 3x3 convolution at stride 1
        and no pooling (the paper's CIFAR stem); otherwise ``large`` (default: a 7x7
        convolution at stride 2) followed by a 3x3 max-pool at stride 2."""
        if small_stem:
            self.conv1 = nn.Conv2d(3, channels, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = large or nn.Conv2d(3, channels, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)

    def add_stages(
        self,
        make_block: Callable[[int, int, int], nn.Module],
        layers: Sequence[int],
        in_ch: int,
        planes: Callable[[int], int],
    ) -> None:
        """``make_block(in_ch, planes, stride)``; stage ``i`` has ``layers[i]`` blocks of
        ``planes(i)`` channels; the first block of every stage after the first halves the
        resolution."""
        stages = []
        for index, num_blocks in enumerate(layers):
            blocks = []
            for b in range(num_blocks):
                stride = 2 if index > 0 and b == 0 else 1
                blocks.append(make_block(in_ch, planes(index), stride))
                in_ch = planes(index) * blocks[-1].expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_ch

    def initialise(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each residual branch, so every block starts as identity.
        for module in self.modules() if zero_init_residual else ():
            norm = getattr(module, "residual_norm", None)
            if norm is not None:
                nn.init.zeros_(norm.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class ScaledResNet(ResNetTrunk):
    """A ResNet whose every layer's channel count is multiplied by ``width``.

    Module names follow torchvision's (``conv1``, ``bn1``, ``layer1``...``layer4``), with
    ``fc`` absent: the output is the pooled representation of size ``feature_dim``.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        width: float,
        small_stem: bool,
        depthwise: bool = False,
        zero_init_residual: bool = True,
    ):
        super().__init__()
        stem_ch = max(1, round(64 * width))
        self.add_stem(stem_ch, small_stem)
        self.add_stages(
            lambda in_ch, planes, stride: block(in_ch, planes, stride, depthwise),
            layers,
            stem_ch,
            lambda index: max(1, round(64 * 2**index * width)),
        )
        self.initialise(zero_init_residual)


@BACKBONES.register("resnet50_w1", "wide_resnet50")
@BACKBONES.register("resnet50_w2")
@BACKBONES.register("resnet50_w4")
def wide_resnet50(
    image_size: int,
    small_stem: bool | None = None,
    width: int = 1,
    depthwise: bool = False,
    zero_init_residual: bool = True,
):
    """The paper's ResNet-50 (width x1, x2, x4: 24M, 94M, 375M parameters)."""
    WIDE_RESNET_WIDTH.check(width)
    small_stem = use_small_stem(image_size, small_stem)
    model = ScaledResNet(Bottleneck, (3, 4, 6, 3), width, small_stem, depthwise, zero_init_residual)
    return model, model.feature_dim


@BACKBONES.register("resnet18_slim", "slim_resnet18")
def slim_resnet18(
    image_size: int,
    small_stem: bool | None = None,
    width: float = 0.25,
    depthwise: bool = False,
    zero_init_residual: bool = True,
):
    """ResNet-18 with every layer's channels scaled by ``0 < width <= 1`` (CPU-sized)."""
    if not 0 < width <= 1:
        raise ConfigError(f"resnet18_slim width must be in (0, 1], got {width!r}")
    small_stem = use_small_stem(image_size, small_stem)
    model = ScaledResNet(BasicBlock, (2, 2, 2, 2), width, small_stem, depthwise, zero_init_residual)
    return model, model.feature_dim
