"""Embeddings out: the encoder's features h (or the projection head's z) of every image of a data
set's split(s), with each image's row (its relative path, split, index and label where it has
one), written to Parquet or NumPy; the work of ``python -m simclr.embed`` and
``simclr.embed(...)`` (:mod:`simclr.api`).

Images are read as the monitors and fine-tuning's evaluation read them: the data config's
evaluation transform (:meth:`~simclr.data.labelled.LabelledData.eval_transform`), at the
encoder's own image size, in the data set's order, every image kept.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from simclr import extras
from simclr.data.containers import Transformed
from simclr.data.dataloaders import make_dataloader
from simclr.data.image_files import ImageFiles
from simclr.data.labelled import LabelledData
from simclr.errors import ConfigError, DataError
from simclr.models.heads import ProjectionHead
from simclr.models.pretrained import PretrainedEncoder, load_strictly

# The splits a data set may have, in the order ``all`` writes them.
SPLITS = ("train", "val", "test", "unlabeled")
SPLIT_CHOICES = (*SPLITS, "all")
FILE_FORMATS = (".parquet", ".npz")
# Without a terminal: one plain progress line every this many batches.
PROGRESS_EVERY = 20


@dataclass(frozen=True)
class Embeddings:
    """One row per image: ``features`` ``(N, D)`` float32 (h, or z with ``kind="z"``);
    ``paths`` the image file relative to ``data.root``, or ``<split>/<index>`` for data held
    in memory; ``splits`` and ``indices`` the split and position in it; ``labels`` ``(N,)``,
    -1 for an image without one, None where no image has one. ``file``: where written."""

    features: np.ndarray
    paths: list[str]
    splits: list[str]
    indices: np.ndarray
    labels: np.ndarray | None
    kind: str
    file: Path | None = None

    def __len__(self) -> int:
        return len(self.paths)


def check_output(path: str | os.PathLike) -> Path:
    """``path`` if its extension names a format this machine can write (Parquet needs pyarrow,
    the ``parquet`` extra); checked before any image is read."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in FILE_FORMATS:
        raise ConfigError(
            f"--out {path}: the extension chooses the format; use {' or '.join(FILE_FORMATS)}"
        )
    if path.suffix.lower() == ".parquet":
        extras.PARQUET.require(f"--out {path}")
    return path


def resolve_device(device: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; otherwise a torch device name."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device}: use auto, cpu, cuda or cuda:<index>") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU here; use --device auto or cpu")
    return chosen


def read_encoder(path: str | os.PathLike, head: bool) -> tuple[PretrainedEncoder, nn.Module]:
    """The encoder of a checkpoint or export, and the model that embeds: the encoder (h), or
    with ``head`` the encoder followed by its projection head (z); in eval mode."""
    if not Path(path).expanduser().exists():
        raise DataError(
            f"{path} does not exist; give a checkpoint (.ckpt) or an export (its folder, "
            "encoder.pt or encoder.json)"
        )
    encoder = PretrainedEncoder.read(path)
    model, feature_dim = encoder.build()
    if head:
        try:
            weights = encoder.require_head().head
        except DataError as error:
            raise DataError(f"--head embeds with the projection head: {error}") from None
        projection = ProjectionHead(feature_dim, **weights.config)
        load_strictly(projection, weights.state_dict, f"the projection head in {weights.source}")
        model = nn.Sequential(model, projection)
    return encoder, model.eval()


def labelled_data(data: dict, image_size: int) -> LabelledData:
    """The data config's splits (``data``: a composed ``configs/data`` node, as plain values)
    at ``image_size``; the keys that only training reads are left out."""
    return LabelledData.from_data_config(data, image_size=image_size)


def chosen_splits(labelled: LabelledData, split: str) -> list[tuple[str, Dataset]]:
    """``(name, images)`` of ``split``, or of every split the data set has for ``all``."""
    if split not in SPLIT_CHOICES:
        raise ConfigError(f"split={split!r}: use one of {', '.join(SPLIT_CHOICES)}")
    splits = labelled.load_splits()
    names = SPLITS if split == "all" else (split,)
    found = [(name, getattr(splits, name, None)) for name in names]
    found = [(name, images) for name, images in found if images is not None]
    if not found:
        raise DataError(f"data set {labelled.name!r} has no {split!r} split")
    return found


def row_paths(images: Dataset, split: str, root: str) -> list[str]:
    """Each image's file relative to ``root``; ``<split>/<index>`` for images held in memory."""
    if isinstance(images, ImageFiles):
        base = Path(root).expanduser().resolve()
        return [os.path.relpath(path, base) for path in images.paths]
    return [f"{split}/{index}" for index in range(len(images))]


