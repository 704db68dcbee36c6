"""Colour jitter of strength s (Chen et al., 2020, appendix A): brightness, contrast and
saturation factors ~ U(1 - 0.8s, 1 + 0.8s), a hue shift ~ U(-0.2s, 0.2s) turns, in a random
order, with probability ``color_prob`` (0.8); s = ``color_strength``.

``brightness`` chooses between the two brightness changes of the official code
(google-research/simclr): ``multiplicative`` (the default; SimCLR v2's ``random_brightness``,
``impl='simclrv2'``, since commit 244e712) scales the image by the factor above;
``additive`` (SimCLR v1's: the first release, be133b3, ``data_util.color_jitter_rand`` calls
``tf.image.random_brightness(x, max_delta=brightness)`` with ``brightness = 0.8 * strength``)
adds one delta ~ U(-0.8s, 0.8s) to every pixel. Either way the image is clipped to [0, 1] after
each adjustment, as the official code does.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from PIL import Image, ImageStat
from torch import Tensor

from simclr import rules
from simclr.data.augment.ops.base import (
    Draw,
    Operation,
    Option,
    OptionValues,
    Params,
    probability,
)
from simclr.data.augment.ops.grayscale import GRAY_WEIGHTS, grayscale

# The four adjustments, in the index order of torchvision's ColorJitter.
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
HUE_LEVELS = 255  # PIL's HSV mode: hue 0..255, where 255 is a full turn


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    return _blend(images, torch.zeros_like(images), factor)


def shift_brightness(images: Tensor, delta: Tensor) -> Tensor:
    """SimCLR v1's brightness (``tf.image.random_brightness``): ``images + delta`` per image,
    clipped to [0, 1]."""
    return (images + delta.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    return _blend(images, grayscale(images), factor)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of float RGB images by ``shift`` (in turns, per image)."""
    r, g, b = images.unbind(dim=1)
    maximum, _ = images.max(dim=1)
    minimum, _ = images.min(dim=1)
    chroma = maximum - minimum
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(
        maximum == r,
        ((g - b) / safe) % 6,
        torch.where(maximum == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    # HSV -> RGB with value = maximum and chroma unchanged.
    k = (
        torch.tensor([5.0, 3.0, 1.0], device=images.device).view(1, 3, 1, 1) + hue[:, None] * 6
    ) % 6
    weight = (torch.minimum(k, 4 - k)).clamp(0, 1)
    return maximum[:, None] - chroma[:, None] * weight


def _blend_pil(image: Image.Image, factor: float, constant: float | None) -> Image.Image:
    """``factor * image + (1 - factor) * other`` of a uint8 RGB image, rounded and clipped, in
    one pass of PIL's colour matrix; ``other`` is the grey level ``constant``, or where None
    the pixel's own luma."""
    rows = []
    for channel in range(3):
        if constant is None:
            row = [(1 - factor) * weight for weight in GRAY_WEIGHTS] + [0.0]
        else:
            row = [0.0, 0.0, 0.0, (1 - factor) * constant]
        row[channel] += factor
        rows += row
    return image.convert("RGB", tuple(rows))


def brightness_pil(image: Image.Image, factor: float) -> Image.Image:
    return _blend_pil(image, factor, 0.0)


def shift_brightness_pil(image: Image.Image, delta: float) -> Image.Image:
    """``image + delta`` (delta in [0, 1] units) of a uint8 RGB image, rounded and clipped."""
    offset = delta * 255
    matrix = (1.0, 0.0, 0.0, offset, 0.0, 1.0, 0.0, offset, 0.0, 0.0, 1.0, offset)
    return image.convert("RGB", matrix)


def contrast_pil(image: Image.Image, factor: float) -> Image.Image:
    means = ImageStat.Stat(image).mean
    mean = sum(w * m for w, m in zip(GRAY_WEIGHTS, means, strict=True))
    return _blend_pil(image, factor, mean)


def saturation_pil(image: Image.Image, factor: float) -> Image.Image:
    return _blend_pil(image, factor, None)


def shift_hue_pil(image: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue of a uint8 RGB image by ``shift`` turns, through PIL's 8-bit HSV."""
    steps = round(shift * HUE_LEVELS)
    hue = [(level + steps) % HUE_LEVELS for level in range(256)]
    return image.convert("HSV").point(hue + list(range(256)) * 2).convert("RGB")


BATCHED = {
    BRIGHTNESS: adjust_brightness,
    CONTRAST: adjust_contrast,
    SATURATION: adjust_saturation,
    HUE: adjust_hue,
}
ON_PIL = {
    BRIGHTNESS: brightness_pil,
    CONTRAST: contrast_pil,
    SATURATION: saturation_pil,
    HUE: shift_hue_pil,
}

# data.augment.brightness: how the brightness adjustment acts (see the module docstring).
BRIGHTNESS_FORMS = ("multiplicative", "additive")


class ColorJitter(Operation):
    name = "color_jitter"
    options: ClassVar[dict[str, Option]] = {
        "color_strength": Option(0.5, rules.non_negative, "a number >= 0"),
        "color_prob": probability(0.8),
        "brightness": Option(
            "multiplicative", lambda v: v in BRIGHTNESS_FORMS, " or ".join(BRIGHTNESS_FORMS)
        ),
    }
    position = 40
    draw_rank = 30

    def __init__(self, settings: OptionValues, image_size: int):
        super().__init__(settings, image_size)
        self.additive = settings.brightness == "additive"
        self.batched = BATCHED | ({BRIGHTNESS: shift_brightness} if self.additive else {})
        self.on_pil = ON_PIL | ({BRIGHTNESS: shift_brightness_pil} if self.additive else {})

    def sample_early(self, draw: Draw) -> Params:
        """The ``(B, 4)`` factors: brightness (a factor, or with ``brightness=additive`` a
        delta), contrast, saturation, hue shift. The additive delta takes the draw of the
        multiplicative factor, so the other draws are the same either way."""
        s = self.settings.color_strength
        low, high = max(0.0, 1 - 0.8 * s), 1 + 0.8 * s
        brightness = (-0.8 * s, 0.8 * s) if self.additive else (low, high)
        factors = [draw.uniform(*brightness)] + [draw.uniform(low, high) for _ in range(2)]
        factors.append(draw.uniform(-0.2 * s, 0.2 * s))
        return {"factors": torch.stack(factors, dim=1)}

    def sample(self, draw: Draw, height: int, width: int) -> Params:
        """Whether each image is jittered, and the order ``(B, 4)`` of its adjustments (a
        permutation of brightness, contrast, saturation and hue, as torchvision's)."""
        return {
            "jitter": draw.coin(self.settings.color_prob),
            "order": draw.rand(4).argsort(dim=1),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        jitter, order, factors = params["jitter"], params["order"], params["factors"]
        for position in range(4):
            for op, adjust in self.batched.items():
                chosen = (jitter & (order[:, position] == op)).nonzero().flatten()
                if len(chosen):
                    x = x.index_copy(0, chosen, adjust(x[chosen], factors[chosen, op]))
        return x

    def apply_pil(self, image: Image.Image, params: Params) -> Image.Image:
        if not bool(params["jitter"]):
            return image
        factors = params["factors"].tolist()
        for op in params["order"].tolist():
            image = self.on_pil[op](image, factors[op])
        return image
