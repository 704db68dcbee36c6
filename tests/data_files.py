"""Tiny files in the official on-disk formats of the data sets, for tests that read them with
the real loaders (in-process or through train.py / finetune.py in a subprocess).

torchvision's CIFAR and STL-10 classes check the MD5 sums of the official files. The tests
keep that check and make it accept the tiny files written here: :func:`accept_files`
replaces the class's list of official sums with the sums of these files (monkeypatched, for
one test only); :func:`accept_files_in_subprocesses` does it in a subprocess, through a
``sitecustomize`` module put first on its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def random_images(count: int, size: int, seed: int) -> np.ndarray:
    """uint8 ``(count, 3, size, size)``; random, so any transposition shows."""
    return np.random.default_rng(seed).integers(0, 256, (count, 3, size, size), dtype=np.uint8)


def write_pickle(path: Path, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 10, num_test: int = 10) -> dict:
    """``cifar-10-batches-py``: data_batch_1..5 and test_batch hold ``data`` (N, 3072) uint8,
    each row the red, green then blue 32x32 planes; ``labels``; ``batches.meta`` the names."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_images, train_labels = [], []
    for batch in range(1, 6):
        images = random_images(per_batch, 32, seed=batch)
        labels = [i % 10 for i in range(per_batch)]
        write_pickle(
            folder / f"data_batch_{batch}",
            {
                "batch_label": f"training batch {batch} of 5",
                "labels": labels,
                "data": images.reshape(per_batch, 3072),
                "filenames": [f"img_{batch}_{i}.png" for i in range(per_batch)],
            },
        )
        train_images.append(images)
        train_labels += labels
    test_images = random_images(num_test, 32, seed=99)
    test_labels = [(3 * i) % 10 for i in range(num_test)]
    write_pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels,
            "data": test_images.reshape(num_test, 3072),
            "filenames": [f"test_{i}.png" for i in range(num_test)],
        },
    )
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    write_pickle(
        folder / "batches.meta",
        {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072},
    )
    return {
        "train_images": np.concatenate(train_images),
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
        "folder": folder,
    }


def write_cifar100(root: Path, num_train: int = 40, num_test: int = 8) -> dict:
    """``cifar-100-python``: ``train`` and ``test`` with ``fine_labels`` and
    ``coarse_labels``; ``meta`` with ``fine_label_names`` and ``coarse_label_names``."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {"folder": folder}
    for split, count, seed in (("train", num_train, 1), ("test", num_test, 2)):
        images = random_images(count, 32, seed)
        fine = [(i % 4) * 25 + 3 for i in range(count)]  # 4 classes: 3, 28, 53, 78
        write_pickle(
            folder / split,
            {
                "filenames": [f"{split}_{i}.png" for i in range(count)],
                "batch_label": f"{split} batch",
                "fine_labels": fine,
                "coarse_labels": [label // 5 for label in fine],
                "data": images.reshape(count, 3072),
            },
        )
        out[f"{split}_images"], out[f"{split}_labels"] = images, fine
    write_pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{i}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i}" for i in range(20)],
        },
    )
    return out


def write_stl10_images(path: Path, images: np.ndarray) -> None:
    # STL-10 stores every 96x96 plane column by column (Fortran order, as MATLAB wrote it).
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


def write_stl10(root: Path, num_train: int = 20, num_test: int = 10, num_unlabeled: int = 12):
    """``stl10_binary``: ``*_X.bin`` uint8 images (3 planes of 96x96, column-major),
    ``*_y.bin`` uint8 labels 1..10, ``class_names.txt`` one name a line."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    out = {"folder": folder}
    for split, count, seed in (("train", num_train, 1), ("test", num_test, 2)):
        images = random_images(count, 96, seed)
        labels = np.array([i % 10 + 1 for i in range(count)], dtype=np.uint8)
        write_stl10_images(folder / f"{split}_X.bin", images)
        (folder / f"{split}_y.bin").write_bytes(labels.tobytes())
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels.astype(int) - 1
    out["unlabeled_images"] = random_images(num_unlabeled, 96, seed=3)
    write_stl10_images(folder / "unlabeled_X.bin", out["unlabeled_images"])
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return out


def official_sums(dataset: type, folder: Path, archive: Path | None = None) -> dict:
    """The class attributes that hold the official MD5 sums, with the sums of the files in
    ``folder`` (and of ``archive``) in their place."""
    sums = {
        "train_list": [[name, md5(folder / name)] for name, _ in dataset.train_list],
        "test_list": [[name, md5(folder / name)] for name, _ in dataset.test_list],
    }
    if hasattr(dataset, "meta"):
        sums["meta"] = {**dataset.meta, "md5": md5(folder / dataset.meta["filename"])}
    if archive is not None:
        sums["tgz_md5"] = md5(archive)
    return sums


def accept_files(monkeypatch, dataset: type, folder: Path, archive: Path | None = None):
    for name, value in official_sums(dataset, folder, archive).items():
        monkeypatch.setattr(dataset, name, value)


SITECUSTOMIZE = """\
import json, os
import torchvision.datasets

for name, sums in json.loads(os.environ["SIMCLR_TEST_MD5"]).items():
    for attribute, value in sums.items():
        setattr(getattr(torchvision.datasets, name), attribute, value)
"""


def accept_files_in_subprocesses(monkeypatch, tmp_path, **sums_by_class):
    """For ``run_script``: a ``sitecustomize`` (imported by Python at start-up) that sets the
    given classes' sums, e.g. ``CIFAR10=official_sums(...)``."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    paths = [str(shim), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", ":".join(paths))
    monkeypatch.setenv("SIMCLR_TEST_MD5", json.dumps(sums_by_class))


def write_image_folder(
    root: Path,
    classes=("cat", "dog"),
    per_class: int = 4,
    size=(20, 14),
    jpeg_only: bool = False,
):
    """PNG and JPEG images (RGB, grey, RGBA, palette; one in a nested folder) per class; with
    ``jpeg_only``, RGB JPEGs named ``<i>.JPEG`` directly in the class folder, as ImageNet's."""
    written = []
    for c, name in enumerate(classes):
        folder = root / name
        (folder / "nested").mkdir(parents=True)
        for i in range(per_class):
            colour = (40 * c + 10, 5 * i, 200)
            image = Image.new("RGB", size, colour)
            kind = 1 if jpeg_only else i % 4
            if kind == 0:
                path = folder / f"{i}.png"
                image.save(path)
            elif kind == 1:
                path = folder / f"{i}.JPEG"
                image.save(path, quality=95)
            elif kind == 2:
                path = folder / "nested" / f"{i}.png"
                image.convert("L").save(path)
            else:
                path = folder / f"{i}.png"
                image.convert("RGBA").convert("P").save(path)
            written.append((path, c))
    (root / classes[0] / "notes.txt").write_text("not an image")  # ignored
    return written
