"""Folders of image files, one sub-folder per class: ``imagefolder``, decoded when read."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

from simclr.data.containers import LabelledSplits
from simclr.data.image_files import ImageFiles
from simclr.data.sources.catalogue import DATASETS, Source
from simclr.data.splits import hold_out
from simclr.errors import ConfigError, DataError

_EXTENSIONS = ", ".join(IMG_EXTENSIONS)


def _image_files(folder: Path) -> list[str]:
    """Every image file below ``folder`` (any depth, links followed), sorted."""
    found = []
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found += [
            os.path.join(directory, name)
            for name in names
            if not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)
        ]
    return sorted(found)


def scan_class_folders(
    folder: Path, classes: list[str] | None = None, skip_corrupt: bool = False
) -> tuple[ImageFiles, list[str]]:
    """The images of ``folder/<class>/...``, labelled by the class folder's position in
    ``classes`` (default: the sorted class folders found). Raises :class:`DataError` for a
    missing or empty folder, or a class folder without images; an unknown class folder (one
    not in ``classes``) too."""
    if not folder.is_dir():
        raise DataError(
            f"image folder {folder} does not exist; it must hold one sub-folder of images per "
            "class (set data.root to the folder that holds them)"
        )
    class_dirs = sorted(
        entry.name for entry in os.scandir(folder) if entry.is_dir() and entry.name[0] != "."
    )
    if not class_dirs:
        loose = [name for name in os.listdir(folder) if name.lower().endswith(IMG_EXTENSIONS)]
        detail = (
            f"it has {len(loose)} image files directly in it: move them into one sub-folder "
            "per class (a single sub-folder if the images have no classes)"
            if loose
            else "it is empty"
        )
        raise DataError(
            f"no class folders in image folder {folder}: {detail}. Expected "
            f"{folder}/<class>/<image> (files ending in {_EXTENSIONS}); set data.root to the "
            "folder that holds the class folders"
        )
    classes = class_dirs if classes is None else classes
    unknown = sorted(set(class_dirs) - set(classes))
    if unknown:
        raise DataError(
            f"{folder} has class folders that the training folder lacks: "
            f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}"
        )
    index = {name: i for i, name in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    empty = []
    for name in class_dirs:
        found = _image_files(folder / name)
        if not found:
            empty.append(name)
        paths += found
        labels += [index[name]] * len(found)
    if empty:
        raise DataError(
            f"class folders without images in {folder}: {', '.join(empty[:10])}"
            f"{' ...' if len(empty) > 10 else ''} (images are files ending in {_EXTENSIONS}); "
            "add images or remove the folders"
        )
    return ImageFiles(paths, labels, skip_corrupt), classes


@DATASETS.register("imagefolder")
def load_image_folder(
    source: Source,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    skip_corrupt: bool = False,
) -> LabelledSplits:
    """Images in class folders (``<class>/<any depth>/<image>``), in one of two layouts.

    - ``root/train/`` exists: it is the training split. With ``root/test/`` too, that is the
      test split and ``root/val/`` (if any) the validation split. Without ``test/``,
      ``root/val/`` is the test split (a published validation set is what papers report),
      and the validation split (for choosing checkpoints) is a stratified ``val_fraction`` of
      ``train/``. Missing splits are held out of ``train/`` by their fractions.
    - otherwise ``root`` itself holds the class folders and is split by class into train,
      val (``val_fraction``) and test (``test_fraction``).

    Class indices follow the sorted class-folder names of the training folder. Images are
    decoded when read (see :class:`ImageFiles` for corrupt files and ``skip_corrupt``).
    """
    if source.download:
        raise ConfigError(
            "data.download=true: an image folder cannot be downloaded; set data.download=false"
            " and data.root to the folder"
        )
    root_path = Path(source.root).expanduser().resolve()
    if not root_path.is_dir():
        raise DataError(
            f"image folder {root_path} does not exist; set data.root to a folder of class "
            "sub-folders of images, or to one with train/ and val/ (each of class sub-folders)"
        )
    train_dir, val_dir, test_dir = (root_path / name for name in ("train", "val", "test"))
    if not train_dir.is_dir():
        everything, classes = scan_class_folders(root_path, skip_corrupt=skip_corrupt)
        train, val, test = hold_out(
            everything,
            {
                "data.options.val_fraction": val_fraction,
                "data.options.test_fraction": test_fraction,
            },
            source.split_seed,
            str(root_path),
        )
        return LabelledSplits(train, val, test, len(classes), class_names=classes)

    train, classes = scan_class_folders(train_dir, skip_corrupt=skip_corrupt)
    fractions = {}
    if test_dir.is_dir():
        test, _ = scan_class_folders(test_dir, classes, skip_corrupt)
        val = scan_class_folders(val_dir, classes, skip_corrupt)[0] if val_dir.is_dir() else None
    elif val_dir.is_dir():
        test, val = scan_class_folders(val_dir, classes, skip_corrupt)[0], None
    else:
        test, val = None, None
        fractions["data.options.test_fraction"] = test_fraction
    if val is None:
        fractions = {"data.options.val_fraction": val_fraction, **fractions}
    if fractions:
        train, *held = hold_out(train, fractions, source.split_seed, str(train_dir))
        val = held[0] if val is None else val
        test = held[-1] if test is None else test
    return LabelledSplits(train, val, test, len(classes), class_names=classes)
