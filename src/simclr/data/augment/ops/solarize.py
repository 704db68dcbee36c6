"""Solarisation (SimCLR v2, BYOL): with probability ``solarize_prob``, every pixel value at or
above half the range is inverted. Off (p = 0) in every SimCLR preset."""

from __future__ import annotations

from typing import ClassVar

import torch
from PIL import Image, ImageOps
from torch import Tensor

from simclr.data.augment.ops.base import Draw, Operation, Option, Params, probability

THRESHOLD = 0.5  # 128 of 255 levels


class Solarize(Operation):
    name = "solarize"
    options: ClassVar[dict[str, Option]] = {"solarize_prob": probability(0.0)}
    position = 70  # after the blur, as in BYOL
    draw_rank = 70

    def sample(self, draw: Draw, height: int, width: int) -> Params:
        return {"solarize": draw.coin(self.settings.solarize_prob)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        chosen = params["solarize"].view(-1, 1, 1, 1) & (x >= THRESHOLD)
        return torch.where(chosen, 1 - x, x)

    def apply_pil(self, image: Image.Image, params: Params) -> Image.Image:
        if not bool(params["solarize"]):
            return image
        return ImageOps.solarize(image, threshold=round(THRESHOLD * 255))
