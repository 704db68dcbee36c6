"""The Python API: simclr.pretrain and simclr.finetune run the command line's configs, each
in its own run folder, and refuse a misspelled key as the command line does."""

import json

import pytest
from hydra.errors import ConfigCompositionException

import simclr
from conftest import CONFIG_DIR, assert_counted_over
from simclr.api import find_config_dir, override
from simclr.errors import ConfigError

# The digits validation and test splits hold 269 images each.
DIGITS_SPLIT = 269
TINY = [
    "backbone.width=0.125",
    "data.batch_size=64",
    "data.num_workers=0",
    "data.image_size=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "callbacks.progress_bar=null",
]


def test_pretraining_then_linear_evaluation_on_digits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs go to ./logs, as train.py's
    pre = simclr.pretrain(data="digits", backbone="resnet18_slim", trainer="cpu", overrides=TINY)
    assert pre.run_dir.parent == tmp_path / "logs" / "pretrain" / "runs"
    assert json.loads((pre.run_dir / "metrics.json").read_text()) == pre.metrics
    assert_counted_over(pre.metrics["val/knn_acc"], DIGITS_SPLIT)
    assert pre.metrics["train/loss_epoch"] > 0
    assert (pre.run_dir / ".hydra" / "config.yaml").is_file()
    assert (pre.run_dir / "train.log").is_file()  # the log file train.py writes
    assert pre.config.data.name == "digits" and pre.config.trainer.max_epochs == 1
    assert pre.checkpoint == pre.run_dir / "checkpoints" / "last.ckpt"
    encoder = pre.encoder()
    assert encoder.source == pre.checkpoint and encoder.image_size == 16
    assert encoder.backbone["name"] == "resnet18_slim" and encoder.small_stem is True
    assert encoder.head is not None  # a pre-training run's projection head comes with it

    linear = simclr.finetune(pre.checkpoint, mode="linear", trainer="cpu", overrides=TINY[1:])
    assert linear.run_dir.parent == tmp_path / "logs" / "finetune" / "runs"
    assert linear.config.mode == "linear"
    assert linear.config.pretrained_ckpt == str(pre.checkpoint)
    assert json.loads((linear.run_dir / "metrics.json").read_text()) == linear.metrics
    assert_counted_over(linear.metrics["test/acc"], DIGITS_SPLIT)
    assert_counted_over(linear.metrics["val/acc_best"], DIGITS_SPLIT)
    assert (linear.run_dir / "finetune.log").is_file()
    assert (linear.run_dir / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: simclr.pretrain(overrides=["model.temprature=0.2"]), "temprature"),
        (lambda: simclr.pretrain(optimiser="lars"), "optimiser"),
        (lambda: simclr.finetune(None, lable_fraction=0.1), "lable_fraction"),
    ],
)
def test_a_misspelled_key_fails_as_on_the_command_line(call, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigCompositionException, match=name):
        call()
    assert not (tmp_path / "logs").exists()  # no run folder, no training


def test_a_bad_value_raises_the_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"model.temperature=-1.0: must be a number > 0"):
        simclr.pretrain(overrides=["model.temperature=-1.0"])


def test_configs_are_found_in_the_checkout_or_where_told(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIMCLR_CONFIG_DIR", raising=False)
    assert find_config_dir() == CONFIG_DIR.resolve()  # beside src/ of this checkout
    monkeypatch.setenv("SIMCLR_CONFIG_DIR", str(CONFIG_DIR))
    assert find_config_dir() == CONFIG_DIR.resolve()
    with pytest.raises(ConfigError, match=rf"no configs folder .* \(tried: {tmp_path}\)"):
        find_config_dir(tmp_path)
    with pytest.raises(ConfigError, match="pass config_dir="):
        simclr.pretrain(config_dir=tmp_path)


def test_keyword_values_become_command_line_overrides():
    assert override("data", "cifar10") == "data=cifar10"
    assert override("seed", None) == "seed=null"
    assert override("data.download", True) == "data.download=true"
    assert override("optimizer.lr", 0.3) == "optimizer.lr=0.3"
    assert override("logger", ["tensorboard", "wandb"]) == "logger=[tensorboard,wandb]"
    assert override("pretrained_ckpt", "/a b/it's.ckpt") == "pretrained_ckpt='/a b/it\\'s.ckpt'"
