"""timm backbones through the entry points: ``train.py backbone=timm backbone.model=...`` runs,
and ``finetune.py`` fine-tunes and linearly evaluates a timm pre-training checkpoint.

Models and images are the smallest that keep the architectures: timm's ViT-Tiny and ConvNeXt-
Atto at 32 px (a ViT of 2 x 2 patches), one step of 8 images."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import assert_accuracies_counted, compose_config, run_script
from simclr.tasks.finetune import run as finetune
from simclr.tasks.pretrain import run as pretrain

# One make test worker takes this whole file: its module fixture
# (the timm checkpoints) is built once.
pytestmark = pytest.mark.xdist_group("test_timm_tasks")

TINY = [
    "data=fake",
    "data.image_size=32",
    "data.batch_size=8",
    "data.options.num_train=16",
    "data.options.num_val=8",
    "data.options.num_test=8",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "logger=csv",
    "callbacks.progress_bar=null",
]
MODELS = ["vit_tiny_patch16_224", "convnext_atto"]


def test_train_py_runs_a_timm_vit(tmp_path):
    """The acceptance command, at 32 px instead of 224 (a ViT is built for any size)."""
    args = [
        "backbone=timm",
        "backbone.model=vit_tiny_patch16_224",
        "data.image_size=32",
        "data=fake",
        "trainer.fast_dev_run=true",
        "trainer=cpu",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = run_script("train.py", args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "VisionTransformer" in result.stdout + result.stderr


@pytest.fixture(scope="module", params=MODELS)
def timm_checkpoint(request, tmp_path_factory):
    """(model name, last.ckpt) of one pre-training step of a timm backbone."""
    folder = tmp_path_factory.mktemp(request.param)
    cfg = compose_config([*TINY, "backbone=timm", f"backbone.model={request.param}"], folder)
    metrics = pretrain(cfg)
    assert math.isfinite(metrics["train/loss_epoch"])
    return request.param, folder / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("mode", ["full", "linear"])
def test_finetune_from_a_timm_checkpoint(timm_checkpoint, mode, tmp_path):
    model, checkpoint = timm_checkpoint
    cfg = compose_config(
        [
            *TINY,
            "trainer.limit_val_batches=1",
            "+trainer.limit_test_batches=1",
            f"mode={mode}",
            f"pretrained_ckpt={checkpoint}",
        ],
        tmp_path,
        config_name="finetune",
    )
    metrics = finetune(cfg)
    assert_accuracies_counted(metrics)
    # The fine-tuned encoder is the checkpoint's architecture, started from its weights.
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["backbone"]["model"] == model
    if mode == "linear":  # frozen: the last fine-tuning checkpoint keeps the encoder as it was
        tuned = torch.load(
            tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
        )
        for key, value in saved["state_dict"].items():
            if key.startswith("encoder."):
                assert torch.equal(tuned["state_dict"][key], value), key


def test_a_different_timm_model_than_the_checkpoint_is_refused(timm_checkpoint, tmp_path):
    from simclr.errors import ConfigError

    model, checkpoint = timm_checkpoint
    other = "resnet18d"
    cfg = compose_config(
        [*TINY, f"pretrained_ckpt={checkpoint}", "backbone=timm", f"backbone.model={other}"],
        tmp_path,
        config_name="finetune",
    )
    with pytest.raises(ConfigError, match=f"holds a timm .*{model}"):
        finetune(cfg)
