"""The description a prepared shard folder carries beside its chunks: ``simclr_shards.json``.

It names the classes, and for each split (``train``, ``val``, ``test``, one litdata folder
each) the number of images, their labels (fine-tuning draws its class-balanced labelled
subset from them without reading an image) and the SHA-256 digest that verification
computed. ``complete`` is written last, once every split has been written and read back, so a
folder whose preparation stopped half-way is never trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from simclr.errors import DataError

MANIFEST_NAME = "simclr_shards.json"
FORMAT = "simclr-shards"
VERSION = 1
SPLITS = ("train", "val", "test")


def is_remote(root: str) -> bool:
    """Whether ``root`` is an object-store URI (``s3://``, ``gs://`` ...) rather than a path."""
    return "://" in str(root)


def split_dir(root: str, split: str) -> str:
    """The litdata folder (or URI) of ``split`` under ``root``."""
    return f"{str(root).rstrip('/')}/{split}" if is_remote(root) else str(Path(root) / split)


def fingerprint(description: dict) -> str:
    """A digest of what a preparation writes (the source's files and labels, and the
    options), so that a rerun can tell its own half-written output from another one's."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def write_manifest(root: Path, manifest: dict) -> None:
    """Write ``manifest`` atomically: a kill leaves the previous file whole."""
    path = Path(root) / MANIFEST_NAME
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest) + "\n")
    os.replace(temporary, path)


def read_manifest(root: str, storage_options: dict | None = None) -> dict | None:
    """The manifest of the shard folder ``root`` (a path or an object-store URI), or None
    where there is none. A remote one is fetched with litdata's storage client."""
    if not is_remote(root):
        path = Path(root).expanduser() / MANIFEST_NAME
        return json.loads(path.read_text()) if path.is_file() else None
    from litdata.streaming.fs_provider import _get_fs_provider

    url = f"{str(root).rstrip('/')}/{MANIFEST_NAME}"
    provider = _get_fs_provider(url, storage_options)
    if not provider.exists(url):
        return None
    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, MANIFEST_NAME)
        provider.download_file(url, local)
        return json.loads(Path(local).read_text())


def load_complete_manifest(root: str, storage_options: dict | None = None) -> dict:
    """The manifest of a finished preparation at ``root``; a :class:`DataError` saying what to
    run where there is none, or where the preparation did not finish."""
    manifest = read_manifest(root, storage_options)
    if manifest is None or manifest.get("format") != FORMAT:
        raise DataError(
            f"no prepared shards at {root} (no {MANIFEST_NAME}); write them with "
            f"python -m simclr.data.prepare SOURCE {root} and set data.root to that folder "
            "(or to the object-store URI you copied it to)"
        )
    if not manifest.get("complete"):
        raise DataError(
            f"the shards at {root} were not finished (the preparation stopped before its "
            f"verification); rerun python -m simclr.data.prepare with the same SOURCE and {root}"
        )
    if manifest.get("version") != VERSION:
        raise DataError(
            f"the shards at {root} are of format version {manifest.get('version')}, this "
            f"code reads version {VERSION}; prepare them again"
        )
    return manifest
