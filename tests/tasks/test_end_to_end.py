"""Every data config end to end, through the commands a user types, each in its own process:

1. ``python train.py data=<name> ...`` pre-trains a tiny encoder for one step on tiny files in
   the data set's real on-disk format (``data_files``) and writes ``last.ckpt``;
2. ``python -m simclr.export <ckpt> <folder>`` exports its encoder;
3. ``python finetune.py mode=full pretrained_ckpt=<ckpt>`` fine-tunes the checkpoint, and
   ``python finetune.py mode=linear pretrained_ckpt=<export>`` linearly evaluates the export.

About 5 s of every process is imports (Lightning, torchvision), so one pre-training serves
both fine-tunings, and the export and the full fine-tuning run side by side (both need only
the checkpoint), one thread each.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torchvision

from conftest import ROOT, assert_accuracies_counted, finish, start_python
from data_files import (
    accept_files_in_subprocesses,
    official_sums,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_stl10,
)

# A tiny run: one pre-training step, one fine-tuning batch per loop; cheap monitors stay on.
SMALL = [
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "logger=csv",
    "callbacks.progress_bar=null",
    "data.batch_size=8",
]
PRETRAIN = [*SMALL, "backbone=resnet18_slim", "backbone.width=0.125", "data.image_size=32"]
FINETUNE = [*SMALL, "trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]
# What the export of PRETRAIN's encoder must describe.
EXPECTED_ENCODER = {"name": "resnet18_slim", "width": 0.125, "small_stem": True}
EXPECTED_FEATURES = 64  # 512 channels x width 0.125


@dataclass
class DataCase:
    """A data set on disk: the overrides that read it, the MD5 sums torchvision must accept
    for it, its class count and the number of labelled training images fine-tuning gets."""

    overrides: list[str]
    num_classes: int
    train_images: int | None  # None: not counted here
    sums: dict = field(default_factory=dict)


def on_disk(name: str, root: Path, num_workers: str, *more: str) -> list[str]:
    """The overrides that read data set ``name`` from files under ``root``, never downloading."""
    return [
        f"data={name}",
        f"data.root={root}",
        "data.download=false",
        f"data.num_workers={num_workers}",
        *more,
    ]


def digits(root: Path) -> DataCase:
    # scikit-learn's bundled images, nothing on disk; 2 workers, from its config.
    return DataCase(["data=digits"], 10, None)


def fake(root: Path) -> DataCase:
    return DataCase(["data=fake"], 10, 64)


def cifar10(root: Path) -> DataCase:
    folder = write_cifar10(root)["folder"]  # 50 training images, 5 a class; 1 held out
    return DataCase(
        on_disk("cifar10", root, "null", "data.options.val_fraction=0.2"),
        10,
        40,
        {"CIFAR10": official_sums(torchvision.datasets.CIFAR10, folder)},
    )


def cifar100(root: Path) -> DataCase:
    folder = write_cifar100(root)["folder"]  # 40 training images, of 4 classes of the 100
    return DataCase(
        on_disk("cifar100", root, "0", "data.options.val_fraction=0.2"),
        100,
        32,
        {"CIFAR100": official_sums(torchvision.datasets.CIFAR100, folder)},
    )


def stl10(root: Path) -> DataCase:
    # 12 unlabelled images to pre-train on; 20 labelled ones, half held out for validation.
    folder = write_stl10(root)["folder"]
    return DataCase(
        on_disk("stl10", root, "0", "data.options.val_fraction=0.5"),
        10,
        10,
        {"STL10": official_sums(torchvision.datasets.STL10, folder)},
    )


def imagefolder_split(root: Path) -> DataCase:
    # One folder of class folders, split by the config's fractions (0.1 val, 0.1 test).
    write_image_folder(root, per_class=10)
    return DataCase(on_disk("imagefolder", root, "null"), 2, 16)


def imagefolder_train_val(root: Path) -> DataCase:
    # train/ and val/: val/ is the test split, the validation split is held out of train/.
    write_image_folder(root / "train", per_class=6)
    write_image_folder(root / "val", per_class=2)
    return DataCase(on_disk("imagefolder", root, "1"), 2, 10)


def imagenet(root: Path) -> DataCase:
    wnids = ("n01440764", "n01443537")
    write_image_folder(root / "train", wnids, per_class=6, size=(40, 30), jpeg_only=True)
    write_image_folder(root / "val", wnids, per_class=2, size=(30, 40), jpeg_only=True)
    # The config's 1% of 6 images a class would hold none out for validation.
    return DataCase(on_disk("imagenet", root, "null", "data.options.val_fraction=0.2"), 2, 10)


def streaming(root: Path) -> DataCase:
    # The split layout's folder written into shards first (python -m simclr.data.prepare's
    # function): 16 training images, 2 validation, 2 test, as the folder loader splits them.
    pytest.importorskip("litdata")
    from simclr.data.prepare import prepare

    write_image_folder(root / "photos", per_class=10)
    prepare(str(root / "photos"), str(root / "shards"), progress=False)
    return DataCase(["data=streaming", f"data.root={root / 'shards'}", "data.num_workers=1"], 2, 16)


CASES = {
    "digits": digits,
    "fake": fake,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "stl10": stl10,
    "imagefolder-split": imagefolder_split,
    "imagefolder-train-val": imagefolder_train_val,
    "imagenet": imagenet,
    "streaming": streaming,
}


def succeeded(result, command: str) -> str:
    """The output of a finished command, which must have exited 0."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{output[-4000:]}"
    return output


