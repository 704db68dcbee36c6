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

A backbone description (a builder's keyword arguments but the image size, as configs and
checkpoints store it) is read here too: :func:`resolve_stem` writes out what the image size
decides, :func:`same_architecture` tells two descriptions of one architecture from two
architectures, and :func:`check_backbone` refuses a requested backbone that stored weights do
not fit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torchvision
from torch import nn

from simclr.errors import ConfigError
from simclr.models.resnet_blocks import BasicBlock, Bottleneck, ScaledResNet
from simclr.registry import Registry
from simclr.rules import KnownOptions, Rule, fraction, state

BackboneBuilder = Callable[..., tuple[nn.Module, int]]


def _options_rule(name: str, builder: BackboneBuilder) -> list[KnownOptions]:
    """The config checks' rule of the ``backbone`` node when it names ``name``: the builder's
    keyword arguments but the image size (``data.image_size``'s)."""
    options = [p for p in inspect.signature(builder).parameters if p != "image_size"]
    return [KnownOptions("backbone", f"backbone {name!r}", ("name", *options))]


BACKBONES: Registry[BackboneBuilder] = state(
    Registry("backbone", "backbone.name", entry_rules=_options_rule)
)

SMALL_IMAGE_MAX_SIZE = 32
# The rules of each builder's options, stated with its registration.
FIXED_WIDTH = Rule(
    "backbone.width",
    lambda v: v == 1,
    "1 for torchvision's fixed-width ResNets (resnet18_slim and resnet50_w1/_w2/_w4 scale "
    "channels)",
)
NOT_DEPTHWISE = Rule(
    "backbone.depthwise",
    lambda v: not v,
    "false for torchvision's fixed-width ResNets (resnet50_w1 has depth-wise convolutions)",
)
WIDE_RESNET_WIDTHS = (1, 2, 4)
WIDE_RESNET_WIDTH = Rule(
    "backbone.width",
    lambda v: v in WIDE_RESNET_WIDTHS,
    f"one of {', '.join(map(str, WIDE_RESNET_WIDTHS))} (x1/x2/x4) for the wide ResNet-50",
)
SLIM_WIDTH = Rule("backbone.width", fraction, "in (0, 1] for the slim ResNet-18")


def use_small_stem(image_size: int, small_stem: bool | None) -> bool:
    """The small-image stem is used for images of 32 px or less, unless forced either way."""
    if small_stem is None:
        return image_size <= SMALL_IMAGE_MAX_SIZE
    return bool(small_stem)


def has_stem_choice(name: str) -> bool:
    """Whether the backbone ``name`` chooses its stem by image size (the ResNets built here; a
    timm model has its own)."""
    return name in BACKBONES and "small_stem" in inspect.signature(BACKBONES[name]).parameters


def build_backbone(name: str, image_size: int, **options) -> tuple[nn.Module, int]:
    """Build the encoder registered as ``name`` for images of ``image_size`` px; returns
    ``(encoder, feature_dim)``.

    ``options`` go to the builder (``small_stem``, ``width``, ``depthwise``,
    ``zero_init_residual``; timm's ``model``, ``pretrained``, ``model_args``). An unknown name
    raises a :class:`~simclr.errors.ConfigError` that lists the registered ones.
    """
    return BACKBONES[name](image_size=image_size, **options)


# Options that only choose how fresh weights are initialised (``pretrained``: timm's published
# weights): loaded weights make them moot, so two backbone descriptions that differ only in them
# describe the same architecture.
INIT_ONLY_OPTIONS = ("zero_init_residual", "pretrained")


def resolve_stem(backbone: dict, image_size: int) -> dict:
    """``backbone`` with what the image size decides written out: ``small_stem`` true or false
    for a backbone that chooses its stem (the stem a checkpoint's weights were made for), and
    ``pretrained`` false, since weights about to be loaded replace timm's published ones."""
    backbone = dict(backbone)
    if has_stem_choice(backbone.get("name")):
        backbone["small_stem"] = use_small_stem(image_size, backbone.get("small_stem"))
    if "pretrained" in backbone:
        backbone["pretrained"] = False
    return backbone


