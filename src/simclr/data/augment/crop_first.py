"""Views of image files drawn crop-first (``data.pipeline=crop_first`` or ``device_decode``).

The per-image pipeline decodes every pixel of a file, then throws most of them away: the
paper's crop keeps 8% to 100% of the area, and an ImageNet photograph (about 400 x 350 px) is
shrunk to a 96 px view, or to 224 px. Here the worker draws each view's crop box and flip
first, from the file's header alone, with the paper's distributions (torchvision's own
samplers: ``RandomResizedCrop.get_params``, scale (0.08, 1), ratio (3/4, 4/3), and its
fallback; a flip with ``flip_prob``), and then:

- ``crop_first`` (:class:`CropFirstViews`): decodes the file once for all its views, at the
  smallest JPEG DCT scale (1/2, 1/4, 1/8: libjpeg-turbo's scaled decoding, through
  simplejpeg; other formats through PIL, with ``Image.draft``) that still leaves every box at
  least the view size, then crops and
  resizes each box to a uint8 view (torchvision's antialiased uint8 resize) and flips it.
- ``device_decode`` (:class:`EncodedViews` in the worker, :func:`decode_views` on the device):
  the worker only reads the file's bytes and draws the boxes; the batch's JPEGs are decoded
  together on the GPU (``torchvision.io.decode_jpeg(..., device="cuda")``, nvJPEG), where the
  crops are cut and resized.

Either way, colour distortion, grayscale and blur follow in batches
(:class:`~simclr.data.augment.batch_augment.BatchAugmentation` with ``cropped=True``). The
random draws come from torch's global generator, which
:class:`~simclr.data.resumable.SeededViews` seeds per sample and epoch, so a resumed run
draws the same boxes.

The measurements behind the choice of decoder are in ``bench/data.py`` (docs/datasets.md, "Loading
speed").
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from simclr.data.augment.transforms import AugmentSettings
from simclr.data.image_files import ImageFiles, UndecodableImageError, rgb
from simclr.errors import ConfigError

# libjpeg's DCT scaling factors that PIL's draft can ask for, largest first.
DCT_SCALES = (8, 4, 2, 1)
# File name endings that device_decode accepts (nvJPEG decodes JPEG only).
JPEG_SUFFIXES = (".jpg", ".jpeg")

# An image file: its path, or its bytes.
FileOrBytes = str | Path | bytes


def _open(source: FileOrBytes) -> Image.Image:
    """A lazily decoded image: the header is read, no pixel yet."""
    if isinstance(source, bytes | bytearray | memoryview):
        return Image.open(io.BytesIO(source))
    return Image.open(source)


def draw_boxes(
    image: Image.Image,
    num_views: int,
    crop_scale: Sequence[float],
    crop_ratio: Sequence[float],
    flip_prob: float,
) -> tuple[list[tuple[int, int, int, int]], list[bool]]:
    """``num_views`` crop boxes ``(left, top, width, height)`` in the image's pixels, and
    flips, drawn from torch's global generator as torchvision's RandomResizedCrop and
    RandomHorizontalFlip draw them (box, then flip, per view); only the header of
    ``image`` is read."""
    boxes, flips = [], []
    for _ in range(num_views):
        top, left, height, width = T.RandomResizedCrop.get_params(
            image, list(crop_scale), list(crop_ratio)
        )
        boxes.append((left, top, width, height))
        flips.append(bool(torch.rand(1) < flip_prob))
    return boxes, flips


def dct_scale(boxes: Sequence[tuple[int, int, int, int]], image_size: int) -> int:
    """The largest DCT reduction (8, 4, 2 or 1) after which every box still has at least
    ``image_size`` pixels on both sides: the view is then shrunk, never enlarged, from what
    the decoder gives unless the full-scale box is already smaller."""
    smallest = min(min(width, height) for _, _, width, height in boxes)
    return next((scale for scale in DCT_SCALES if smallest >= scale * image_size), 1)


def decode_jpeg_scaled(source: FileOrBytes, size: tuple[int, int], scale: int) -> Tensor | None:
    """A JPEG of ``size`` (width, height) decoded by simplejpeg (libjpeg-turbo) at 1/``scale``
    (the smallest DCT scale that still gives at least size / scale), as uint8 ``(3, H, W)``;
    None where simplejpeg refuses it (CMYK, a damaged file: PIL then decodes or reports it).
    simplejpeg is the faster of the two for the same decoding (bench/data.py's decode_ms_*
    lines, docs/datasets.md "Loading speed")."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=size[0] // scale, min_height=size[1] // scale
        )
    except ValueError:
        return None
    return torch.from_numpy(pixels).permute(2, 0, 1)


