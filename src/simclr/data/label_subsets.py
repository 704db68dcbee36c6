"""The published ImageNet label subsets of the semi-supervised protocol (SimCLR, section 6;
SimCLR v2): ``label_subset=imagenet_1pct`` / ``imagenet_10pct`` trains on exactly the
ILSVRC-2012 training images that the lists of google-research/simclr name (12,811 and
128,116 file names such as ``n01440764_10026.JPEG``, shipped in ``imagenet_subsets/`` with
their Apache-2.0 notice), where ``label_fraction`` draws a class-balanced share of its own.

An image is found by its file name in the training images of the data set (the image-folder
and ImageNet sources): a listed image that the held-out validation split took is moved back
to training (and out of validation, which is never trained on). A listed name found nowhere
stops the run with the count and the first names; the test split is never searched.
"""

from __future__ import annotations

import logging
import os
from importlib import resources

import numpy as np
import torch
from torch import Tensor

from simclr.data.containers import LabelledSplits
from simclr.data.image_files import ImageFiles
from simclr.errors import ConfigError, DataError
from simclr.registry import Registry
from simclr.rules import state

log = logging.getLogger(__name__)

# Each subset's list, a file of simclr/data/imagenet_subsets/, by its label_subset name.
LABEL_SUBSETS: Registry[str] = state(Registry("label subset", "label_subset"))
LABEL_SUBSETS.register("imagenet_1pct")("1percent.txt")
LABEL_SUBSETS.register("imagenet_10pct")("10percent.txt")
# How many missing names an error shows.
SHOWN_MISSING = 5


def subset_file_names(name: str) -> list[str]:
    """The file names that label subset ``name`` lists, in the list's order."""
    text = resources.files("simclr.data").joinpath("imagenet_subsets", LABEL_SUBSETS[name])
    return [line.strip() for line in text.read_text().splitlines() if line.strip()]


def _file_names(images: ImageFiles) -> list[str]:
    return [os.path.basename(str(path)) for path in images.paths]


def _positions(images: ImageFiles, wanted: set[str], name: str) -> Tensor:
    """Indices of the images of ``images`` whose file name is in ``wanted``; a listed name
    held by two files is a :class:`DataError` (which of them is meant?)."""
    found: dict[str, int] = {}
    for index, file_name in enumerate(_file_names(images)):
        if file_name in wanted:
            if file_name in found:
                raise DataError(
                    f"label_subset={name}: two training images are named {file_name} "
                    f"({images.paths[found[file_name]]} and {images.paths[index]}); keep one"
                )
            found[file_name] = index
    return torch.tensor(sorted(found.values()), dtype=torch.long)


def take_label_subset(splits: LabelledSplits, name: str, where: str) -> Tensor:
    """Indices into ``splits.train`` of the images label subset ``name`` lists, sorted.

    Listed images that ``splits.val`` holds (the validation split held out of the training
    folder) are moved to the end of ``splits.train`` first, so ``splits`` changes. Every listed
    name must be found, else a :class:`DataError` gives the count and the first names
    (``where``: the folder, for the message).
    """
    names = subset_file_names(name)
    train, val = splits.train, splits.val
    if not isinstance(train, ImageFiles) or not isinstance(val, ImageFiles):
        raise ConfigError(
            f"label_subset={name} selects image files by name: use data=imagenet (or "
            "data=imagefolder with ImageNet's training files); this data set holds no files"
        )
    wanted = set(names)
    in_val = _positions(val, wanted, name)
    if len(in_val):
        keep = torch.ones(len(val), dtype=torch.bool)
        keep[in_val] = False
        moved = val.select(in_val)
        splits.train = ImageFiles(
            np.concatenate([train.paths, moved.paths]),
            torch.cat([train.labels, moved.labels]),
            train.skip_corrupt,
        )
        splits.val = val.select(keep.nonzero().flatten())
        log.info(
            "label_subset=%s: %d listed image(s) of the validation split moved to training",
            name,
            len(in_val),
        )
    chosen = _positions(splits.train, wanted, name)
    if len(chosen) < len(wanted):
        present = set(_file_names(splits.train.select(chosen)))
        missing = [n for n in names if n not in present]
        shown = ", ".join(missing[:SHOWN_MISSING]) + (
            " ..." if len(missing) > SHOWN_MISSING else ""
        )
        raise DataError(
            f"label_subset={name}: {len(missing)} of the {len(wanted)} images of its list are "
            f"not among the training images of {where}: {shown}. The list names ILSVRC-2012 "
            "training files (<wnid>_<number>.JPEG, under train/<wnid>/ for data=imagenet) by "
            "their original file names: put the complete training set there, or point "
            "data.root at it"
        )
    return chosen