def same_architecture(first: dict, second: dict) -> bool:
    """Whether two backbone descriptions build the same architecture: equal but for
    :data:`INIT_ONLY_OPTIONS`, two names (or aliases) of one builder being one name."""

    def architecture(backbone: dict) -> dict:
        described = {k: v for k, v in backbone.items() if k not in INIT_ONLY_OPTIONS}
        if described.get("name") in BACKBONES:
            described["name"] = BACKBONES[described["name"]]
        return described

    return architecture(first) == architecture(second)


def describe_backbone(backbone: dict) -> str:
    """``resnet18_slim (width=0.25, depthwise=False, small_stem=True)``"""
    options = ", ".join(f"{k}={v}" for k, v in backbone.items() if k != "name")
    return f"{backbone.get('name')} ({options})"


def check_backbone(requested: dict | None, stored: dict, image_size: int, source) -> None:
    """A :class:`ConfigError` unless ``requested`` (a ``backbone=`` choice; None:
    no choice) builds the architecture of ``stored``, the description of the weights in
    ``source``, made for images of ``image_size`` px."""
    if requested is None:
        return
    wanted = resolve_stem(requested, image_size)
    if not same_architecture(wanted, stored):
        raise ConfigError(
            f"backbone is {describe_backbone(wanted)}, but {source} holds a "
            f"{describe_backbone(stored)} encoder; drop the backbone override to use the "
            "checkpoint's"
        )


def _resnet_builder(make: Callable[..., tuple[nn.Module, int]], default_width: float, doc: str):
    """A builder with the options every ResNet built here takes: ``make(width, small_stem,
    depthwise, zero_init_residual)`` gives ``(encoder, feature_dim)``; the image size
    decides the stem unless ``small_stem`` is given."""

    def build(
        image_size: int,
        small_stem: bool | None = None,
        width: float = default_width,
        depthwise: bool = False,
        zero_init_residual: bool = True,
    ) -> tuple[nn.Module, int]:
        return make(width, use_small_stem(image_size, small_stem), depthwise, zero_init_residual)

    build.__doc__ = doc
    return build


def _torchvision_resnet(name: str):
    def make(width: float, small_stem: bool, depthwise: bool, zero_init_residual: bool):
        FIXED_WIDTH.check(width)
        NOT_DEPTHWISE.check(depthwise)
        model = getattr(torchvision.models, name)(
            weights=None, zero_init_residual=zero_init_residual
        )
        feature_dim = model.fc.in_features
        model.fc = nn.Identity()
        if small_stem:
            model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, 1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        return model, feature_dim

    return make


for _name in ("resnet18", "resnet34", "resnet50"):
    _builder = _resnet_builder(
        _torchvision_resnet(_name), 1.0, f"torchvision's {_name} without its classifier."
    )
    BACKBONES.register(_name, rules=[FIXED_WIDTH, NOT_DEPTHWISE])(_builder)


def _wide_resnet50(width: int, small_stem: bool, depthwise: bool, zero_init_residual: bool):
    WIDE_RESNET_WIDTH.check(width)
    model = ScaledResNet(Bottleneck, (3, 4, 6, 3), width, small_stem, depthwise, zero_init_residual)
    return model, model.feature_dim


def _slim_resnet18(width: float, small_stem: bool, depthwise: bool, zero_init_residual: bool):
    SLIM_WIDTH.check(width)
    model = ScaledResNet(BasicBlock, (2, 2, 2, 2), width, small_stem, depthwise, zero_init_residual)
    return model, model.feature_dim


wide_resnet50 = _resnet_builder(
    _wide_resnet50, 1, "The paper's ResNet-50 (width x1, x2, x4: 24M, 94M, 375M parameters)."
)
slim_resnet18 = _resnet_builder(
    _slim_resnet18,
    0.25,
    "ResNet-18 with every layer's channels scaled by ``0 < width <= 1`` (CPU-sized).",
)
BACKBONES.register("resnet50_w1", "wide_resnet50", rules=[WIDE_RESNET_WIDTH])(wide_resnet50)
BACKBONES.register("resnet50_w2", rules=[WIDE_RESNET_WIDTH])(wide_resnet50)
BACKBONES.register("resnet50_w4", rules=[WIDE_RESNET_WIDTH])(wide_resnet50)
BACKBONES.register("resnet18_slim", "slim_resnet18", rules=[SLIM_WIDTH])(slim_resnet18)
