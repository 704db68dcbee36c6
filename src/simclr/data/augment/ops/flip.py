"""Horizontal flip with probability ``flip_prob`` (the paper's 0.5)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torchvision.transforms import v2

from simclr.data.augment.ops.base import Draw, Operation, Option, Params, probability


class HorizontalFlip(Operation):
    name = "flip"
    options: ClassVar[dict[str, Option]] = {"flip_prob": probability(0.5)}
    position = 20
    draw_rank = 20
    crop_stage = True

    def per_image(self) -> v2.Transform:
        return v2.RandomHorizontalFlip(p=self.settings.flip_prob)

    def sample(self, draw: Draw, height: int, width: int) -> Params:
        return {"flip": draw.coin(self.settings.flip_prob)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return torch.where(params["flip"].view(-1, 1, 1, 1), x.flip(-1), x)
