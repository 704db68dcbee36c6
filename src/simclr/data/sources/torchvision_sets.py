"""torchvision's archive-based data sets: CIFAR-10, CIFAR-100 and STL-10.

- ``cifar10``, ``cifar100``: torchvision's loaders (the official python pickle batches,
  MD5-checked). ``val`` is held out of the 50,000 training images, stratified.
- ``stl10``: torchvision's loader (the official binary files, MD5-checked): 100,000
  ``unlabeled`` images for pre-training, 5,000 labelled ``train`` (``val`` held out of them)
  and 8,000 ``test`` images. Unlabelled images carry the label -1 (torchvision's convention).

Missing or broken files raise :class:`~simclr.errors.DataError` naming the expected paths and
how to provide them; nothing waits on a network unless ``download`` is true.
"""

from __future__ import annotations

import http.client
import logging
import socket
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import check_integrity, extract_archive

from simclr.data.containers import LabelledSplits, TensorImages
from simclr.data.sources.catalogue import DATASETS, Source
from simclr.data.splits import hold_out
from simclr.errors import DataError

log = logging.getLogger(__name__)

# Seconds a download may wait on the network without receiving anything, so that a machine
# without a network fails in seconds rather than hanging (urllib waits forever by default).
DOWNLOAD_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class TorchvisionFiles:
    """What a torchvision data set class expects on disk, for messages and checks."""

    title: str
    dataset: type
    num_classes: int

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


def _read_cifar(files: TorchvisionFiles, root: str, download: bool):
    """``(train, test, class names)`` of CIFAR-10/100, images ``(N, 3, 32, 32)``."""

    def tensors(dataset) -> TensorImages:
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
        return TensorImages(images, torch.as_tensor(dataset.targets, dtype=torch.long))

    train_set = _open_torchvision(files, root, download, train=True)
    test_set = _open_torchvision(files, root, download=False, train=False)
    return tensors(train_set), tensors(test_set), list(train_set.classes), None


def _read_stl10(files: TorchvisionFiles, root: str, download: bool):
    """``(labelled train, test, class names, unlabeled)`` of STL-10.

    The labelled and unlabelled images are read as one torchvision ``train+unlabeled`` set, so
    the MD5 sums (2.6 GB of unlabelled images) are checked twice per run, not three times.
    """
    both = _open_torchvision(files, root, download, split="train+unlabeled")
    test_set = _open_torchvision(files, root, download=False, split="test")
    # torchvision keeps STL-10's images as (N, 3, 96, 96) uint8: CHW already.
    images = torch.from_numpy(both.data)
    labels = torch.from_numpy(both.labels.astype(np.int64))
    num_labelled = int((labels >= 0).sum())  # the labelled images come first
    labelled = TensorImages(images[:num_labelled], labels[:num_labelled])
    unlabeled = TensorImages(images[num_labelled:], labels[num_labelled:])
    test = TensorImages(
        torch.from_numpy(np.ascontiguousarray(test_set.data)),
        torch.from_numpy(test_set.labels.astype(np.int64)),
    )
    return labelled, test, list(getattr(both, "classes", [])) or None, unlabeled


def _register(name: str, files: TorchvisionFiles, read, doc: str):
    """Register the loader of a torchvision data set: ``read(files, root, download)`` gives its
    labelled training images, test images, class names and unlabelled images (or None); the
    loader holds a stratified ``val_fraction`` of the training images out as ``val``."""

    def load(source: Source, val_fraction: float = 0.1) -> LabelledSplits:
        labelled, test, classes, unlabeled = read(files, source.root, source.download)
        name_of_set = f"the {files.title} {'' if unlabeled is None else 'labelled '}training set"
        fraction = {"data.options.val_fraction": val_fraction}
        train, val = hold_out(labelled, fraction, source.split_seed, name_of_set)
        return LabelledSplits(train, val, test, files.num_classes, unlabeled, classes)

    load.__name__ = load.__qualname__ = f"load_{name}"
    load.__doc__ = doc
    return DATASETS.register(name)(load)


load_cifar10 = _register(
    "cifar10",
    TorchvisionFiles("CIFAR-10", tv_datasets.CIFAR10, 10),
    _read_cifar,
    """CIFAR-10 from ``<root>/cifar-10-batches-py``; ``val`` is a stratified ``val_fraction``
    of the training batches, ``test`` the official test batch.""",
)
load_cifar100 = _register(
    "cifar100",
    TorchvisionFiles("CIFAR-100", tv_datasets.CIFAR100, 100),
    _read_cifar,
    """CIFAR-100 (the 100 fine labels) from ``<root>/cifar-100-python``; splits as CIFAR-10.""",
)
load_stl10 = _register(
    "stl10",
    TorchvisionFiles("STL-10", tv_datasets.STL10, 10),
    _read_stl10,
    """STL-10 from ``<root>/stl10_binary``: ``unlabeled`` (100,000 images, label -1), labelled
    ``train`` less a stratified ``val_fraction`` held out as ``val``, and ``test``.""",
)
