"""What makes a resumed run draw the data an uninterrupted run would have drawn.

Three pieces, each saved in the checkpoint by the DataModules (``state_dict``):

- :class:`EpochShuffle`, the training sampler: epoch ``e``'s order is a permutation drawn from
  ``(seed, e)`` alone, and a run resumed mid-epoch starts that order at the first batch the
  interrupted run had not trained on (Lightning 2.x counts the epoch's finished batches but
  reads them again from a fresh iterator; the sampler skips them instead).
- :class:`SeededViews`: the random augmentation of sample ``i`` in epoch ``e`` is drawn from a
  generator seeded by ``(seed, e, i)``, not from a worker's lifetime stream, so the views do
  not depend on the number of workers, on which worker reads the sample, or on a restart.
- :func:`rng_states` / :func:`set_rng_states`: the main process's Python, NumPy and torch
  random states.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


def derived_seed(*words: int) -> int:
    """A 63-bit seed mixed from non-negative integers (NumPy's SeedSequence hashing), so that
    nearby tuples such as ``(42, 0, 7)`` and ``(42, 0, 8)`` give unrelated streams."""
    high, low = np.random.SeedSequence([int(w) for w in words]).generate_state(2)
    return (int(high) << 32 | int(low)) & (2**63 - 1)


def random_base_seed() -> int:
    """A seed for runs started with ``seed=null``; it is saved in the checkpoint so that a
    resumed run goes on with the same one."""
    return random.SystemRandom().randrange(2**31)


class EpochShuffle(DistributedSampler):
    """Yields ``(epoch, index)`` for the indices of a data set of ``size`` items, in the order
    of a permutation drawn from ``(seed, epoch)``; with several processes (``num_replicas``),
    process ``rank`` takes every ``num_replicas``-th item of that order (padded by repeating
    its start, as torch's DistributedSampler does), so the processes share one order.

    Lightning calls :meth:`set_epoch` before each epoch (and, this being a
    DistributedSampler, does not wrap it in its own). ``skip`` items of this process are left
    out of the first pass over ``epoch`` (a resumed run: the items of the batches already
    trained on); later passes yield everything. ``len()`` does not change with ``skip``, so the
    number of batches an epoch has does not change on resume.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        epoch: int = 0,
        skip: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        # DistributedSampler's own state is not used: this sampler draws its own order.
        self.size = size
        self.seed = seed
        self.epoch = epoch
        self.skip = skip
        self.num_replicas = num_replicas
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        """This process's indices of ``epoch``, in order."""
        generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        padding = len(self) * self.num_replicas - self.size
        order += (order * math.ceil(padding / max(1, self.size)))[:padding]
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.epoch, self.skip
        self.skip = 0
        return iter([(epoch, index) for index in self.order(epoch)[skip:]])

    def __len__(self) -> int:
        return math.ceil(self.size / self.num_replicas)


class SeededViews(Dataset):
    """Applies the random ``transform`` to the images of a labelled data set, drawing its
    randomness from ``(seed, epoch, index)``; read with the ``(epoch, index)`` keys that
    :class:`EpochShuffle` yields (a plain ``index`` reads it as of epoch 0).

    torchvision's transforms draw from the global torch generator: it is seeded for the one
    sample and restored after, so the caller's stream (the main process's, with
    ``num_workers=0``) is left as it was. The sample is read under the same seed, so a data
    set that draws while reading (crop boxes drawn before decoding,
    :mod:`simclr.data.augment.crop_first`) is seeded too; ``transform=None`` then leaves its
    items as they are.
    """

    def __init__(self, dataset: Dataset, transform: Callable | None, seed: int):
        self.dataset = dataset
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        # The sample is read inside the seeded block too: a crop-first dataset draws its crop
        # boxes and flips as it reads the file (data.pipeline=crop_first).
        return seeded_transform(self.view, index, self.seed, epoch, index)

    def view(self, index: int):
        image, label = self.dataset[index]
        return (image if self.transform is None else self.transform(image)), label


def seeded_transform(transform: Callable, image, seed: int, epoch: int, index: int):
    """``transform(image)`` with its randomness drawn from ``(seed, epoch, index)``: the global
    torch generator (which torchvision's transforms draw from) is seeded for the one sample
    and restored after."""
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only: torch.manual_seed would reseed the CUDA ones too.
        torch.default_generator.manual_seed(derived_seed(seed, epoch, index))
        return transform(image)


def rng_states() -> dict:
    """The main process's Python, NumPy and torch (CPU and CUDA) random states, as tensors,
    numbers and tuples (what a checkpoint loaded with ``weights_only`` may hold)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned (CUDA states only where CUDA is in use)."""
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def position(trainer) -> tuple[int, int]:
    """``(epoch, batches done in it)`` where a checkpoint taken now would resume: the epoch
    and the optimiser steps applied in it (a checkpoint is taken after a step); at the end of
    an epoch, the start of the next one."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    if done >= trainer.num_training_batches:
        return trainer.current_epoch + 1, 0
    return trainer.current_epoch, done


class DataStream:
    """The seed and the position of a DataModule's training data, which its ``state_dict``
    saves in every checkpoint (with the main process's random states) and its
    ``load_state_dict`` gives back to the sampler of the resumed run.

    ``seed=None`` draws a seed at random (kept by the checkpoint).
    """

    def __init__(self, seed: int | None):
        self.seed = random_base_seed() if seed is None else int(seed)
        self.resume: dict | None = None
        # A stateful training loader (streaming shards), and its state from the checkpoint.
        self.loader = None
        self.loader_state: dict | None = None

    def sampler(self, size: int, batch_size: int, trainer=None) -> EpochShuffle:
        """The training sampler; after a resume, positioned where the checkpoint was taken (a
        loader made again later is positioned there too: the sampler forgets the position
        once Lightning moves it to another epoch)."""
        epoch, skip = 0, 0
        if self.resume is not None:
            epoch = self.resume["epoch"]
            skip = self.resume["batches_done"] * batch_size
        # A trainer's world size and rank (one process, rank 0, without a trainer).
        replicas = getattr(trainer, "world_size", 1)
        rank = getattr(trainer, "global_rank", 0)
        return EpochShuffle(size, self.seed, epoch, skip, replicas, rank)

    def state_dict(self, trainer) -> dict:
        state = {"seed": self.seed, "epoch": 0, "batches_done": 0, "rng": rng_states()}
        if trainer is not None:
            epoch, done = position(trainer)
            state.update(epoch=epoch, batches_done=done)
        if self.loader is not None:
            state["loader"] = self.loader.state_dict()
        return state

    def attach(self, loader):
        """Keep a stateful training loader's state (streaming shards: litdata's position in the
        epoch) in the checkpoint beside the seed, and give it the state of the checkpoint being
        resumed: once, to the first such loader (Lightning makes it once, before restoring
        its loops, so its own restore of stateful loaders does not reach it)."""
        self.loader = loader
        pending, self.loader_state = self.loader_state, None
        if pending is not None:
            loader.load_state_dict(pending)
        return loader

    def trained_batches(self, trainer) -> Callable[[], int | None] | None:
        """For a stateful loader (streaming shards): a function giving the batches of the
        current epoch trained on, or None at an epoch's end; None without a trainer."""
        if trainer is None or not hasattr(trainer, "fit_loop"):
            return None

        def count() -> int | None:
            epoch, done = position(trainer)
            return None if epoch > trainer.current_epoch else done

        return count

    def load_state_dict(self, state: dict) -> None:
        if not state:  # a checkpoint written before this was saved
            return
        self.seed = state["seed"]
        self.resume = state
        self.loader_state = state.get("loader")
        set_rng_states(state["rng"])
