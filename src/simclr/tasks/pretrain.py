"""``run(cfg)``: one pre-training run from a composed Hydra config (what ``train.py`` calls).

The config tree is turned into plain values for the LightningModule and the DataModule;
Lightning's Trainer, callbacks and loggers are instantiated from their ``_target_`` nodes.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from simclr.callbacks.safeguards import AtomicCheckpointIO
from simclr.config.checks import resolve_ckpt_path, validate_config
from simclr.data.pretraining import SimCLRDataModule
from simclr.models.pretrain import SimCLRModule

log = logging.getLogger(__name__)


def plain(node) -> dict:
    """A config node as plain Python values (interpolations resolved)."""
    return OmegaConf.to_container(node, resolve=True)


def instantiate_all(group: DictConfig | None) -> list:
    """Every ``_target_`` node of a callbacks or logger group, in order; ``null`` ones skipped."""
    if not group:
        return []
    return [hydra.utils.instantiate(node) for node in group.values() if node is not None]


def build_datamodule(cfg: DictConfig) -> SimCLRDataModule:
    data = plain(cfg.data)
    return SimCLRDataModule(num_views=cfg.model.num_views, **data)


def build_model(cfg: DictConfig) -> SimCLRModule:
    model = plain(cfg.model)
    return SimCLRModule(
        backbone=plain(cfg.backbone),
        head=model.pop("head"),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler),
        image_size=cfg.data.image_size,
        batch_size=cfg.data.batch_size,
        **model,
    )


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


def run(cfg: DictConfig) -> dict[str, float]:
    """Pre-train as ``cfg`` says; returns the final logged metrics (also in ``metrics.json``).

    The config is checked, and ``ckpt_path`` resolved (``last``: the newest ``last.ckpt`` of
    this task's earlier runs), before any work starts.
    """
    validate_config(cfg)
    ckpt_path = resolve_ckpt_path(cfg)
    if ckpt_path is not None:
        log.info("resuming from %s", ckpt_path)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    trainer = build_trainer(cfg, model)
    log.info("output folder: %s", cfg.paths.output_dir)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if isinstance(value, (int, float, torch.Tensor)) and torch.as_tensor(value).numel() == 1
    }
    path = write_metrics(metrics, cfg.paths.output_dir)
    log.info("metrics written to %s", path)
    return metrics
