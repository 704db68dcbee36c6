"""Crop-first views of image files (data.pipeline=crop_first, device_decode): the boxes and
flips follow torchvision's samplers, the views are the boxes of the decoded image (also after
DCT-scaled decoding), and the colour stage after them is the batched augmentation's."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from simclr.data.augment.batch_augment import BatchAugmentation
from simclr.data.augment.crop_first import (
    CropFirstViews,
    EncodedViews,
    dct_scale,
    decode_jpeg_scaled,
    decode_views,
    draw_boxes,
)
from simclr.data.image_files import ImageFiles, UndecodableImageError
from simclr.data.resumable import SeededViews

SAMPLES = 20000


def gradient_jpeg(path: Path, width: int = 400, height: int = 300) -> Path:
    """A smooth RGB JPEG whose red channel rises with x and green with y, so that a crop's
    content shows where it was cut."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    pixels = np.stack([x, y, np.full_like(x, 90)], axis=2).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def box_statistics(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Mean and standard deviation of area share, log aspect ratio and centre of boxes
    ``(N, 4)`` given as left, top, width, height."""
    left, top, w, h = boxes.unbind(1)
    features = torch.stack(
        [
            w * h / (height * width),
            torch.log(w / h),
            (left + w / 2) / width,
            (top + h / 2) / height,
        ],
        1,
    )
    return torch.stack([features.mean(0), features.std(0)])


@pytest.mark.parametrize("width,height", [(500, 375), (300, 640), (40, 30)])
def test_crop_boxes_and_flips_follow_torchvision(tmp_path, width, height):
    path = gradient_jpeg(tmp_path / "image.jpg", width, height)
    torch.manual_seed(0)
    with Image.open(path) as image:  # the header only: draw_boxes decodes no pixel
        boxes, flips = draw_boxes(image, SAMPLES, (0.08, 1.0), (3 / 4, 4 / 3), 0.5)
        assert image._im is None  # nothing decoded yet
    reference = []
    blank = torch.zeros(3, height, width)
    flip = T.RandomHorizontalFlip(p=0.5)
    flipped = 0
    for _ in range(SAMPLES):
        top, left, h, w = T.RandomResizedCrop.get_params(blank, (0.08, 1.0), (3 / 4, 4 / 3))
        reference.append([left, top, w, h])
        flipped += int(flip(torch.arange(2.0).view(1, 1, 2))[0, 0, 0] == 1)
    ours = box_statistics(torch.tensor(boxes, dtype=torch.float32), height, width)
    theirs = box_statistics(torch.tensor(reference, dtype=torch.float32), height, width)
    torch.testing.assert_close(ours, theirs, atol=0.012, rtol=0)
    boxes = torch.tensor(boxes)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= width).all()
    assert (boxes[:, 1] + boxes[:, 3] <= height).all()
    tolerance = 4 * math.sqrt(0.25 / SAMPLES)
    assert abs(sum(flips) / SAMPLES - 0.5) < tolerance
    assert abs(flipped / SAMPLES - 0.5) < tolerance


def test_dct_scale_keeps_every_box_at_least_the_view_size():
    assert dct_scale([(0, 0, 400, 300)], 96) == 2  # 300 / 96 = 3.1: half scale, 150 px
    assert dct_scale([(0, 0, 800, 800), (0, 0, 100, 390)], 96) == 1  # 100 px: full scale
    assert dct_scale([(0, 0, 900, 800)], 96) == 8
    assert dct_scale([(0, 0, 50, 40)], 224) == 1  # smaller than the view: full scale


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_jpegs_are_decoded_at_the_dct_scale(tmp_path, scale):
    path = gradient_jpeg(tmp_path / "image.jpg", 401, 300)
    decoded = decode_jpeg_scaled(str(path), (401, 300), scale)
    assert decoded.shape == (3, math.ceil(300 / scale), math.ceil(401 / scale))
    assert decoded.dtype == torch.uint8


def reference_views(path: Path, boxes, flips, size: int) -> list[torch.Tensor]:
    """The boxes cut from the whole decoded image and resized as the per-image pipeline does."""
    with Image.open(path) as image:
        whole = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    views = []
    for (left, top, w, h), flip in zip(boxes, flips, strict=True):
        view = TF.resized_crop(whole, top, left, h, w, [size, size], antialias=True)
        views.append(view.flip(-1) if flip else view)
    return views


@pytest.mark.parametrize("size", [24, 96])
def test_views_are_the_boxes_of_the_image_also_when_decoded_at_a_reduced_scale(tmp_path, size):
    path = gradient_jpeg(tmp_path / "image.jpg")
    views_of = CropFirstViews(size, num_views=2)
    scales = []
    for seed in range(12):
        torch.manual_seed(seed)
        views = views_of(str(path))
        torch.manual_seed(seed)  # the same draws again, for the reference
        with Image.open(path) as image:
            boxes, flips = draw_boxes(image, 2, (0.08, 1.0), (3 / 4, 4 / 3), 0.5)
        scales.append(dct_scale(boxes, size))
        for ours, theirs in zip(views, reference_views(path, boxes, flips, size), strict=True):
            assert ours.shape == (3, size, size) and ours.dtype == torch.uint8
            # The same content; scaled decoding and whole-pixel boxes cost a few levels.
            assert (ours.float() - theirs.float()).abs().mean() < 4
    if size == 24:
        assert max(scales) > 1  # the reduced-scale decoding was exercised


def test_bytes_and_paths_give_the_same_views(tmp_path):
    path = gradient_jpeg(tmp_path / "image.jpg")
    views_of = CropFirstViews(32, num_views=3)
    torch.manual_seed(1)
    from_path = views_of(str(path))
    torch.manual_seed(1)
    from_bytes = views_of(path.read_bytes())
    assert all(torch.equal(a, b) for a, b in zip(from_path, from_bytes, strict=True))


@pytest.mark.parametrize(
    "mode, suffix", [("L", "png"), ("RGBA", "png"), ("P", "png"), ("L", "jpg"), ("CMYK", "jpg")]
)
def test_other_formats_and_modes_are_cropped_too(tmp_path, mode, suffix):
    # Grey and CMYK JPEGs too (simplejpeg refuses CMYK: PIL decodes it).
    path = tmp_path / f"{mode}.{suffix}"
    plain = Image.new("RGB", (60, 40), (200, 30, 10))
    (plain.quantize(4) if mode == "P" else plain.convert(mode)).save(path)  # P: no dithering
    with Image.open(path) as image:
        expected = torch.tensor(image.convert("RGB").getpixel((30, 20)), dtype=torch.float32)
    views = CropFirstViews(16, num_views=2)(str(path))
    for view in views:
        assert view.shape == (3, 16, 16) and view.dtype == torch.uint8
        # A plain image: every view has its colour (to JPEG's rounding).
        assert (view.float().mean(dim=(1, 2)) - expected).abs().max() < 3


def test_views_are_seeded_per_sample_and_epoch(tmp_path):
    paths = [str(gradient_jpeg(tmp_path / f"{i}.jpg", 120 + 10 * i, 90)) for i in range(3)]
    files = ImageFiles(paths, [0, 1, 0]).with_decoder(CropFirstViews(32, num_views=2))
    dataset = SeededViews(files, None, seed=7)
    first, label = dataset[(2, 1)]
    again, _ = dataset[(2, 1)]
    assert label == 1 and all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other_epoch, _ = dataset[(3, 1)]
    assert not all(torch.equal(a, b) for a, b in zip(first, other_epoch, strict=True))


def test_an_undecodable_file_is_named_or_skipped(tmp_path):
    good = str(gradient_jpeg(tmp_path / "good.jpg", 64, 48))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(good).read_bytes()[:200])
    decoder = CropFirstViews(16, num_views=2)
    with pytest.raises(UndecodableImageError, match=f"cannot decode image file {truncated}"):
        ImageFiles([str(truncated)], [0]).with_decoder(decoder)[0]
    files = ImageFiles([str(truncated), good], [0, 1], skip_corrupt=True)
    reading = files.with_decoder(decoder)
    views, label = reading[0]
    assert label == 1 and len(views) == 2
    assert files.undecodable_files() == [str(truncated)]  # the record is shared


def test_cropped_views_get_the_batched_colour_stage(tmp_path):
    augment = BatchAugmentation(16, [0.5] * 3, [0.25] * 3, color_strength=1.0, blur_prob=0.5)
    views = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(3)
    ours = augment(views, generator, cropped=True)
    params = augment.sample(8, 16, 16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, augment.after_crop(views.float() / 255, params))
    plain = BatchAugmentation(16, [0.0] * 3, [1.0] * 3, color_prob=0.0, grayscale_prob=0.0)
    torch.testing.assert_close(plain(views, cropped=True), views.float() / 255)
    with pytest.raises(ValueError, match="cropped views must be 16 px"):
        augment(torch.zeros(2, 3, 20, 20, dtype=torch.uint8), cropped=True)


# --- device_decode, run on the CPU here (on CUDA in bench/gpu.sh) -----------------------


def test_device_decode_cuts_the_same_boxes_from_the_batch(tmp_path):
    paths = [gradient_jpeg(tmp_path / f"{i}.jpg", 200 + 40 * i, 150) for i in range(3)]
    encoded = EncodedViews(24, num_views=2)
    items = []
    for seed, path in enumerate(paths):
        torch.manual_seed(seed)
        items.append(encoded(str(path)))
    batch = default_collate(items)
    assert batch["boxes"].shape == (3, 2, 4) and batch["flip"].shape == (3, 2)
    views = decode_views(batch, 24, torch.device("cpu"))
    assert len(views) == 2 and all(v.shape == (3, 3, 24, 24) for v in views)
    for i, path in enumerate(paths):
        corners = batch["boxes"][i].tolist()
        boxes = [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in corners]
        reference = reference_views(path, boxes, batch["flip"][i].tolist(), 24)
        for view in range(2):
            difference = views[view][i] * 255 - reference[view].float()
            assert difference.abs().mean() < 2


def test_device_decode_names_a_bad_file(tmp_path):
    good = tmp_path / "good.jpg"  # noise: its pixels fill most of the file
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good, quality=90)
    png = tmp_path / "image.jpg"
    Image.new("RGB", (20, 20)).save(png, format="PNG")
    with pytest.raises(UndecodableImageError, match="not a JPEG file"):
        ImageFiles([str(png)], [0]).with_decoder(EncodedViews(16, 2))[0]
    # Its header whole, its pixels cut off: the worker's check passes, the decoder fails.
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    items = [EncodedViews(16, 2)(str(p)) for p in (good, broken)]
    with pytest.raises(UndecodableImageError, match="truncated") as error:
        decode_views(default_collate(items), 16, torch.device("cpu"))
    assert error.value.path == str(broken)


def test_header_reading_needs_no_pixels():
    buffer = io.BytesIO()
    Image.new("RGB", (33, 21)).save(buffer, format="JPEG")
    torch.manual_seed(0)
    item = EncodedViews(8, 2)(buffer.getvalue())
    assert item["jpeg"] == buffer.getvalue() and item["boxes"].shape == (2, 4)
    assert (item["boxes"][:, 2] <= 33).all() and (item["boxes"][:, 3] <= 21).all()