def uint8_chw(image: Image.Image) -> Tensor:
    """A PIL RGB image as a uint8 tensor ``(3, H, W)`` (a view of a fresh array)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


class CropFirstViews:
    """Worker side of ``data.pipeline=crop_first``: a JPEG file (path) or its bytes ->
    ``num_views`` uint8 views ``(3, S, S)``, cropped, resized and flipped (module docstring).

    Other formats (PNG ...) are decoded whole and cropped the same way.
    """

    def __init__(
        self,
        image_size: int,
        num_views: int,
        crop_scale: Sequence[float] = (0.08, 1.0),
        crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_prob: float = 0.5,
    ):
        self.image_size = image_size
        self.num_views = num_views
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.flip_prob = flip_prob

    def __call__(self, source: FileOrBytes) -> list[Tensor]:
        size = self.image_size
        with _open(source) as image:
            width, height = image.size
            boxes, flips = draw_boxes(
                image, self.num_views, self.crop_scale, self.crop_ratio, self.flip_prob
            )
            scale = dct_scale(boxes, size)
            decoded = (
                decode_jpeg_scaled(source, image.size, scale) if image.format == "JPEG" else None
            )
            if decoded is None:  # another format, or a JPEG simplejpeg refused: PIL decides
                if scale > 1:
                    # draft picks the largest DCT scale whose result is at least this size.
                    image.draft("RGB", (width // scale, height // scale))
                decoded = uint8_chw(rgb(image))
        # The boxes in the decoded image's pixels (fewer at a reduced scale), inside it.
        scaled_h, scaled_w = decoded.shape[1], decoded.shape[2]
        sx, sy = scaled_w / width, scaled_h / height
        views = []
        for (left, top, box_w, box_h), flip in zip(boxes, flips, strict=True):
            x0, y0 = min(round(left * sx), scaled_w - 1), min(round(top * sy), scaled_h - 1)
            x1 = max(x0 + 1, min(round((left + box_w) * sx), scaled_w))
            y1 = max(y0 + 1, min(round((top + box_h) * sy), scaled_h))
            # torchvision's uint8 resize, antialiased as the per-image pipeline's; with
            # simplejpeg, faster than PIL's decode and resize (docs/datasets.md "Loading speed").
            view = TF.resized_crop(decoded, y0, x0, y1 - y0, x1 - x0, [size, size], antialias=True)
            views.append(view.flip(-1) if flip else view)
        return views


class EncodedViews(CropFirstViews):
    """Worker side of ``data.pipeline=device_decode``: a JPEG file -> its bytes, its crop
    boxes ``(V, 4)`` (x0, y0, x1, y1) and flips ``(V,)``, for :func:`decode_views`.

    A file that is not a JPEG raises OSError, which :class:`~simclr.data.image_files.ImageFiles`
    reports (or skips) as an undecodable file.
    """

    def __call__(self, source: FileOrBytes) -> dict:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        with _open(data) as image:
            if image.format != "JPEG":
                raise OSError(
                    f"not a JPEG file ({image.format}); data.pipeline=device_decode decodes "
                    "JPEG only: use data.pipeline=crop_first"
                )
            boxes, flips = draw_boxes(
                image, self.num_views, self.crop_scale, self.crop_ratio, self.flip_prob
            )
        corners = [(left, top, left + w, top + h) for left, top, w, h in boxes]
        return {
            "jpeg": data,
            "path": str(source) if not isinstance(source, bytes) else "(bytes)",
            "boxes": torch.tensor(corners, dtype=torch.int64),
            "flip": torch.tensor(flips),
        }


def _decode_all(batch: dict, device) -> list[Tensor]:
    """The batch's JPEGs decoded together on ``device``; a file that fails is named."""
    data = [torch.frombuffer(bytearray(item), dtype=torch.uint8) for item in batch["jpeg"]]
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        for path, item in zip(batch["path"], data, strict=True):
            try:
                decode_jpeg(item, mode=ImageReadMode.RGB, device=device)
            except RuntimeError as error:
                raise UndecodableImageError(path, f"{type(error).__name__}: {error}") from error
        raise


