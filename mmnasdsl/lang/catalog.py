"""What the language knows of ops and heads: names, needs, option schemas, without torch.

The language is the lowest stage of the package; ops and heads (which build torch
modules) sit above it, so the checker cannot import them. It takes a `Catalog` instead:
the mapping of op names to what each op needs besides its stream, and of head names to
their option schema and the input kinds they read. The package facade
(`mmnasdsl.catalog()`) builds it from the registries of `mmnasdsl.ops` and
`mmnasdsl.heads`, whose entries are torch-free descriptors, so `mmnasdsl check` never
loads torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from mmnasdsl.lang.spec import Spec


class OpInfo(Protocol):
    """An op as the language sees it: what it reads besides its own stream."""

    needs: ClassVar[tuple[str, ...]]  # a subset of ("guide", "relations")


class HeadInfo(Protocol):
    """A head as the language sees it: its option schema and the input kinds it reads."""

    Options: ClassVar[type[BaseModel]]
    requires: ClassVar[tuple[str, ...]]


@dataclass(frozen=True)
class Catalog:
    """The ops and heads a spec may name (registries, or plain dicts in tests); `fusion`:
    the two-input fusion ops of BM-NAS cells (`ops.fusion`)."""

    ops: Mapping[str, Any]
    heads: Mapping[str, Any]
    fusion: Mapping[str, Any] = field(default_factory=dict)

    def spec_needs(self, spec: Spec) -> frozenset[str]:
        """Everything some candidate op of the spec reads besides its stream: the one
        answer to "does this network need relation features / a guide"."""
        return self.needs(op for b in spec.blocks() for op in b.choices)

    def needs(self, ops: Iterable[str]) -> frozenset[str]:
        """Everything the given ops read besides their stream ("guide", "relations")."""
        out: set[str] = set()
        for op in ops:
            if op in self.ops:
                out.update(getattr(self.ops[op], "needs", ()))
        return frozenset(out)
