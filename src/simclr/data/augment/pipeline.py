"""The operations that ``data.augment`` sets up, drawn and applied in order: the part that the
per-image pipeline (:mod:`simclr.data.augment.transforms`) and the batched one
(:mod:`simclr.data.augment.batch_augment`) share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from simclr.data.augment.ops.base import Draw, Operation, Params
from simclr.data.augment.settings import AugmentSettings, build_operations


def to_pil(view: Tensor) -> Image.Image:
    """A uint8 tensor ``(3, H, W)`` as a PIL RGB image."""
    return Image.fromarray(view.permute(1, 2, 0).contiguous().numpy())


def from_pil(image: Image.Image) -> Tensor:
    """A PIL RGB image as a uint8 tensor ``(3, H, W)``."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


class Normalise:
    """uint8 views ``(..., 3, H, W)`` -> floats ``(x / 255 - mean) / std`` per channel, in one
    pass."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        mean, std = torch.tensor(list(mean)).view(3, 1, 1), torch.tensor(list(std)).view(3, 1, 1)
        self.scale, self.shift = 1 / (255 * std), -mean / std

    def __call__(self, views: Tensor) -> Tensor:
        return torch.addcmul(self.shift, views.float(), self.scale)


class Pipeline:
    """The operations of ``settings`` for views of ``image_size`` px, in the order they act:
    the crop stage (crop, flip) and the steps after it."""

    def __init__(self, settings: AugmentSettings, image_size: int):
        self.settings = settings
        self.operations = build_operations(settings, image_size)
        self.crop_stage = [op for op in self.operations if op.crop_stage]
        self.after_crop = [op for op in self.operations if not op.crop_stage]

    @property
    def on_pil(self) -> bool:
        """The steps after the crop run as PIL's uint8 operations on a CPU."""
        return self.settings.pixel_dtype == "uint8"

    def sample(
        self, draw: Draw, height: int, width: int, operations: Sequence[Operation] | None = None
    ) -> dict[str, Params]:
        """Each operation's parameters (all of them, or ``operations``), keyed by its name,
        drawn in the order of the operations' ``draw_rank``."""
        ranked = sorted(self.operations if operations is None else operations,
                        key=lambda op: op.draw_rank)  # fmt: skip
        params = {op.name: op.sample_early(draw) for op in ranked}
        for op in ranked:
            params[op.name] |= op.sample(draw, height, width)
        return params

    def cut(self, x: Tensor, params: dict[str, Params]) -> Tensor:
        """The crop stage of float images ``(B, 3, H, W)``: views ``(B, 3, S, S)``."""
        for op in self.crop_stage:
            x = op.apply(x, params[op.name])
        return x

    def finish(self, x: Tensor, params: dict[str, Params]) -> Tensor:
        """The steps after the crop on float views ``(B, 3, S, S)`` in [0, 1]."""
        for op in self.after_crop:
            x = op.apply(x, params[op.name])
        return x

    def finish_pil(self, image: Image.Image, params: dict[str, Params], index: int) -> Image.Image:
        """The steps after the crop on one uint8 view, with row ``index`` of ``params``."""
        for op in self.after_crop:
            row = {key: value[index] for key, value in params[op.name].items()}
            image = op.apply_pil(image, row)
        return image

    def finish_uint8(
        self, views: Tensor, params: dict[str, Params], normalise: Normalise
    ) -> Tensor:
        """The steps after the crop on uint8 views ``(B, 3, S, S)``, one by one in PIL, then
        normalised."""
        finished = [
            normalise(from_pil(self.finish_pil(to_pil(view), params, index)))
            for index, view in enumerate(views)
        ]
        return torch.stack(finished)
