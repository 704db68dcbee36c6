"""When an epoch-end callback acts: every ``every_n_epochs`` training epochs, and at the last
epoch whatever its number, so that a run's final state is always measured and drawn."""

from __future__ import annotations

import lightning as L

from simclr.rules import Rule, integer_at_least

EVERY_N_EPOCHS = Rule("every_n_epochs", integer_at_least(1), "an integer >= 1")


def epoch_due(trainer: L.Trainer, every_n_epochs: int) -> bool:
    """Whether the training epoch that is ending is an ``every_n_epochs``-th one or the last:
    ``trainer.max_epochs`` reached, or the trainer stopping early (``should_stop``: early
    stopping, ``max_steps``, a safeguard)."""
    epoch = trainer.current_epoch + 1
    last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
    return last or trainer.should_stop or epoch % every_n_epochs == 0
