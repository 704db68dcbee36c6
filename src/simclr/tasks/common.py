"""What every task shares: the one Trainer builder, the config as plain values, the metrics
file, and the body of the user-facing entry points (``train.py``, ``finetune.py``)."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from simclr.callbacks.safeguards import AtomicCheckpointIO
from simclr.errors import SimCLRError

log = logging.getLogger(__name__)


def plain(node) -> dict:
    """A config node as plain Python values (interpolations resolved)."""
    return OmegaConf.to_container(node, resolve=True)


def instantiate_all(group: DictConfig | None) -> list:
    """Every ``_target_`` node of a callbacks or logger group, in order; ``null`` ones skipped."""
    if not group:
        return []
    return [hydra.utils.instantiate(node) for node in group.values() if node is not None]


def build_trainer(cfg: DictConfig, model: L.LightningModule) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the ``callbacks`` and ``logger`` groups, for
    pre-training and fine-tuning alike.

    Checkpoints are written by :class:`~simclr.callbacks.safeguards.AtomicCheckpointIO`: atomically
    (a kill never leaves a truncated ``last.ckpt``) and never with non-finite weights. Under
    manual optimisation (gradient caching) ``model`` clips its gradients itself, so Lightning's
    ``gradient_clip_val`` is switched off (Lightning refuses it there).
    """
    return hydra.utils.instantiate(
        cfg.trainer,
        callbacks=instantiate_all(cfg.get("callbacks")),
        logger=instantiate_all(cfg.get("logger")) or False,
        plugins=[AtomicCheckpointIO()],
        **({} if model.automatic_optimization else {"gradient_clip_val": None}),
    )


def write_metrics(metrics: dict, output_dir: str | Path) -> Path:
    """Write ``metrics`` to ``<output_dir>/metrics.json``, warning about non-finite values."""
    non_finite = [name for name, value in metrics.items() if not math.isfinite(value)]
    if non_finite:
        log.warning("non-finite final metrics: %s", ", ".join(non_finite))
    path = Path(output_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def run_for_user(run: Callable[[DictConfig], dict], cfg: DictConfig) -> float | None:
    """Run ``run(cfg)``; a :class:`SimCLRError` is printed without a stack trace and exits
    with status 2. Returns the metric named by ``cfg.optimized_metric``, for Hydra sweepers."""
    try:
        metrics = run(cfg)
    except SimCLRError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None
