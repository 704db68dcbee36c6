"""What every task shares: the start of a run, the one Trainer builder and its recorded run
(metrics file, loggers ended), the config as plain values, and the body of the user-facing
entry points (``train.py``, ``finetune.py``)."""

from __future__ import annotations

import json
import logging
import math
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from simclr.callbacks.preemption import (
    PREEMPTED_EXIT_STATUS,
    Preempted,
    PreemptionHandler,
    signal_number,
)
from simclr.callbacks.safeguards import AtomicCheckpointIO
from simclr.config import resolve_ckpt_path, validate_config
from simclr.errors import SimCLRError
from simclr.loggers import finish_runs

log = logging.getLogger(__name__)

# Lightning warns that a checkpoint taken mid-epoch cannot resume a loader without its own
# state_dict; the DataModules save the loader's position themselves (simclr.data.resumable).
warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable.*")


def start_run(cfg: DictConfig) -> str | None:
    """What both tasks do before any work: check ``cfg``, resolve ``ckpt_path`` (``last``:
    the newest ``last.ckpt`` of this task's earlier runs) and seed everything. Returns the
    checkpoint to resume from, or None."""
    validate_config(cfg)
    ckpt_path = resolve_ckpt_path(cfg)
    if ckpt_path is not None:
        log.info("resuming from %s", ckpt_path)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    return ckpt_path


def plain(node) -> dict:
    """A config node as plain Python values (interpolations resolved)."""
    return OmegaConf.to_container(node, resolve=True)


def instantiate_all(group: DictConfig | None) -> list:
    """Every ``_target_`` node of a callbacks or logger group, in order; ``null`` ones skipped."""
    if not group:
        return []
    return [hydra.utils.instantiate(node) for node in group.values() if node is not None]


def build_trainer(cfg: DictConfig, manual_optimization: bool = False) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the ``callbacks`` and ``logger`` groups, for
    pre-training and fine-tuning alike.

    Checkpoints are written by :class:`~simclr.callbacks.safeguards.AtomicCheckpointIO`: atomically
    (a kill never leaves a truncated ``last.ckpt``) and never with non-finite weights. The
    ``preemption`` signals stop the run after a step with a ``last.ckpt``
    (:class:`~simclr.callbacks.preemption.PreemptionHandler`, whatever the callbacks group);
    under SLURM, Lightning's SLURM plugin requeues the job on ``preemption.requeue_signal``. Under
    manual optimisation (``manual_optimization``: pre-training's gradient caching) the module
    clips its gradients itself, so Lightning's ``gradient_clip_val`` is switched off (Lightning
    refuses it there).
    """
    callbacks = instantiate_all(cfg.get("callbacks"))
    loggers = instantiate_all(cfg.get("logger"))
    # A config without the preemption group (composed by hand) gets the handler's defaults.
    preemption = cfg.get("preemption")
    handler = PreemptionHandler(*([preemption.signals] if preemption is not None else []))
    plugins: list = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect() and preemption is not None:
        plugins.append(
            SLURMEnvironment(
                auto_requeue=bool(preemption.slurm_requeue),
                requeue_signal=signal_number(preemption.requeue_signal),
            )
        )
    return hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[*callbacks, handler],
        logger=loggers or False,
        plugins=plugins,
        **({"gradient_clip_val": None} if manual_optimization else {}),
    )


@contextmanager
def recorded_trainer(
    cfg: DictConfig, manual_optimization: bool = False
) -> Iterator[tuple[L.Trainer, dict[str, float]]]:
    """The Trainer of :func:`build_trainer` (``manual_optimization`` as there), and a dict for
    the run's final metrics, for the block of a task's work (its ``fit``, fine-tuning's
    ``test``, and what fine-tuning builds before them). After the block the metrics are
    written to ``<paths.output_dir>/metrics.json`` (non-finite values warned about), and the
    loggers' tracking runs are ended, marked failed if the block raised
    (:func:`simclr.loggers.finish_runs`)."""
    trainer = build_trainer(cfg, manual_optimization)
    log.info("output folder: %s", cfg.paths.output_dir)
    metrics: dict[str, float] = {}
    try:
        yield trainer, metrics
        non_finite = [name for name, value in metrics.items() if not math.isfinite(value)]
        if non_finite:
            log.warning("non-finite final metrics: %s", ", ".join(non_finite))
        path = Path(cfg.paths.output_dir) / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    except BaseException:
        finish_runs(trainer.loggers, failed=True)
        raise
    finish_runs(trainer.loggers)
    log.info("metrics written to %s", path)


def run_for_user(run: Callable[[DictConfig], dict], cfg: DictConfig) -> float | None:
    """Run ``run(cfg)``; a :class:`SimCLRError` is printed without a stack trace and exits
    with status 2; a run stopped by a signal (:class:`Preempted`) logs where it stopped and
    exits with status 75. Returns the metric named by ``cfg.optimized_metric``, for Hydra
    sweepers."""
    try:
        metrics = run(cfg)
    except SimCLRError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Preempted as stopped:
        log.warning("%s", stopped)
        sys.exit(PREEMPTED_EXIT_STATUS)
    except SIGTERMException:
        # Lightning's own handler, outside the training steps (e.g. fine-tuning's final test):
        # it would exit with status 0 as if the run had finished.
        log.warning("stopped by SIGTERM outside training; resume with ckpt_path=<its last.ckpt>")
        sys.exit(PREEMPTED_EXIT_STATUS)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None
