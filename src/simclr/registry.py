"""Registries: a table from a config name to what it builds, filled where each entry is
defined (``@BACKBONES.register("resnet18")``). Everything chosen by name in a config is
chosen through one: backbones, data sets, optimisers and fine-tuning modes.

An entry may keep former names as aliases, so that checkpoints and exported encoders that
stored an old name still resolve. An unknown name is a :class:`~simclr.errors.ConfigError`
naming the config key and listing the valid names, the same message wherever it is met.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from simclr.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names (with their aliases) -> entries.

    Args:
        kind: what the entries are, for messages (``"backbone"``).
        key: the config key whose value names an entry (``"backbone.name"``).
    """

    def __init__(self, kind: str, key: str):
        self.kind = kind
        self.key = key
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """A decorator that files its function or class under ``name`` (and ``aliases``).
        A name filed twice is a programming error."""

        def decorator(entry: T) -> T:
            for key in (name, *aliases):
                if key in self:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[name] = entry
            self._aliases.update(dict.fromkeys(aliases, name))
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

    def __getitem__(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
