"""The augmentation operations, one module each; every module in this folder is imported here,
so adding an operation is adding its module (its class registers itself: see
:class:`~simclr.data.augment.ops.base.Operation`)."""

from __future__ import annotations

import importlib
import pkgutil

from simclr.data.augment.ops.base import REGISTERED, Operation

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

# Every operation class, in the order the pipeline applies them.
OPERATIONS: list[type[Operation]] = sorted(REGISTERED, key=lambda op: op.position)

__all__ = ["OPERATIONS", "Operation"]
