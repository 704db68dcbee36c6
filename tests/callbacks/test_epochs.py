"""One rule for when an epoch-end callback acts, shared by the monitors and the pictures."""

from types import SimpleNamespace

import pytest
import torch

from simclr.callbacks import Pictures, WeightedKNN, epoch_due
from simclr.errors import ConfigError


def trainer_at(epoch: int, max_epochs: int | None = 100, should_stop: bool = False):
    """A trainer ending its ``epoch``-th training epoch (1-based)."""
    return SimpleNamespace(current_epoch=epoch - 1, max_epochs=max_epochs, should_stop=should_stop)


@pytest.mark.parametrize(
    "epoch, max_epochs, should_stop, due",
    [
        (5, 100, False, True),  # every 5th
        (6, 100, False, False),
        (7, 7, False, True),  # the last, whatever its number
        (7, None, False, False),  # no max_epochs: only every 5th
        (6, 100, True, True),  # stopping early: the last epoch after all
    ],
)
def test_every_n_epochs_or_the_last_one(epoch, max_epochs, should_stop, due):
    assert epoch_due(trainer_at(epoch, max_epochs, should_stop), 5) is due


class Writer:
    def __init__(self):
        self.images = []

    def add_image(self, tag, image, step):
        self.images.append(tag)


def test_pictures_draw_the_feature_map_when_a_run_stops_early():
    # The monitors always did (they evaluate a stopping run's last epoch); the pictures now
    # follow the same rule instead of a copy of it that ignored should_stop.
    writer = Writer()
    batch = (torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    trainer = SimpleNamespace(
        **vars(trainer_at(3, should_stop=True)),
        loggers=[SimpleNamespace(experiment=writer)],
        is_global_zero=True,
        datamodule=SimpleNamespace(
            labelled_dataloader=lambda split: [batch], class_names=["a", "b", "c"]
        ),
        strategy=SimpleNamespace(batch_to_device=lambda b: b),
        global_step=12,
    )
    module = SimpleNamespace(encoder=torch.nn.Identity())
    Pictures(every_n_epochs=10).on_train_epoch_end(trainer, module)
    assert writer.images == ["val/feature_map_pca"]
    trainer.should_stop = False
    Pictures(every_n_epochs=10).on_train_epoch_end(trainer, module)
    assert writer.images == ["val/feature_map_pca"]  # epoch 3 of 100: not due


@pytest.mark.parametrize("make", [Pictures, WeightedKNN])
def test_every_n_epochs_must_be_positive_for_monitors_and_pictures(make):
    with pytest.raises(ConfigError, match="every_n_epochs=0: must be an integer >= 1"):
        make(every_n_epochs=0)
