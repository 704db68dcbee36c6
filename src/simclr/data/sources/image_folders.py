"""Folders of image files, decoded when read: ``imagefolder``, labelled by one sub-folder per
class, or unlabelled (loose images, or nested by date or camera rather than by class)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from simclr.data.containers import UNLABELLED, LabelledSplits
from simclr.data.image_files import ImageFiles
from simclr.data.sources.catalogue import DATASETS, Source
from simclr.data.splits import hold_out
from simclr.errors import ConfigError, DataError
from simclr.rules import Rule

log = logging.getLogger(__name__)

# torchvision's image extensions, and GIF (read as its first frame).
DEFAULT_EXTENSIONS = (
    *(".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"),
    ".gif",
)
LABEL_MODES = ("folders", "none", "auto")
LABELS = Rule("data.options.labels", lambda v: v in LABEL_MODES, "folders, none or auto")
EXTENSIONS = Rule(
    "data.options.extensions",
    lambda v: isinstance(v, Sequence) and not isinstance(v, str) and len(v) > 0
    and all(isinstance(e, str) and e.strip(".") for e in v),
    "a non-empty list of file extensions, e.g. [.jpg, .png]",
)  # fmt: skip


class FolderScan:
    """Finds the image files (names ending in one of ``extensions``, any case) of a load,
    counting the other files it passes over, so that :meth:`report_passed_over` logs them once."""

    def __init__(self, extensions: Sequence[str] = DEFAULT_EXTENSIONS):
        EXTENSIONS.check(extensions)
        self.extensions = tuple("." + e.lower().lstrip(".") for e in extensions)
        self.passed_over: Counter[str] = Counter()
        self._counted: set[str] = set()

    def is_image(self, name: str) -> bool:
        return name.lower().endswith(self.extensions)

    def images_in(self, folder: Path) -> list[str]:
        """The image files directly in ``folder`` (not counting the others)."""
        return [e.name for e in os.scandir(folder) if e.is_file() and self.is_image(e.name)]

    def images_below(self, folder: Path) -> list[str]:
        """Every image file below ``folder`` (any depth, links followed, hidden entries
        left out), sorted; the other files are counted as passed over."""
        found = []
        for directory, subdirs, names in os.walk(folder, followlinks=True):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            for name in names:
                path = os.path.join(directory, name)
                if name.startswith("."):
                    continue
                if self.is_image(name):
                    found.append(path)
                elif path not in self._counted:  # a folder scanned twice counts once
                    self._counted.add(path)
                    self.passed_over[Path(name).suffix.lower() or "(none)"] += 1
        return sorted(found)

    def report_passed_over(self, root: Path) -> None:
        """One log line counting the files passed over, by extension, if any."""
        if self.passed_over:
            counts = ", ".join(f"{ext} {n}" for ext, n in self.passed_over.most_common())
            log.info(
                "image folder %s: passed over %d file(s) not in data.options.extensions (%s)",
                root,
                sum(self.passed_over.values()),
                counts,
            )


def class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and e.name[0] != ".")


def choose_labels(folder: Path, scan: FolderScan) -> str:
    """``data.options.labels=auto``: ``folders`` when ``folder`` holds no images directly and
    each of its sub-folders holds images directly (one sub-folder per class), else ``none``
    (loose images, or folders of folders: by date, by camera). Logs the choice."""
    loose = scan.images_in(folder)
    subfolders = class_folders(folder)
    without = [name for name in subfolders if not scan.images_in(folder / name)]
    if loose or without:
        reason = (
            f"{len(loose)} image(s) directly in it"
            if loose
            else f"sub-folder {without[0]!r} holds no images directly"
        )
        log.info(
            "data.options.labels=auto: reading %s without labels (%s); set "
            "data.options.labels=folders to read one sub-folder per class",
            folder,
            reason,
        )
        return "none"
    if subfolders:
        log.info(
            "data.options.labels=auto: reading %s as %d class folders; set "
            "data.options.labels=none to read its images without labels",
            folder,
            len(subfolders),
        )
    return "folders"


def scan_unlabelled(folder: Path, scan: FolderScan, skip_corrupt: bool = False) -> ImageFiles:
    """Every image file below ``folder``, at any depth, with the label -1 (:data:`UNLABELLED`)."""
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; set data.root to your images")
    paths = scan.images_below(folder)
    if not paths:
        raise DataError(
            f"no images in image folder {folder} (at any depth; images are files ending in "
            f"{', '.join(scan.extensions)}, see data.options.extensions)"
        )
    return ImageFiles(paths, [UNLABELLED] * len(paths), skip_corrupt)


def scan_class_folders(
    folder: Path,
    classes: list[str] | None = None,
    skip_corrupt: bool = False,
    scan: FolderScan | None = None,
) -> tuple[ImageFiles, list[str]]:
    """The images of ``folder/<class>/...``, labelled by the class folder's position in
    ``classes`` (default: the sorted class folders found). Raises :class:`DataError` for a
    missing or empty folder, or a class folder without images; an unknown class folder (one
    not in ``classes``) too."""
    scan = scan or FolderScan()
    extensions = ", ".join(scan.extensions)
    if not folder.is_dir():
        raise DataError(
            f"image folder {folder} does not exist; it must hold one sub-folder of images per "
            "class (set data.root to the folder that holds them)"
        )
    class_dirs = class_folders(folder)
    if not class_dirs:
        loose = scan.images_in(folder)
        detail = (
            f"it has {len(loose)} image files directly in it: move them into one sub-folder "
            "per class, or set data.options.labels=none to read them without labels"
            if loose
            else "it is empty"
        )
        raise DataError(
            f"no class folders in image folder {folder}: {detail}. Expected "
            f"{folder}/<class>/<image> (files ending in {extensions}); set data.root to the "
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
        found = scan.images_below(folder / name)
        if not found:
            empty.append(name)
        paths += found
        labels += [index[name]] * len(found)
    if empty:
        raise DataError(
            f"class folders without images in {folder}: {', '.join(empty[:10])}"
            f"{' ...' if len(empty) > 10 else ''} (images are files ending in {extensions}); "
            "add images or remove the folders"
        )
    return ImageFiles(paths, labels, skip_corrupt), classes


@DATASETS.register("imagefolder", rules=[LABELS, EXTENSIONS])
def load_image_folder(
    source: Source,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    skip_corrupt: bool = False,
    labels: str = "folders",
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
) -> LabelledSplits:
    """Images in one of two layouts, with or without labels.

    - ``root/train/`` exists: it is the training split. With ``root/test/`` too, that is the
      test split and ``root/val/`` (if any) the validation split. Without ``test/``,
      ``root/val/`` is the test split (a published validation set is what papers report),
      and the validation split (for choosing checkpoints) is a stratified ``val_fraction`` of
      ``train/``. Missing splits are held out of ``train/`` by their fractions.
    - otherwise ``root`` itself holds the images and is split into train, val
      (``val_fraction``) and test (``test_fraction``), by class where there are labels.

    ``labels``: ``folders`` reads ``<class>/<any depth>/<image>``, class indices following the
    sorted class-folder names of the training folder; ``none`` reads every image at any depth
    with the label -1 (``num_classes`` 0); ``auto`` chooses between them by the training
    folder's layout (:func:`choose_labels`). ``extensions`` names the image files (GIF: the
    first frame); the files passed over are counted in one log line. Images are decoded when
    read (see :class:`ImageFiles` for corrupt files and ``skip_corrupt``).
    """
    if source.download:
        raise ConfigError(
            "data.download=true: an image folder cannot be downloaded; set data.download=false"
            " and data.root to the folder"
        )
    LABELS.check(labels)
    scan = FolderScan(extensions)
    root_path = Path(source.root).expanduser().resolve()
    if not root_path.is_dir():
        raise DataError(
            f"image folder {root_path} does not exist; set data.root to a folder of images: "
            "class sub-folders of images, loose images (data.options.labels=none), or one "
            "with train/ and val/"
        )
    train_dir, val_dir, test_dir = (root_path / name for name in ("train", "val", "test"))
    top = train_dir if train_dir.is_dir() else root_path
    if labels == "auto":
        labels = choose_labels(top, scan)

    def read(folder: Path, classes: list[str] | None = None) -> tuple[ImageFiles, list[str]]:
        if labels == "none":
            return scan_unlabelled(folder, scan, skip_corrupt), []
        return scan_class_folders(folder, classes, skip_corrupt, scan)

    train, classes = read(top)
    fractions = {}
    val = test = None
    if top == train_dir and test_dir.is_dir():
        test = read(test_dir, classes)[0]
        val = read(val_dir, classes)[0] if val_dir.is_dir() else None
    elif top == train_dir and val_dir.is_dir():
        test = read(val_dir, classes)[0]
    else:
        fractions["data.options.test_fraction"] = test_fraction
    if val is None:
        fractions = {"data.options.val_fraction": val_fraction, **fractions}
    scan.report_passed_over(root_path)
    if fractions:
        train, *held = hold_out(train, fractions, source.split_seed, str(top))
        val = held[0] if val is None else val
        test = held[-1] if test is None else test
    return LabelledSplits(train, val, test, len(classes), class_names=classes or None)
