import itertools
import math

import pytest
import torch
from torch import nn

from simclr.optim import (
    LARS,
    build_optimizer,
    parameter_groups,
    scaled_learning_rate,
    warmup_cosine_factor,
)


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_bias_and_batchnorm_are_excluded_from_decay_and_adaptation():
    decayed, excluded = parameter_groups(small_net(), weight_decay=1e-4)
    assert all(p.ndim > 1 for p in decayed["params"]) and len(decayed["params"]) == 2
    assert all(p.ndim == 1 for p in excluded["params"]) and len(excluded["params"]) == 4
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"]
    assert decayed["weight_decay"] == 1e-4


def test_lars_step_follows_the_trust_ratio():
    weight = nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5
    bias = nn.Parameter(torch.tensor([1.0]))
    optimizer = LARS(
        [
            {"params": [weight], "weight_decay": 0.1},
            {"params": [bias], "weight_decay": 0.0, "lars_exclude": True},
        ],
        lr=0.5,
        momentum=0.9,
        trust_coefficient=0.001,
    )
    weight.grad = torch.tensor([0.0, 1.0])
    bias.grad = torch.tensor([2.0])
    optimizer.step()
    update = torch.tensor([0.0, 1.0]) + 0.1 * torch.tensor([3.0, 4.0])
    trust = 0.001 * 5.0 / update.norm()
    torch.testing.assert_close(weight.detach(), torch.tensor([3.0, 4.0]) - 0.5 * trust * update)
    torch.testing.assert_close(bias.detach(), torch.tensor([0.0]))  # plain SGD: 1 - 0.5 * 2
    # Second step, at another rate: the buffer holds the first step at the rate it was taken
    # with (the official LARS), and the new rate only scales the new update.
    first_step = optimizer.state[weight]["momentum_buffer"].clone()
    torch.testing.assert_close(
        first_step, 0.5 * trust * (torch.tensor([0.0, 1.0]) + 0.1 * torch.tensor([3.0, 4.0]))
    )
    for group in optimizer.param_groups:
        group["lr"] = 0.2
    weight.grad = torch.tensor([0.0, 1.0])
    before = weight.detach().clone()
    optimizer.step()
    update = torch.tensor([0.0, 1.0]) + 0.1 * before
    trust = 0.001 * before.norm() / update.norm()
    torch.testing.assert_close(weight.detach(), before - (0.9 * first_step + 0.2 * trust * update))


def test_learning_rate_scaling_rules():
    assert scaled_learning_rate(0.3, 4096, "linear") == pytest.approx(4.8)
    assert scaled_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert scaled_learning_rate(0.1, 4096, "none") == 0.1
    with pytest.raises(ValueError, match="lr_scaling 'cubic'; valid: linear, sqrt, none"):
        scaled_learning_rate(0.1, 256, "cubic")


@pytest.mark.parametrize(
    "name,kind",
    [
        ("lars", LARS),
        ("sgd", torch.optim.SGD),
        ("adamw", torch.optim.AdamW),
        ("nadam", torch.optim.NAdam),
    ],
)
def test_build_optimizer_scales_the_rate(name, kind):
    optimizer = build_optimizer(
        small_net(), name, lr=0.1, batch_size=512, lr_scaling="linear", weight_decay=1e-5
    )
    assert isinstance(optimizer, kind)
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(0.2)] * 2
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-5, 0.0]


def test_unknown_optimizer_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"optimizer\.name='adam': must be one of: adamw, lars"):
        build_optimizer(small_net(), "adam", lr=0.1, batch_size=256)


def test_warmup_then_cosine():
    factors = [warmup_cosine_factor(s, warmup_steps=10, total_steps=110) for s in range(110)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(factors[:10]))
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    assert factors[60] == pytest.approx(0.5)
    assert warmup_cosine_factor(110, 10, 110) == pytest.approx(0.0)
    assert warmup_cosine_factor(110, 10, 110, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine_factor(0, 0, 100) == pytest.approx(1.0)
    assert warmup_cosine_factor(50, 0, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
