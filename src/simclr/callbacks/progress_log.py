"""Progress lines in the log for runs that no terminal shows: under ``nohup``, SLURM or any
redirected output the progress bar draws nothing useful, so every ``every_n_steps`` optimiser
steps or ``every_seconds`` seconds, whichever comes first, one line goes to the log (the
console and the run's ``.log`` file): epoch, step of total, loss, learning rate, views (or
images) per second over all devices, time elapsed and time left.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from datetime import timedelta

import lightning as L
from torch import Tensor

from simclr.rules import Rule, state

log = logging.getLogger(__name__)

PROGRESS_LOG_WHEN = ("auto", "always", "never")
WHEN = state(
    Rule(
        "callbacks.progress_log.when",
        lambda v: v in PROGRESS_LOG_WHEN,
        f"one of: {', '.join(PROGRESS_LOG_WHEN)} (auto: only when the output is not a terminal)",
    )
)


def images_in(batch) -> int:
    """The images a training batch holds: every view of a pre-training batch ``(views,
    labels)``, or the images of a labelled batch ``(images, labels)``."""
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    if isinstance(images, (tuple, list)):
        return sum(images_in(view) for view in images)
    if isinstance(images, dict):  # device_decode: JPEG bytes and boxes, one row per image
        return len(next(iter(images.values())))
    return len(images) if isinstance(images, Tensor) else 0


def duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds))) if math.isfinite(seconds) else "?"


class ProgressLog(L.Callback):
    """One progress line every ``every_n_steps`` steps or ``every_seconds`` seconds.

    ``when``: ``auto`` logs only when standard output is not a terminal (where the rich
    progress bar shows the same), ``always``, or ``never``.
    """

    def __init__(self, every_n_steps: int = 50, every_seconds: float = 60.0, when: str = "auto"):
        WHEN.check(when)
        self.every_n_steps = every_n_steps
        self.every_seconds = every_seconds
        self.when = when
        self.active = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        terminal = sys.stdout.isatty()
        self.active = self.when == "always" or (self.when == "auto" and not terminal)
        self.started = self.last_time = time.monotonic()
        self.first_step = self.last_step = trainer.global_step
        self.images = 0
        self.unit = "images/s"
        if self.active and trainer.is_global_zero:
            log.info(
                "training: %s steps, a progress line every %d steps or %g s",
                self._total(trainer) or "?",
                self.every_n_steps,
                self.every_seconds,
            )

    @staticmethod
    def _total(trainer: L.Trainer) -> int | None:
        total = trainer.estimated_stepping_batches
        return int(total) if math.isfinite(total) else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.active:
            return
        if isinstance(batch, (tuple, list)) and isinstance(batch[0], (tuple, list, dict)):
            self.unit = "views/s"  # pre-training: every view counts
        self.images += images_in(batch) * trainer.world_size
        now, step = time.monotonic(), trainer.global_step
        due = step - self.last_step >= self.every_n_steps or now - self.last_time >= (
            self.every_seconds
        )
        if not due or step == self.last_step:
            return
        if trainer.is_global_zero:
            log.info("%s", self.line(trainer, outputs, now, step))
        self.last_time, self.last_step, self.images = now, step, 0

    def line(self, trainer: L.Trainer, outputs, now: float, step: int) -> str:
        total = self._total(trainer)
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        parts = [f"epoch {trainer.current_epoch + 1}{epochs}"]
        parts.append(
            f"step {step}/{total} ({100 * step / total:.1f}%)" if total else f"step {step}"
        )
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, Tensor):
            parts.append(f"loss {loss.detach().float().item():.4f}")
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.4g}")
        parts.append(f"{self.images / max(now - self.last_time, 1e-9):.1f} {self.unit}")
        elapsed = now - self.started
        done = step - self.first_step
        left = elapsed / done * (total - step) if total and done > 0 else math.inf
        parts.append(f"elapsed {duration(elapsed)}, left {duration(left)}")
        return ", ".join(parts)
