"""``run(cfg)``: one pre-training run from a composed Hydra config (what ``train.py`` calls).

The config tree is turned into plain values for the LightningModule and the DataModule;
Lightning's Trainer, callbacks and loggers are instantiated from their ``_target_`` nodes.
"""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from simclr.data import SimCLRDataModule
from simclr.models import SimCLRModule
from simclr.tasks.common import plain, recorded_trainer, start_run

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> SimCLRDataModule:
    data = plain(cfg.data)
    return SimCLRDataModule(num_views=cfg.model.num_views, seed=cfg.get("seed"), **data)


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


def run(cfg: DictConfig) -> dict[str, float]:
    """Pre-train as ``cfg`` says; returns the final logged metrics (also in ``metrics.json``).

    The config is checked, and ``ckpt_path`` resolved (``last``: the newest ``last.ckpt`` of
    this task's earlier runs), before any work starts.
    """
    ckpt_path = start_run(cfg)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    with recorded_trainer(cfg, not model.automatic_optimization) as (trainer, metrics):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update(
            (name, float(value))
            for name, value in trainer.callback_metrics.items()
            if isinstance(value, (int, float, torch.Tensor)) and torch.as_tensor(value).numel() == 1
        )
    return metrics
