"""select_on_val=false: the official evaluations train on every training image and report
the last epoch, with no validation split."""

import torch

from conftest import compose_config
from simclr.data import FineTuneDataModule
from simclr.tasks.common import plain
from simclr.tasks.finetune import run

FAST = [
    "pretrained_ckpt=null",
    "backbone=resnet18_slim",
    "backbone.width=0.125",
    "data=fake",
    "trainer=cpu",
    "trainer.max_epochs=2",
    "callbacks.progress_bar=null",
    "logger=csv",
]


def test_every_training_image_is_trained_on_and_the_last_epoch_is_tested(tmp_path):
    cfg = compose_config([*FAST, "select_on_val=false"], tmp_path, config_name="finetune")
    held = FineTuneDataModule(plain(cfg.data), 1.0).labelled.load_splits()
    metrics = run(cfg)
    assert metrics["train/num_images"] == len(held.train) + len(held.val)
    assert "val/acc_best" not in metrics and "test/acc" in metrics
    checkpoints = tmp_path / "checkpoints"
    assert (checkpoints / "last.ckpt").exists() and not (checkpoints / "best.ckpt").exists()


def test_the_joined_split_is_chosen_from_by_label_fraction(tmp_path):
    cfg = compose_config([*FAST], tmp_path, config_name="finetune")
    data = FineTuneDataModule(plain(cfg.data), 0.5, select_on_val=False)
    splits = data.labelled.load_splits()
    train, val = splits.train, splits.val
    indices = data.train_indices
    joined = data.labelled.load_splits()
    assert len(joined.train) == len(train) + len(val) and len(joined.val) == 0
    assert torch.equal(joined.train.labels[: len(train)], train.labels)
    assert len(indices) == sum(
        max(1, round(0.5 * int(n))) for n in torch.bincount(joined.train.labels) if n
    )


def test_by_default_the_validation_split_is_held_out(tmp_path):
    cfg = compose_config([*FAST], tmp_path, config_name="finetune")
    data = FineTuneDataModule(plain(cfg.data), 1.0)
    splits = data.labelled.load_splits()
    assert len(data.train_indices) == len(splits.train) and len(splits.val) > 0
