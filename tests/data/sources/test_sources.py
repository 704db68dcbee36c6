"""The real data sets, read by the real loaders from tiny files in the official on-disk formats
(written by ``data_files``). A test below shows that without ``accept_files`` the tiny files are
rejected by torchvision's MD5 check, so users keep the check.
"""

from __future__ import annotations

import logging
import tarfile
import time
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from conftest import FAST_OVERRIDES, compose_config, run_script
from data_files import (
    accept_files,
    accept_files_in_subprocesses,
    official_sums,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_stl10,
)
from simclr.data import ImageFiles, SimCLRDataModule, UndecodableImageError, balanced_subset
from simclr.data.sources import (
    Source,
    load_cifar10,
    load_cifar100,
    load_image_folder,
    load_imagenet,
    load_stl10,
)
from simclr.errors import ConfigError, DataError
from simclr.tasks.pretrain import build_datamodule, run

CIFAR10, CIFAR100, STL10 = (torchvision.datasets.CIFAR10, torchvision.datasets.CIFAR100,
                            torchvision.datasets.STL10)  # fmt: skip

AUGMENT = {"color_strength": 1.0, "blur_prob": 0.5}


def datamodule(name, root, image_size, batch_size=4, num_views=2, **kwargs) -> SimCLRDataModule:
    return SimCLRDataModule(
        name=name,
        root=str(root),
        image_size=image_size,
        batch_size=batch_size,
        num_views=num_views,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        augment=AUGMENT,
        **kwargs,
    )


def as_array(image) -> np.ndarray:
    """A loaded image (PIL, or uint8 CHW tensor) as uint8 CHW."""
    if isinstance(image, Image.Image):
        return np.asarray(image).transpose(2, 0, 1)
    return image.numpy()


# --- CIFAR ----------------------------------------------------------------------------------


def test_cifar10_reads_the_pickle_batches(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path)
    accept_files(monkeypatch, CIFAR10, written["folder"])
    splits = load_cifar10(Source(str(tmp_path), 32, split_seed=1), val_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 10)
    assert splits.num_classes == 10 and splits.class_names[0] == "airplane"
    assert splits.unlabeled is None
    # Every class keeps one image of its five in the validation split.
    assert torch.bincount(splits.val.labels, minlength=10).tolist() == [1] * 10
    # Pixels come back where they were written (planes, rows and columns), with their label.
    test_image, test_label = splits.test[3]
    assert test_image.shape == (3, 32, 32) and test_image.dtype == torch.uint8
    assert np.array_equal(as_array(test_image), written["test_images"][3])
    assert test_label == written["test_labels"][3]
    seen = {bytes(as_array(image)): label for image, label in (*splits.train, *splits.val)}
    expected = zip(written["train_images"], written["train_labels"], strict=True)
    assert all(seen[bytes(image)] == label for image, label in expected)
    # The held-out split is fixed by the seed.
    again = load_cifar10(Source(str(tmp_path), 32, split_seed=1), val_fraction=0.2)
    assert torch.equal(again.val.images, splits.val.images)
    # Fine-tuning's label fractions draw from these labels: half of each class's four.
    subset = balanced_subset(splits.train.labels, 0.5, seed=0)
    assert torch.bincount(splits.train.labels[subset], minlength=10).tolist() == [2] * 10


