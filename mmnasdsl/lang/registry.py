"""One small registry shape for ops, heads and searchers (timm's `@register_model` idea).

`register` raises on a duplicate name; `get` raises with a did-you-mean; `names` feeds the
checker, the CLI, the renderer and the tests that parametrise over every entry.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    """` (did you mean 'X'?)` for the closest candidate, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    if not close:
        close = [c for c in candidates if c.lower() == name.lower()]
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    """Name -> entry, filled by decorating classes in the modules that define them."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = entry
            return entry

        return deco

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
