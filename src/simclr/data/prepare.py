"""``python -m simclr.data.prepare SOURCE OUT``: an image folder or ImageNet into litdata
shards that ``data=streaming`` reads (docs/scaling.md "Streaming shards").

SOURCE is read by the loader of ``--source`` (``imagefolder``: the layouts ``data=imagefolder``
reads; ``imagenet``: ``train/`` and ``val/`` of class folders), with the same splits: the
validation and test images it holds out are written as their own ``val`` and ``test`` shard
folders, so every run on the shards sees the same split. OUT is a local folder; copy it to an
object store (``aws s3 sync OUT s3://bucket/data``) to stream from there.

Rerunning an interrupted preparation with the same arguments finishes it: splits already
written are kept, and a split cut off mid-way keeps its finished chunks and encodes the rest
(litdata's chunk checkpoints). Every split is read back and checked before the manifest is
marked complete; ``--verify`` checks a finished one again.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from simclr.data.image_files import ImageFiles
from simclr.data.sources import load_dataset, loader_options
from simclr.data.streaming.manifest import (
    FORMAT,
    MANIFEST_NAME,
    SPLITS,
    VERSION,
    fingerprint,
    load_complete_manifest,
    read_manifest,
    split_dir,
    write_manifest,
)
from simclr.data.streaming.writer import Encoder, read_back, verify_manifest, write_split
from simclr.errors import ConfigError, DataError, SimCLRError

log = logging.getLogger(__name__)

SOURCES = ("imagefolder", "imagenet")


def listings(source: str, root: str, options: dict) -> tuple[dict[str, ImageFiles], list[str]]:
    """The image files of each split of ``root`` as ``data.name=source`` reads them, and
    the class names."""
    splits = load_dataset(source, root, image_size=0, options=options)
    return {split: getattr(splits, split) for split in SPLITS}, list(splits.class_names)


def prepare(
    source_root: str,
    out: str,
    source: str = "imagefolder",
    options: dict | None = None,
    max_side: int | None = None,
    quality: int = 90,
    chunk_bytes: str = "64MB",
    num_workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write (or finish writing) the shards of ``source_root`` into ``out``; returns the
    manifest. See the module's docstring."""
    if source not in SOURCES:
        raise ConfigError(f"--source {source!r}: use one of {', '.join(SOURCES)}")
    if max_side is not None and max_side < 16:
        raise ConfigError(f"--max-side {max_side}: give at least 16 (pixels), or leave it out")
    if not 1 <= quality <= 100:
        raise ConfigError(f"--quality {quality}: a JPEG quality from 1 to 100")
    if "://" in str(out):
        raise ConfigError(
            f"OUT={out}: prepare writes to a local folder; copy it to the object store after "
            "(e.g. aws s3 sync OUT s3://bucket/prefix) and set data.root to that URI"
        )
    options = dict(options or {})
    files, class_names = listings(source, source_root, options)
    root = str(Path(source_root).expanduser().resolve())
    description = {
        "source": source,
        "options": options,
        "max_side": max_side,
        "quality": quality,
        "splits": {s: [list(map(str, f.paths)), f.labels.tolist()] for s, f in files.items()},
    }
    digest = fingerprint(description)
    out_path = Path(out).expanduser().resolve()
    manifest = read_manifest(str(out_path)) if out_path.is_dir() else None
    if manifest is None and out_path.is_dir() and any(out_path.iterdir()):
        raise DataError(
            f"{out_path} is not empty and holds no shards ({MANIFEST_NAME}); give a new or "
            "empty folder as OUT"
        )
    if manifest is not None and manifest.get("fingerprint") != digest:
        if not overwrite:
            raise DataError(
                f"{out_path} holds shards of other images or options (its {MANIFEST_NAME} "
                "differs); choose another OUT, or pass --overwrite to replace them"
            )
        shutil.rmtree(out_path)  # only ever a folder of shards (it has a manifest)
        manifest = None
    if manifest is not None and manifest.get("complete"):
        print(f"{out_path} already holds these shards (complete); nothing to write")
        return manifest
    out_path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "complete": False,
        "fingerprint": digest,
        "source": {"kind": source, "root": root, "options": options},
        "max_side": max_side,
        "quality": quality,
        "class_names": class_names,
        "num_classes": len(class_names),
        "splits": {},
    }
    write_manifest(out_path, manifest)
    unreadable = []
    for split, images in files.items():
        paths, labels = list(map(str, images.paths)), images.labels.tolist()
        encoder = Encoder(root, paths, labels, max_side, quality)
        write_split(out_path, split, encoder, chunk_bytes, num_workers, progress)
        names = [Encoder.name(root, path) for path in paths]
        found = read_back(split_dir(out_path, split), {"names": names, "labels": labels})
        unreadable += found.pop("errors")
        manifest["splits"][split] = found
        print(f"{split}: {found['count']} images written and read back", file=sys.stderr)
    if unreadable:
        raise DataError(
            f"{len(unreadable)} image file(s) could not be read: {'; '.join(unreadable[:10])}"
            f"{' ...' if len(unreadable) > 10 else ''}; remove or replace them, then rerun "
            "with --overwrite"
        )
    manifest["complete"] = True
    write_manifest(out_path, manifest)
    return manifest


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simclr.data.prepare",
        description="Write an image folder or ImageNet into litdata shards (data=streaming).",
    )
    parser.add_argument("source_root", metavar="SOURCE", help="the image folder (or ImageNet)")
    parser.add_argument("out", metavar="OUT", help="the local folder the shards go to")
    parser.add_argument("--source", choices=SOURCES, default="imagefolder")
    parser.add_argument("--max-side", type=int, default=None, help="shrink larger images")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encodes")
    parser.add_argument("--chunk-bytes", default="64MB", help="the size of a chunk file")
    parser.add_argument("--num-workers", type=int, default=1, help="encoding processes")
    parser.add_argument("--val-fraction", type=float, default=None)
    parser.add_argument("--test-fraction", type=float, default=None)
    parser.add_argument("--split-seed", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace other shards in OUT")
    parser.add_argument(
        "--verify", action="store_true", help="only read finished shards at OUT back and check"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_arguments(argv)
    try:
        if args.verify:
            verify_manifest(args.out, load_complete_manifest(args.out))
            return 0
        names = {"val_fraction": args.val_fraction, "test_fraction": args.test_fraction}
        names["split_seed"] = args.split_seed
        valid = loader_options(args.source)
        options = {k: v for k, v in names.items() if v is not None and k in valid}
        ignored = [k for k, v in names.items() if v is not None and k not in valid]
        if ignored:
            raise ConfigError(f"--source {args.source} takes no --{ignored[0].replace('_', '-')}")
        manifest = prepare(
            args.source_root,
            args.out,
            args.source,
            options,
            args.max_side,
            args.quality,
            args.chunk_bytes,
            args.num_workers,
            args.overwrite,
        )
    except SimCLRError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s} {manifest['splits'][s]['count']}" for s in SPLITS)
    print(
        f"shards complete in {Path(args.out).resolve()}: {counts} images, "
        f"{manifest['num_classes']} classes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
