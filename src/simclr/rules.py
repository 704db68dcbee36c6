"""What each config value must be, each rule written once: the config checks run before any
work (:mod:`simclr.config.checks`) and the classes and functions that take the value (the
pre-training module, the loss, the transforms, the optimisers ...) apply the same rule, so a
value is refused with the same message wherever it is met:
``model.num_views=1: must be an integer >= 2``.

A component states the rules of its own options where it defines them, and the config checks
ask for them here, so adding a component touches one place:

- a rule of a key that exists whatever the config chose (``callbacks.pictures.size``):
  ``MAP_SIZE = state(Rule(...))``; so is a registry whose key names its entry
  (``BACKBONES = state(Registry("backbone", "backbone.name"))``);
- a rule that holds only for one entry of a registry (the wide ResNet-50's ``backbone.width``):
  ``BACKBONES.register("resnet50_w1", rules=[WIDE_RESNET_WIDTH])``, checked where the config
  names that entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Protocol, TypeVar

from simclr.errors import ConfigError


def is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def is_integer(value) -> bool:
    return is_number(value) and int(value) == value


def integer_at_least(low: int, or_none: bool = False) -> Callable[[object], bool]:
    """``ok`` for an integer >= ``low`` (and None where ``or_none``)."""
    return lambda v: (or_none and v is None) or (is_integer(v) and v >= low)


def positive(value) -> bool:
    return is_number(value) and value > 0


def non_negative(value) -> bool:
    return is_number(value) and value >= 0


def fraction(value) -> bool:
    """In (0, 1]: a share of something that cannot be empty."""
    return is_number(value) and 0 < value <= 1


def probability(value) -> bool:
    return is_number(value) and 0 <= value <= 1


@dataclass(frozen=True)
class Rule:
    """A config value's rule: ``ok(value)``, and what is allowed, for the message."""

    key: str
    ok: Callable[[object], bool]
    allowed: str

    def problem(self, value, key: str | None = None) -> str | None:
        """``"<key>=<value>: must be <allowed>"`` if ``value`` breaks the rule, else None;
        ``key`` names the value where it lives elsewhere than :attr:`key`."""
        if self.ok(value):
            return None
        return f"{key or self.key}={value!r}: must be {self.allowed}"

    def check(self, value, key: str | None = None):
        """``value`` if it keeps the rule; else a :class:`ConfigError` with the problem."""
        problem = self.problem(value, key)
        if problem:
            raise ConfigError(problem)
        return value


@dataclass(frozen=True)
class KnownOptions:
    """The options ``owner`` takes, as the keys of the config node at ``key``: any other key is
    refused, before any work, where it would otherwise fail when the component is built."""

    key: str
    owner: str
    options: tuple[str, ...]

    def problem(self, node) -> str | None:
        """``"<key>.<option>: <owner> takes no option ..."`` for a key of ``node`` that is
        not one of :attr:`options`, else None."""
        unknown = sorted(set(node) - set(self.options)) if isinstance(node, Mapping) else []
        if not unknown:
            return None
        return (
            f"{self.key}.{unknown[0]}: {self.owner} takes no option "
            f"{', '.join(map(repr, unknown))}; its options: {', '.join(self.options) or 'none'}"
        )

    def check(self, node) -> None:
        problem = self.problem(node)
        if problem:
            raise ConfigError(problem)


@dataclass(frozen=True)
class Joint:
    """A rule of the option at :attr:`key` that also reads other options (:attr:`others`):
    ``find(value, **others)`` returns the problem or None, each other option passed by the
    last part of its key (None where null or absent). Checked where a config has :attr:`key`,
    null included; the class that takes the values calls ``find`` itself."""

    key: str
    others: tuple[str, ...]
    find: Callable[..., str | None]

    def problem(self, value, **others) -> str | None:
        return self.find(value, **others)


class Check(Protocol):
    """What the config checks apply to the value at :attr:`key`: a :class:`Rule`, a
    :class:`Joint` rule, or a :class:`~simclr.registry.Registry` (the value names one of its
    entries). A check of a whole node (``data.augment``) may also have ``problems(value) ->
    list[str]``, one line for each option that breaks its rule, which the config checks then
    use."""

    key: str

    def problem(self, value) -> str | None: ...


C = TypeVar("C", bound=Check)
_STATED: list[Check] = []


def state(check: C) -> C:
    """File ``check`` for the config checks, which apply it wherever a config has its key;
    returns ``check``, so a module states a rule where it defines it."""
    _STATED.append(check)
    return check


def stated() -> list[Check]:
    """Every check stated so far, in the order the modules stated them."""
    return list(_STATED)


TEMPERATURE = Rule("model.temperature", positive, "a number > 0 (0.1 to 0.5 is usual)")
NUM_VIEWS = Rule("model.num_views", integer_at_least(2), "an integer >= 2")
MICRO_BATCH_SIZE = Rule(
    "model.micro_batch_size", integer_at_least(1, or_none=True), "an integer >= 1, or null"
)
ACTIVATION_CHECKPOINTING = Rule(
    "model.activation_checkpointing",
    lambda v: v == "auto" or isinstance(v, bool),
    "auto, true or false",
)
LEARNING_RATE = Rule("optimizer.lr", positive, "a number > 0")
WEIGHT_DECAY = Rule("optimizer.weight_decay", non_negative, "a number >= 0")
# Any other learning rate (a monitor's, ...) and any number of epochs, wherever they live.
ANY_LEARNING_RATE = Rule("lr", non_negative, "a learning rate >= 0")
EPOCHS = Rule("scheduler.warmup_epochs", non_negative, "a number of epochs >= 0")
BATCH_SIZE = Rule("data.batch_size", integer_at_least(1), "an integer >= 1")
NUM_WORKERS = Rule(
    "data.num_workers", integer_at_least(0, or_none=True), "an integer >= 0, or null (automatic)"
)
EVAL_CROP_FRACTION = Rule("data.eval_crop_fraction", fraction, "in (0, 1]")
# How the pre-training views of image files are made (docs/datasets.md "Loading speed").
VIEW_PIPELINES = ("per_image", "crop_first", "device_decode")
VIEW_PIPELINE = Rule(
    "data.pipeline", lambda v: v in VIEW_PIPELINES, "one of " + ", ".join(VIEW_PIPELINES)
)
LABEL_FRACTION = Rule("label_fraction", fraction, "in (0, 1] (1 = every label)")


def batch_division_problem(batch_size: int, devices: int) -> str | None:
    """Why the global batch cannot be shared evenly among ``devices``, or None."""
    if devices < 1 or batch_size % devices == 0:
        return None
    return (
        f"data.batch_size={batch_size}: the global batch does not divide by the {devices} "
        f"devices (trainer.devices x trainer.num_nodes); choose a multiple of {devices}"
    )
