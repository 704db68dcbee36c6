"""Gaussian blur (Chen et al., 2020, appendix A) with probability ``blur_prob`` (0.5 for 96 px
and larger images; never for 32 px ones): a kernel of 10% of the image side, sigma ~ U(0.1, 2)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import Tensor

from simclr.data.augment.ops.base import Draw, Operation, Option, Params, probability

SIGMA_RANGE = (0.1, 2.0)


def blur_kernel_size(image_size: int) -> int:
    """10% of the image side, rounded down to an odd number of at least 3."""
    kernel = max(3, int(0.1 * image_size))
    return kernel if kernel % 2 == 1 else kernel + 1


def gaussian_blur(images: Tensor, kernel_size: int, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with one sigma per image and reflect padding."""
    batch, channels, height, width = images.shape
    radius = kernel_size // 2
    offsets = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - radius
    kernels = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernels.view(-1, 1, 1, kernel_size), groups=batch * channels)
    flat = F.conv2d(flat, kernels.view(-1, 1, kernel_size, 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


class GaussianBlur(Operation):
    name = "blur"
    options: ClassVar[dict[str, Option]] = {"blur_prob": probability(0.0)}
    position = 60
    draw_rank = 50

    def sample(self, draw: Draw, height: int, width: int) -> Params:
        return {"blur": draw.coin(self.settings.blur_prob), "sigma": draw.uniform(*SIGMA_RANGE)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        blur = params["blur"]
        if not blur.any():
            return x
        chosen = blur.nonzero().flatten()
        kernel = blur_kernel_size(self.image_size)
        return x.index_copy(0, chosen, gaussian_blur(x[chosen], kernel, params["sigma"][chosen]))

    def apply_pil(self, image: Image.Image, params: Params) -> Image.Image:
        """PIL's Gaussian blur of the same sigma (three box blurs in C, not truncated to the
        kernel: at 224 px the kernel reaches 5.5 sigma, where the two agree)."""
        if not bool(params["blur"]):
            return image
        return image.filter(ImageFilter.GaussianBlur(float(params["sigma"])))