def test_cifar100_uses_the_fine_labels(tmp_path, monkeypatch):
    written = write_cifar100(tmp_path)
    accept_files(monkeypatch, CIFAR100, written["folder"])
    splits = load_cifar100(Source(str(tmp_path), 32), val_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (32, 8, 8)
    assert splits.num_classes == 100 and splits.class_names[3] == "fine_3"
    assert sorted(set(splits.train.labels.tolist())) == [3, 28, 53, 78]
    image, label = splits.test[5]
    assert np.array_equal(as_array(image), written["test_images"][5])
    assert label == written["test_labels"][5]


def test_the_official_checksums_still_guard_real_users(tmp_path):
    write_cifar10(tmp_path)  # not the official files, and no sums replaced
    with pytest.raises(DataError) as error:
        load_cifar10(Source(str(tmp_path), 32))
    message = str(error.value)
    assert "do not match the official MD5 sums" in message
    assert "data_batch_1" in message and "data.download=true" in message


def test_an_archive_alone_is_extracted(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path / "build")
    archive = tmp_path / "root" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(written["folder"], arcname="cifar-10-batches-py")
    accept_files(monkeypatch, CIFAR10, written["folder"], archive)
    splits = load_cifar10(Source(str(archive.parent), 32), val_fraction=0.2)
    assert len(splits.test) == 10
    assert (archive.parent / "cifar-10-batches-py" / "data_batch_5").is_file()


@pytest.mark.parametrize(
    "loader,title,folder,module",
    [
        (load_cifar10, "CIFAR-10", "cifar-10-batches-py", torchvision.datasets.cifar),
        (load_cifar100, "CIFAR-100", "cifar-100-python", torchvision.datasets.cifar),
        (load_stl10, "STL-10", "stl10_binary", torchvision.datasets.stl10),
    ],
)
def test_missing_files_without_download_name_what_is_expected(
    loader, title, folder, module, tmp_path, monkeypatch
):
    def no_network(*args, **kwargs):
        raise AssertionError("download=false must not try the network")

    monkeypatch.setattr(module, "download_and_extract_archive", no_network)
    with pytest.raises(DataError) as error:
        loader(Source(str(tmp_path), 32))
    message = str(error.value)
    assert f"{title} not found" in message and str(tmp_path / folder) in message
    assert "data.download=true" in message and ".tar.gz" in message


@pytest.mark.parametrize(
    "loader,title,module",
    [
        (load_cifar10, "CIFAR-10", torchvision.datasets.cifar),
        (load_stl10, "STL-10", torchvision.datasets.stl10),
    ],
)
def test_download_without_a_network_is_a_data_error(loader, title, module, tmp_path, monkeypatch):
    calls = []

    def offline(url, download_root, **kwargs):
        calls.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(module, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as error:
        loader(Source(str(tmp_path), 32, download=True))
    message = str(error.value)
    assert calls and f"could not download {title}" in message
    assert "name resolution" in message and str(tmp_path) in message


def test_cifar_pretraining_yields_views_of_the_configured_size(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path)
    accept_files(monkeypatch, CIFAR10, written["folder"])
    dm = datamodule(
        "cifar10", tmp_path, 32, batch_size=8, num_views=3, options={"val_fraction": 0.2}
    )
    views, labels = next(iter(dm.train_dataloader()))
    assert len(views) == 3 and all(v.shape == (8, 3, 32, 32) for v in views)
    assert labels.shape == (8,) and labels.min() >= 0
    # 40 training images, batch 8, drop_last: 5 full batches.
    assert len(dm.train_dataloader()) == 5


# --- STL-10 ---------------------------------------------------------------------------------


def test_stl10_reads_the_binary_files(tmp_path, monkeypatch):
    written = write_stl10(tmp_path)
    accept_files(monkeypatch, STL10, written["folder"])
    splits = load_stl10(Source(str(tmp_path), 96), val_fraction=0.5)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 10, 10)
    assert len(splits.unlabeled) == 12
    assert set(splits.unlabeled.labels.tolist()) == {-1}
    assert splits.num_classes == 10 and splits.class_names[2] == "car"
    image, label = splits.test[7]
    assert image.shape == (3, 96, 96)
    # Column-major planes come back as rows and columns.
    assert np.array_equal(as_array(image), written["test_images"][7])
    assert label == written["test_labels"][7]
    assert np.array_equal(as_array(splits.unlabeled[4][0]), written["unlabeled_images"][4])
    assert sorted(torch.cat([splits.train.labels, splits.val.labels]).tolist()) == sorted(
        written["train_labels"].tolist()
    )


@pytest.mark.parametrize("pretrain_split,count", [("unlabeled", 12), ("train+unlabeled", 22)])
def test_stl10_pretrains_on_the_unlabelled_images(tmp_path, monkeypatch, pretrain_split, count):
    written = write_stl10(tmp_path)
    accept_files(monkeypatch, STL10, written["folder"])
    dm = datamodule(
        "stl10",
        tmp_path,
        96,
        batch_size=4,
        pretrain_split=pretrain_split,
        options={"val_fraction": 0.5},
    )
    loader = dm.train_dataloader()
    assert len(loader.dataset) == count
    views, labels = next(iter(loader))
    assert len(views) == 2 and all(v.shape == (4, 3, 96, 96) for v in views)
    # The monitors' labelled splits stay the labelled ones.
    images, labels = next(iter(dm.labelled_dataloader("test")))
    assert images.shape == (10, 3, 96, 96) and labels.min() >= 0


def test_pretrain_split_must_exist_and_never_be_test(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path)
    accept_files(monkeypatch, CIFAR10, written["folder"])
    options = {"val_fraction": 0.2}
    dm = datamodule("cifar10", tmp_path, 32, pretrain_split="unlabeled", options=options)
    with pytest.raises(ConfigError, match="has no 'unlabeled' split"):
        dm.train_dataloader()
    with pytest.raises(ConfigError, match=r"data\.pretrain_split='train\+test'"):
        datamodule("cifar10", tmp_path, 32, pretrain_split="train+test")
    dm = datamodule("cifar10", tmp_path, 32, pretrain_split="train+val", options=options)
    assert len(dm.train_dataloader().dataset) == 50
    # The default 10% of five images per class would leave no validation images: an error.
    with pytest.raises(ConfigError, match=r"data\.options\.val_fraction leaves no images"):
        datamodule("cifar10", tmp_path, 32).train_dataloader()


# --- image folders --------------------------------------------------------------------------


def test_image_folder_reads_png_and_jpeg_in_class_folders(tmp_path):
    written = write_image_folder(tmp_path, classes=("cat", "dog", "fox"), per_class=8)
    splits = load_image_folder(Source(str(tmp_path), 32), val_fraction=0.25, test_fraction=0.25)
    assert splits.class_names == ["cat", "dog", "fox"] and splits.num_classes == 3
    for split in (splits.train, splits.val, splits.test):
        assert torch.bincount(split.labels, minlength=3).tolist() == [len(split) // 3] * 3
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(written) == 24
    labels = {path: label for path, label in written}
    for index in range(len(splits.train)):
        image, label = splits.train[index]
        assert image.mode == "RGB" and image.size == (20, 14)
        assert labels[Path(splits.train.paths[index])] == label
    # Pre-training: V views of the configured size from images of another size.
    dm = datamodule("imagefolder", tmp_path, 24, batch_size=4, num_views=2)
    views, _ = next(iter(dm.train_dataloader()))
    assert all(v.shape == (4, 3, 24, 24) for v in views)


def test_train_and_val_folders_val_is_the_test_split(tmp_path):
    write_image_folder(tmp_path / "train", per_class=10)
    write_image_folder(tmp_path / "val", per_class=3)
    splits = load_image_folder(Source(str(tmp_path), 32), val_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 4, 6)
    assert all("/val/" in path for path in splits.test.paths)
    assert all("/train/" in path for path in (*splits.train.paths, *splits.val.paths))
    assert not set(splits.train.paths) & set(splits.val.paths)
    # With a test/ folder as well, val/ is the validation split.
    write_image_folder(tmp_path / "test", per_class=2)
    splits = load_image_folder(Source(str(tmp_path), 32))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 6, 4)


def test_imagenet_layout(tmp_path):
    with pytest.raises(DataError, match=r"expected train/<class>/\*\.JPEG and val/"):
        load_imagenet(Source(str(tmp_path), 224))
    write_image_folder(tmp_path / "train", classes=("n01440764", "n01443537"), per_class=10)
    write_image_folder(tmp_path / "val", classes=("n01440764", "n01443537"), per_class=2)
    splits = load_imagenet(Source(str(tmp_path), 224), val_fraction=0.1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 4)
    with pytest.raises(ConfigError, match="cannot be downloaded"):
        load_imagenet(Source(str(tmp_path), 224, download=True))


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda root: root.mkdir(), "no class folders in image folder .*: it is empty"),
        (lambda root: None, "image folder .* does not exist"),
        (
            lambda root: write_image_folder(root) and (root / "empty_class").mkdir(),
            "class folders without images in .*: empty_class",
        ),
        (
            lambda root: root.mkdir() or Image.new("RGB", (4, 4)).save(root / "loose.png"),
            "1 image files directly in it: move them into one sub-folder per class",
        ),
        (
            lambda root: (
                write_image_folder(root / "train")
                and write_image_folder(root / "val", classes=("cat", "cow"))
            ),
            "class folders that the training folder lacks: cow",
        ),
    ],
    ids=["empty", "missing", "empty-class", "loose-images", "unknown-class"],
)
def test_image_folder_layout_errors(tmp_path, make, expected):
    root = tmp_path / "images"
    make(root)
    with pytest.raises(DataError, match=expected):
        load_image_folder(Source(str(root), 32))


