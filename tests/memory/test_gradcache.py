"""Gradient caching gives the full-batch NT-Xent gradients with micro-batch forward passes.

Exactness promised (docs/scaling.md, simclr.memory.gradcache): equal to one full-batch backward
when an image's projection does not depend on the other images of its pass (BatchNorm frozen or
absent, or one micro-batch); with training-mode BatchNorm and several micro-batches, equal to
the backward of the full-batch loss whose projections were computed micro-batch by micro-batch.
"""

import copy

import pytest
import torch
from torch import nn

from simclr.errors import ConfigError
from simclr.losses.ntxent import NTXentLoss
from simclr.memory.gradcache import gradient_cached_step, micro_batches
from simclr.models import SimCLRModule
from simclr.tasks.pretrain import run

NUM_IMAGES, IMAGE_SIZE = 8, 8


def tiny_module(head_batch_norm: bool = True) -> SimCLRModule:
    torch.manual_seed(0)
    return SimCLRModule(
        backbone={"name": "slim_resnet18", "width": 0.125},
        head={"hidden_dim": 32, "output_dim": 16, "batch_norm": head_batch_norm},
        optimizer={"name": "sgd", "lr": 0.1},
        scheduler={"warmup_epochs": 0},
        image_size=IMAGE_SIZE,
        batch_size=NUM_IMAGES,
        temperature=0.2,
    )


def fixed_views(num_views: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [
        torch.randn(NUM_IMAGES, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
        for _ in range(num_views)
    ]


def encode(model):
    def forward(images):
        h = model.encoder(images)
        return h, model.projection(h)

    return forward


def full_batch_gradients(model, views):
    """The plain step: one pass over every view, NT-Xent, one backward."""
    model.zero_grad()
    _, z = encode(model)(torch.cat(views))
    loss = model.criterion(z.view(len(views), NUM_IMAGES, -1)).loss
    loss.backward()
    return loss.detach(), gradients(model)


def piecewise_graph_gradients(model, views, micro_batch_size):
    """Reference for training-mode BatchNorm: projections computed micro-batch by micro-batch
    with every graph kept alive (the memory-hungry way), one loss, one backward."""
    model.zero_grad()
    pieces = []
    for piece in micro_batches(NUM_IMAGES, micro_batch_size):
        _, z = encode(model)(torch.cat([view[piece] for view in views]))
        pieces.append(z.view(len(views), piece.stop - piece.start, -1))
    loss = model.criterion(torch.cat(pieces, dim=1)).loss
    loss.backward()
    return loss.detach(), gradients(model)


def cached_gradients(model, views, micro_batch_size):
    model.zero_grad()
    step = gradient_cached_step(model, encode(model), views, model.criterion, micro_batch_size)
    return step, gradients(model)


def gradients(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_gradients_equal(actual, expected, rtol=1e-5):
    assert actual.keys() == expected.keys()
    for name, grad in expected.items():
        # Relative to the size of the tensor's gradient: float32 sums in another order.
        scale = grad.abs().max().clamp_min(1e-12)
        diff = (actual[name] - grad).abs().max()
        assert diff <= rtol * scale, f"{name}: max diff {diff:.3g} vs max |grad| {scale:.3g}"


def freeze_batch_norm(model):
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@pytest.mark.parametrize("micro_batch_size", [3, 5])
def test_frozen_batch_norm_gives_the_full_batch_gradients(micro_batch_size):
    model = tiny_module().train()
    freeze_batch_norm(model)
    views = fixed_views()
    loss, expected = full_batch_gradients(copy.deepcopy(model), views)
    step, actual = cached_gradients(model, views, micro_batch_size)
    assert step.loss.item() == pytest.approx(loss.item(), rel=1e-6)
    assert_gradients_equal(actual, expected)


def test_one_micro_batch_with_training_batch_norm_is_the_plain_step():
    model = tiny_module().train()
    views = fixed_views(num_views=3)
    reference = copy.deepcopy(model)
    loss, expected = full_batch_gradients(reference, views)
    step, actual = cached_gradients(model, views, NUM_IMAGES)
    assert step.loss.item() == pytest.approx(loss.item(), rel=1e-6)
    assert_gradients_equal(actual, expected)
    # Running statistics updated once, as by the plain step, not again by the re-run.
    for (name, ours), theirs in zip(model.named_buffers(), reference.buffers(), strict=True):
        assert torch.equal(ours, theirs), name


def test_training_batch_norm_normalises_each_micro_batch_by_its_own_statistics():
    model = tiny_module().train()
    views = fixed_views()
    reference = copy.deepcopy(model)
    loss, expected = piecewise_graph_gradients(reference, views, micro_batch_size=3)
    step, actual = cached_gradients(model, views, micro_batch_size=3)
    assert step.loss.item() == pytest.approx(loss.item(), rel=1e-6)
    assert_gradients_equal(actual, expected)
    for (name, ours), theirs in zip(model.named_buffers(), reference.buffers(), strict=True):
        assert torch.equal(ours, theirs), name  # 3 micro-batches (3, 3, 2), each counted once
    # ... and that is not the plain full-batch gradient (the documented difference).
    _, plain = full_batch_gradients(tiny_module().train(), views)
    weight = "encoder.conv1.weight"
    assert not torch.allclose(actual[weight], plain[weight], rtol=1e-3)


def test_features_and_accuracy_are_those_of_the_whole_batch():
    model = tiny_module().train()
    freeze_batch_norm(model)
    views = fixed_views()
    with torch.no_grad():
        h, z = encode(model)(torch.cat(views))
        expected = model.criterion(z.view(2, NUM_IMAGES, -1))
    step, _ = cached_gradients(model, views, micro_batch_size=5)
    assert step.features.shape == (NUM_IMAGES, model.feature_dim)
    torch.testing.assert_close(step.features, h[:NUM_IMAGES], rtol=1e-5, atol=1e-6)
    assert step.accuracy.item() == pytest.approx(expected.accuracy.item())


class DropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 32), nn.Dropout(0.5))
        self.head = nn.Linear(32, 8)

    def forward(self, images):
        h = self.body(images)
        return h, self.head(h)


@pytest.mark.parametrize("restore_random_state", [True, False])
def test_the_re_run_replays_the_random_state_of_the_cached_pass(restore_random_state, monkeypatch):
    torch.manual_seed(0)
    model = DropoutNet().train()
    views = [torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)]
    criterion = NTXentLoss(0.5)
    reference = copy.deepcopy(model)
    torch.manual_seed(5)  # the same dropout masks for both, drawn in the same order
    pieces = [
        reference(torch.cat([v[p] for v in views]))[1].view(2, 2, -1) for p in micro_batches(6, 2)
    ]
    criterion(torch.cat(pieces, dim=1)).loss.backward()
    if not restore_random_state:
        monkeypatch.setattr("simclr.memory.gradcache._restore_random_state", lambda state: None)
    torch.manual_seed(5)
    gradient_cached_step(model, model, views, criterion, micro_batch_size=2)
    same = all(
        torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7)
        for p, q in zip(model.parameters(), reference.parameters(), strict=True)
    )
    assert same == restore_random_state


