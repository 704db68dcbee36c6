"""Splitting a labelled data set by class: held-out validation and test splits, and the
class-balanced fraction of the labels (or the published label subset) that fine-tuning trains
on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from simclr.data.containers import LabelledSplits, TensorImages
from simclr.data.image_files import ImageFiles
from simclr.data.label_subsets import take_label_subset
from simclr.errors import ConfigError
from simclr.rules import LABEL_FRACTION


def shuffled_by_class(labels: Tensor, seed: int) -> list[Tensor]:
    """The indices of each class (in the order of ``labels.unique()``), each class shuffled;
    the same for the same ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = []
    for cls in labels.unique():
        members = (labels == cls).nonzero().flatten()
        shuffled.append(members[torch.randperm(len(members), generator=generator)])
    return shuffled


def stratified_split(labels: Tensor, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Indices for consecutive splits of the given fractions, each class split alike."""
    parts: list[list[Tensor]] = [[] for _ in fractions]
    for members in shuffled_by_class(labels, seed):
        # The first split takes what rounding leaves over, so no image is lost.
        sizes = [round(fraction * len(members)) for fraction in fractions[1:]]
        sizes.insert(0, len(members) - sum(sizes))
        for part, chunk in zip(parts, members.split(sizes), strict=True):
            part.append(chunk)
    return [torch.cat(part).sort().values for part in parts]


def hold_out(
    dataset: TensorImages | ImageFiles,
    fractions: dict[str, float],
    seed: int,
    source: str,
) -> list[TensorImages | ImageFiles]:
    """Split ``dataset`` by class into the rest and one part per entry of ``fractions``
    (``{"data.options.val_fraction": 0.1}``), deterministic for ``seed``; the first item
    returned is the rest. An empty part is a :class:`ConfigError` naming the fraction's key."""
    for key, fraction in fractions.items():
        if not 0 < fraction < 1:
            raise ConfigError(f"{key} must be in (0, 1), got {fraction}")
    rest = 1.0 - sum(fractions.values())
    if rest <= 0:
        raise ConfigError(f"{' + '.join(fractions)} must leave images to train on")
    indices = stratified_split(dataset.labels, (rest, *fractions.values()), seed)
    for key, part in zip(["the training split", *fractions], indices, strict=True):
        if len(part) == 0:
            raise ConfigError(
                f"{key} leaves no images of the {len(dataset)} in {source}; "
                "raise the fraction or add images"
            )
    return [dataset.select(part) for part in indices]


def balanced_subset(labels: Sequence[int] | Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Indices of a class-balanced labelled subset: ``round(fraction x count)`` images of each
    class (at least one), drawn at random but the same for the same ``seed``; sorted.

    This is the semi-supervised protocol's 1% / 10% of the labels (SimCLR, section 6), unlike
    taking the first images of the data set, which is neither balanced nor random.
    """
    LABEL_FRACTION.check(fraction)
    chosen = [
        members[: max(1, round(fraction * len(members)))]
        for members in shuffled_by_class(torch.as_tensor(labels), seed)
    ]
    return torch.cat(chosen).sort().values


def dataset_labels(dataset: Dataset) -> Tensor:
    """Every label of a labelled data set ``(N,)``, without decoding images when it can."""
    for attribute in ("labels", "targets"):
        if hasattr(dataset, attribute):
            return torch.as_tensor(getattr(dataset, attribute), dtype=torch.long)
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])


def join_splits(first: Dataset, second: Dataset) -> TensorImages | ImageFiles:
    """Two splits of one data set as one (``first``'s images, then ``second``'s)."""
    if isinstance(first, TensorImages) and isinstance(second, TensorImages):
        images = torch.cat([first.images, second.images])
        return TensorImages(images, torch.cat([first.labels, second.labels]))
    if isinstance(first, ImageFiles) and isinstance(second, ImageFiles):
        paths = np.concatenate([first.paths, second.paths])
        return ImageFiles(paths, torch.cat([first.labels, second.labels]), first.skip_corrupt)
    raise ConfigError(
        f"select_on_val=false cannot join this data set's splits ({type(first).__name__}, "
        f"{type(second).__name__}); keep select_on_val=true"
    )


def choose_training_images(
    splits: LabelledSplits,
    label_fraction: float,
    label_seed: int,
    label_subset: str | None,
    select_on_val: bool,
    where: str,
) -> Tensor:
    """Indices into ``splits.train`` of the images fine-tuning trains on, sorted:
    ``label_fraction`` of each class (:func:`balanced_subset`, fixed by ``label_seed``), or
    the images a published ``label_subset`` lists (:mod:`simclr.data.label_subsets`;
    ``where``: the folder, for its message).

    ``splits`` changes first where the choice needs it: ``select_on_val=False`` joins the
    validation split to the training split (leaving none), and a label subset takes back the
    listed images that the validation split held.
    """
    if not select_on_val:  # validation images join the training images
        splits.train = join_splits(splits.train, splits.val)
        splits.val = splits.val.select(torch.zeros(0, dtype=torch.long))
    if label_subset is not None:
        return take_label_subset(splits, label_subset, where)
    return balanced_subset(dataset_labels(splits.train), label_fraction, label_seed)
