"""Image files decoded when read, with corrupt files named, or skipped and counted."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from simclr.errors import DataError

log = logging.getLogger(__name__)


# The line of a worker's traceback that carries an UndecodableImageError's fields.
RECORD_PREFIX = "simclr undecodable image: "


class UndecodableImageError(DataError):
    """An image file that PIL cannot decode: its ``path``, and PIL's ``reason``.

    Met in a DataLoader worker, the error reaches the main process as torch rebuilds it: from
    its class and the worker's formatted traceback only (``Caught ... Original Traceback``).
    So the error carries its fields in a note (PEP 678), one line of JSON that the traceback
    holds, and the rebuilt error reads them back from that line: the user sees the same one
    line naming the file, with or without workers, never a worker's stack trace.
    """

    def __init__(self, path: str, reason: str | None = None):
        if reason is None:  # torch's rebuild: the only argument is the worker's traceback
            path, reason = _fields_from_traceback(path)
        self.path, self.reason = path, reason
        super().__init__(
            f"cannot decode image file {path} ({reason}); remove or replace it, or set "
            "data.options.skip_corrupt=true to skip such files with a warning and a count"
        )
        self.add_note(RECORD_PREFIX + json.dumps({"path": path, "reason": reason}))


def _fields_from_traceback(text: str) -> tuple[str, str]:
    """``(path, reason)`` from the record line of a traceback; the whole text as the reason
    where there is none (an error built by hand)."""
    for line in reversed(text.splitlines()):
        if line.startswith(RECORD_PREFIX):
            record = json.loads(line.removeprefix(RECORD_PREFIX))
            return record["path"], record["reason"]
    return "(unknown)", text


def rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB, decoding every pixel (so that a truncated file shows here); of an
    animation (GIF, WebP), the first frame, where PIL opens it."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # as PIL advises for such palettes
    return image.convert("RGB")


def decode_rgb(path: str) -> Image.Image:
    """The whole image file at ``path``, decoded, in RGB (:class:`ImageFiles`' default)."""
    with Image.open(path) as image:
        return rgb(image)


class ImageFiles(Dataset):
    """Image files with integer labels (-1: none), decoded with PIL when read; items
    ``(PIL RGB, label)``.

    ``decode`` (path -> item) replaces the decoding, e.g. by one that decodes only the crops
    of the views (:mod:`simclr.data.augment.crop_first`); :meth:`with_decoder` gives such a
    copy, which marks undecodable files in the same shared record.

    Corrupt files are found when read, not by a decoding pass up front (that would read the
    whole data set, e.g. 140 GB for ImageNet, before the first step). A file that cannot be
    decoded raises :class:`UndecodableImageError` naming it; with ``skip_corrupt`` it is
    logged once per process, marked, and the next decodable image is served in its place (so
    every batch keeps its size, as the all-gather across devices requires).
    :meth:`undecodable_files` lists the marked files, whichever worker process met them.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        skip_corrupt: bool = False,
        decode: Callable[[str], object] = decode_rgb,
    ):
        # A numpy array of strings rather than a list of Python objects: forked DataLoader
        # workers then share the paths instead of copying them page by page as they read.
        self.paths = np.asarray(paths, dtype=str)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.skip_corrupt = skip_corrupt
        self.decode = decode
        # Shared memory, so that marks made in worker processes are seen by the main one.
        self.undecodable = torch.zeros(len(self.paths), dtype=torch.bool).share_memory_()
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices: Tensor) -> ImageFiles:
        indices = torch.as_tensor(indices).numpy()
        return ImageFiles(
            self.paths[indices], self.labels.numpy()[indices], self.skip_corrupt, self.decode
        )

    def with_decoder(self, decode: Callable[[str], object]) -> ImageFiles:
        """The same files read by ``decode``, sharing the record of undecodable files."""
        files = copy.copy(self)
        files.decode = decode
        return files

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            try:
                return self.decode(str(self.paths[candidate])), int(self.labels[candidate])
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                path = str(self.paths[candidate])
                if not self.skip_corrupt:
                    reason = f"{type(error).__name__}: {error}"
                    raise UndecodableImageError(path, reason) from error
                self.undecodable[candidate] = True
                if candidate not in self._reported:
                    self._reported.add(candidate)
                    log.warning("skipping image file that cannot be decoded: %s (%s)", path, error)
        raise DataError(f"none of the {len(self)} image files could be decoded, e.g. {path}")

    def undecodable_files(self) -> list[str]:
        return [str(p) for p in self.paths[self.undecodable.numpy()]]


def undecodable_in(splits) -> list[str]:
    """The image files found undecodable (and skipped) so far in the splits of a
    :class:`~simclr.data.containers.LabelledSplits` that are read from files."""
    found: list[str] = []
    for name in ("train", "val", "test", "unlabeled"):
        dataset = getattr(splits, name)
        if isinstance(dataset, ImageFiles):
            found += dataset.undecodable_files()
    return found
