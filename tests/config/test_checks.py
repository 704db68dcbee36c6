"""Bad config values stop a run before any work, with a message naming the key and the fix."""

import os
import time

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from conftest import compose_config, run_script
from simclr.config import config_problems, resolve_ckpt_path, validate_config
from simclr.errors import ConfigError
from simclr.models import BACKBONES
from simclr.rules import Rule
from simclr.tasks.pretrain import run


def problems_of(tmp_path, *overrides: str) -> str:
    cfg = compose_config(list(overrides), tmp_path)
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    return str(error.value)


def test_the_default_configs_are_valid(tmp_path):
    for overrides in ([], ["data=fake", "backbone=resnet50_w4", "optimizer=adamw"]):
        assert config_problems(compose_config(overrides, tmp_path)) == []


@pytest.mark.parametrize("value", ["0", "-0.5"])
def test_temperature_must_be_positive(tmp_path, value):
    message = problems_of(tmp_path, f"model.temperature={value}")
    assert f"model.temperature={value}" in message and "> 0" in message


@pytest.mark.parametrize("value", ["1", "0"])
def test_at_least_two_views(tmp_path, value):
    message = problems_of(tmp_path, f"model.num_views={value}")
    assert f"model.num_views={value}" in message and ">= 2" in message


@pytest.mark.parametrize("value", ["sometimes", "2"])
def test_activation_checkpointing_is_auto_true_or_false(tmp_path, value):
    message = problems_of(tmp_path, f"model.activation_checkpointing={value}")
    assert "model.activation_checkpointing=" in message and "auto, true or false" in message


def test_global_batch_must_divide_by_the_devices(tmp_path):
    message = problems_of(tmp_path, "data.batch_size=250", "trainer.devices=4")
    assert "data.batch_size=250" in message and "4 devices" in message
    # devices x nodes
    message = problems_of(
        tmp_path, "data.batch_size=256", "trainer.devices=3", "trainer.num_nodes=2"
    )
    assert "6 devices" in message
    # Two devices as a list; "auto" is left to Lightning (the data module checks at run time).
    assert "2 devices" in problems_of(tmp_path, "data.batch_size=255", "trainer.devices=[0,1]")
    assert config_problems(compose_config(["trainer.devices=auto"], tmp_path)) == []
    assert config_problems(compose_config(["trainer.devices=4"], tmp_path)) == []


@pytest.mark.parametrize("value", [0, 1.5, -0.1])
def test_label_fraction_must_be_in_zero_one(tmp_path, value):
    # The fine-tuning config brings this key; checked wherever it appears.
    cfg = compose_config([f"+data.label_fraction={value}"], tmp_path)
    message = "\n".join(config_problems(cfg))
    assert f"data.label_fraction={value!r}" in message and "(0, 1]" in message
    cfg = compose_config(["+label_fraction=1.0"], tmp_path)
    assert config_problems(cfg) == []


@pytest.mark.parametrize(
    "key,value,valid",
    [
        ("backbone.name", "resnet19", ["resnet18", "resnet18_slim", "resnet50_w1", "resnet50_w4"]),
        ("data.name", "cifar11", ["digits", "fake"]),
        ("optimizer.name", "adam", ["adamw", "lars", "nadam", "sgd"]),
    ],
)
def test_unknown_names_list_the_valid_ones(tmp_path, key, value, valid):
    message = problems_of(tmp_path, f"{key}={value}")
    assert f"{key}={value!r}" in message
    assert all(name in message for name in valid)


def test_wide_resnet_width_is_1_2_or_4(tmp_path):
    message = problems_of(tmp_path, "backbone=resnet50_w2", "backbone.width=3")
    assert "backbone.width=3" in message and "1, 2, 4" in message
    # The slim ResNet's fractional width is not the wide ResNet's business.
    assert config_problems(compose_config(["backbone=resnet18_slim"], tmp_path)) == []


@pytest.mark.parametrize(
    "override,key",
    [
        ("trainer.max_epochs=-3", "trainer.max_epochs=-3"),
        ("scheduler.warmup_epochs=-1", "scheduler.warmup_epochs=-1"),
        ("+trainer.min_epochs=-2", "trainer.min_epochs=-2"),
    ],
)
def test_negative_epochs(tmp_path, override, key):
    message = problems_of(tmp_path, override)
    assert key in message and ">= 0" in message


def test_max_epochs_minus_one_means_no_limit(tmp_path):
    cfg = compose_config(["trainer.max_epochs=-1", "trainer.max_steps=100"], tmp_path)
    assert config_problems(cfg) == []


@pytest.mark.parametrize(
    "override,key",
    [
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1"),
        ("optimizer.lr=0", "optimizer.lr=0"),
        ("+model.probe_lr=-1e-3", "model.probe_lr=-0.001"),
    ],
)
def test_learning_rates_must_not_be_negative(tmp_path, override, key):
    assert key in problems_of(tmp_path, override)


