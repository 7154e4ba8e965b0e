"""Space kinds: each kind of search space has its own grammar, parse tree -> AST, and checker.

A spec says its kind in a first statement, `space NAME` (none: `mmnas`); `parse` reads that
word before anything else and parses the rest with the kind's grammar
(`grammars/<file>.lark`), so a kind's keywords are reserved in its own specs only. What a
kind compiles to, how it is searched and drawn is registered by those stages under the
same name (`compile.build`, `search.space`, `render.diagram`).

A kind is registered with `register_kind(SpaceKind(...))` from its language module
(`lang/mmnas.py`, `lang/bmnas.py` for the built-in kinds), or by an entry point of the
group `mmnasdsl.kinds`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.spec import DEFAULT_KIND, Span, Spec

KINDS: Registry[SpaceKind] = Registry("space kind", group="mmnasdsl.kinds")
BUILTIN = ("mmnasdsl.lang.mmnas", "mmnasdsl.lang.bmnas")  # they register the built-in kinds

# Blank lines and `#` comments, then `space NAME`: the only text read before the grammar.
_DECLARED = re.compile(r"(?:\s++|#[^\n]*+)*+space\s+([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class SpaceKind:
    """The language side of a space kind."""

    name: str
    grammar: str  # file name in grammars/
    transformer: type  # a lark Transformer: parse tree -> tuple of statements
    checker: Callable[..., Any]  # (spec, catalog) -> object with run() -> list[Diagnostic]
    doc: str = ""
    spec_class: type[Spec] = Spec  # what `parse` returns: a kind may add its own lookups


def register_kind(kind: SpaceKind) -> SpaceKind:
    KINDS.register(kind.name)(kind)
    return kind


def get_kind(name: str) -> SpaceKind:
    """The kind `name`; KeyError with a did-you-mean otherwise."""
    load_builtin()
    return KINDS.get(name)


def kind_names() -> list[str]:
    load_builtin()
    return KINDS.names()


def load_builtin() -> None:
    import importlib

    for module in BUILTIN:
        importlib.import_module(module)


def declared_kind(text: str) -> tuple[str, Span | None]:
    """The kind a spec's text declares (`space NAME` first), with the span of NAME."""
    m = _DECLARED.match(text)
    if m is None:
        return DEFAULT_KIND, None
    line = text.count("\n", 0, m.start(1)) + 1
    column = m.start(1) - (text.rfind("\n", 0, m.start(1)) + 1) + 1
    span = Span(line=line, column=column, end_line=line, end_column=column + len(m.group(1)))
    return m.group(1), span
