"""Training on two CPU processes (gloo, DDP) against one, for the tests that hold a distributed
run to the one-process run on the whole batch; and the start method of such processes.

The processes start from a fork server (:func:`forkserver`): one clean process per pytest
worker that imports torch, Lightning and the package once, from which every DDP process is
forked. A spawned process would import them again (about 10 s of CPU each); a fork of the test
process itself can deadlock on a lock that one of its threads (a data loader's, litdata's)
held at the fork. The data split, the gather and DDP's gradient averaging are the same under
every start method.

The module reaches the ranks pickled, its tensors in shared memory (torch's way of passing
tensors between processes). Lightning gives each rank its own copy only for ``spawn`` on a CPU
(Lightning-AI/pytorch-lightning#18238, the fix of #17399); under the fork server the ranks
would update one set of weights and buffers together (the optimiser stepping them twice, a
memory buffer's write position advanced by both ranks), so :class:`OwnCopy` copies them in
each rank before training. The shared memory is named files (torch's ``file_system``
strategy) while the ranks start, since the fork server takes at most about 250 file
descriptors and a module with a momentum encoder has more tensors."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.multiprocessing import ProcessExitedException
from torch.utils.data import DataLoader, Dataset

from simclr.models import SimCLRModule

# What the fork server imports before it forks: what every DDP process of the tests needs.
PRELOAD = ["torch", "lightning", "simclr.models", "simclr.data"]


def forkserver() -> str:
    """The start method of the tests' DDP processes, its server set to preload :data:`PRELOAD`
    (it starts on first use and serves the pytest worker until it exits)."""
    multiprocessing.set_forkserver_preload(PRELOAD)
    return "forkserver"


@contextmanager
def shared_as_files() -> Iterator[None]:
    """Tensors passed to other processes in this block go through named shared-memory files,
    not file descriptors (the strategy before is restored after)."""
    before = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    try:
        yield
    finally:
        torch.multiprocessing.set_sharing_strategy(before)


class OwnCopy(L.Callback):
    """Gives this rank its own copy of the module's parameters and buffers before training,
    as Lightning does for spawned CPU processes (see the module docstring)."""

    @torch.no_grad()
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for tensor in chain(pl_module.parameters(), pl_module.buffers()):
            tensor.data = tensor.data.clone()


class FixedViews(Dataset):
    """Two fixed views (no augmentation) of ``count`` random images of ``image_size`` px, drawn
    with ``seed``; an image's label is its index."""

    def __init__(self, count: int, image_size: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.views = torch.randn(2, count, 3, image_size, image_size, generator=generator)

    def __len__(self):
        return self.views.shape[1]

    def __getitem__(self, index):
        return [self.views[0, index], self.views[1, index]], index


def seeded_module(image_size: int, batch_size: int, **options) -> SimCLRModule:
    """The module the DDP comparisons train, initialised from seed 0: a slim ResNet-18 at width
    1/8, a projection head without BatchNorm, SGD at 0.1, temperature 0.2; ``options`` go to
    :class:`SimCLRModule` as they are."""
    torch.manual_seed(0)
    return SimCLRModule(
        backbone={"name": "slim_resnet18", "width": 0.125},
        head={"hidden_dim": 32, "output_dim": 16, "batch_norm": False},
        optimizer={"name": "sgd", "lr": 0.1, "lr_scaling": "none"},
        scheduler={"warmup_epochs": 0},
        image_size=image_size,
        batch_size=batch_size,
        temperature=0.2,
        **options,
    )


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
    over ``devices`` processes started from the fork server (Lightning adds the distributed
    sampler); returns what ``callback`` saved in ``out_dir`` as ``rank{r}_of_{devices}.pt``,
    one record a rank."""
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=DDPStrategy(start_method=forkserver()) if devices > 1 else "auto",
        max_steps=max_steps,
        callbacks=[OwnCopy(), callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(dataset, batch_size=batch_size // devices, shuffle=False)
    records = [out_dir / f"rank{r}_of_{devices}.pt" for r in range(devices)]
    try:
        with shared_as_files():
            trainer.fit(module, train_dataloaders=loader)
    except ProcessExitedException:
        # gloo's threads sometimes abort a rank's process as it exits ("terminate called
        # without an active exception"), after its work is done; the records tell.
        if not all(path.exists() for path in records):
            raise
    return [torch.load(path) for path in records]
