"""Keeping a long run's results safe: non-finite losses and checkpoints cut short by a kill.

- :class:`NonFiniteGuard` (a callback) looks at every optimiser step's loss, and gradients,
  before the step is applied. ``action="stop"`` ends training with a :class:`NonFiniteError`
  naming the step and the last finite loss: the bad step is never applied, and since
  :class:`~lightning.pytorch.callbacks.ModelCheckpoint` saves after a step, no checkpoint with
  non-finite weights is written. ``action="skip"`` drops the step's gradients instead (no
  parameter or optimiser-state update; the schedule moves on) and counts it as
  ``train/skipped_steps``.
- :class:`AtomicCheckpointIO` (a trainer plugin) writes each checkpoint to a hidden file in
  the same folder, fsyncs it, then renames it over the target with :func:`os.replace`, so a
  kill at any moment leaves either the old ``last.ckpt`` or the new one, never half of one.
  It also refuses to write a checkpoint whose weights are not finite, and a write that fails
  (a full disk, no permission) stops the run with a :class:`CheckpointWriteError` naming the
  file and the cause, the checkpoint already on disk intact.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor

from simclr.errors import CheckpointWriteError, SimCLRError
from simclr.rules import Rule, state

log = logging.getLogger(__name__)

NON_FINITE_ACTIONS = ("stop", "skip")
NON_FINITE_ACTION = state(
    Rule(
        "callbacks.non_finite.action",
        lambda v: v in NON_FINITE_ACTIONS,
        f"one of: {', '.join(sorted(NON_FINITE_ACTIONS))}",
    )
)


class NonFiniteError(SimCLRError):
    """Training met a non-finite loss or gradient (or weights), and stopped before saving it."""


def first_non_finite(tensors: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``tensors`` holding a NaN or an infinity,
    or None if all are finite. One device synchronisation for the whole set."""
    named = [
        (name, t) for name, t in tensors.items() if isinstance(t, Tensor) and t.is_floating_point()
    ]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


def _gradient_norm(parameters: Iterable[Tensor]) -> Tensor | None:
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return None
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


