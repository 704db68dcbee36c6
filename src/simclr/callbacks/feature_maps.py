"""Maps of representations in two dimensions, for the pictures callback: the projections a
config chooses by name (``callbacks.pictures.maps``) and the picture of one map.

- ``pca``: the first two principal components (torch alone, instant). Linear: it shows the
  directions of largest variance, which for a good encoder already separate many classes.
- ``umap``: UMAP (McInnes et al., 2018; the ``umap-learn`` package, ``pip install
  'simclr[umap]'``), a non-linear map that keeps neighbourhoods: clusters show what a k-NN
  classifier sees. Seconds for a few thousand points (and a one-off compilation of about ten
  seconds in a new process).

The picture (:func:`draw_feature_map`) is drawn with Pillow: one dot per image coloured by its
class, and a legend of the class names on the right.
"""

from __future__ import annotations

import colorsys
import warnings
from collections.abc import Callable, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor

from simclr.extras import UMAP
from simclr.registry import Registry

Projection = Callable[[Tensor], Tensor]
PROJECTIONS: Registry[Projection] = Registry("feature map", "callbacks.pictures.maps")
# The projections that need a package of an extra.
EXTRA_OF_PROJECTION = {"umap": UMAP}

LEGEND_MARGIN = 8


# Twenty categorical colours (hex RGB), chosen so that neighbours in the list differ in hue
# and lightness: up to 20 classes each get a colour no other class has a near copy of.
CATEGORICAL = (
    "1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f",
    "bcbd22", "17becf", "000080", "ffd700", "00ff7f", "8b0000", "ff00ff", "556b2f",
    "00bfff", "f4a460", "4b0082", "a9a9a9",
)  # fmt: skip


def palette(num_classes: int) -> Tensor:
    """``(num_classes, 3)`` distinct colours in [0, 1]: the categorical list for up to 20
    classes, hues evenly spaced beyond."""
    if num_classes <= len(CATEGORICAL):
        colours = [tuple(int(c[i : i + 2], 16) / 255 for i in (0, 2, 4)) for c in CATEGORICAL]
        return torch.tensor(colours[:num_classes], dtype=torch.float32)
    colours = [colorsys.hsv_to_rgb(i / num_classes, 0.85, 0.9) for i in range(num_classes)]
    return torch.tensor(colours, dtype=torch.float32)


@PROJECTIONS.register("pca")
def pca_2d(features: Tensor) -> Tensor:
    """``(N, F)`` -> ``(N, 2)``: coordinates on the two leading principal components."""
    centred = features.float() - features.float().mean(0)
    _, _, v = torch.pca_lowrank(centred, q=min(2, *centred.shape), center=False)
    coords = centred @ v[:, :2]
    if coords.shape[1] < 2:
        coords = torch.cat([coords, torch.zeros_like(coords)], 1)
    return coords


@PROJECTIONS.register("umap")
def umap_2d(features: Tensor, n_neighbors: int = 15, seed: int = 0) -> Tensor:
    """``(N, F)`` -> ``(N, 2)``: UMAP with cosine distances (the similarity SimCLR trains),
    seeded (the same features give the same map). Fewer than ``n_neighbors + 1`` points use
    them all as neighbours."""
    UMAP.require("callbacks.pictures.maps=[...,umap]")
    import umap

    points = features.float().cpu().numpy()
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=max(2, min(n_neighbors, len(points) - 1)),
        metric="cosine",
        random_state=seed,
        n_jobs=1,  # what a seed implies anyway (umap warns about it otherwise)
    )
    with warnings.catch_warnings():
        # numba's and umap's notes about tiny inputs and the spectral initialisation.
        warnings.simplefilter("ignore")
        return torch.from_numpy(reducer.fit_transform(points)).float()


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1)
    except TypeError:
        return ImageFont.load_default()


def _fit(text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text``, cut with an ellipsis to ``width`` pixels if longer."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _legend_lines(class_names: Sequence[str], rows: int) -> list[tuple[int | None, str]]:
    """``(class index or None, text)`` per legend line: every class if they fit in ``rows``
    lines, else the first ones and a last line counting the rest."""
    lines: list[tuple[int | None, str]] = list(enumerate(class_names))
    if len(lines) > rows:
        shown = max(rows - 1, 0)
        lines = [*lines[:shown], (None, f"+ {len(class_names) - shown} more classes")]
    return lines


def draw_feature_map(
    points: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    size: int = 512,
    title: str = "",
) -> Tensor:
    """A ``(3, size, size + legend)`` image in [0, 1]: the ``(N, 2)`` ``points`` scaled into a
    white ``size`` x ``size`` square with a margin, one dot per point in the colour of its
    label (``labels``: ``(N,)`` indices into ``class_names``), and on the right ``title`` and
    a legend of the class names (as many as fit the height; long names cut)."""
    num_classes = max(len(class_names), int(labels.max()) + 1 if len(labels) else 0)
    colours = [tuple(round(255 * c) for c in rgb) for rgb in palette(max(num_classes, 1)).tolist()]
    font_size = max(10, size // 40)
    font = _font(font_size)
    line = font_size + 6
    widest = max(int(font.getlength(str(text))) for text in [title, *class_names])
    legend_width = min(size // 2, max(size // 4, widest + line + 2 * LEGEND_MARGIN))
    image = Image.new("RGB", (size + legend_width, size), "white")
    draw = ImageDraw.Draw(image)

    radius = max(1, size // 170)
    margin = radius + 4
    lo, hi = points.min(0).values, points.max(0).values
    scaled = (points.float() - lo) / (hi - lo).clamp_min(1e-12)
    pixels = (margin + scaled * (size - 1 - 2 * margin)).round().long()
    for (x, y), label in zip(pixels.tolist(), labels.tolist(), strict=True):
        row = size - 1 - y  # y grows upwards
        box = (x - radius, row - radius, x + radius, row + radius)
        draw.ellipse(box, fill=colours[label])

    left, top = size + LEGEND_MARGIN, LEGEND_MARGIN
    draw.line([(size, 0), (size, size)], fill=(200, 200, 200))
    if title:
        draw.text((left, top), title, fill="black", font=font)
        top += line
    text_width = legend_width - 2 * LEGEND_MARGIN - line
    rows = (size - top - LEGEND_MARGIN) // line
    for index, name in _legend_lines([str(n) for n in class_names], rows):
        if index is not None:
            swatch = font_size // 2
            centre = (left + swatch, top + line // 2 - 2)
            draw.rectangle(
                (centre[0] - swatch, centre[1] - swatch, centre[0] + swatch, centre[1] + swatch),
                fill=colours[index],
            )
        draw.text((left + line, top), _fit(name, font, text_width), fill="black", font=font)
        top += line
    return pil_to_tensor(image).float() / 255