def corrupt_folder(root: Path) -> tuple[Path, Path]:
    """train/ (10 images, 2 of them corrupt), val/ and test/ (4 images each)."""
    for split in ("val", "test"):
        write_image_folder(root / split, per_class=2)
    train = root / "train"
    write_image_folder(train, per_class=4)
    garbage = train / "dog" / "garbage.jpg"
    garbage.write_bytes(b"<html>not a JPEG</html>")
    truncated = train / "cat" / "truncated.png"
    truncated.write_bytes((train / "cat" / "0.png").read_bytes()[:60])
    return garbage, truncated


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_image_stops_the_run_naming_it(tmp_path, workers):
    garbage, truncated = corrupt_folder(tmp_path)
    files = ImageFiles([str(garbage)], [0])
    loader = torch.utils.data.DataLoader(files, batch_size=1, num_workers=workers)
    with pytest.raises(UndecodableImageError) as error:
        next(iter(loader))
    message = str(error.value)
    # One line for the user, even when a worker process met the file.
    assert message.startswith(f"cannot decode image file {garbage} (")
    assert "Traceback" not in message and "data.options.skip_corrupt=true" in message
    assert f"cannot identify image file '{garbage}'" in message  # PIL's reason, plain path
    # The fields come back whole from a worker process too, not only the message.
    assert error.value.path == str(garbage) and error.value.reason.startswith("Unidentified")
    with pytest.raises(DataError, match=f"cannot decode image file {truncated}"):
        ImageFiles([str(truncated)], [0])[0]


