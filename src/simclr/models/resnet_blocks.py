"""The ResNet parts built here: basic and bottleneck blocks, the trunk every ResNet of this
project shares (stem, four stages, average pooling, He and zero-residual initialisation), and
the ResNet whose every layer's channels are scaled by a width multiplier (the paper's wide
ResNet-50, the CPU-sized slim ResNet-18). The registry and builders: :mod:`simclr.models.backbones`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def _conv3x3(in_ch: int, out_ch: int, stride: int, depthwise: bool) -> nn.Conv2d:
    # A depth-wise 3x3 cannot change the channel count; every 3x3 in these blocks is used
    # where it does not, except the basic block's first, which keeps an ordinary conv.
    groups = in_ch if depthwise and in_ch == out_ch else 1
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


class _ResidualBlock(nn.Module):
    """Convolutions ``conv1 .. convN``, each followed by BatchNorm ``bn1 .. bnN`` and a ReLU
    (the last ReLU after the shortcut is added), with an identity or 1x1 projection shortcut
    ``downsample``. The names are those of torchvision's blocks and of every checkpoint."""

    expansion = 1

    def __init__(self, convs: Sequence[nn.Conv2d], in_ch: int, stride: int):
        super().__init__()
        for index, conv in enumerate(convs, start=1):
            setattr(self, f"conv{index}", conv)
            setattr(self, f"bn{index}", nn.BatchNorm2d(conv.out_channels))
        self.depth = len(convs)
        self.downsample = _shortcut(in_ch, convs[-1].out_channels, stride)

    @property
    def residual_norm(self) -> nn.BatchNorm2d:
        """The residual branch's last BatchNorm (zero-initialised: the block starts as identity)."""
        return getattr(self, f"bn{self.depth}")

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for index in range(1, self.depth + 1):
            out = getattr(self, f"bn{index}")(getattr(self, f"conv{index}")(out))
            if index < self.depth:
                out = F.relu(out)
        return F.relu(out + self.downsample(x))


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_ch: int, planes: int, stride: int, depthwise: bool = False):
        convs = [_conv3x3(in_ch, planes, stride, depthwise), _conv3x3(planes, planes, 1, depthwise)]
        super().__init__(convs, in_ch, stride)


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3 (optionally depth-wise), 1x1 expand by 4, with a shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, depthwise: bool = False):
        convs = [
            nn.Conv2d(in_ch, planes, 1, bias=False),
            _conv3x3(planes, planes, stride, depthwise),
            nn.Conv2d(planes, planes * self.expansion, 1, bias=False),
        ]
        super().__init__(convs, in_ch, stride)


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