class NonFiniteGuard(L.Callback):
    """Stops (or skips) an optimiser step whose loss or gradient norm is NaN or infinite.

    Args:
        action: ``stop`` raises :class:`NonFiniteError`; ``skip`` drops the step's gradients,
            counts it and goes on (it still stops if the weights themselves became non-finite,
            since skipping cannot mend them).
        check_gradients: also check the gradient norm (a finite loss can still give infinite
            gradients). Not done under fp16 mixed precision, whose gradient scaler already
            skips such steps and shrinks its scale: there they are expected.

    The loss is read in ``on_before_backward`` and judged in ``on_before_optimizer_step``:
    after backward and before the optimiser applies anything (one device sync per step).
    """

    def __init__(self, action: str = "stop", check_gradients: bool = True):
        NON_FINITE_ACTION.check(action)
        self.action = action
        self.check_gradients = check_gradients
        self.skipped_steps = 0
        self.last_finite_loss: float | None = None
        self.last_finite_step: int | None = None
        self._losses: list[Tensor] = []

    def on_before_backward(self, trainer, pl_module, loss: Tensor) -> None:
        # Under gradient accumulation each micro-batch brings loss / accumulate_grad_batches.
        self._losses.append(loss.detach().float().sum())

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        losses, self._losses = self._losses, []
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        grad_norm = _gradient_norm(parameters) if self.check_gradients and scaler is None else None
        checks = [torch.stack(losses).sum()] if losses else []
        if grad_norm is not None:
            checks.append(grad_norm.float())
        if not checks:
            return
        values = torch.stack(checks).tolist()  # the one device sync of the step
        loss = values[0] if losses else None
        if all(math.isfinite(v) for v in values):
            if loss is not None:
                self.last_finite_loss, self.last_finite_step = loss, trainer.global_step
            return
        what = (
            f"loss ({loss})"
            if loss is not None and not math.isfinite(loss)
            else f"gradient norm ({values[-1]})"
        )
        if self.action == "skip":
            broken = first_non_finite(pl_module.state_dict())
            if broken is None:
                optimizer.zero_grad(set_to_none=True)  # the optimiser then leaves every weight
                self.skipped_steps += 1
                log.warning(
                    "skipped global step %d: non-finite %s (%d skipped so far)",
                    trainer.global_step,
                    what,
                    self.skipped_steps,
                )
                return
            raise NonFiniteError(
                f"{self._where(trainer, what)}, and the model's own {broken!r} is no longer "
                "finite, so skipping steps cannot recover. " + self._advice(skip=False)
            )
        raise NonFiniteError(f"{self._where(trainer, what)}. {self._advice(skip=True)}")

    def _where(self, trainer, what: str) -> str:
        last = (
            f"the last finite loss was {self.last_finite_loss:.6g} at global step "
            f"{self.last_finite_step}"
            if self.last_finite_loss is not None
            else "no finite loss came before it"
        )
        return (
            f"non-finite {what} at global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, batch {trainer.fit_loop.epoch_loop.batch_idx}); {last}"
        )

    @staticmethod
    def _advice(skip: bool) -> str:
        text = (
            "Training stopped before applying that step: no checkpoint holds non-finite weights. "
        )
        if skip:
            text += (
                "Resume with ckpt_path=last callbacks.non_finite.action=skip to skip such "
                "steps, or start "
            )
        else:
            text += "Start "
        return text + (
            "afresh with a lower optimizer.lr or a longer scheduler.warmup_epochs (a resumed "
            "run keeps its checkpoint's learning rate)."
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.action == "skip":
            pl_module.log("train/skipped_steps", float(self.skipped_steps), on_step=True)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.skipped_steps:
            log.warning(
                "%d optimiser step(s) were skipped for a non-finite loss or gradient",
                self.skipped_steps,
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "skipped_steps": self.skipped_steps,
            "last_finite_loss": self.last_finite_loss,
            "last_finite_step": self.last_finite_step,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = state_dict.get("skipped_steps", 0)
        self.last_finite_loss = state_dict.get("last_finite_loss")
        self.last_finite_step = state_dict.get("last_finite_step")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic and refusing non-finite weights.

    The checkpoint goes to ``.<name>.partial`` next to the target, is flushed and fsynced, and
    only then renamed over the target (:func:`os.replace` is atomic within a file system);
    the folder is fsynced so the rename itself survives a power cut. A kill before the rename
    leaves the old file untouched (and a stale ``.partial``, overwritten by the next save).
    Paths with a URL scheme (``s3://`` ...) go to Lightning's own writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        broken = first_non_finite(checkpoint.get("state_dict", {}))
        if broken is not None:
            raise NonFiniteError(
                f"refusing to write checkpoint {path}: weight {broken!r} is not finite; the "
                "checkpoints already on disk are kept. Start afresh with a lower optimizer.lr, "
                "or keep callbacks.non_finite (it stops before a non-finite step is applied)."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        except BaseException as error:
            partial.unlink(missing_ok=True)
            cause = _write_failure(error)
            if cause is None:
                raise
            kept = f"the previous {path.name} is kept" if path.exists() else "nothing was kept"
            raise CheckpointWriteError(
                f"could not write checkpoint {path}: {cause}; {kept}. Free space on that disk "
                "(or make the folder writable), or give another paths.output_dir, then resume "
                "with ckpt_path=<the run folder>"
            ) from None
        _fsync_folder(path.parent)


def _write_failure(error: BaseException) -> str | None:
    """The operating system's reason a checkpoint write failed, or None for other errors
    (bugs, interrupts), which keep their trace. torch.save wraps the file's own OSError in a
    RuntimeError naming the zip writer's failure."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return f"{seen.strerror or seen} [errno {seen.errno}]" if seen.errno else str(seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, RuntimeError) and "PytorchStreamWriter failed" in str(error):
        return str(error).splitlines()[0][:200]
    return None


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
