"""A rotation by an angle ~ U(-``rotation_degrees``, ``rotation_degrees``) with probability
``rotation_prob``, after the crop and flip (not in the paper; for the digits)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from simclr import rules
from simclr.data.augment.ops.base import Draw, Operation, Option, Params, probability


def rotate(images: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image about its centre by its angle (bilinear, black outside), as
    torchvision's RandomRotation does with its defaults."""
    radians = degrees.to(images.dtype) * (math.pi / 180)
    cos, sin = radians.cos(), radians.sin()
    zero = torch.zeros_like(cos)
    # Output pixel -> input pixel in normalised coordinates (square images).
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Rotation(Operation):
    name = "rotation"
    options: ClassVar[dict[str, Option]] = {
        "rotation_prob": probability(0.0),
        "rotation_degrees": Option(0.0, rules.non_negative, "a number of degrees >= 0"),
    }
    position = 30
    draw_rank = 60

    def sample(self, draw: Draw, height: int, width: int) -> Params:
        degrees = self.settings.rotation_degrees
        rotated = draw.coin(self.settings.rotation_prob)
        angle = draw.uniform(-degrees, degrees)
        return {"angle": torch.where(rotated, angle, torch.zeros(draw.batch, device=draw.device))}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        angle = params["angle"]
        return rotate(x, angle) if bool((angle != 0).any()) else x

    def apply_pil(self, image: Image.Image, params: Params) -> Image.Image:
        angle = float(params["angle"])
        return image.rotate(angle, resample=Image.Resampling.BILINEAR) if angle else image
