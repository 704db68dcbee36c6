"""Each value's rule is written once: the config checks and the code that takes the value
refuse it with the same message."""

import pytest
import torch

from conftest import FAST_OVERRIDES, compose_config
from simclr import rules
from simclr.config import config_problems
from simclr.data import DataLoaderSettings
from simclr.data.augment import MultiViewTransform
from simclr.data.dataloaders import per_device_batch_size
from simclr.errors import ConfigError
from simclr.losses import NTXentLoss
from simclr.memory import micro_batches
from simclr.models import SimCLRModule
from simclr.optim import build_optimizer
from simclr.rules import KnownOptions, stated


def raised(make) -> str:
    with pytest.raises(ConfigError) as error:
        make()
    return str(error.value)


def module(**changes) -> SimCLRModule:
    arguments = dict(
        backbone={"name": "resnet18_slim", "width": 0.125},
        head={"output_dim": 8},
        optimizer={"name": "sgd", "lr": 0.1},
        scheduler={},
        image_size=16,
        batch_size=8,
    )
    return SimCLRModule(**{**arguments, **changes})


def problems(tmp_path, *overrides) -> list[str]:
    return config_problems(compose_config([*FAST_OVERRIDES, *overrides], tmp_path))


def test_num_views(tmp_path):
    message = "model.num_views=1: must be an integer >= 2"
    assert message in problems(tmp_path, "model.num_views=1")
    assert raised(lambda: module(num_views=1)) == message
    assert raised(lambda: MultiViewTransform(lambda x: x, num_views=1)) == message
    assert raised(lambda: NTXentLoss(0.5)(torch.randn(1, 4, 8))) == message


def test_micro_batch_size(tmp_path):
    message = rules.MICRO_BATCH_SIZE.problem(0)
    assert message.startswith("model.micro_batch_size=0: must be an integer >= 1")
    assert message in problems(tmp_path, "model.micro_batch_size=0")
    assert raised(lambda: module(micro_batch_size=0)) == message
    assert raised(lambda: micro_batches(8, 0)) == message
    assert problems(tmp_path, "model.micro_batch_size=4") == []


def test_temperature_and_learning_rate(tmp_path):
    found = problems(tmp_path, "model.temperature=0", "optimizer.lr=0")
    temperature = raised(lambda: NTXentLoss(0))
    learning_rate = raised(lambda: build_optimizer(torch.nn.Linear(2, 2), "sgd", 0, 8))
    assert found == [temperature, learning_rate]
    assert learning_rate == "optimizer.lr=0: must be a number > 0"


def test_batch_divisible_by_devices(tmp_path):
    message = rules.batch_division_problem(250, 4)
    assert message in problems(tmp_path, "data.batch_size=250", "trainer.devices=4")
    trainer = type("Trainer", (), {"world_size": 4})()
    assert raised(lambda: per_device_batch_size(250, trainer)) == message


def test_num_workers(tmp_path):
    message = "data.num_workers=-1: must be an integer >= 0, or null (automatic)"
    assert message in problems(tmp_path, "data.num_workers=-1")
    assert raised(lambda: DataLoaderSettings(num_workers=-1)) == message


def test_known_options_name_the_first_unknown_one_and_list_the_others():
    rule = KnownOptions("optimizer", "optimizer 'adamw'", ("name", "lr", "betas"))
    assert rule.problem({"name": "adamw", "lr": 1e-3}) is None
    assert rule.problem({"name": "adamw", "momentum": 0.9, "nesterov": True}) == (
        "optimizer.momentum: optimizer 'adamw' takes no option 'momentum', 'nesterov'; "
        "its options: name, lr, betas"
    )
    with pytest.raises(ConfigError, match=r"^optimizer\.momentum"):
        rule.check({"momentum": 0.9})


def test_a_component_states_its_rules_for_the_config_checks():
    from simclr.callbacks.safeguards import NON_FINITE_ACTION

    assert NON_FINITE_ACTION in stated()
