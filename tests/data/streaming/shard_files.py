"""A tiny image folder of real files for the streaming tests: one image per class, so that a
batch's labels name its images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

NUM_TRAIN = 24


def write_photo_folder(root: Path, num_train: int = NUM_TRAIN) -> dict[str, list[Path]]:
    """``root/{train,val,test}/c<k>/`` holding one noise image each: JPEGs of 30 to 60 px,
    one of 100 px (above ``--max-side 64``) and one PNG; val and test hold 6 classes each."""
    rng = np.random.default_rng(0)
    written: dict[str, list[Path]] = {}
    for split, count in (("train", num_train), ("val", 6), ("test", 6)):
        written[split] = []
        for k in range(count):
            folder = root / split / f"c{k:02d}"
            folder.mkdir(parents=True)
            side = 100 if (split, k) == ("train", 1) else int(rng.integers(30, 61))
            pixels = rng.integers(0, 256, (side, side + 7, 3), dtype=np.uint8)
            png = (split, k) == ("train", 2)
            path = folder / ("0.png" if png else "0.JPEG")
            Image.fromarray(pixels).save(path, **({} if png else {"quality": 90}))
            written[split].append(path)
    return written
