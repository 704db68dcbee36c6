"""Embeddings out (``python -m simclr.embed``, ``simclr.embed``): the rows match the images
(paths, labels, count, order) and the vectors equal the encoder's features computed directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import STL10

import simclr
from conftest import finish, save_pretrain_checkpoint, start_python
from data_files import accept_files, write_image_folder, write_stl10
from simclr.data.augment.transforms import evaluation_transform
from simclr.data.image_files import decode_rgb
from simclr.data.sources import load_dataset
from simclr.extras import Extra
from simclr.models.exports import export

# One make test worker takes this whole file: its module fixture
# (the pre-trained checkpoint) is built once.
pytestmark = pytest.mark.xdist_group("test_embed")

IMAGE_SIZE = 16
BACKBONE = {"name": "slim_resnet18", "width": 0.125, "depthwise": False, "small_stem": None}
DIGITS = {"data": "digits", "overrides": ["data.num_workers=0"]}
DIGITS_STATS = ([0.3048] * 3, [0.3233] * 3)
IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A pre-training checkpoint of 16 px images, and its module (in eval mode)."""
    path = tmp_path_factory.mktemp("ckpt") / "pretrain.ckpt"
    model = save_pretrain_checkpoint(path, BACKBONE, IMAGE_SIZE)
    return path, model.eval()


def read_back(path: Path) -> dict:
    """The written file's columns, read with the format's own reader."""
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            return {name: arrays[name] for name in arrays.files}
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    return {
        "features": np.asarray(columns.pop("feature"), dtype=np.float32),
        "paths": columns["path"],
        "splits": columns["split"],
        "indices": np.asarray(columns["index"]),
        **({"labels": np.asarray(columns["label"])} if "label" in columns else {}),
        "kind": table.schema.metadata[b"simclr.kind"].decode(),
    }


def direct(model, images: torch.Tensor, head: bool) -> np.ndarray:
    """The encoder's h (or the head's z) of already transformed images ``(B, 3, H, W)``."""
    with torch.no_grad():
        h = model.encoder(images)
        return (model.projection(h) if head else h).numpy()


@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
@pytest.mark.parametrize("head", [False, True])
def test_digits_rows_and_vectors_match_the_split(tmp_path, pretrained, suffix, head):
    checkpoint, model = pretrained
    out = tmp_path / f"digits{suffix}"
    returned = simclr.embed(checkpoint, out, split="test", head=head, progress=False, **DIGITS)
    written = read_back(out)

    test = load_dataset("digits", "unused", IMAGE_SIZE).test
    assert len(written["paths"]) == len(test) == len(returned)
    assert list(written["paths"]) == [f"test/{i}" for i in range(len(test))]
    assert list(written["splits"]) == ["test"] * len(test)
    assert np.array_equal(written["labels"], test.labels.numpy())
    transform = evaluation_transform(IMAGE_SIZE, *DIGITS_STATS, 1.0)
    expected = direct(model, torch.stack([transform(image) for image in test.images]), head)
    assert written["features"].shape == expected.shape == (len(test), 16 if head else 64)
    assert np.allclose(written["features"], expected, atol=1e-5)
    assert np.array_equal(returned.features, written["features"])
    if suffix == ".parquet":
        assert written["kind"] == ("z" if head else "h")


def test_all_splits_in_order_without_a_file(pretrained):
    checkpoint, _ = pretrained
    embeddings = simclr.embed(checkpoint, progress=False, batch_size=700, **DIGITS)
    splits = load_dataset("digits", "unused", IMAGE_SIZE)
    names = ("train", "val", "test")
    sizes = [len(getattr(splits, name)) for name in names]
    assert len(embeddings) == sum(sizes) == 1797 and embeddings.file is None
    assert embeddings.paths == [
        f"{n}/{i}" for n, size in zip(names, sizes, strict=True) for i in range(size)
    ]
    assert np.array_equal(embeddings.indices, np.concatenate([np.arange(s) for s in sizes]))
    labels = torch.cat([getattr(splits, name).labels for name in names]).numpy()
    assert np.array_equal(embeddings.labels, labels)


