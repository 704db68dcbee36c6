"""Registries: a dict from a config name to the function that builds it, filled by a
decorator where the function is defined (backbones, data sets)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def registrar(table: dict[str, F], kind: str) -> Callable[[str], Callable[[F], F]]:
    """``register(name)``: a decorator that files a function in ``table`` under ``name``.
    A name filed twice is a programming error (``kind`` names the table in its message)."""

    def register(name: str) -> Callable[[F], F]:
        def decorator(function: F) -> F:
            if name in table:
                raise ValueError(f"{kind} {name!r} is registered twice")
            table[name] = function
            return function

        return decorator

    return register
