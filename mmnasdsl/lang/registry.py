"""One small registry shape for ops, heads, searchers and space kinds (timm's `@register_model`).

`register` raises on a duplicate name; `get` raises with a did-you-mean; `names` feeds the
checker, the CLI, the renderer and the tests that parametrise over every entry. A registry
is a read-only mapping, so the language can take one as its catalogue of names.

Entries from other packages arrive through entry points: a registry made with
`group="mmnasdsl.ops"` loads every entry point of that group the first time it is read.
An entry point may name a module (importing it registers its entries, with the
decorator) or an object (registered under the entry point's name).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("mmnasdsl")


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    """` (did you mean 'X'?)` for the closest candidate, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    if not close:
        close = [c for c in candidates if c.lower() == name.lower()]
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Mapping[str, T], Generic[T]):
    """Name -> entry, filled by decorating classes in the modules that define them."""

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group  # entry-point group of plug-ins, loaded on first read
        self._entries: dict[str, T] = {}
        self._plugins_loaded = group is None

    def register(self, name: str) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = entry
            return entry

        return deco

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:  # type: ignore[override]
        entries = self._loaded()
        if name not in entries:
            raise KeyError(f"unknown {self.kind} '{name}'{did_you_mean(name, list(entries))}")
        return entries[name]

    def names(self) -> list[str]:
        return list(self._loaded())

    def __getitem__(self, name: str) -> T:
        return self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._loaded()))

    def __len__(self) -> int:
        return len(self._loaded())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def _loaded(self) -> dict[str, T]:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            self.load_plugins()
        return self._entries

    def load_plugins(self) -> None:
        """Import the entry points of `group`; a broken plug-in is logged, not fatal."""
        assert self.group is not None
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a third-party package: report and go on
                log.warning("cannot load %s plug-in %r (%s): %s", self.kind, ep.name, ep.value, exc)
                continue
            if ep.name not in self._entries and not _is_module(obj):
                self._entries[ep.name] = obj


def _is_module(obj: object) -> bool:
    return type(obj).__name__ == "module"
