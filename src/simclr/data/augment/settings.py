"""``data.augment``: the options of every operation (:mod:`simclr.data.augment.ops`) and of the
pipeline, with their defaults and rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from simclr.data.augment.ops import OPERATIONS, Operation
from simclr.data.augment.ops.base import Option, option_problems
from simclr.rules import state

# uint8: on a CPU, the steps after the crop run as PIL's uint8 operations, each rounding to
# 256 levels (photographs have them); float32: as float tensor operations, which keep images of
# few grey levels (the upsampled 17-level digits) from coarsening. On an accelerator the
# batched pipeline computes in float32 either way.
PIXEL_DTYPES = ("float32", "uint8")
PIPELINE_OPTIONS = {
    "pixel_dtype": Option("float32", lambda v: v in PIXEL_DTYPES, " or ".join(PIXEL_DTYPES)),
}


def _all_options() -> dict[str, Option]:
    options = dict(PIPELINE_OPTIONS)
    for operation in OPERATIONS:
        options.update(operation.options)
    return options


OPTIONS = _all_options()


class AugmentSettings:
    """The settings of SimCLR's augmentation (``data.augment``), for both pipelines: one
    attribute per option of every operation (its default where not given). An unknown name
    is a TypeError; lists become tuples."""

    def __init__(self, **augment):
        unknown = sorted(set(augment) - set(OPTIONS))
        if unknown:
            raise TypeError(f"unknown augmentation options {unknown}; known: {sorted(OPTIONS)}")
        for name, option in OPTIONS.items():
            value = augment.get(name, option.default)
            if isinstance(value, Sequence) and not isinstance(value, str):
                value = tuple(value)
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("AugmentSettings are frozen")

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in OPTIONS}

    def __eq__(self, other) -> bool:
        return isinstance(other, AugmentSettings) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.as_dict().items()))

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items())
        return f"AugmentSettings({values})"


def augment_problems(augment: Mapping) -> list[str]:
    """One line per value of ``augment`` (``data.augment``) that breaks its rule, each
    operation checking its own options."""
    problems = option_problems(PIPELINE_OPTIONS, augment)
    for operation in OPERATIONS:
        problems += operation.problems(augment)
    return problems


def build_operations(settings: AugmentSettings, image_size: int) -> list[Operation]:
    """Every operation, set up for ``image_size`` views, in the order the pipeline applies
    them."""
    return [operation(settings, image_size) for operation in OPERATIONS]


class AugmentOptions:
    """The config check of ``data.augment``: each operation checks its own options."""

    key = "data.augment"

    def problems(self, augment: Mapping) -> list[str]:
        return augment_problems(augment)

    def problem(self, augment: Mapping) -> str | None:
        return "; ".join(self.problems(augment)) or None


AUGMENT_OPTIONS = state(AugmentOptions())
