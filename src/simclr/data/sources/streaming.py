"""``streaming``: shards written by ``python -m simclr.data.prepare``, read from a local folder
or an object-store URI (``s3://bucket/prefix``, ``gs://`` ...) with litdata."""

from __future__ import annotations

from simclr.data.containers import LabelledSplits
from simclr.data.sources.catalogue import DATASETS, Source
from simclr.errors import ConfigError


@DATASETS.register("streaming")
def load_streaming(
    source: Source,
    cache_dir: str | None = None,
    max_cache_size: str | None = None,
    storage_options: dict | None = None,
) -> LabelledSplits:
    """The ``train``, ``val`` and ``test`` splits of the shards at ``root``, as prepared (the
    splits were fixed when the shards were written). ``cache_dir`` and ``max_cache_size``: where
    litdata keeps the chunks it downloaded from an object store, and how much of them (None:
    litdata's defaults); ``storage_options``: the store's client options (endpoint, keys)."""
    from simclr.data.streaming.manifest import SPLITS, load_complete_manifest, split_dir
    from simclr.data.streaming.reader import ShardSplit

    if source.download:
        raise ConfigError(
            "data.download=true: shards are written by python -m simclr.data.prepare, not "
            "downloaded; set data.download=false"
        )
    if source.split_seed != 0:
        raise ConfigError(
            f"data.options.split_seed={source.split_seed}: the shards' splits were drawn when "
            "they were written; give python -m simclr.data.prepare --split-seed instead"
        )
    root = source.root
    options = {
        "cache_dir": cache_dir,
        "max_cache_size": max_cache_size,
        "storage_options": dict(storage_options or {}),
    }
    manifest = load_complete_manifest(root, options["storage_options"])
    splits = {
        split: ShardSplit(split_dir(root, split), manifest["splits"][split]["labels"], options)
        for split in SPLITS
    }
    return LabelledSplits(
        splits["train"],
        splits["val"],
        splits["test"],
        manifest["num_classes"],
        class_names=manifest["class_names"],
    )