@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
@pytest.mark.parametrize("head", [False, True])
def test_image_folder_rows_are_the_files_and_vectors_the_features(
    tmp_path, pretrained, suffix, head
):
    checkpoint, model = pretrained
    root = tmp_path / "images"
    written_files = {}
    for split in ("train", "val", "test"):
        written_files[split] = write_image_folder(root / split, per_class=3)
    out = tmp_path / f"folder{suffix}"
    simclr.embed(
        checkpoint,
        out,
        data="imagefolder",
        head=head,
        progress=False,
        overrides=[f"data.root={root}", "data.num_workers=0"],
    )
    written = read_back(out)

    # Each split's files in the order of their full paths, class by class; labels by class.
    expected_rows = [
        (path, label)
        for split in ("train", "val", "test")
        for path, label in sorted(written_files[split], key=lambda row: (row[1], str(row[0])))
    ]
    assert list(written["paths"]) == [str(p.relative_to(root)) for p, _ in expected_rows]
    assert written["paths"][0] == "train/cat/0.png"
    assert np.array_equal(written["labels"], [label for _, label in expected_rows])
    assert list(written["splits"]) == ["train"] * 6 + ["val"] * 6 + ["test"] * 6
    transform = evaluation_transform(IMAGE_SIZE, *IMAGENET_STATS, 1.0)
    images = torch.stack([transform(decode_rgb(str(path))) for path, _ in expected_rows])
    assert np.allclose(written["features"], direct(model, images, head), atol=1e-5)


def test_images_without_labels_get_no_label_column(tmp_path, pretrained, monkeypatch):
    checkpoint, _ = pretrained
    accept_files(monkeypatch, STL10, write_stl10(tmp_path)["folder"])
    overrides = [f"data.root={tmp_path}", "data.download=false", "data.num_workers=0"]
    overrides.append("data.options.val_fraction=0.5")
    for suffix in (".parquet", ".npz"):
        out = tmp_path / f"unlabelled{suffix}"
        embeddings = simclr.embed(
            checkpoint, out, data="stl10", split="unlabeled", progress=False, overrides=overrides
        )
        assert embeddings.labels is None and "labels" not in read_back(out)
        assert embeddings.paths == [f"unlabeled/{i}" for i in range(12)]


def test_command_writes_the_file_with_progress_lines(tmp_path, pretrained):
    checkpoint, _ = pretrained
    out = tmp_path / "out" / "digits.npz"
    args = ["-m", "simclr.embed", str(checkpoint), "data=digits", "data.num_workers=0"]
    args += ["--split", "val", "--batch-size", "100", "--progress-every", "1", "--out", str(out)]
    done = finish(start_python(args, tmp_path), timeout=240)
    assert done.returncode == 0, done.stderr
    count = len(load_dataset("digits", "unused", IMAGE_SIZE).val)
    assert f"embedding: batch 3/3, {count} images" in done.stdout  # no terminal: plain lines
    assert f"wrote {count} rows of 64 features (h, val; with labels) to {out}" in done.stdout
    assert len(read_back(out)["paths"]) == count

    missing = finish(
        start_python([*args[:2], str(tmp_path / "none.ckpt"), "--out", "x.npz"], tmp_path)
    )
    assert missing.returncode == 2
    assert "none.ckpt does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_errors_are_one_line_and_exit_2(tmp_path, pretrained, capsys, monkeypatch):
    from simclr.embed import main

    monkeypatch.chdir(tmp_path)
    checkpoint, _ = pretrained
    # Importing the command's module makes simclr.embed name it: it still embeds when called.
    assert callable(simclr.embed)
    exported = tmp_path / "export"
    export(checkpoint, exported)
    digits = ["data=digits", "data.num_workers=0"]
    cases = {
        "holds no projection head": [str(exported), *digits, "--head", "--out", "x.npz"],
        "use .parquet or .npz": [str(checkpoint), *digits, "--out", "x.csv"],
        "Could not find 'data/nosuch'": [str(checkpoint), "data=nosuch", "--out", "x.npz"],
    }
    for message, argv in cases.items():
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err

    monkeypatch.setattr("simclr.extras.PARQUET", Extra("no_such_pyarrow", "parquet"))
    assert main([str(checkpoint), *digits, "--out", "x.parquet"]) == 2
    assert "pip install 'simclr[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()

    with pytest.raises(SystemExit) as stopped:
        main([str(checkpoint), *digits, "--split", "nosuch", "--out", "x.npz"])
    assert stopped.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err

    # The export (without head) embeds h as the checkpoint does.
    from_export = simclr.embed(exported, split="val", progress=False, **DIGITS)
    from_checkpoint = simclr.embed(checkpoint, split="val", progress=False, **DIGITS)
    assert np.allclose(from_export.features, from_checkpoint.features, atol=1e-6)
