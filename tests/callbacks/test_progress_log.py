"""Progress lines in the log when no terminal shows the progress bar."""

from __future__ import annotations

import logging
import re

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from simclr.callbacks.progress_log import ProgressLog, images_in
from simclr.errors import ConfigError

LINE = re.compile(
    r"epoch (\d+)/3, step (\d+)/12 \([\d.]+%\), loss [\d.]+, lr 0\.1, [\d.]+ (\w+)/s, "
    r"elapsed \d+:\d\d:\d\d, left \d+:\d\d:\d\d"
)


class Tiny(L.LightningModule):
    def __init__(self, views: bool):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.views = views

    def training_step(self, batch, batch_idx):
        x, _ = batch
        x = torch.cat(x) if self.views else x
        return {"loss": self.layer(x).pow(2).mean()}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def collate_views(items):
    x = torch.stack([item[0] for item in items])
    return [x, x + 1], torch.stack([item[1] for item in items])


def fit(callback: ProgressLog, views: bool = False) -> None:
    data = TensorDataset(torch.randn(16, 4), torch.zeros(16))
    loader = DataLoader(data, batch_size=4, collate_fn=collate_views if views else None)
    trainer = L.Trainer(
        max_epochs=3,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Tiny(views), loader)


@pytest.mark.parametrize("views", [False, True])
def test_a_line_every_n_steps_with_epoch_step_loss_lr_speed_and_time_left(caplog, views):
    with caplog.at_level(logging.INFO, logger="simclr.callbacks.progress_log"):
        fit(ProgressLog(every_n_steps=5, every_seconds=3600, when="always"), views)
    lines = [LINE.fullmatch(r.getMessage()) for r in caplog.records if "step " in r.getMessage()]
    assert [m is not None for m in lines] == [True, True], caplog.text
    assert [int(m.group(2)) for m in lines] == [5, 10]  # 12 steps, a line every 5
    assert [int(m.group(1)) for m in lines] == [2, 3]
    assert {m.group(3) for m in lines} == {"views" if views else "images"}


def test_seconds_trigger_too(caplog):
    with caplog.at_level(logging.INFO, logger="simclr.callbacks.progress_log"):
        fit(ProgressLog(every_n_steps=1000, every_seconds=0, when="always"))
    assert sum("step " in r.getMessage() and "left" in r.getMessage() for r in caplog.records) == 12


def test_auto_is_silent_on_a_terminal_and_never_is_silent(caplog, monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    with caplog.at_level(logging.INFO, logger="simclr.callbacks.progress_log"):
        fit(ProgressLog(every_n_steps=1, when="auto"))
        fit(ProgressLog(every_n_steps=1, when="never"))
    assert not [r for r in caplog.records if r.name == "simclr.callbacks.progress_log"]
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    with caplog.at_level(logging.INFO, logger="simclr.callbacks.progress_log"):
        fit(ProgressLog(every_n_steps=4, when="auto"))
    assert sum("left" in r.getMessage() for r in caplog.records) == 3


def test_views_are_counted_in_every_batch_layout():
    x = torch.zeros(5, 3, 8, 8)
    assert images_in((x, None)) == 5
    assert images_in(([x, x, x], None)) == 15
    assert images_in(({"bytes": [b""] * 5, "boxes": torch.zeros(5, 4)}, None)) == 5


def test_a_bad_when_is_refused():
    with pytest.raises(ConfigError, match=r"callbacks\.progress_log\.when"):
        ProgressLog(when="sometimes")