def test_skipping_corrupt_images_keeps_batches_full_and_counts(tmp_path, caplog):
    garbage, truncated = corrupt_folder(tmp_path)
    dm = datamodule(
        "imagefolder",
        tmp_path,
        16,
        batch_size=10,
        num_workers=1,
        options={"skip_corrupt": True},
    )
    total = sum(len(views[0]) for views, _ in dm.train_dataloader())
    for split in ("val", "test"):
        list(dm.labelled_dataloader(split))
    assert total == 10  # 10 training images, 2 of them corrupt: the batch is served in full
    assert sorted(dm.skipped_images()) == sorted([str(garbage), str(truncated)])
    with caplog.at_level(logging.WARNING, logger="simclr.data"):
        dm.teardown("fit")
    assert "skipped 2 image file(s) that could not be decoded" in caplog.text


# --- the DataModule's loaders -----------------------------------------------------------------


def test_loader_settings(tmp_path, monkeypatch):
    monkeypatch.setattr("simclr.data.dataloaders.available_cpus", lambda: 16)
    dm = datamodule("fake", tmp_path, 32, batch_size=8, num_workers=None, prefetch_factor=3)
    dm.trainer = type("Trainer", (), {"num_devices": 4, "world_size": 4})()
    # 16 cores / 4 devices, less the device's own process
    assert dm.labelled.settings.worker_count(dm.trainer) == 3
    train = dm.train_dataloader()
    assert train.num_workers == 3 and train.persistent_workers and train.drop_last
    assert train.prefetch_factor == 3 and train.batch_size == 2
    assert not dm.labelled_dataloader("val").drop_last
    assert not train.pin_memory  # no CUDA accelerator
    dm = datamodule("fake", tmp_path, 32, num_workers=0, pin_memory=True, drop_last=False)
    train = dm.train_dataloader()
    assert train.num_workers == 0 and not train.persistent_workers and train.prefetch_factor is None
    assert train.pin_memory and not train.drop_last
    with pytest.raises(ConfigError, match=r"data\.num_workers"):
        datamodule("fake", tmp_path, 32, num_workers=-1)


# --- whole runs -----------------------------------------------------------------------------


