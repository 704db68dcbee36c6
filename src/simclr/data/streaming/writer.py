"""Writing an image folder or ImageNet into litdata chunks, resumably, and reading it back.

Each split is one ``litdata.optimize`` run into ``OUT/<split>/``; a sample is
``{"index", "label", "name", "image", "error"}``: its position in the split (the listing of
:func:`~simclr.data.sources.load_dataset`, sorted), its label, its file's path relative to
the source, its JPEG bytes, and why it could not be read (empty when it could).

- JPEG files within ``max_side`` are stored byte for byte (no second lossy encoding);
  larger ones, and other formats, are decoded, shrunk to ``max_side`` on the longer side
  (as FFCV's ``max_resolution``) and encoded as JPEG of ``quality``.
- Resumable: litdata checkpoints every finished chunk (``use_checkpoint``); a rerun of an
  interrupted preparation keeps the chunks already written and encodes only the rest, and
  skips the splits already written.
- Verified: every sample is read back; the count, the indices, labels and names against the
  source listing, and the JPEG start marker are checked, and a SHA-256 digest over the split is
  kept in the manifest (``--verify`` recomputes it later, e.g. after a copy to a bucket).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
from pathlib import Path

from PIL import Image

from simclr.data.streaming import require_litdata
from simclr.data.streaming.manifest import SPLITS, split_dir
from simclr.errors import DataError

log = logging.getLogger(__name__)

JPEG_START = b"\xff\xd8"


class Encoder:
    """``index -> sample`` for litdata's ``optimize``, run in its worker processes.

    An image that cannot be read does not raise (an exception in an ``optimize`` worker
    leaves orphaned processes behind in litdata 0.2): its sample carries the reason in
    ``error`` and verification reports it.
    """

    def __init__(self, root: str, paths: list[str], labels: list[int], max_side, quality: int):
        self.root, self.paths, self.labels = root, paths, labels
        self.max_side, self.quality = max_side, quality

    def __call__(self, index: int) -> dict:
        path = self.paths[index]
        sample = {"index": index, "label": self.labels[index], "name": self.name(self.root, path)}
        try:
            sample["image"], sample["error"] = self.encode(path), ""
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            sample["image"], sample["error"] = b"", f"{type(error).__name__}: {error}"
        return sample

    @staticmethod
    def name(root: str, path: str) -> str:
        """A file's path relative to the source folder: how a sample names its image."""
        return os.path.relpath(path, root)

    def encode(self, path: str) -> bytes:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            small = self.max_side is None or max(image.size) <= self.max_side
            keep = image.format == "JPEG" and small
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")
            image = image.convert("RGB")  # decodes every pixel: a truncated file shows here
            if keep:
                return data
            if not small:
                image.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=self.quality)
            return out.getvalue()


def checkpointed_workers(folder: Path) -> int | None:
    """The worker count of an interrupted write in ``folder`` (litdata resumes only with the
    same count), or None where there is none."""
    config = folder / ".checkpoints" / "config.json"
    return json.loads(config.read_text())["num_workers"] if config.is_file() else None


def write_split(
    out: Path, split: str, encoder: Encoder, chunk_bytes: str, num_workers: int, progress: bool
) -> None:
    """Write one split into ``out/<split>`` with ``optimize``, resuming an interrupted write.
    A folder that already holds a finished ``index.json`` is left as it is."""
    litdata = require_litdata()
    folder = Path(split_dir(out, split))
    if (folder / "index.json").is_file():
        log.info("%s: already written, reading it back", split)
        return
    workers = checkpointed_workers(folder)
    if workers is not None:
        log.info("%s: resuming an interrupted write (%d worker(s))", split, workers)
    print(f"writing {split}: {len(encoder.paths)} images into {folder}", file=sys.stderr)
    litdata.optimize(
        fn=encoder,
        inputs=list(range(len(encoder.paths))),
        output_dir=str(folder),
        chunk_bytes=chunk_bytes,
        num_workers=workers or num_workers,
        use_checkpoint=True,
        # fork: the workers only need PIL; spawn would import torch again in each of them.
        start_method="fork" if sys.platform == "linux" else None,
        verbose=progress,
    )


def read_back(location: str, expected: dict | None = None) -> dict:
    """Read every sample of the split at ``location`` (a path or URI) and check it: the
    indices 0..n-1 once each, the JPEG start marker, and (with ``expected``: ``names`` and
    ``labels`` of the source listing) each sample's name and label. Returns ``count``,
    ``labels`` (in index order), ``sha256`` and ``errors`` (what could not be read)."""
    litdata = require_litdata()
    dataset = litdata.StreamingDataset(location)
    records: dict[int, tuple[int, str]] = {}
    problems, unreadable = [], []
    try:
        for sample in dataset:
            _check_sample(sample, records, problems, unreadable, expected)
    except DataError:
        raise
    except Exception as error:  # a damaged chunk, as litdata's loader meets it (struct, zstd)
        raise DataError(
            f"shards at {location} cannot be read back ({type(error).__name__}: {error}); a "
            "chunk is damaged: prepare them again with --overwrite"
        ) from None
    count = len(expected["labels"]) if expected is not None else len(records)
    missing = sorted(set(range(count)) - set(records))
    if missing or len(records) != count:
        problems.append(f"{len(records)} samples stored, {count} expected (missing {missing[:5]})")
    digest = hashlib.sha256()
    for index in sorted(records):
        digest.update(f"{index} {records[index][0]} {records[index][1]}\n".encode())
    labels = [records[i][0] for i in sorted(records)]
    if problems:
        raise DataError(f"shards at {location} fail verification: " + "; ".join(problems[:10]))
    return {
        "count": len(records),
        "labels": labels,
        "sha256": digest.hexdigest(),
        "errors": unreadable,
    }


def _check_sample(sample: dict, records: dict, problems: list, unreadable: list, expected) -> None:
    """One stored sample checked (see :func:`read_back`), its label and digest recorded."""
    index, label, image = int(sample["index"]), int(sample["label"]), bytes(sample["image"])
    if index in records:
        problems.append(f"index {index} stored twice")
    if sample["error"]:
        unreadable.append(f"{sample['name']} ({sample['error']})")
    elif not image.startswith(JPEG_START):
        problems.append(f"{sample['name']}: the stored bytes are not a JPEG")
    if expected is not None and (
        expected["names"][index] != sample["name"] or expected["labels"][index] != label
    ):
        problems.append(f"index {index}: {sample['name']} label {label} does not match")
    records[index] = (label, hashlib.sha256(image).hexdigest())


def verify_manifest(root: str, manifest: dict) -> None:
    """Read a finished preparation back and compare with its manifest (``--verify``)."""
    for split in SPLITS:
        recorded = manifest["splits"][split]
        found = read_back(split_dir(root, split))
        if (found["count"], found["sha256"]) != (recorded["count"], recorded["sha256"]):
            raise DataError(
                f"{split_dir(root, split)}: {found['count']} samples, digest "
                f"{found['sha256'][:12]}; the manifest records {recorded['count']}, "
                f"{recorded['sha256'][:12]}: the shards changed since they were prepared"
            )
        print(f"{split}: {found['count']} images, sha256 {found['sha256'][:16]}... verified")
