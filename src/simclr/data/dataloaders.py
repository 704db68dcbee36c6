"""The one DataLoader factory: every DataLoader of pre-training, the monitors and fine-tuning
is made by :func:`make_dataloader` from the same :class:`DataLoaderSettings`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Literal, get_args

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from simclr.errors import ConfigError
from simclr.rules import NUM_WORKERS, batch_division_problem


def available_cpus() -> int:
    """CPU cores this process may run on (the affinity mask, e.g. a SLURM allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def world_size(trainer: L.Trainer | None) -> int:
    """Processes the global batch is shared among (1 without a trainer)."""
    return trainer.world_size if trainer is not None else 1


def per_device_batch_size(batch_size: int, trainer: L.Trainer | None) -> int:
    """Each process's share of the global batch ``batch_size``, which must divide evenly
    (pre-training: the number of negatives does not change with the device count)."""
    devices = world_size(trainer)
    problem = batch_division_problem(batch_size, devices)
    if problem:
        raise ConfigError(problem)
    return batch_size // devices


@dataclass(frozen=True)
class DataLoaderSettings:
    """The ``data`` DataLoader settings (``configs/data/loader/default.yaml``) that every
    DataLoader of pre-training, the monitors and fine-tuning is made with, by
    :func:`make_dataloader`.

    ``num_workers=None`` picks one worker per free core, shared among the devices of a node
    (cores // devices - 1, at least 1); ``pin_memory=None`` pins when the trainer runs on
    CUDA; ``persistent_workers`` keeps the workers between epochs; each worker prepares
    ``prefetch_factor`` batches ahead; ``drop_last`` drops pre-training's last, smaller batch,
    so that every step sees the same number of negatives.
    """

    num_workers: int | None = 0
    pin_memory: bool | None = None
    persistent_workers: bool = True
    prefetch_factor: int | None = 2
    drop_last: bool = True

    def __post_init__(self):
        NUM_WORKERS.check(self.num_workers)

    def worker_count(self, trainer: L.Trainer | None) -> int:
        """``num_workers``, or when it is None one per core this node gives each of the
        trainer's devices, less one for the device's own process (at least 1)."""
        if self.num_workers is not None:
            return self.num_workers
        devices = getattr(trainer, "num_devices", 1) if trainer is not None else 1
        return max(1, available_cpus() // max(1, devices) - 1)

    def pins_memory(self, trainer: L.Trainer | None) -> bool:
        """``pin_memory``, or when it is None whether the trainer runs on CUDA."""
        if self.pin_memory is not None:
            return self.pin_memory
        if trainer is not None and hasattr(trainer, "accelerator"):
            from lightning.pytorch.accelerators import CUDAAccelerator

            return isinstance(trainer.accelerator, CUDAAccelerator)
        return torch.cuda.is_available()

    def stream_options(self, role: str, trainer: L.Trainer | None) -> dict:
        """The settings of a streaming training loader (shards: litdata's loader). Its
        ``drop_last`` (litdata's) leaves out the images of an epoch that would not fill a batch
        on every rank and worker: fine-tuning always (no batch of one image for BatchNorm),
        pre-training where ``drop_last`` says so."""
        workers = self.worker_count(trainer)
        return {
            "num_workers": workers,
            "pin_memory": self.pins_memory(trainer),
            "prefetch_factor": self.prefetch_factor,
            "drop_last": role != "pretrain" or self.drop_last,
        }


# The keys of a data config that are DataLoaderSettings' fields.
DATALOADER_KEYS = tuple(field.name for field in fields(DataLoaderSettings))

# What a loader is for: pre-training's views, fine-tuning's training images, or evaluation.
DataLoaderRole = Literal["pretrain", "train", "eval"]


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    role: DataLoaderRole,
    settings: DataLoaderSettings,
    trainer: L.Trainer | None = None,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset`` for ``role``, with ``batch_size`` images per device.

    Training loaders (``pretrain``, ``train``) shuffle, in the order of ``sampler`` where
    given (:class:`~simclr.data.resumable.EpochShuffle`: resumable); pre-training drops its
    last, smaller batch when ``settings.drop_last`` says so, and every training loader drops
    a last batch of exactly one image on a device (BatchNorm cannot take its statistics over
    one image). Evaluation loaders keep the order and every image. Workers and pinning follow
    ``trainer`` (its devices, its accelerator).

    The loader is a plain DataLoader without a ``worker_init_fn``: Lightning gives the
    loaders that a DataModule returns its own one, which seeds each worker process when the
    run called ``seed_everything(seed, workers=True)``. The training views do not depend on
    it: :class:`~simclr.data.resumable.SeededViews` seeds every sample.
    """
    if role not in get_args(DataLoaderRole):
        valid = ", ".join(get_args(DataLoaderRole))
        raise ValueError(f"unknown loader role {role!r}; valid: {valid}")
    training = role != "eval"
    # Under a distributed sampler, each device reads ceil(N / world_size) images.
    per_device = math.ceil(len(dataset) / world_size(trainer))
    drop_last = training and (
        (role == "pretrain" and settings.drop_last) or per_device % batch_size == 1
    )
    workers = settings.worker_count(trainer)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=training if sampler is None else None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=workers,
        persistent_workers=settings.persistent_workers and workers > 0,
        prefetch_factor=settings.prefetch_factor if workers > 0 else None,
        pin_memory=settings.pins_memory(trainer),
    )