def tiny_data(name: str, root: Path, monkeypatch) -> list[str]:
    """Write tiny files for ``name`` under ``root``; the overrides that train on them."""
    if name == "cifar10":
        accept_files(monkeypatch, CIFAR10, write_cifar10(root)["folder"])
    elif name == "cifar100":
        accept_files(monkeypatch, CIFAR100, write_cifar100(root)["folder"])
    elif name == "stl10":
        accept_files(monkeypatch, STL10, write_stl10(root)["folder"])
    else:
        write_image_folder(root, per_class=10)
    fraction = "0.5" if name == "stl10" else "0.2"
    return [f"data={name}", f"data.root={root}", f"data.options.val_fraction={fraction}"]


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "imagefolder"])
def test_one_pretraining_step_on_each_data_set(name, tmp_path, monkeypatch):
    overrides = tiny_data(name, tmp_path / "data", monkeypatch)
    cfg = compose_config(
        [
            *FAST_OVERRIDES,
            *overrides,
            "data.download=false",
            "data.batch_size=4",
            "data.num_workers=0",
            "data.image_size=32",
            "trainer.fast_dev_run=true",
        ],
        tmp_path,
    )
    metrics = run(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss_step"]))
    classes = {"cifar100": 100, "imagefolder": 2}.get(name, 10)
    assert build_datamodule(cfg).load_splits().num_classes == classes


def test_train_py_on_cifar10_files(tmp_path, monkeypatch):
    root = tmp_path / "data"
    written = write_cifar10(root)
    accept_files_in_subprocesses(
        monkeypatch, tmp_path, CIFAR10=official_sums(CIFAR10, written["folder"])
    )
    result = run_script(
        "train.py",
        [
            "data=cifar10",
            f"data.root={root}",
            "data.download=false",
            "trainer.fast_dev_run=true",
            "data.batch_size=8",
            "data.options.val_fraction=0.2",
            "backbone=resnet18_slim",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").exists()


CORRUPT_RUN = [
    "data=imagefolder",
    "data.download=false",
    "data.image_size=32",
    "data.batch_size=10",  # the whole of train/: the one fast_dev_run batch reads every file
    "backbone=resnet18_slim",
    "trainer=cpu",
    "trainer.fast_dev_run=true",
]


def test_a_corrupt_image_stops_the_run(tmp_path):
    root = tmp_path / "images"
    garbage, truncated = corrupt_folder(root)
    cfg = compose_config(
        [*FAST_OVERRIDES, *CORRUPT_RUN, f"data.root={root}", "data.num_workers=1"], tmp_path
    )
    with pytest.raises(UndecodableImageError) as error:
        run(cfg)
    assert str(error.value).startswith(
        (f"cannot decode image file {garbage}", f"cannot decode image file {truncated}")
    )


def test_train_py_skips_corrupt_images_when_asked(tmp_path):
    root = tmp_path / "images"
    garbage, truncated = corrupt_folder(root)
    result = run_script(
        "train.py",
        [
            *CORRUPT_RUN,
            f"data.root={root}",
            "data.num_workers=1",
            "data.options.skip_corrupt=true",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    # Logged by the worker process that met each file, then counted by the main process.
    assert f"skipping image file that cannot be decoded: {garbage}" in output
    assert f"skipping image file that cannot be decoded: {truncated}" in output
    assert "skipped 2 image file(s) that could not be decoded" in output


EMPTY_ROOT_MESSAGES = {
    "cifar10": "CIFAR-10 not found: expected {root}/cifar-10-batches-py/ holding data_batch_1",
    "cifar100": "CIFAR-100 not found: expected {root}/cifar-100-python/ holding train, test",
    "stl10": "STL-10 not found: expected {root}/stl10_binary/ holding train_X.bin",
    "imagefolder": "no class folders in image folder {root}: it is empty",
}


@pytest.mark.parametrize(
    "name",
    [
        "cifar10",
        pytest.param("cifar100", marks=pytest.mark.slow),
        pytest.param("stl10", marks=pytest.mark.slow),
        pytest.param("imagefolder", marks=pytest.mark.slow),
    ],
)
def test_train_py_with_an_empty_root_stops_with_the_message(name, tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    start = time.monotonic()
    result = run_script(
        "train.py",
        [f"data={name}", f"data.root={root}", "data.download=false", "trainer.fast_dev_run=true"],
        cwd=tmp_path,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 2
    assert f"error: {EMPTY_ROOT_MESSAGES[name].format(root=root)}" in result.stderr
    assert "Traceback" not in result.stderr
    print(f"{name}: exit {result.returncode} after {elapsed:.1f} s")


@pytest.mark.parametrize("name", ["cifar100", "stl10", "imagefolder", "imagenet"])
def test_run_with_an_empty_root_raises_the_message(name, tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    cfg = compose_config(
        [*FAST_OVERRIDES, f"data={name}", f"data.root={root}", "data.download=false"], tmp_path
    )
    with pytest.raises(DataError) as error:
        run(cfg)
    expected = EMPTY_ROOT_MESSAGES.get(name, "ImageNet not found under {root}")
    assert expected.format(root=root) in str(error.value)