def finite_metrics(folder: Path) -> dict[str, float]:
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics and all(math.isfinite(value) for value in metrics.values()), metrics
    return metrics


def encoder_entries(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


@pytest.fixture
def launch(tmp_path):
    """Start ``python <args>`` in ``tmp_path``; what still runs when the test ends is killed."""
    started = []

    def start(args: list[str]):
        started.append(start_python(args, tmp_path))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("name", list(CASES))
def test_pretrain_export_and_finetune(name, tmp_path, monkeypatch, launch):
    case = CASES[name](tmp_path / "data")
    # One thread a process: two run side by side, and more threads than free cores make
    # every small operation wait for a descheduled thread (100x slower on a busy machine).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if case.sums:
        accept_files_in_subprocesses(monkeypatch, tmp_path, **case.sums)
    runs = tmp_path / "runs"

    # 1. Pre-training writes a checkpoint; the monitors read the labelled splits.
    pretrain = [*PRETRAIN, *case.overrides, f"hydra.run.dir={runs / 'pretrain'}"]
    succeeded(finish(launch([str(ROOT / "train.py"), *pretrain])), "train.py")
    checkpoint = runs / "pretrain" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    metrics = finite_metrics(runs / "pretrain")
    assert {"train/loss_epoch", "val/knn_acc", "val/probe_acc"} <= metrics.keys(), metrics

    # 2 and 3. The export, beside full fine-tuning of the checkpoint; then linear evaluation
    # of the export.
    def finetuning(mode: str, pretrained: Path):
        args = [*FINETUNE, *case.overrides, f"mode={mode}", f"pretrained_ckpt={pretrained}"]
        return launch([str(ROOT / "finetune.py"), *args, f"hydra.run.dir={runs / mode}"])

    export = tmp_path / "export"
    full = finetuning("full", checkpoint)
    exporting = launch(["-m", "simclr.export", str(checkpoint), str(export)])
    succeeded(finish(exporting), "python -m simclr.export")
    linear = finetuning("linear", export)
    outputs = {"full": succeeded(finish(full), "finetune.py mode=full")}
    outputs["linear"] = succeeded(finish(linear), "finetune.py mode=linear")

    description = json.loads((export / "encoder.json").read_text())
    assert description["backbone"].items() >= EXPECTED_ENCODER.items(), description
    assert description["image_size"] == 32 and description["feature_dim"] == EXPECTED_FEATURES
    exported = torch.load(export / "encoder.pt", map_location="cpu", weights_only=True)
    trained = encoder_entries(checkpoint)
    assert exported.keys() == trained.keys()
    assert all(torch.equal(exported[key], trained[key]) for key in trained)

    for mode, source in (("full", checkpoint), ("linear", export / "encoder.pt")):
        assert f"loaded from {source}" in outputs[mode], outputs[mode][-4000:]
        metrics = finite_metrics(runs / mode)
        assert "val/acc_best" in metrics
        assert_accuracies_counted(metrics)
        # Top-5 accuracy is reported only where there are at least 5 classes.
        assert ("test/acc_top5" in metrics) == (case.num_classes >= 5), metrics
        if case.train_images is not None:
            assert metrics["train/num_images"] == case.train_images
        assert (runs / mode / "checkpoints" / "best.ckpt").is_file()
