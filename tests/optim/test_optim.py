import itertools
import math

import pytest
import torch
from torch import nn

from simclr.errors import ConfigError
from simclr.optim import (
    LARS,
    build_optimizer,
    build_scheduler,
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


def test_a_warm_up_longer_than_its_share_of_the_run_is_cut_to_it(caplog):
    def first_rates(**options) -> list[float]:
        layer = torch.nn.Linear(2, 2)
        optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
        scheduler = build_scheduler(optimizer, total_steps=50, steps_per_epoch=10, **options)
        rates = []
        for _ in range(50):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return rates

    # The default 10 epochs of warm-up in a 5-epoch run: cut to a fifth of it (10 steps).
    with caplog.at_level("WARNING", logger="simclr.optim.schedules"):
        rates = first_rates(warmup_epochs=10)
    assert rates[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert rates[10] == pytest.approx(1.0) and rates[-1] < 0.01  # then the cosine decay
    assert "warming up over 10 steps instead" in caplog.text
    # null keeps it as given: the whole run in warm-up, the rate never reaches its peak.
    given = first_rates(warmup_epochs=10, max_warmup_fraction=None)
    assert given == pytest.approx([(s + 1) / 50 for s in range(50)])
    # A warm-up within its share is untouched.
    assert first_rates(warmup_epochs=1) == first_rates(warmup_epochs=1, max_warmup_fraction=None)
    with pytest.raises(ConfigError, match=r"scheduler\.max_warmup_fraction=1\.5"):
        first_rates(max_warmup_fraction=1.5)


def test_under_lars_the_mean_loss_is_the_summed_loss_with_twice_the_weight_decay():
    """README "Loss scale": an adapted weight's LARS step follows only the direction of
    g + wd w, so optimising the mean of two views' losses with weight decay wd takes the steps
    of optimising their sum (the official loss_a + loss_b) with 2 wd, not with wd."""
    inputs, targets = torch.randn(32, 5), torch.randn(32, 3)

    def train(loss_scale: float, weight_decay: float) -> torch.Tensor:
        torch.manual_seed(1)
        layer = nn.Linear(5, 3, bias=False)  # adapted weights only
        optimizer = LARS(layer.parameters(), lr=0.5, weight_decay=weight_decay)
        for _ in range(10):
            optimizer.zero_grad()
            (loss_scale * ((layer(inputs) - targets) ** 2).mean()).backward()
            optimizer.step()
        return layer.weight.detach()

    mean = train(1.0, weight_decay=0.1)
    torch.testing.assert_close(mean, train(2.0, weight_decay=0.2), rtol=1e-5, atol=1e-7)
    assert (mean - train(2.0, weight_decay=0.1)).abs().max() > 1e-4
