"""Data sets and the LightningDataModule that serves them to pre-training.

A registry maps ``data.name`` to a loader that returns the raw splits of a data set, images
untransformed: labelled ``train``, ``val`` and ``test``, and for STL-10 the ``unlabeled``
images. The DataModule pre-trains on ``data.pretrain_split`` (one split or several joined by
``+``) with the augmentation (V views per image), and serves the labelled splits with the
deterministic evaluation transform to the monitors and to fine-tuning.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes),
  upsampled to ``image_size`` RGB; a stratified split fixed by ``split_seed``. Runs offline.
- ``fake``: random images with random labels, for tests.
- ``cifar10``, ``cifar100``: torchvision's loaders (the official python pickle batches,
  MD5-checked). ``val`` is held out of the 50,000 training images, stratified.
- ``stl10``: torchvision's loader (the official binary files, MD5-checked): 100,000
  ``unlabeled`` images for pre-training, 5,000 labelled ``train`` (``val`` held out of them)
  and 8,000 ``test`` images. Unlabelled images carry the label -1 (torchvision's convention).
- ``imagefolder``: a folder of class sub-folders of images, either ``train/`` (and ``val/``,
  ``test/``) below the root or one folder split by fractions; see :func:`load_image_folder`.
- ``imagenet``: the ILSVRC-2012 image-folder layout (``train/`` and ``val/``, one folder per
  class in each); ``val/`` is the reported test split, ``val`` is held out of ``train/``.

Missing or broken files raise :class:`simclr.errors.DataError` naming the expected paths and
how to provide them; nothing waits on a network unless ``download`` is true.
"""

from __future__ import annotations

import http.client
import logging
import math
import os
import socket
import tarfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision import datasets as tv_datasets
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.datasets.utils import check_integrity, extract_archive
from torchvision.transforms import v2

from simclr.data.augment.batch_augment import BatchAugmentation
from simclr.data.augment.transforms import (
    MultiViewTransform,
    evaluation_transform,
    simclr_augmentation,
)
from simclr.errors import ConfigError, DataError
from simclr.models.backbones import SMALL_IMAGE_MAX_SIZE
from simclr.registry import registrar

log = logging.getLogger(__name__)

# Seconds a download may wait on the network without receiving anything, so that a machine
# without a network fails in seconds rather than hanging (urllib waits forever by default).
DOWNLOAD_TIMEOUT_S = 20.0


