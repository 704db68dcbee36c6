"""Checkpoints and exports written before the package restructure (issue 12) still serve:
``tests/fixtures/pretrain_2fb1cad`` holds a tiny pre-training checkpoint and its export made
by the code of commit 2fb1cad, whose backbone is stored under its old name ``slim_resnet18``.
Each is used through the commands a user types: ``train.py ckpt_path=`` resumes the
checkpoint, ``finetune.py pretrained_ckpt=`` fine-tunes it and its export."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import (
    OLD_CHECKPOINT_DIR,
    assert_accuracies_counted,
    finish,
    run_script,
    start_python,
)

FIXTURE = OLD_CHECKPOINT_DIR
# The settings the fixture was pre-trained with (see its README.md).
DATA = [
    "data=fake",
    "data.image_size=16",
    "data.batch_size=8",
    "data.options.num_train=16",
    "data.options.num_val=8",
    "data.options.num_test=8",
]
SMALL = ["trainer=cpu", "trainer.max_epochs=2", "logger=csv", "callbacks.progress_bar=null"]


@pytest.fixture
def old(tmp_path):
    """A copy of the fixture, so that no run can touch the committed files."""
    copy = tmp_path / "old"
    shutil.copytree(FIXTURE, copy)
    return copy


def test_the_fixture_is_from_before_the_move(old):
    state = torch.load(old / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["hyper_parameters"]["backbone"]["name"] == "slim_resnet18"
    assert json.loads((old / "export" / "encoder.json").read_text())["backbone"]["name"] == (
        "slim_resnet18"
    )


def test_an_old_checkpoint_resumes(old, tmp_path):
    run = tmp_path / "run"
    result = run_script(
        "train.py",
        [
            *DATA,
            *SMALL,
            "backbone=resnet18_slim",
            "backbone.width=0.0625",
            "model.head.output_dim=16",
            "trainer.limit_train_batches=2",
            f"ckpt_path={old / 'last.ckpt'}",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # One more epoch of two steps from where the old run stopped (one epoch, step 2).
    assert resumed["epoch"] == 2 and resumed["global_step"] == 4
    assert resumed["lr_schedulers"][0]["last_epoch"] == 4
    # The callbacks' state came back and went on: the monitors' histories grew by one epoch.
    probe = resumed["callbacks"]["OnlineLinearProbe"]
    assert sorted(probe["history"]) == [0, 1] and "probe" in probe
    assert sorted(resumed["callbacks"]["WeightedKNN"]["history"]) == [0, 1]


@pytest.mark.parametrize(
    "source, mode, more",
    [
        ("last.ckpt", "full", []),
        ("export/encoder.pt", "linear", []),
        # The new backbone name chooses the same architecture as the old one stored.
        ("last.ckpt", "linear", ["backbone=resnet18_slim", "backbone.width=0.0625"]),
    ],
)
def test_an_old_checkpoint_and_its_export_fine_tune(old, tmp_path, source, mode, more):
    run = tmp_path / "run"
    result = run_script(
        "finetune.py",
        [
            *DATA,
            *SMALL,
            f"mode={mode}",
            *more,
            f"pretrained_ckpt={old / source}",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert_accuracies_counted(metrics)
    assert metrics["train/num_images"] == 16


def test_an_old_checkpoint_exports(old, tmp_path):
    result = finish(start_python(["-m", "simclr.export", str(old / "last.ckpt"), "out"], tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    exported = json.loads((tmp_path / "out" / "encoder.json").read_text())
    assert exported["backbone"]["name"] == "slim_resnet18"  # as stored; an alias today
    assert exported["feature_dim"] == 32
