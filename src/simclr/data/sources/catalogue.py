"""The data-set registry and the one way to call a loader.

A loader ``(source: Source, **options) -> LabelledSplits`` is registered under the
``data.name`` that chooses it. :class:`Source` holds what every loader is given (``data.root``,
``data.image_size``, ``data.download`` and ``data.options.split_seed``); the loader's own
options come from the rest of ``data.options``. An option the loader does not take is refused,
naming it, before anything is read.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from simclr.data.containers import LabelledSplits
from simclr.errors import ConfigError
from simclr.registry import Registry
from simclr.rules import KnownOptions, state

DatasetLoader = Callable[..., LabelledSplits]

# The one data.options entry every loader is given, inside its Source.
SPLIT_SEED = "split_seed"


def _options_rule(name: str, loader: DatasetLoader) -> list[KnownOptions]:
    """The config checks' rule of ``data.options`` for the data set ``name``: its loader's
    keyword arguments (after the Source) and the split seed."""
    options = (*list(inspect.signature(loader).parameters)[1:], SPLIT_SEED)
    return [KnownOptions("data.options", f"data set {name!r}", options)]


DATASETS: Registry[DatasetLoader] = state(
    Registry("data set", "data.name", entry_rules=_options_rule)
)


@dataclass(frozen=True)
class Source:
    """What every loader is given. ``root``: where its files are (or go, when downloaded);
    ``image_size``: the side of the images made in memory (loaders of files leave resizing to
    the transforms); ``download``: whether missing files may be fetched; ``split_seed``: the
    seed of every split the loader draws (the splits stay fixed when the run's seed changes)."""

    root: str
    image_size: int
    download: bool = False
    split_seed: int = 0


def loader_options(name: str) -> list[str]:
    """The ``data.options`` that data set ``name``'s loader takes."""
    parameters = list(inspect.signature(DATASETS[name]).parameters)[1:]
    return [*parameters, SPLIT_SEED]


def load_dataset(
    name: str, root: str, image_size: int, download: bool = False, options: dict | None = None
) -> LabelledSplits:
    """The raw splits of data set ``name``; an unknown name or option is a ConfigError."""
    options = dict(options or {})
    valid = loader_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"data.options.{unknown[0]}: data set {name!r} takes no option "
            f"{', '.join(map(repr, unknown))}; its options: {', '.join(valid) or 'none'}"
        )
    source = Source(root, image_size, download, options.pop(SPLIT_SEED, 0))
    return DATASETS[name](source, **options)