@dataclass
class LabelledSplits:
    """Raw (untransformed) splits; each item is ``(image, label)``.

    ``unlabeled`` holds images without labels (label -1) for pre-training only, where the
    data set has them (STL-10); ``class_names`` names the labels where known.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    unlabeled: Dataset | None = None
    class_names: list[str] | None = None


DatasetLoader = Callable[..., LabelledSplits]
DATASETS: dict[str, DatasetLoader] = {}

# The official evaluation's centre crop for images above 32 px (data_util.CROP_PROPORTION).
OFFICIAL_EVAL_CROP = 0.875

# The splits pre-training may use (``data.pretrain_split``, joined by "+"); never ``test``.
PRETRAIN_SPLITS = ("train", "val", "unlabeled")


# Register a loader ``(root, image_size, download=..., **options) -> LabelledSplits``.
register_dataset = registrar(DATASETS, "data set")


class TensorImages(Dataset):
    """In-memory uint8 images ``(N, 3, H, W)`` with integer labels ``(N,)``."""

    def __init__(self, images: Tensor, labels: Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"expected uint8 images (N, 3, H, W), got {images.dtype} {images.shape}"
            )
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    def select(self, indices: Tensor) -> TensorImages:
        return TensorImages(self.images[indices], self.labels[indices])


class UndecodableImageError(DataError):
    """An image file that PIL cannot decode, named with its path."""

    def __init__(self, message: str):
        # An error raised in a DataLoader worker is rebuilt in the main process from its
        # traceback text ("Caught ... Original Traceback ..."); keep only the message itself,
        # so that train.py prints one line naming the file, not a worker's stack trace.
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


class ImageFiles(Dataset):
    """Image files with integer labels, decoded with PIL when read; items ``(PIL RGB, label)``.

    Corrupt files are found when read, not by a decoding pass up front (that would read the
    whole data set, e.g. 140 GB for ImageNet, before the first step). A file that cannot be
    decoded raises :class:`UndecodableImageError` naming it; with ``skip_corrupt`` it is
    logged once per process, marked, and the next decodable image is served in its place (so
    every batch keeps its size, as the all-gather across devices requires).
    :meth:`undecodable_files` lists the marked files, whichever worker process met them.
    """

    def __init__(self, paths: Sequence[str], labels: Sequence[int], skip_corrupt: bool = False):
        # A numpy array of strings rather than a list of Python objects: forked DataLoader
        # workers then share the paths instead of copying them page by page as they read.
        self.paths = np.asarray(paths, dtype=str)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.skip_corrupt = skip_corrupt
        # Shared memory, so that marks made in worker processes are seen by the main one.
        self.undecodable = torch.zeros(len(self.paths), dtype=torch.bool).share_memory_()
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices: Tensor) -> ImageFiles:
        indices = torch.as_tensor(indices).numpy()
        return ImageFiles(self.paths[indices], self.labels.numpy()[indices], self.skip_corrupt)

    def _decode(self, index: int) -> Image.Image:
        with Image.open(str(self.paths[index])) as image:
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # as PIL advises for such palettes
            return image.convert("RGB")  # decodes every pixel, so truncation shows here

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            try:
                return self._decode(candidate), int(self.labels[candidate])
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                path = str(self.paths[candidate])
                if not self.skip_corrupt:
                    raise UndecodableImageError(
                        f"cannot decode image file {path} ({type(error).__name__}: {error}); "
                        "remove or replace it, or set data.options.skip_corrupt=true to skip "
                        "such files with a warning and a count"
                    ) from error
                self.undecodable[candidate] = True
                if candidate not in self._reported:
                    self._reported.add(candidate)
                    log.warning("skipping image file that cannot be decoded: %s (%s)", path, error)
        raise DataError(f"none of the {len(self)} image files could be decoded, e.g. {path}")

    def undecodable_files(self) -> list[str]:
        return [str(p) for p in self.paths[self.undecodable.numpy()]]


class Transformed(Dataset):
    """Applies ``transform`` to the images of a labelled data set."""

    def __init__(self, dataset: Dataset, transform: Callable):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image), label


def _stratified_split(labels: Tensor, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Indices for consecutive splits of the given fractions, each class split alike."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[Tensor]] = [[] for _ in fractions]
    for cls in labels.unique():
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
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
    indices = _stratified_split(dataset.labels, (rest, *fractions.values()), seed)
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
    if not 0 < fraction <= 1:
        raise ConfigError(f"label_fraction must be in (0, 1], got {fraction}")
    labels = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in labels.unique():
        members = (labels == cls).nonzero().flatten()
        keep = max(1, round(fraction * len(members)))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:keep]])
    return torch.cat(chosen).sort().values


@register_dataset("digits")
def load_digits(
    root: str,
    image_size: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    **_,
) -> LabelledSplits:
    """scikit-learn's digits (grey levels 0..16), upsampled bilinearly to RGB ``image_size``."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    train_fraction = 1.0 - val_fraction - test_fraction
    splits = _stratified_split(labels, (train_fraction, val_fraction, test_fraction), split_seed)
    train, val, test = (TensorImages(images[i].contiguous(), labels[i]) for i in splits)
    return LabelledSplits(train, val, test, num_classes=10)


@register_dataset("fake")
def load_fake(
    root: str,
    image_size: int,
    num_train: int = 64,
    num_val: int = 32,
    num_test: int = 32,
    num_classes: int = 10,
    split_seed: int = 0,
    **_,
) -> LabelledSplits:
    """Random uint8 images and labels, fixed by ``split_seed``; for tests."""
    generator = torch.Generator().manual_seed(split_seed)

    def split(count: int) -> TensorImages:
        images = torch.randint(
            0, 256, (count, 3, image_size, image_size), dtype=torch.uint8, generator=generator
        )
        return TensorImages(images, torch.randint(0, num_classes, (count,), generator=generator))

    return LabelledSplits(split(num_train), split(num_val), split(num_test), num_classes)


# --- torchvision's archive-based data sets (CIFAR-10/100, STL-10) -------------------------


