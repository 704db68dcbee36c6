"""The published ImageNet 1% / 10% label subsets (issue 13, item 3), on fake ImageNet folders
in the real layout: train/<wnid>/<wnid>_<number>.JPEG and val/<wnid>/."""

import hashlib
from importlib import resources
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import compose_config
from simclr.data import FineTuneDataModule
from simclr.data import label_subsets as subsets_module
from simclr.data.label_subsets import subset_file_names
from simclr.errors import ConfigError, DataError
from simclr.tasks.common import plain
from simclr.tasks.finetune import run

# md5 of google-research/simclr's imagenet_subsets/ files at 383d414.
PUBLISHED_MD5 = {
    "1percent.txt": "b61c91b8ddb75fabdb02a9bb2ae3bd74",
    "10percent.txt": "b0d861160cc9531910d069ff547fc1b6",
}
ONE_PERCENT = subset_file_names("imagenet_1pct")


def listed_of(wnids: list[str]) -> list[str]:
    return [name for name in ONE_PERCENT if name.split("_")[0] in wnids]


def write_imagenet(root: Path, listed: list[str], extra_per_class: int = 4, empty=False):
    """An ImageNet folder holding the ``listed`` training images (real JPEGs, or empty files
    that are never decoded), ``extra_per_class`` unlisted ones per class, and two validation
    images per class. Returns the class folders (sorted wnids)."""
    wnids = sorted({name.split("_")[0] for name in listed})
    extra = [f"{wnid}_{900000 + i}.JPEG" for wnid in wnids for i in range(extra_per_class)]
    for wnid in wnids:
        (root / "train" / wnid).mkdir(parents=True)
        (root / "val" / wnid).mkdir(parents=True)
    for i, name in enumerate([*listed, *extra]):
        path = root / "train" / name.split("_")[0] / name
        if empty:
            path.touch()
        else:
            Image.new("RGB", (40, 30), (i % 256, 80, 160)).save(path, quality=90)
    for c, wnid in enumerate(wnids):
        for i in range(2):
            name = f"ILSVRC2012_val_{c * 2 + i + 1:08d}.JPEG"
            Image.new("RGB", (40, 30), (c, 40, 90)).save(root / "val" / wnid / name)
    return wnids


def imagenet_data(root: Path, tmp_path: Path, val_fraction: float = 0.25) -> dict:
    cfg = compose_config(
        [
            "pretrained_ckpt=null",
            "data=imagenet",
            f"data.root={root}",
            f"data.options.val_fraction={val_fraction}",
            "data.image_size=32",
            "data.num_workers=0",
        ],
        tmp_path,
        config_name="finetune",
    )
    return plain(cfg.data)


def test_the_shipped_lists_are_the_published_ones_with_their_notice():
    folder = resources.files("simclr.data").joinpath("imagenet_subsets")
    for name, md5 in PUBLISHED_MD5.items():
        assert hashlib.md5(folder.joinpath(name).read_bytes()).hexdigest() == md5
    notice = folder.joinpath("NOTICE").read_text()
    assert "Apache License, Version 2.0" in notice and "google-research/simclr" in notice
    assert "Apache License" in folder.joinpath("LICENSE").read_text()
    ten = subset_file_names("imagenet_10pct")
    assert (len(ONE_PERCENT), len(ten)) == (12811, 128116)
    assert len({n.split("_")[0] for n in ONE_PERCENT}) == 1000
    assert set(ONE_PERCENT) <= set(ten)


def test_images_of_the_list_missing_from_the_folder_stop_with_a_count_and_names(tmp_path):
    listed = listed_of(["n01440764", "n01443537", "n01484850"])
    write_imagenet(tmp_path / "imagenet", listed)
    data = FineTuneDataModule(
        imagenet_data(tmp_path / "imagenet", tmp_path), 1.0, label_subset="imagenet_1pct"
    )
    with pytest.raises(DataError) as error:
        data.train_indices  # noqa: B018
    message = str(error.value)
    missing = [name for name in ONE_PERCENT if name not in set(listed)]
    assert f"{12811 - len(listed)} of the 12811 images of its list are not among" in message
    assert ", ".join(missing[:5]) + " ..." in message
    assert str(tmp_path / "imagenet") in message


def test_the_whole_list_is_selected_exactly_and_validation_never_holds_it(tmp_path):
    # Every listed name of the 1% list as an empty file (selection reads names, not pixels),
    # and 4 unlisted images per class; val_fraction 0.25 holds out some listed images,
    # which the subset takes back.
    root = tmp_path / "imagenet"
    wnids = write_imagenet(root, ONE_PERCENT, empty=True)
    assert len(wnids) == 1000
    data = FineTuneDataModule(imagenet_data(root, tmp_path), 1.0, label_subset="imagenet_1pct")
    splits = data.labelled.load_splits()
    before = {Path(p).name for p in [*splits.train.paths, *splits.val.paths]}
    held_listed = {Path(p).name for p in splits.val.paths} & set(ONE_PERCENT)
    assert held_listed  # the held-out split took some listed images
    indices = data.train_indices
    train = data.labelled.load_splits().train
    chosen = [Path(p).name for p in train.paths[indices.numpy()]]
    assert sorted(chosen) == sorted(ONE_PERCENT) and len(indices) == 12811
    labels = train.labels[indices]
    assert all(wnids[int(y)] == name.split("_")[0] for name, y in zip(chosen, labels, strict=True))
    val = {Path(p).name for p in data.labelled.load_splits().val.paths}
    assert not val & set(ONE_PERCENT) and val  # the rest stays for validation
    after = {Path(p).name for p in train.paths} | val
    assert after == before  # no image lost or duplicated


def test_fine_tuning_on_a_subset_trains_on_exactly_its_images(tmp_path, monkeypatch):
    # The list narrowed to the three classes the folder holds; real JPEGs, through run().
    listed = listed_of(["n01440764", "n01443537", "n01484850"])
    monkeypatch.setattr(subsets_module, "subset_file_names", lambda name: listed)
    write_imagenet(tmp_path / "imagenet", listed)
    cfg = compose_config(
        [
            "pretrained_ckpt=null",
            "backbone=resnet18_slim",
            "backbone.width=0.125",
            "data=imagenet",
            f"data.root={tmp_path / 'imagenet'}",
            "data.options.val_fraction=0.25",
            "data.image_size=32",
            "data.batch_size=8",
            "data.num_workers=0",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "callbacks.progress_bar=null",
            "logger=csv",
            "label_subset=imagenet_1pct",
        ],
        tmp_path / "run",
        config_name="finetune",
    )
    metrics = run(cfg)
    assert metrics["train/num_images"] == len(listed) > 30


def test_a_subset_needs_image_files_and_label_fraction_one(tmp_path):
    cfg = compose_config(["pretrained_ckpt=null", "data=fake"], tmp_path, config_name="finetune")
    with pytest.raises(ConfigError, match=r"label_fraction=0.1 both choose"):
        FineTuneDataModule(plain(cfg.data), 0.1, label_subset="imagenet_1pct")
    with pytest.raises(ConfigError, match="label_subset='imagenet_2pct': must be one of"):
        FineTuneDataModule(plain(cfg.data), 1.0, label_subset="imagenet_2pct")
    with pytest.raises(ConfigError, match="selects image files by name"):
        FineTuneDataModule(plain(cfg.data), 1.0, label_subset="imagenet_1pct").train_indices  # noqa: B018
    assert torch.is_tensor(FineTuneDataModule(plain(cfg.data), 1.0).train_indices)
