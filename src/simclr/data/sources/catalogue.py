"""The data-set registry and the one way to call a loader.

A loader ``(root, image_size, download=..., **options) -> LabelledSplits`` is registered under
the ``data.name`` that chooses it; its own options come from ``data.options``. An option the
loader does not take is refused, naming it, before anything is read.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from simclr.data.containers import LabelledSplits
from simclr.errors import ConfigError
from simclr.registry import Registry

DatasetLoader = Callable[..., LabelledSplits]
DATASETS: Registry[DatasetLoader] = Registry("data set", "data.name")

# What the DataModule passes to every loader; the rest are the loader's data.options.
COMMON_ARGUMENTS = ("root", "image_size", "download")


def loader_options(name: str) -> list[str]:
    """The ``data.options`` that data set ``name``'s loader takes."""
    parameters = inspect.signature(DATASETS[name]).parameters
    return [p for p in parameters if p not in COMMON_ARGUMENTS]


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
    return DATASETS[name](root, image_size, download=download, **options)
