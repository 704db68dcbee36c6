"""Activation checkpointing: the plain pass's loss, gradients and BatchNorm statistics with far
less saved activation memory; ``auto`` turns it on only when a pass would not fit."""

import contextlib
import logging

import pytest
import torch
import torchvision

from conftest import tiny_simclr_module
from simclr.errors import ConfigError
from simclr.memory import activation_checkpointing as recompute
from simclr.memory.gradcache import gradient_cached_step
from simclr.models import SimCLRModule
from simclr.models.backbones import build_backbone
from simclr.tasks.pretrain import run

NUM_IMAGES, IMAGE_SIZE = 8, 16


def tiny_module(activation_checkpointing, micro_batch_size=None) -> SimCLRModule:
    return tiny_simclr_module(
        IMAGE_SIZE,
        NUM_IMAGES,
        micro_batch_size=micro_batch_size,
        activation_checkpointing=activation_checkpointing,
    )


def fixed_views() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(NUM_IMAGES, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) for _ in "ab"]


def plain_step(model: SimCLRModule, views):
    """One training-mode pass over every view and one backward; loss, gradients, buffers."""
    model.train()
    model.zero_grad()
    _, z = model._encode(torch.cat(views))
    loss = model.criterion(z.view(len(views), NUM_IMAGES, -1)).loss
    loss.backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    return loss.detach(), gradients, {k: v.clone() for k, v in model.named_buffers()}


