"""Registries: a table from a config name to what it builds, filled where each entry is
defined (``@BACKBONES.register("resnet18")``). Everything chosen by name in a config is
chosen through one: backbones, data sets, optimisers and fine-tuning modes.

An entry may keep former names as aliases, so that checkpoints and exported encoders that
stored an old name still resolve. An unknown name is a :class:`~simclr.errors.ConfigError`
naming the config key and listing the valid names, the same message wherever it is met.

An entry may also state the rules of its own options (``rules=[WIDE_RESNET_WIDTH]``), and a
registry may derive some for every entry (``entry_rules``: the options a builder's signature
takes); the config checks (:mod:`simclr.config.checks`) apply them where the config names
that entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from simclr.errors import ConfigError
from simclr.rules import Check

T = TypeVar("T")


class Registry(Generic[T]):
    """Names (with their aliases) -> entries.

    Args:
        kind: what the entries are, for messages (``"backbone"``).
        key: the config key whose value names an entry (``"backbone.name"``).
        entry_rules: ``(name, entry) -> rules`` that every entry keeps besides its own.
    """

    def __init__(
        self,
        kind: str,
        key: str,
        entry_rules: Callable[[str, T], Iterable[Check]] | None = None,
    ):
        self.kind = kind
        self.key = key
        self._entry_rules = entry_rules
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._rules: dict[str, tuple[Check, ...]] = {}

    def register(self, name: str, *aliases: str, rules: Iterable[Check] = ()) -> Callable[[T], T]:
        """A decorator that files its function or class under ``name`` (and ``aliases``), with
        the ``rules`` of the options that entry takes. A name filed twice is a programming
        error."""

        def decorator(entry: T) -> T:
            for key in (name, *aliases):
                if key in self:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[name] = entry
            self._aliases.update(dict.fromkeys(aliases, name))
            derived = self._entry_rules(name, entry) if self._entry_rules else ()
            self._rules[name] = (*derived, *rules)
            return entry

        return decorator

    def names(self) -> list[str]:
        """The registered names, sorted; aliases are not listed."""
        return sorted(self._entries)

    def problem(self, name) -> str | None:
        """What is wrong with ``name`` as this registry's config value, or None."""
        if name in self:
            return None
        return f"{self.key}={name!r}: must be one of: {', '.join(self.names())}"

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or its alias; :class:`ConfigError` if unknown."""
        problem = self.problem(name)
        if problem:
            raise ConfigError(problem)
        return self._aliases.get(name, name)

    def rules_of(self, name: str) -> tuple[Check, ...]:
        """The rules the entry ``name`` (or its alias) stated for its options."""
        return self._rules[self.canonical(name)]

    def __getitem__(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
