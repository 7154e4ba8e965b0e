"""Search spaces as values: the choice points of a spec and their candidates.

A `SearchSpace` is what a searcher searches: its kind, and per choice point a name and the
candidate names, in the one block order of the project (`spec.blocks()`). An
architecture (`Arch`) is one candidate index per choice point. The space is built from a
checked spec by its kind (`space_of`); the supernet that runs it is built separately
(`mmnasdsl.compile`), so a searcher never sees a network, only routes (`compile.supernet`)
and losses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.spec import Spec

Arch = list[int]


def uniform_arch(sizes: Sequence[int], generator: Any) -> Arch:
    """One candidate per point, uniformly: Algorithm 1's warm-up paths, random search and
    the ablation's random nets all draw through here (a torch.Generator)."""
    import torch

    return [int(torch.randint(n, (1,), generator=generator)) for n in sizes]


@dataclass(frozen=True)
class ChoicePoint:
    """One place where the architecture chooses: its name and its candidates."""

    name: str
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class SearchSpace:
    """The choice points of a spec, in block order."""

    kind: str
    points: tuple[ChoicePoint, ...]

    @property
    def sizes(self) -> list[int]:
        return [len(p.candidates) for p in self.points]

    @property
    def size(self) -> int:
        return math.prod(self.sizes)

    def names(self, arch: Sequence[int]) -> list[str]:
        """The candidate chosen at each point."""
        return [p.candidates[int(i)] for p, i in zip(self.points, arch, strict=True)]

    def index(self, names: Sequence[str]) -> Arch:
        """The architecture that picks these candidates (one name per point)."""
        return [p.candidates.index(n) for p, n in zip(self.points, names, strict=True)]


class SpaceKindSearch:
    """What the search needs of a space kind: its choice points, the architecture that the
    search's probabilities stand for, how an architecture reads in history.json, and the
    concrete spec it writes back."""

    def space(self, spec: Spec) -> SearchSpace:
        raise NotImplementedError

    def derive(self, space: SearchSpace, probabilities: Sequence[Sequence[float]]) -> Arch:
        """The architecture of these per-point probabilities (a gradient searcher's answer):
        by default the most likely candidate of every point (ties: the first). A kind whose
        points are not independent choices derives otherwise (BM-NAS picks pairs)."""
        return [max(range(len(row)), key=lambda k, r=row: r[k]) for row in probabilities]

    def describe(self, spec: Spec, space: SearchSpace, arch: Sequence[int]) -> Any:
        """The architecture as history.json's `arch` (JSON-able)."""
        return space.names(arch)

    def brief(self, described: Any) -> str:
        """A `describe`d architecture on one line (the search log's epoch summary)."""
        parts = described.values() if isinstance(described, dict) else [described]
        return " | ".join(" ".join(map(str, ops)) for ops in parts)

    def points_record(self, spec: Spec, space: SearchSpace) -> list[dict[str, Any]]:
        """history.json's `blocks`: one entry per choice point."""
        return [{"name": p.name, "choices": list(p.candidates)} for p in space.points]

    def concrete(self, spec: Spec, space: SearchSpace, arch: Sequence[int]) -> Spec:
        """The spec with every choice point fixed to `arch` (the searcher's output)."""
        raise NotImplementedError


SPACES: Registry[SpaceKindSearch] = Registry("space kind")


def space_of(spec: Spec) -> SearchSpace:
    """The search space of a checked spec, by its kind."""
    return SPACES.get(spec.kind).space(spec)


def derive(space: SearchSpace, probabilities: Sequence[Sequence[float]]) -> Arch:
    """The architecture that per-point probabilities stand for, by the space's kind."""
    return SPACES.get(space.kind).derive(space, probabilities)


class MMnasSearch(SpaceKindSearch):
    """MMnas: one choice point per block (`encoder.3`, ...); a block with one op is a point
    with one candidate, so θ rows line up with the blocks."""

    def space(self, spec: Spec) -> SearchSpace:
        points = tuple(ChoicePoint(f"{b.stack}.{b.index}", b.choices) for b in spec.blocks())
        return SearchSpace("mmnas", points)

    def describe(self, spec: Spec, space: SearchSpace, arch: Sequence[int]) -> dict[str, list[str]]:
        """{"encoder": [op, ...], "decoder": [...]}."""
        out: dict[str, list[str]] = {}
        for block, name in zip(spec.blocks(), space.names(arch), strict=True):
            out.setdefault(block.stack, []).append(name)
        return out

    def points_record(self, spec: Spec, space: SearchSpace) -> list[dict[str, Any]]:
        return [
            {"stack": b.stack, "index": b.index, "choices": list(b.choices)} for b in spec.blocks()
        ]

    def concrete(self, spec: Spec, space: SearchSpace, arch: Sequence[int]) -> Spec:
        return spec.replace_stacks(self.describe(spec, space, arch))


SPACES.register("mmnas")(MMnasSearch())