class ProgressLines:
    """The progress of embedding: rich's bar on a terminal; without one (a log file, a
    notebook), a plain line every ``every`` batches and at the end; nothing when disabled."""

    def __init__(self, total: int, every: int = PROGRESS_EVERY, enabled: bool = True):
        self.total, self.every, self.enabled = total, max(1, every), enabled
        self.done, self.images, self.started = 0, 0, time.monotonic()
        self.bar = None
        if enabled and sys.stdout.isatty():
            from rich.progress import Progress

            self.bar = Progress(transient=False)
            self.task = self.bar.add_task("embedding", total=total)
            self.bar.start()

    def advance(self, images: int) -> None:
        self.done += 1
        self.images += images
        if self.bar is not None:
            self.bar.update(self.task, advance=1)
        elif self.enabled and (self.done % self.every == 0 or self.done == self.total):
            rate = self.images / max(time.monotonic() - self.started, 1e-9)
            print(
                f"embedding: batch {self.done}/{self.total}, {self.images} images, "
                f"{rate:.0f} images/s",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def embed_images(
    model: nn.Module,
    labelled: LabelledData,
    splits: list[tuple[str, Dataset]],
    batch_size: int,
    device: torch.device,
    progress: ProgressLines | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs ``(N, D)`` for the images of ``splits`` (in order, through the
    evaluation transform) and their labels ``(N,)`` (-1: none)."""
    model = model.to(device)
    loaders = [
        make_dataloader(
            Transformed(images, labelled.eval_transform()), batch_size, "eval", labelled.settings
        )
        for _, images in splits
    ]
    progress = progress or ProgressLines(sum(map(len, loaders)), enabled=False)
    features, labels = [], []
    try:
        with torch.inference_mode():
            for loader in loaders:
                for images, batch_labels in loader:
                    out = model(images.to(device, non_blocking=True))
                    features.append(out.float().cpu())
                    labels.append(torch.as_tensor(batch_labels, dtype=torch.long))
                    progress.advance(len(images))
    finally:
        progress.close()
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def embed_data(
    checkpoint: str | os.PathLike,
    data: dict,
    split: str = "all",
    head: bool = False,
    batch_size: int | None = None,
    device: str = "auto",
    progress: bool = True,
    progress_every: int | None = None,
) -> Embeddings:
    """The embeddings of ``split`` of the data config ``data`` (plain values) by the encoder of
    ``checkpoint`` (a checkpoint or an export), at its image size; ``batch_size`` None: the
    data's ``eval_batch_size``."""
    encoder, model = read_encoder(checkpoint, head)
    labelled = labelled_data(data, encoder.image_size)
    splits = chosen_splits(labelled, split)
    batch_size = batch_size or labelled.eval_batch_size
    total = sum(-(-len(images) // batch_size) for _, images in splits)
    lines = ProgressLines(total, progress_every or PROGRESS_EVERY, enabled=progress)
    features, labels = embed_images(
        model, labelled, splits, batch_size, resolve_device(device), lines
    )
    return Embeddings(
        features=features,
        paths=[path for name, images in splits for path in row_paths(images, name, labelled.root)],
        splits=[name for name, images in splits for _ in range(len(images))],
        indices=np.concatenate([np.arange(len(images)) for _, images in splits]),
        labels=labels if (labels >= 0).any() else None,
        kind="z" if head else "h",
    )


def write_embeddings(embeddings: Embeddings, path: str | os.PathLike) -> Embeddings:
    """Write ``embeddings`` to ``path`` (``.parquet``: columns ``path``, ``split``, ``index``,
    ``label`` (null: none; left out where no image has one) and ``feature`` (a fixed-size list
    of float32); ``.npz``: arrays ``features``, ``paths``, ``splits``, ``indices`` and
    ``labels`` (-1: none; left out likewise)); returns them with their ``file``."""
    path = check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npz":
        arrays = {
            "features": embeddings.features,
            "paths": np.asarray(embeddings.paths, dtype=str),
            "splits": np.asarray(embeddings.splits, dtype=str),
            "indices": embeddings.indices,
        }
        if embeddings.labels is not None:
            arrays["labels"] = embeddings.labels
        with open(path, "wb") as file:  # a file object: np.savez adds no second extension
            np.savez(file, **arrays)
    else:
        write_parquet(embeddings, path)
    return replace(embeddings, file=path)


def write_parquet(embeddings: Embeddings, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "path": pa.array(embeddings.paths, pa.string()),
        "split": pa.array(embeddings.splits, pa.string()),
        "index": pa.array(embeddings.indices, pa.int64()),
    }
    if embeddings.labels is not None:
        columns["label"] = pa.array(embeddings.labels, pa.int64(), mask=embeddings.labels < 0)
    features = np.ascontiguousarray(embeddings.features, dtype=np.float32)
    columns["feature"] = pa.FixedSizeListArray.from_arrays(
        pa.array(features.reshape(-1)), features.shape[1]
    )
    table = pa.table(columns).replace_schema_metadata({"simclr.kind": embeddings.kind})
    pq.write_table(table, path)
