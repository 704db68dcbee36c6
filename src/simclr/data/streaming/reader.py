"""Reading prepared shards: a split as a map-style data set (evaluation, pictures), and the
training stream, sharded across DDP ranks and loader workers by litdata, whose position goes
into Lightning's checkpoints.

- :class:`ShardSplit`: ``(PIL image, label)`` by index, read from the chunks at random; the
  validation and test splits are read this way, and pre-training's pictures.
- :class:`ShardViews`: litdata's ``StreamingDataset`` over a split (or a subset of it),
  shuffled by chunk and within chunks from ``(seed, epoch)``; each rank, and each worker of
  a rank, reads only its chunks. The random views of image ``i`` in epoch ``e`` are drawn
  from ``(seed, e, i)`` (:func:`~simclr.data.resumable.seeded_transform`), as for every
  other data set, so a resumed epoch draws the views the uninterrupted one would have.
- :class:`ResumableStreamingLoader`: litdata's ``StreamingDataLoader``, a stateful loader.
  The DataModule's ``state_dict`` keeps its state in every checkpoint, beside the seed
  (:meth:`~simclr.data.resumable.DataStream.attach`), and gives it back to the loader of the
  resumed run, which litdata then starts where the checkpoint was taken. Lightning fetches a
  batch ahead of the one it trains on, so the loader's own count runs ahead of the
  checkpoint; the state it saves is rewound to the batches trained on.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Callable

import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from simclr.data.resumable import seeded_transform
from simclr.data.streaming import require_litdata

require_litdata()

from litdata import StreamingDataLoader, StreamingDataset  # noqa: E402


def decode(sample: dict) -> Image.Image:
    """A stored sample's JPEG as an RGB PIL image."""
    with Image.open(io.BytesIO(bytes(sample["image"]))) as image:
        return image.convert("RGB")


class ShardSplit(Dataset):
    """One split of prepared shards at ``location`` (a path or URI), ``(PIL, label)`` by index.

    ``labels`` come from the manifest, so a class-balanced subset is drawn without reading an
    image. litdata's reader is made in the process that reads (each loader worker its own).
    ``options``: litdata's ``cache_dir``, ``max_cache_size`` and ``storage_options``.
    """

    def __init__(self, location: str, labels: list[int], options: dict):
        self.location = location
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.options = options
        self._reader: tuple[int, StreamingDataset] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def reader(self) -> StreamingDataset:
        if self._reader is None or self._reader[0] != os.getpid():
            self._reader = (os.getpid(), StreamingDataset(self.location, **self.options))
        return self._reader[1]

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        sample = self.reader()[int(index)]
        return decode(sample), int(sample["label"])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None}  # a worker opens its own reader

    def training_loader(
        self,
        transform: Callable,
        seed: int,
        batch_size: int,
        loader_options: dict,
        trained_batches: Callable[[], int | None] | None = None,
        indices: list[int] | None = None,
    ) -> ResumableStreamingLoader:
        """The training stream over this split (``indices``: only those images), each image
        through ``transform``, in batches of ``batch_size`` per rank; see the module's
        docstring. ``loader_options``: ``num_workers``, ``pin_memory``, ``prefetch_factor``,
        ``drop_last``."""
        dataset = ShardViews(
            self.location, transform, seed, loader_options["drop_last"], self.options
        )
        if indices is not None:
            dataset = dataset.subset(indices)
        workers = loader_options["num_workers"]
        return ResumableStreamingLoader(
            dataset,
            trained_batches,
            batch_size=batch_size,
            num_workers=workers,
            pin_memory=loader_options["pin_memory"],
            prefetch_factor=loader_options["prefetch_factor"] if workers > 0 else None,
            # Each epoch's workers get the dataset with the epoch the loader set; persistent
            # ones would keep their own count, which an epoch cut short (limit_train_batches)
            # leaves behind.
            persistent_workers=False,
            collate_fn=default_collate,
        )


class ShardViews(StreamingDataset):
    """litdata's stream of a split, yielding ``(transform(image), label)``; the transform's
    randomness is drawn from ``(seed, epoch, index)``, ``index`` the image's position in the
    split (kept in the sample, so the same under a subset) and ``epoch`` litdata's, which
    orders the epoch too. litdata drops the last images of an epoch that would not fill a
    batch on every rank and worker (``drop_last``) or, without it, serves a smaller batch."""

    def __init__(self, location: str, transform, seed: int, drop_last: bool, options: dict):
        super().__init__(location, shuffle=True, seed=seed, drop_last=drop_last, **options)
        self.views, self.view_seed = transform, seed

    def __getitem__(self, index):
        sample = super().__getitem__(index)
        image = seeded_transform(
            self.views, decode(sample), self.view_seed, self.current_epoch, int(sample["index"])
        )
        return image, int(sample["label"])


class ResumableStreamingLoader(StreamingDataLoader):
    """litdata's loader, whose ``state_dict`` (kept in every checkpoint by the DataModule's
    state, and by Lightning's own for stateful loaders) counts the batches trained on, not
    those fetched.

    ``trained_batches()`` gives the batches of the current epoch trained on, or None at an
    epoch's end (the saved state then starts the next epoch afresh); without it (no trainer)
    the state is litdata's own.
    """

    def __init__(self, dataset, trained_batches: Callable[[], int | None] | None, **kwargs):
        super().__init__(dataset, **kwargs)
        self.trained_batches = trained_batches

    def __iter__(self):
        for number, batch in enumerate(super().__iter__()):
            if number == 0:
                # litdata replays the loaded position in every iteration until one runs to its
                # end; Lightning stops a resumed epoch at its batch count, before the end, so
                # the next epoch would replay it: once the resumed epoch is being read, the
                # next iteration is a new epoch.
                self.restore = False
            yield batch

    def load_state_dict(self, state: dict) -> None:
        # litdata advances its worker cycle by the saved position; a fresh cycle makes a
        # second load of the same state (Lightning's own restore of stateful loaders, where
        # it reaches the loader) land on the same worker.
        self._worker_idx = None
        super().load_state_dict(state)

    def state_dict(self) -> dict:
        state = copy.deepcopy(super().state_dict())
        if self.trained_batches is None:
            return state
        done = self.trained_batches()
        samples = 0 if done is None else done * self.batch_size
        if samples > state["num_samples_yielded"]:
            return state
        world_size = state["dataset"]["world_size"]
        state["num_samples_yielded"] = state["dataset"]["num_samples_yielded"] = samples
        state["dataset"]["sample_in_epoch"] = samples * world_size
        # The worker that made the last batch trained on: batches come from the workers in
        # turn, and a restored loader asks the next one first.
        state["latest_worker_idx"] = ((done or 0) - 1) % max(1, self.num_workers)
        return state
