"""``imagenet``: ILSVRC-2012 in the image-folder layout (``train/`` and ``val/``, one folder
per class in each), read by the generic image-folder loader once the layout is checked."""

from __future__ import annotations

from pathlib import Path

from simclr.data.containers import LabelledSplits
from simclr.data.sources.catalogue import DATASETS, Source
from simclr.data.sources.image_folders import load_image_folder
from simclr.errors import ConfigError, DataError


@DATASETS.register("imagenet")
def load_imagenet(
    source: Source, val_fraction: float = 0.01, skip_corrupt: bool = False
) -> LabelledSplits:
    """ILSVRC-2012 in the image-folder layout: ``root/train/<wnid>/`` and ``root/val/<wnid>/``.
    ``val/`` is the test split; ``val`` is a stratified ``val_fraction`` of ``train/``."""
    if source.download:
        raise ConfigError(
            "data.download=true: ImageNet cannot be downloaded automatically (its licence "
            "needs a sign-up at https://image-net.org); set data.download=false"
        )
    root_path = Path(source.root).expanduser().resolve()
    # A root that does not exist is the image-folder loader's to report, as for any folder.
    if root_path.is_dir() and not all((root_path / s).is_dir() for s in ("train", "val")):
        raise DataError(
            f"ImageNet not found under {root_path}: expected train/<class>/*.JPEG and "
            "val/<class>/*.JPEG (ILSVRC-2012, with the validation images sorted into their "
            "class folders). ImageNet cannot be downloaded automatically: get it from "
            "https://image-net.org, put it there, or set data.root to its folder."
        )
    return load_image_folder(source, val_fraction=val_fraction, skip_corrupt=skip_corrupt)