def test_every_problem_is_reported_at_once(tmp_path):
    message = problems_of(
        tmp_path, "model.temperature=0", "optimizer.name=adam", "model.num_views=1"
    )
    assert "3 problem(s)" in message
    assert "model.temperature" in message and "optimizer.name" in message


def test_a_mandatory_value_not_given_is_a_problem_of_its_own(tmp_path):
    # ``???`` in a config (timm's backbone.model, fine-tuning's pretrained_ckpt) is named before
    # any work, with its rule's words where a component states one.
    cfg = compose_config(["backbone=timm"], tmp_path)
    with open_dict(cfg):
        cfg.data.extra_option = "???"
    first, second = sorted(config_problems(cfg))
    assert first.startswith("backbone.model is not set: must be a timm model name")
    assert second == "data.extra_option is not set: must be given: add data.extra_option=<value>"


def test_run_checks_before_any_work(tmp_path):
    cfg = compose_config(["data=fake", "model.temperature=-1"], tmp_path)
    with pytest.raises(ConfigError, match=r"model\.temperature"):
        run(cfg)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()


def test_train_py_prints_the_problem_and_exits_2(tmp_path):
    result = run_script(
        "train.py",
        ["data=fake", "model.num_views=1", f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
    )
    assert result.returncode == 2
    assert "model.num_views=1" in result.stderr and "Traceback" not in result.stderr


# -- ckpt_path ---------------------------------------------------------------------------


def fake_run(log_dir, name: str, age_s: float):
    path = log_dir / "pretrain" / "runs" / name / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}}, path)  # a whole (tiny) checkpoint file
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_ckpt_path_last_is_the_newest_last_ckpt_of_this_task(tmp_path):
    cfg = compose_config(["ckpt_path=last"], tmp_path)
    log_dir = tmp_path / "logs"
    fake_run(log_dir, "2024-01-02_00-00-00", age_s=100)
    newest = fake_run(log_dir, "2024-01-01_00-00-00", age_s=10)  # resumed later: newer file
    fake_run(log_dir, "2024-01-03_00-00-00", age_s=50)
    assert resolve_ckpt_path(cfg) == str(newest)


def test_ckpt_path_last_without_an_earlier_run(tmp_path):
    cfg = compose_config(["ckpt_path=last"], tmp_path)
    with pytest.raises(ConfigError, match=r"ckpt_path=last.*matches nothing"):
        resolve_ckpt_path(cfg)


def test_ckpt_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere" / "last.ckpt"
    cfg = compose_config(["data=fake", f"ckpt_path={missing}"], tmp_path)
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        run(cfg)


def test_ckpt_path_may_name_a_run_folder(tmp_path):
    last = fake_run(tmp_path / "logs", "a", age_s=0)
    cfg = compose_config([f"ckpt_path={last.parents[1]}"], tmp_path)
    assert resolve_ckpt_path(cfg) == str(last)
    with open_dict(cfg):
        cfg.ckpt_path = None
    assert resolve_ckpt_path(cfg) is None
    assert OmegaConf.is_struct(cfg)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.augment.rotation_prob=1.5", "a probability in [0, 1]"),
        ("data.augment.flip_prob=-0.1", "a probability in [0, 1]"),
        ("data.augment.rotation_degrees=-10", "a number of degrees >= 0"),
    ],
)
def test_augmentation_probabilities_and_angles(tmp_path, override, expected):
    message = problems_of(tmp_path, override)
    assert override.split("=")[0] in message and expected in message


def test_torchvision_resnets_refuse_a_width_before_any_work(tmp_path):
    message = problems_of(tmp_path, "backbone=resnet50", "backbone.width=0.5")
    assert "backbone.width=0.5: must be 1 for torchvision's fixed-width ResNets" in message
    message = problems_of(tmp_path, "backbone=resnet18_slim", "backbone.width=1.5")
    assert "backbone.width=1.5: must be in (0, 1] for the slim ResNet-18" in message


def test_a_new_backbone_brings_its_own_rules_to_the_checks(tmp_path, monkeypatch):
    # Registered with its rule, and checked without a word in config/checks.py.
    monkeypatch.setattr(BACKBONES, "_entries", dict(BACKBONES._entries))
    monkeypatch.setattr(BACKBONES, "_rules", dict(BACKBONES._rules))
    odd_width = Rule("backbone.width", lambda v: v % 2 == 1, "odd for the new backbone")

    @BACKBONES.register("new_net", rules=[odd_width])
    def new_net(image_size, width=1, depthwise=False, small_stem=None, zero_init_residual=True):
        raise AssertionError("the checks build nothing")

    message = problems_of(tmp_path, "backbone.name=new_net", "backbone.width=2")
    assert "backbone.width=2: must be odd for the new backbone" in message
    assert config_problems(compose_config(["backbone.name=new_net"], tmp_path)) == []