def decode_views(batch: dict, image_size: int, device) -> list[Tensor]:
    """Device side of ``data.pipeline=device_decode``: a collated batch of
    :class:`EncodedViews` items -> V views ``(B, 3, S, S)``, float in [0, 1] on ``device``
    (cropped, resized with antialiasing as the per-image pipeline does, flipped).

    ``device`` is a CUDA device in training (nvJPEG); the CPU works too (for tests)."""
    images = _decode_all(batch, device)
    boxes = batch["boxes"].tolist()  # (B, V, 4)
    flips = batch["flip"].to(device)
    views = []
    for view in range(len(boxes[0])):
        crops = []
        for image, image_boxes in zip(images, boxes, strict=True):
            x0, y0, x1, y1 = image_boxes[view]
            crop = image[None, :, y0:y1, x0:x1].float()
            crops.append(
                F.interpolate(
                    crop,
                    size=(image_size, image_size),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
            )
        x = torch.cat(crops) / 255
        views.append(torch.where(flips[:, view].view(-1, 1, 1, 1), x.flip(-1), x).clamp(0, 1))
    return views


def is_jpeg_name(path: str) -> bool:
    return path.lower().endswith(JPEG_SUFFIXES)


def require_cuda(device: torch.device) -> None:
    """``device_decode`` decodes with nvJPEG: a clear error where training is not on CUDA."""
    if device.type != "cuda" or not torch.cuda.is_available():
        why = "" if torch.cuda.is_available() else " (CUDA is not available here)"
        raise ConfigError(
            "data.pipeline=device_decode decodes the JPEG files on a CUDA GPU (nvJPEG), but "
            f"this run trains on {device.type}{why}; use data.pipeline=crop_first"
        )


# The worker side of each pipeline that reads image files crop-first (data.pipeline).
WORKER_SIDE = {"crop_first": CropFirstViews, "device_decode": EncodedViews}


def read_crop_first(
    dataset: Dataset,
    pipeline: str,
    data_name: str,
    image_size: int,
    num_views: int,
    augment: AugmentSettings,
) -> Dataset:
    """``dataset`` (image files, or several joined) read by the worker side of ``pipeline``
    (``crop_first``: V uint8 views per file; ``device_decode``: its JPEG bytes and V boxes).
    A data set held in memory, or (for ``device_decode``) a file that is not a JPEG, is a
    :class:`ConfigError` saying what to use instead."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    if not all(isinstance(part, ImageFiles) for part in parts):
        raise ConfigError(
            f"data.pipeline={pipeline}: reads image files (data=imagefolder, imagenet), but "
            f"{data_name!r} holds its images in memory; use data.pipeline=per_image "
            "(data.augment_on_device=true draws its views in batches)"
        )
    if pipeline == "device_decode":
        other = next((p for part in parts for p in part.paths if not is_jpeg_name(p)), None)
        if other is not None:
            raise ConfigError(
                f"data.pipeline=device_decode decodes JPEG files only, and {other} is not one; "
                "use data.pipeline=crop_first (any format)"
            )
    decode = WORKER_SIDE[pipeline](
        image_size, num_views, augment.crop_scale, augment.crop_ratio, augment.flip_prob
    )
    parts = [part.with_decoder(decode) for part in parts]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)
