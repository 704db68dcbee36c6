"""model.view_passes: one encoder pass per view (each view normalised by its own BatchNorm
statistics, as lightly's and solo-learn's examples do) instead of the official single pass."""

import pytest
import torch

from conftest import tiny_simclr_module
from simclr.errors import ConfigError
from simclr.models import SimCLRModule

NUM_IMAGES, IMAGE_SIZE = 8, 8


def tiny_module(**options) -> SimCLRModule:
    return tiny_simclr_module(IMAGE_SIZE, NUM_IMAGES, **options)


def views() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    shape = (NUM_IMAGES, 3, IMAGE_SIZE, IMAGE_SIZE)
    return [torch.randn(*shape, generator=generator) for _ in range(2)]


def loss_of_passes(model: SimCLRModule, passes: list[torch.Tensor]) -> torch.Tensor:
    z = torch.cat([model.projection(model.encoder(images)) for images in passes])
    return model.criterion(z.view(2, NUM_IMAGES, -1)).loss


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_each_view_gets_its_own_pass_and_batch_statistics():
    separate, together = tiny_module(view_passes=True), tiny_module()
    batch = (views(), torch.zeros(NUM_IMAGES, dtype=torch.long))
    loss = separate.training_step(batch, 0)["loss"]
    official = together.training_step(batch, 0)["loss"]
    with torch.no_grad():
        expected_separate = loss_of_passes(tiny_module(), views())
        expected_together = loss_of_passes(tiny_module(), [torch.cat(views())])
    assert loss.item() == pytest.approx(expected_separate.item(), rel=1e-6)
    assert official.item() == pytest.approx(expected_together.item(), rel=1e-6)
    # Training-mode BatchNorm: the statistics of one view are not those of both.
    assert abs(loss.item() - official.item()) > 1e-4


def test_view_passes_and_gradient_caching_are_refused_together():
    with pytest.raises(ConfigError, match=r"model\.view_passes=true .*model\.micro_batch_size"):
        tiny_module(view_passes=True, micro_batch_size=4)