def test_micro_batch_size_must_be_positive():
    with pytest.raises(ConfigError, match=r"model\.micro_batch_size"):
        micro_batches(8, 0)
    with pytest.raises(ConfigError, match=r"model\.micro_batch_size"):
        SimCLRModule(**{**dict(tiny_module().hparams), "micro_batch_size": 0})


def test_training_with_gradient_caching_steps_the_optimiser_and_the_schedule(fast_config, tmp_path):
    # 64 images, batch 16 in micro-batches of 8: 4 optimiser steps in the epoch.
    cfg = fast_config(
        "model.micro_batch_size=8",
        "trainer.max_epochs=1",
        "logger=csv",
        "trainer.log_every_n_steps=1",
        "scheduler.warmup_epochs=1",
        "scheduler.max_warmup_fraction=null",  # the warm-up as given, half of this run
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "optimizer.lr_scaling=none",
    )
    metrics = run(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss_epoch"]))
    assert "train/contrastive_acc_epoch" in metrics
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 4
    assert state["lr_schedulers"][0]["last_epoch"] == 4  # one scheduler step per optimiser step
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    rates = [r.split(",")[header.index("lr-SGD/pg1")] for r in rows[1:]]
    assert [float(r) for r in rates if r] == pytest.approx([0.025, 0.05, 0.075, 0.1])


def test_gradient_caching_clips_gradients(fast_config, monkeypatch):
    clipped = []
    original = SimCLRModule.clip_gradients

    def spy(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clipped.append((gradient_clip_val, gradient_clip_algorithm))
        return original(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    monkeypatch.setattr(SimCLRModule, "clip_gradients", spy)
    run(
        fast_config(
            "model.micro_batch_size=8", "trainer.gradient_clip_val=0.5", "trainer.fast_dev_run=true"
        )
    )
    assert clipped == [(0.5, "norm")]
