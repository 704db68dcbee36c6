"""Pre-emption: a signal (a cluster's SIGTERM, SLURM's warning signal, Ctrl-C) ends the run
at the end of the current optimiser step, with a complete ``last.ckpt`` of that step, one log
line saying where it stopped, and exit status :data:`PREEMPTED_EXIT_STATUS`."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from simclr.errors import ConfigError

log = logging.getLogger(__name__)

# EX_TEMPFAIL of sysexits.h: a temporary failure, the same command (resuming) may succeed.
PREEMPTED_EXIT_STATUS = 75


class Preempted(Exception):
    """A signal stopped the run; ``checkpoint`` holds its last step. ``train.py`` and
    ``finetune.py`` log the message and exit with :data:`PREEMPTED_EXIT_STATUS`."""

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


def signal_number(name: str | int) -> signal.Signals:
    """``"SIGTERM"``, ``"TERM"`` or ``15`` as a signal; an unknown name lists valid ones."""
    if isinstance(name, int):
        return signal.Signals(name)
    key = str(name).upper()
    key = key if key.startswith("SIG") else f"SIG{key}"
    if key not in signal.Signals.__members__ or key in ("SIGKILL", "SIGSTOP"):
        raise ConfigError(
            f"preemption.signals: {name!r} is not a signal that can be caught; e.g. SIGTERM, "
            "SIGINT, SIGUSR1, SIGUSR2"
        )
    return signal.Signals[key]


def requeue_signal(trainer: L.Trainer) -> signal.Signals | None:
    """The signal on which Lightning's SLURM plugin requeues the job (None: not under SLURM
    with auto-requeue)."""
    environment = trainer._accelerator_connector.cluster_environment
    if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
        return environment.requeue_signal
    return None


class PreemptionHandler(Callback):
    """Stops training cleanly on any of ``signals``.

    The handler only notes the signal; at the end of the optimiser step under way
    (``on_train_batch_end``) the run writes ``<checkpoints>/last.ckpt`` (atomically, through
    the trainer's checkpoint writer) and raises :class:`Preempted`. A signal that arrives during
    validation takes effect after the next step. A second signal is logged and otherwise
    ignored, so it cannot cut a checkpoint half-written; the atomic writer keeps the previous
    ``last.ckpt`` whole even under SIGKILL.

    Lightning installs its own SIGTERM handler just before training starts; it would end the
    run with status 0 and no checkpoint. This callback installs its handlers after it
    (``on_train_start``) and Lightning restores the original handlers at its teardown. Under
    SLURM with auto-requeue, Lightning's handler of the requeue signal is kept and called at
    the step's end, after ``last.ckpt`` is written: the plugin writes its ``hpc_ckpt_<n>.ckpt``
    and requeues the job (``scontrol requeue``). With several processes the decision is
    shared, so every rank stops after the same step.
    """

    def __init__(self, signals: Sequence[str | int] = ("SIGTERM", "SIGINT", "SIGUSR1")):
        self.signals = [signal_number(name) for name in signals]
        self.received: signal.Signals | None = None
        self.chained: dict[signal.Signals, object] = {}
        self.pid: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        requeue = requeue_signal(trainer)
        self.pid = os.getpid()
        for signum in self.signals:
            if signum == requeue:
                self.chained[signum] = signal.getsignal(signum)
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, frame) -> None:
        if os.getpid() != self.pid:
            # A data-loader worker forked from this process inherits the handler; Ctrl-C
            # reaches the whole process group. The workers go on serving until the step ends.
            return
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signal.Signals(signum)
            log.warning("received %s: stopping after the current optimiser step", name)
        else:
            log.warning("received %s again: already stopping (writing last.ckpt)", name)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self.stop(trainer, batch_idx)

    def stop(self, trainer: L.Trainer, batch_idx: int) -> None:
        path = checkpoint_dir(trainer) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
        trainer.save_checkpoint(path)
        name = self.received.name if self.received is not None else "a signal on another rank"
        requeue = self.chained.get(self.received) if self.received is not None else None
        if callable(requeue):
            requeue(self.received, None)
        raise Preempted(
            f"stopped by {name} after global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, batch {batch_idx + 1} of {trainer.num_training_batches}); "
            f"checkpoint: {path}; resume with ckpt_path={path}",
            path,
        )


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """Where the run's checkpoints go: the ModelCheckpoint's folder, else
    ``<default_root_dir>/checkpoints``."""
    callback = trainer.checkpoint_callback
    if callback is not None and callback.dirpath:
        return Path(callback.dirpath)
    return Path(trainer.default_root_dir) / "checkpoints"