@dataclass(frozen=True)
class TorchvisionFiles:
    """What a torchvision data set class expects on disk, for messages and checks."""

    title: str
    dataset: type

    @property
    def folder_name(self) -> str:
        return self.dataset.base_folder

    def expected(self) -> list[str]:
        names = [name for name, _ in self.dataset.train_list + self.dataset.test_list]
        meta = getattr(self.dataset, "meta", None)
        return [*names, meta["filename"]] if meta else names

    def checksums(self) -> list[tuple[str, str]]:
        pairs = [tuple(pair) for pair in self.dataset.train_list + self.dataset.test_list]
        meta = getattr(self.dataset, "meta", None)
        return [*pairs, (meta["filename"], meta["md5"])] if meta else pairs

    def how_to_provide(self, root: Path) -> str:
        return (
            f"Set data.download=true on a machine with a network to fetch it "
            f"({self.dataset.url}), or put {self.dataset.filename}, or the folder "
            f"{self.folder_name}/ extracted from it, under {root} (or point data.root at the "
            f"folder that holds them)."
        )

    def expectation(self, root: Path) -> str:
        return f"expected {root / self.folder_name}/ holding {', '.join(self.expected())}"


@contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _open_torchvision(files: TorchvisionFiles, root: str, download: bool, **kwargs) -> Dataset:
    """Construct ``files.dataset(root, **kwargs)`` (torchvision checks the official MD5 sums),
    downloading first if ``download``; every failure becomes a :class:`DataError`."""
    root_path = Path(root).expanduser().resolve()
    folder = root_path / files.folder_name
    missing = [name for name in files.expected() if not (folder / name).is_file()]
    archive = root_path / files.dataset.filename
    if missing and not download:
        if not archive.is_file():
            shown = "all of them" if len(missing) == len(files.expected()) else ", ".join(missing)
            raise DataError(
                f"{files.title} not found: {files.expectation(root_path)} (missing: {shown}). "
                f"{files.how_to_provide(root_path)}"
            )
        if not check_integrity(str(archive), files.dataset.tgz_md5):
            raise DataError(
                f"{archive} is not the official {files.title} archive (its MD5 sum differs: a "
                f"partial download?). Delete it, then {files.how_to_provide(root_path)}"
            )
        log.info("extracting %s", archive)
        extract_archive(str(archive), str(root_path))
    fetch = download and bool(missing)
    try:
        with _network_timeout(DOWNLOAD_TIMEOUT_S):
            return files.dataset(str(root_path), download=fetch, **kwargs)
    except (OSError, http.client.HTTPException, tarfile.TarError) as error:
        action = f"download {files.title} to" if fetch else f"read {files.title} in"
        raise DataError(
            f"could not {action} {root_path} ({type(error).__name__}: {error}); "
            f"{files.expectation(root_path)}. {files.how_to_provide(root_path)}"
        ) from error
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        bad = [
            name for name, md5 in files.checksums() if not check_integrity(str(folder / name), md5)
        ]
        raise DataError(
            f"{files.title} under {folder} is incomplete or corrupt: "
            f"{', '.join(bad) or 'its files'} do not match the official MD5 sums. Delete "
            f"{folder}, then {files.how_to_provide(root_path)}"
        ) from error


def _cifar(
    files: TorchvisionFiles,
    root: str,
    download: bool,
    val_fraction: float,
    split_seed: int,
) -> LabelledSplits:
    def tensors(dataset) -> TensorImages:
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
        return TensorImages(images, torch.as_tensor(dataset.targets, dtype=torch.long))

    train_set = _open_torchvision(files, root, download, train=True)
    test_set = _open_torchvision(files, root, download=False, train=False)
    train, val = hold_out(
        tensors(train_set),
        {"data.options.val_fraction": val_fraction},
        split_seed,
        f"the {files.title} training set",
    )
    classes = list(train_set.classes)
    return LabelledSplits(train, val, tensors(test_set), len(classes), class_names=classes)


