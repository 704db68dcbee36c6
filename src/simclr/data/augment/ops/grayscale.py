"""Grayscale with probability ``grayscale_prob`` (the paper's 0.2), after the colour jitter."""

from __future__ import annotations

from typing import ClassVar

import torch
from PIL import Image
from torch import Tensor

from simclr.data.augment.ops.base import Draw, Operation, Option, Params, probability

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's and PIL's "L"


def grayscale(images: Tensor) -> Tensor:
    """Luma ``(B, 1, H, W)`` of float RGB images in [0, 1]."""
    weights = images.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


class Grayscale(Operation):
    name = "grayscale"
    options: ClassVar[dict[str, Option]] = {"grayscale_prob": probability(0.2)}
    position = 50
    draw_rank = 40

    def sample(self, draw: Draw, height: int, width: int) -> Params:
        return {"gray": draw.coin(self.settings.grayscale_prob)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        gray = grayscale(x).expand_as(x)
        return torch.where(params["gray"].view(-1, 1, 1, 1), gray, x)

    def apply_pil(self, image: Image.Image, params: Params) -> Image.Image:
        return image.convert("L").convert("RGB") if bool(params["gray"]) else image
