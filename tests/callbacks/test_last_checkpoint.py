"""last.ckpt holds the run's final step, whatever the periodic checkpoints' period.

Lightning (2.6) refreshes a ModelCheckpoint's last.ckpt only in epochs where that callback
saved, so without the ``last_checkpoint`` callback a 3-epoch run with checkpoints every 2
epochs ended with last.ckpt of epoch 2, and a fine-tuning run with last.ckpt of its best epoch.
"""

from __future__ import annotations

import torch

from conftest import FAST_OVERRIDES, compose_config
from simclr.tasks.finetune import run as finetune
from simclr.tasks.pretrain import run as pretrain


def saved_position(path) -> tuple[int, int]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return checkpoint["global_step"], checkpoint["epoch"]


def test_pretraining_last_ckpt_is_the_final_step_between_periodic_checkpoints(tmp_path):
    overrides = [
        *FAST_OVERRIDES,
        "logger=csv",
        "data.batch_size=16",
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.every_n_epochs=2",
    ]
    pretrain(compose_config(overrides, tmp_path))
    checkpoints = tmp_path / "checkpoints"
    # fake: 64 training images, batches of 16 with the last dropped: 4 steps an epoch.
    assert saved_position(checkpoints / "last.ckpt") == (12, 2)
    assert saved_position(checkpoints / "epoch_001.ckpt") == (8, 1)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_001.ckpt", "last.ckpt"]


def test_finetuning_last_ckpt_is_the_final_step_not_the_best_epoch(tmp_path):
    overrides = [
        *FAST_OVERRIDES,
        "logger=csv",
        "pretrained_ckpt=null",
        "data.batch_size=8",
        "trainer.max_epochs=3",
    ]
    finetune(compose_config(overrides, tmp_path, "finetune"))
    # 64 training images, 8 a batch: 8 steps an epoch.
    assert saved_position(tmp_path / "checkpoints" / "last.ckpt") == (24, 2)
    assert (tmp_path / "checkpoints" / "best.ckpt").exists()
