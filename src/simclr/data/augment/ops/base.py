"""What an augmentation operation is: its options with their rules, its random draws for a batch,
its batched float version, and (after the crop) its uint8 version on one PIL image.

Every operation draws its parameters for a batch of B images at once (:class:`Draw`); the
per-image pipeline draws a batch of one. So the per-image and batched pipelines share one
sampler per operation, and differ only in how the parameters are applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from PIL import Image
from torch import Tensor

from simclr import rules
from simclr.rules import Rule


class OptionValues(Protocol):
    """The value of every operation's options by name (what
    :class:`~simclr.data.augment.settings.AugmentSettings` holds)."""

    def __getattr__(self, name: str) -> object: ...


# Every concrete operation class, filled as their modules are imported (simclr.data.augment.ops).
REGISTERED: list[type[Operation]] = []

Params = dict[str, Tensor]  # one operation's parameters: each value has one row per image


@dataclass(frozen=True)
class Option:
    """An operation's option in ``data.augment``: its default and its rule."""

    default: object
    ok: Callable[[object], bool]
    allowed: str

    def rule(self, name: str) -> Rule:
        return Rule(f"data.augment.{name}", self.ok, self.allowed)


class Draw:
    """Random draws for ``batch`` images from ``generator`` on ``device`` (None: the device's
    global generator), one row per image."""

    def __init__(self, batch: int, device=None, generator: torch.Generator | None = None):
        self.batch, self.device, self.generator = batch, device, generator

    def rand(self, *shape: int) -> Tensor:
        """U(0, 1) of shape ``(batch, *shape)``."""
        return torch.rand(self.batch, *shape, device=self.device, generator=self.generator)

    def uniform(self, low: float, high: float, *shape: int) -> Tensor:
        """U(low, high) of shape ``(batch, *shape)``."""
        out = torch.empty(self.batch, *shape, device=self.device)
        return out.uniform_(low, high, generator=self.generator)

    def coin(self, probability: float) -> Tensor:
        """``(batch,)`` booleans, each True with ``probability``."""
        return self.rand() < probability


class Operation:
    """One augmentation step. A subclass names itself (``name``), lists its ``options``,
    and says where it acts in the pipeline (``position``, ascending) and where it draws in the
    batched pipeline's generator stream (``draw_rank``, ascending: the order in which the
    operations were added, so that a new one leaves the draws of existing settings unchanged;
    a new operation takes the next rank and draws even where it is off).
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, Option]] = {}
    position: ClassVar[int]
    draw_rank: ClassVar[int]
    # Crop and flip: cut by the crop-first workers, and per image by torchvision's transform.
    crop_stage: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTERED.append(cls)

    def __init__(self, settings: OptionValues, image_size: int):
        self.settings = settings
        self.image_size = image_size

    @classmethod
    def problems(cls, augment: Mapping) -> list[str]:
        """One line per option of ``augment`` (``data.augment``) that breaks its rule."""
        return option_problems(cls.options, augment)

    def sample_early(self, draw: Draw) -> Params:
        """Draws taken before every operation's :meth:`sample` (colour jitter's factors: the
        order of the first batched pipeline, kept so that its runs repeat)."""
        return {}

    def sample(self, draw: Draw, height: int, width: int) -> Params:
        """The parameters of ``draw.batch`` views of ``height x width`` images."""
        raise NotImplementedError

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Float images ``(B, 3, H, W)`` in [0, 1] -> the batch with the operation applied
        (or not, per image, as ``params`` say)."""
        raise NotImplementedError

    def apply_pil(self, image: Image.Image, params: Params) -> Image.Image:
        """The operation on one uint8 RGB image, with its row of the parameters (after the
        crop stage only)."""
        raise NotImplementedError

    def per_image(self) -> Callable:
        """The crop stage's torchvision transform for one image (PIL or tensor)."""
        raise NotImplementedError


def option_problems(options: Mapping[str, Option], augment: Mapping) -> list[str]:
    """One line per value of ``augment`` named in ``options`` that breaks its rule."""
    found = [
        option.rule(key).problem(augment[key]) for key, option in options.items() if key in augment
    ]
    return [problem for problem in found if problem]


def probability(default: float) -> Option:
    """An option that is the probability of applying an operation to an image."""
    return Option(default, rules.probability, "a probability in [0, 1]")
