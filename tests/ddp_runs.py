"""Training on two CPU processes (gloo, ``ddp_spawn``) against one, for the tests that hold a
distributed run to the one-process run on the whole batch."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.multiprocessing import ProcessExitedException
from torch.utils.data import DataLoader, Dataset


def fit_on_cpu_processes(
    module: L.LightningModule,
    dataset: Dataset,
    batch_size: int,
    callback: L.Callback,
    out_dir: Path,
    devices: int,
    max_steps: int,
) -> list[dict]:
    """``max_steps`` of ``module`` on ``dataset`` in order, ``batch_size`` images a step split
    over ``devices`` processes (Lightning adds the distributed sampler); returns what
    ``callback`` saved in ``out_dir`` as ``rank{r}_of_{devices}.pt``, one record a rank."""
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_steps=max_steps,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(dataset, batch_size=batch_size // devices, shuffle=False)
    records = [out_dir / f"rank{r}_of_{devices}.pt" for r in range(devices)]
    try:
        trainer.fit(module, train_dataloaders=loader)
    except ProcessExitedException:
        # gloo's threads sometimes abort a spawned process as it exits ("terminate called
        # without an active exception"), after its work is done; the records tell.
        if not all(path.exists() for path in records):
            raise
    return [torch.load(path) for path in records]