def test_checkpointing_gives_the_plain_loss_gradients_and_running_statistics():
    views = fixed_views()
    loss, gradients, buffers = plain_step(tiny_module(False), views)
    checkpointed = tiny_module(True)
    assert all(stage.enabled for stage in checkpointed._checkpointed_stages)
    loss_c, gradients_c, buffers_c = plain_step(checkpointed, views)
    torch.testing.assert_close(loss_c, loss, rtol=1e-6, atol=0)
    assert gradients_c.keys() == gradients.keys()
    for name, grad in gradients.items():
        torch.testing.assert_close(gradients_c[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # The recomputation must not count the batch twice in BatchNorm's running averages.
    for name, buffer in buffers.items():
        torch.testing.assert_close(buffers_c[name], buffer, rtol=1e-6, atol=0, msg=name)


def test_recomputing_without_restoring_batch_norm_would_count_the_batch_twice(monkeypatch):
    # The check above must be able to fail: with a recompute context that leaves the running
    # statistics alone, the second update shows.
    monkeypatch.setattr(recompute, "frozen_running_stats", lambda block: contextlib.nullcontext())
    views = fixed_views()
    *_, buffers = plain_step(tiny_module(False), views)
    *_, buffers_c = plain_step(tiny_module(True), views)
    assert buffers_c["encoder.layer1.0.bn1.num_batches_tracked"] == 2
    assert buffers["encoder.layer1.0.bn1.num_batches_tracked"] == 1


def test_checkpointing_composes_with_gradient_caching():
    views = fixed_views()
    results = []
    for mode in (False, True):
        model = tiny_module(mode, micro_batch_size=4)
        model.train()
        model.zero_grad()
        gradient_cached_step(model, model._encode, views, model.criterion, 4)
        results.append({name: p.grad.clone() for name, p in model.named_parameters()})
    for name, grad in results[0].items():
        torch.testing.assert_close(results[1][name], grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("name", ["resnet18", "wide_resnet50"])
def test_checkpointing_cuts_the_saved_activations(name):
    # What a pass keeps for its backward: every intermediate tensor without checkpointing,
    # only the stages' block inputs (plus the stem) with it.
    encoder, _ = build_backbone(name, image_size=32)
    images = torch.randn(4, 3, 32, 32)
    plain = recompute.saved_activation_bytes(lambda: encoder(images))
    parameters = sum(p.numel() * p.element_size() for p in encoder.parameters())
    for stage in recompute.checkpoint_stages(encoder):
        stage.enabled = True
    checkpointed = recompute.saved_activation_bytes(lambda: encoder(images))
    # Weights saved by the stem's convolution count in both; the activations are what shrink.
    assert checkpointed - parameters < 0.25 * (plain - parameters)


def test_checkpointed_stages_keep_parameter_names_and_load_into_torchvision():
    encoder, _ = build_backbone("resnet18", image_size=224)
    names = list(encoder.state_dict())
    stages = recompute.checkpoint_stages(encoder)
    assert len(stages) == 4 and all(s.enabled for s in stages)
    assert list(encoder.state_dict()) == names
    reference = torchvision.models.resnet18(weights=None)
    reference.fc = torch.nn.Identity()
    reference.load_state_dict(encoder.state_dict(), strict=True)
    encoder.eval(), reference.eval()
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(encoder(images), reference(images))


def test_an_encoder_without_stages_is_a_config_error():
    with pytest.raises(ConfigError, match="activation_checkpointing=false"):
        recompute.checkpoint_stages(torch.nn.Conv2d(3, 4, 3))


@pytest.mark.parametrize("mode", ["yes", 1, None])
def test_invalid_mode_is_a_config_error(mode):
    with pytest.raises(ConfigError, match=r"activation_checkpointing=.*: must be auto, true"):
        tiny_module(mode)


def test_disabled_means_no_wrapping():
    model = tiny_module(False)
    assert model._checkpointed_stages == []
    assert type(model.encoder.layer1) is torch.nn.Sequential


def test_probe_measures_per_image_bytes_without_side_effects():
    model = tiny_module("auto")
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    state = torch.get_rng_state()
    generator = torch.Generator().manual_seed(0)
    per_image = recompute.activation_bytes_per_image(
        model,
        model._encode,
        lambda n: torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
    )
    assert model.training  # the probe put the module back in training mode
    assert torch.equal(torch.get_rng_state(), state)
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name]), name
    # Independent count: the saved bytes of 8 images minus those of 4, per image.
    model.eval()
    eight = recompute.saved_activation_bytes(lambda: model._encode(torch.randn(8, 3, 16, 16)))
    four = recompute.saved_activation_bytes(lambda: model._encode(torch.randn(4, 3, 16, 16)))
    assert per_image == pytest.approx((eight - four) / 4, rel=0.05)
    assert per_image > 0


def test_the_auto_rule():
    assert recompute.should_checkpoint(0.7 * 2**30, 2**30)
    assert not recompute.should_checkpoint(0.5 * 2**30, 2**30)
    assert not recompute.should_checkpoint(1e15, None)  # free memory unknown: leave it off


def test_free_cpu_memory_is_read_on_linux():
    free = recompute.free_cpu_memory()
    assert free is not None and free > 0
    assert recompute.free_device_memory(torch.device("cpu"), processes_sharing=2) <= free // 2 + 1


@pytest.mark.parametrize(("free_bytes", "expected"), [(1, True), (2**50, False)])
def test_auto_decides_at_fit_start_from_the_free_memory(
    fast_config, monkeypatch, caplog, free_bytes, expected
):
    monkeypatch.setattr(recompute, "free_device_memory", lambda device, **_: free_bytes)
    chosen = []
    original = SimCLRModule._set_checkpointing

    def spy(self, enabled):
        chosen.append(enabled)
        original(self, enabled)

    monkeypatch.setattr(SimCLRModule, "_set_checkpointing", spy)
    with caplog.at_level(logging.INFO, logger="simclr.models.pretrain"):
        metrics = run(fast_config("trainer.fast_dev_run=true"))
    # Built switched off, then set once when training starts.
    assert chosen == [False, expected]
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    message = f"activation checkpointing {'on' if expected else 'off'}"
    assert any(message in record.getMessage() for record in caplog.records)


@pytest.mark.slow
def test_checkpointing_under_torch_compile_matches_the_plain_pass():
    # Dynamo takes no custom recompute context; the compiled graph must still update the
    # running statistics once.
    views = fixed_views()
    loss, gradients, buffers = plain_step(tiny_module(False), views)
    hparams = {**tiny_module(True).hparams, "compile_encoder": True}
    torch.manual_seed(0)  # the same initial weights as tiny_module's
    compiled = SimCLRModule(**hparams)
    loss_c, gradients_c, buffers_c = plain_step(compiled, views)
    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=0)
    for name, grad in gradients.items():
        torch.testing.assert_close(gradients_c[name], grad, rtol=1e-4, atol=1e-5, msg=name)
    for name, buffer in buffers.items():
        torch.testing.assert_close(buffers_c[name], buffer, rtol=1e-5, atol=1e-6, msg=name)