@register_dataset("cifar10")
def load_cifar10(
    root: str,
    image_size: int,
    download: bool = True,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> LabelledSplits:
    """CIFAR-10 from ``<root>/cifar-10-batches-py``; ``val`` is a stratified ``val_fraction``
    of the training batches, ``test`` the official test batch."""
    files = TorchvisionFiles("CIFAR-10", tv_datasets.CIFAR10)
    return _cifar(files, root, download, val_fraction, split_seed)


@register_dataset("cifar100")
def load_cifar100(
    root: str,
    image_size: int,
    download: bool = True,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> LabelledSplits:
    """CIFAR-100 (the 100 fine labels) from ``<root>/cifar-100-python``; splits as CIFAR-10."""
    files = TorchvisionFiles("CIFAR-100", tv_datasets.CIFAR100)
    return _cifar(files, root, download, val_fraction, split_seed)


@register_dataset("stl10")
def load_stl10(
    root: str,
    image_size: int,
    download: bool = True,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> LabelledSplits:
    """STL-10 from ``<root>/stl10_binary``: ``unlabeled`` (100,000 images, label -1), labelled
    ``train`` less a stratified ``val_fraction`` held out as ``val``, and ``test``.

    The labelled and unlabelled images are read as one torchvision ``train+unlabeled`` set, so
    the MD5 sums (2.6 GB of unlabelled images) are checked twice per run, not three times.
    """
    files = TorchvisionFiles("STL-10", tv_datasets.STL10)
    both = _open_torchvision(files, root, download, split="train+unlabeled")
    test_set = _open_torchvision(files, root, download=False, split="test")
    # torchvision keeps STL-10's images as (N, 3, 96, 96) uint8: CHW already.
    images = torch.from_numpy(both.data)
    labels = torch.from_numpy(both.labels.astype(np.int64))
    num_labelled = int((labels >= 0).sum())  # the labelled images come first
    labelled = TensorImages(images[:num_labelled], labels[:num_labelled])
    unlabeled = TensorImages(images[num_labelled:], labels[num_labelled:])
    train, val = hold_out(
        labelled,
        {"data.options.val_fraction": val_fraction},
        split_seed,
        "the STL-10 labelled training set",
    )
    test = TensorImages(
        torch.from_numpy(np.ascontiguousarray(test_set.data)),
        torch.from_numpy(test_set.labels.astype(np.int64)),
    )
    classes = list(getattr(both, "classes", [])) or None
    return LabelledSplits(train, val, test, 10, unlabeled=unlabeled, class_names=classes)


# --- folders of image files --------------------------------------------------------------

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


@register_dataset("imagefolder")
def load_image_folder(
    root: str,
    image_size: int,
    download: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    skip_corrupt: bool = False,
    require_train_val: bool = False,
) -> LabelledSplits:
    """Images in class folders (``<class>/<any depth>/<image>``), in one of two layouts.

    - ``root/train/`` exists: it is the training split. With ``root/test/`` too, that is the
      test split and ``root/val/`` (if any) the validation split. Without ``test/``,
      ``root/val/`` is the test split, as ImageNet's validation set is the one papers report,
      and the validation split (for choosing checkpoints) is a stratified ``val_fraction`` of
      ``train/``. Missing splits are held out of ``train/`` by their fractions.
    - otherwise ``root`` itself holds the class folders and is split by class into train,
      val (``val_fraction``) and test (``test_fraction``).

    Class indices follow the sorted class-folder names of the training folder. Images are
    decoded when read (see :class:`ImageFiles` for corrupt files and ``skip_corrupt``).
    """
    if download:
        raise ConfigError(
            "data.download=true: an image folder cannot be downloaded; set data.download=false"
            " and data.root to the folder"
        )
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise DataError(
            f"image folder {root_path} does not exist; set data.root to a folder of class "
            "sub-folders of images, or to one with train/ and val/ (each of class sub-folders)"
        )
    train_dir, val_dir, test_dir = (root_path / name for name in ("train", "val", "test"))
    if require_train_val and not (train_dir.is_dir() and val_dir.is_dir()):
        raise DataError(
            f"ImageNet not found under {root_path}: expected train/<class>/*.JPEG and "
            "val/<class>/*.JPEG (ILSVRC-2012, with the validation images sorted into their "
            "class folders). ImageNet cannot be downloaded automatically: get it from "
            "https://image-net.org, put it there, or set data.root to its folder."
        )
    if not train_dir.is_dir():
        everything, classes = scan_class_folders(root_path, skip_corrupt=skip_corrupt)
        train, val, test = hold_out(
            everything,
            {
                "data.options.val_fraction": val_fraction,
                "data.options.test_fraction": test_fraction,
            },
            split_seed,
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
        train, *held = hold_out(train, fractions, split_seed, str(train_dir))
        val = held[0] if val is None else val
        test = held[-1] if test is None else test
    return LabelledSplits(train, val, test, len(classes), class_names=classes)


@register_dataset("imagenet")
def load_imagenet(
    root: str,
    image_size: int,
    download: bool = False,
    val_fraction: float = 0.01,
    split_seed: int = 0,
    skip_corrupt: bool = False,
) -> LabelledSplits:
    """ILSVRC-2012 in the image-folder layout: ``root/train/<wnid>/`` and ``root/val/<wnid>/``.
    ``val/`` is the test split; ``val`` is a stratified ``val_fraction`` of ``train/``."""
    if download:
        raise ConfigError(
            "data.download=true: ImageNet cannot be downloaded automatically (its licence "
            "needs a sign-up at https://image-net.org); set data.download=false"
        )
    return load_image_folder(
        root,
        image_size,
        val_fraction=val_fraction,
        split_seed=split_seed,
        skip_corrupt=skip_corrupt,
        require_train_val=True,
    )


# --- the DataLoaders and the DataModule ---------------------------------------------------


def available_cpus() -> int:
    """CPU cores this process may run on (the affinity mask, e.g. a SLURM allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def world_size(trainer: L.Trainer | None) -> int:
    """Processes the global batch is shared among (1 without a trainer)."""
    return trainer.world_size if trainer is not None else 1


@dataclass(frozen=True)
class LoaderSettings:
    """The ``data`` loader settings (``configs/data/loader/default.yaml``) that every loader of
    pre-training, the monitors and fine-tuning is made with, by :func:`make_loader`.

    ``num_workers=None`` picks one worker per free core, shared among the devices of a node
    (cores // devices - 1, at least 1); ``pin_memory=None`` pins when the trainer runs on
    CUDA; ``persistent_workers`` keeps the workers between epochs; each worker prepares
    ``prefetch_factor`` batches ahead; ``drop_last`` drops pre-training's last, smaller batch,
    so that every step sees the same number of negatives.
    """

    num_workers: int | None = 0
    pin_memory: bool | None = None
    persistent_workers: bool = True
    prefetch_factor: int | None = 2
    drop_last: bool = True

    def __post_init__(self):
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(
                f"data.num_workers must be >= 0 or null (automatic), got {self.num_workers}"
            )

    def worker_count(self, trainer: L.Trainer | None) -> int:
        """``num_workers``, or when it is None one per core this node gives each of the
        trainer's devices, less one for the device's own process (at least 1)."""
        if self.num_workers is not None:
            return self.num_workers
        devices = getattr(trainer, "num_devices", 1) if trainer is not None else 1
        return max(1, available_cpus() // max(1, devices) - 1)

    def pins_memory(self, trainer: L.Trainer | None) -> bool:
        """``pin_memory``, or when it is None whether the trainer runs on CUDA."""
        if self.pin_memory is not None:
            return self.pin_memory
        if trainer is not None and hasattr(trainer, "accelerator"):
            from lightning.pytorch.accelerators import CUDAAccelerator

            return isinstance(trainer.accelerator, CUDAAccelerator)
        return torch.cuda.is_available()


# What a loader is for: pre-training's views, fine-tuning's training images, or evaluation.
LoaderRole = Literal["pretrain", "train", "eval"]


def make_loader(
    dataset: Dataset,
    batch_size: int,
    role: LoaderRole,
    settings: LoaderSettings,
    trainer: L.Trainer | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset`` for ``role``, with ``batch_size`` images per device.

    Training loaders (``pretrain``, ``train``) shuffle; pre-training drops its last, smaller
    batch when ``settings.drop_last`` says so, and every training loader drops a last batch of
    exactly one image on a device (BatchNorm cannot take its statistics over one image).
    Evaluation loaders keep the order and every image. Workers and pinning follow
    ``trainer`` (its devices, its accelerator).

    The loader is a plain DataLoader without a ``worker_init_fn``: Lightning gives the
    loaders that a DataModule returns its own one, which seeds each worker process when the
    run called ``seed_everything(seed, workers=True)``.
    """
    if role not in get_args(LoaderRole):
        raise ValueError(f"unknown loader role {role!r}; valid: {', '.join(get_args(LoaderRole))}")
    training = role != "eval"
    # Under a distributed sampler, each device reads ceil(N / world_size) images.
    per_device = math.ceil(len(dataset) / world_size(trainer))
    drop_last = training and (
        (role == "pretrain" and settings.drop_last) or per_device % batch_size == 1
    )
    workers = settings.worker_count(trainer)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=training,
        drop_last=drop_last,
        num_workers=workers,
        persistent_workers=settings.persistent_workers and workers > 0,
        prefetch_factor=settings.prefetch_factor if workers > 0 else None,
        pin_memory=settings.pins_memory(trainer),
    )


class SimCLRDataModule(L.LightningDataModule):
    """Serves ``num_views`` augmented views per image for pre-training, and the labelled
    splits with the evaluation transform for the monitors.

    ``batch_size`` is the global batch: each of the trainer's devices gets
    ``batch_size / world_size`` images (V views each), so the number of negatives does not
    change with the device count.

    The loader settings (``num_workers`` ... ``drop_last``) are those of
    :class:`LoaderSettings`; :func:`make_loader` makes every loader from them.
    """

    def __init__(
        self,
        name: str,
        root: str,
        image_size: int,
        batch_size: int,
        num_views: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: dict,
        num_workers: int | None = 0,
        eval_batch_size: int = 256,
        options: dict | None = None,
        download: bool = False,
        pretrain_split: str = "train",
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 2,
        drop_last: bool = True,
        augment_on_device: bool | None = None,
        eval_crop_fraction: float | None = None,
    ):
        super().__init__()
        if name not in DATASETS:
            raise ConfigError(
                f"unknown data set {name!r}; valid names: {', '.join(sorted(DATASETS))}"
            )
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        parts = pretrain_split.split("+")
        if not parts or any(part not in PRETRAIN_SPLITS for part in parts):
            raise ConfigError(
                f"data.pretrain_split={pretrain_split!r}: use one of {', '.join(PRETRAIN_SPLITS)}"
                " or several joined by '+' (e.g. train+unlabeled)"
            )
        self.name = name
        self.root = root
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_views = num_views
        self.mean, self.std = list(mean), list(std)
        self.augment = dict(augment)
        self.loader_settings = LoaderSettings(
            num_workers, pin_memory, persistent_workers, prefetch_factor, drop_last
        )
        self.eval_batch_size = eval_batch_size
        self.options = dict(options or {})
        self.download = download
        self.pretrain_split = pretrain_split
        self.augment_on_device = augment_on_device
        self.eval_crop_fraction = eval_crop_fraction
        self.batch_augmentation: BatchAugmentation | None = None
        self.splits: LabelledSplits | None = None

    @property
    def num_classes(self) -> int:
        return self.load_splits().num_classes

    def load_splits(self) -> LabelledSplits:
        if self.splits is None:
            self.splits = DATASETS[self.name](
                self.root, self.image_size, download=self.download, **self.options
            )
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        self.load_splits()

    def pretrain_dataset(self) -> Dataset:
        """The raw images pre-training reads: the splits named by ``pretrain_split``."""
        splits = self.load_splits()
        parts = []
        for name in self.pretrain_split.split("+"):
            part = getattr(splits, name)
            if part is None:
                raise ConfigError(
                    f"data.pretrain_split={self.pretrain_split!r}: {self.name!r} has no "
                    f"{name!r} split; use train, val or train+val"
                )
            parts.append(part)
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def per_device_batch_size(self) -> int:
        devices = world_size(self.trainer)
        if self.batch_size % devices:
            raise ConfigError(
                f"data.batch_size={self.batch_size} (the global batch) does not divide by the "
                f"{devices} devices; choose a multiple of {devices}"
            )
        return self.batch_size // devices

    def pretrain_transform(self) -> MultiViewTransform:
        view = simclr_augmentation(self.image_size, self.mean, self.std, **self.augment)
        return MultiViewTransform(view, self.num_views)

    def eval_transform(self):
        """Deterministic views for the monitors, fine-tuning's val/test and export checks: the
        central ``eval_crop_fraction`` of the short side; ``None`` follows the official code,
        0.875 above 32 px (the usual ImageNet centre crop), the whole image at 32 px and less."""
        fraction = self.eval_crop_fraction
        if fraction is None:
            fraction = OFFICIAL_EVAL_CROP if self.image_size > SMALL_IMAGE_MAX_SIZE else 1.0
        return evaluation_transform(self.image_size, self.mean, self.std, fraction)

    def train_dataloader(self) -> DataLoader:
        # On-device augmentation: the loader only stacks uint8 images; the views are drawn
        # after the batch reached the accelerator (on_after_batch_transfer).
        transform = v2.ToImage() if self.views_on_device() else self.pretrain_transform()
        dataset = Transformed(self.pretrain_dataset(), transform)
        batch_size = self.per_device_batch_size()
        if len(dataset) < batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} gives {batch_size} images per device, more "
                f"than the {len(dataset)} training images of {self.name!r}; lower data.batch_size"
            )
        return make_loader(dataset, batch_size, "pretrain", self.loader_settings, self.trainer)

    def views_on_device(self) -> bool:
        """``augment_on_device``, where ``None`` means: on an accelerator, not on a CPU. On this
        project's 2-core CPU (bench/cpu.py) the two pipelines gave the same step speed at 32 px
        (step_vs_ceiling 0.92 batched, 0.90 per image), and one worker's per-image pipeline
        out-ran the batched one at 96 px (1,057 against 781 views/s)."""
        if self.augment_on_device is not None:
            return self.augment_on_device
        strategy = getattr(self.trainer, "strategy", None)
        return strategy is not None and strategy.root_device.type != "cpu"

    def _batch_augmentation(self, device) -> BatchAugmentation:
        if self.batch_augmentation is None:
            self.batch_augmentation = BatchAugmentation(
                self.image_size, self.mean, self.std, **self.augment
            )
        return self.batch_augmentation.to(device)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With ``augment_on_device``, turns a training batch of uint8 images into V views
        drawn per image by :class:`~simclr.data.augment.batch_augment.BatchAugmentation`, on
        the device."""
        if not self.views_on_device():
            return batch
        images, labels = batch
        # Only the pre-training loader yields uint8 images here; the monitors' labelled batches
        # (float, already transformed) pass through the same hook untouched.
        if not isinstance(images, Tensor) or images.dtype != torch.uint8:
            return batch
        augment = self._batch_augmentation(images.device)
        return [augment(images) for _ in range(self.num_views)], labels

    def preview_views(self, count: int) -> list[Tensor]:
        """V views ``(n, 3, S, S)`` of the first ``n <= count`` pre-training images, drawn by
        the pipeline that trains (per image, or batched on the device), for pictures."""
        dataset = self.pretrain_dataset()
        images = [dataset[i][0] for i in range(min(count, len(dataset)))]
        if self.views_on_device():
            batch = torch.stack([v2.functional.to_image(image) for image in images])
            augment = self._batch_augmentation(batch.device)
            return [augment(batch) for _ in range(self.num_views)]
        views = [self.pretrain_transform()(image) for image in images]
        return [torch.stack([per_image[v] for per_image in views]) for v in range(self.num_views)]

    def labelled_dataloader(self, split: str) -> DataLoader:
        """A labelled split (``train``, ``val`` or ``test``) with the evaluation transform."""
        dataset = Transformed(getattr(self.load_splits(), split), self.eval_transform())
        return make_loader(
            dataset, self.eval_batch_size, "eval", self.loader_settings, self.trainer
        )

    def skipped_images(self) -> list[str]:
        """Image files found undecodable (and skipped) so far, in any split."""
        if self.splits is None:
            return []
        found: list[str] = []
        for name in ("train", "val", "test", "unlabeled"):
            dataset = getattr(self.splits, name)
            if isinstance(dataset, ImageFiles):
                found += dataset.undecodable_files()
        return found

    def teardown(self, stage: str | None = None) -> None:
        skipped = self.skipped_images()
        if skipped:
            log.warning(
                "skipped %d image file(s) that could not be decoded (data.options.skip_corrupt):"
                " %s",
                len(skipped),
                ", ".join(skipped[:20]) + (" ..." if len(skipped) > 20 else ""),
            )
