"""The searcher interface: propose how each step runs, learn, answer (PyGlove's shape).

A searcher owns what is searched about a `SearchSpace`: its architecture parameters (if
any), how a W step runs (`w_routes`: one sampled path, a uniform one, a weighted mixture
of all candidates), how it learns on a D_a batch (`learn`, for gradient searchers), what
to score at the end of an epoch (`candidate`, with the score coming back through
`feedback`), and its answer (`best`). The driver (`search.driver`) trains the supernet's
shared weights W on the routes it is given and writes `best()` as a concrete spec; the
searcher never sees the network, only routes and losses.

Adding a searcher is one file with a class decorated `@register_searcher("name")`, or a
class named by an entry point of the group `mmnasdsl.searchers`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from mmnasdsl.compile.supernet import Leg, Route
from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.settings import SearchSettings
from mmnasdsl.search.space import Arch, SearchSpace, uniform_arch


@dataclass
class ThetaBatch:
    """A D_a batch as a searcher sees it: the loss of the network under given routes, and
    how to average gradients over the processes of a distributed run."""

    loss: Callable[[Sequence[Route]], Tensor]
    reduce: Callable[[list[Tensor]], None] = field(default=lambda grads: None)


class Searcher(ABC):
    """Proposes the routes of every W step and picks the result of a search."""

    name: ClassVar[str] = ""
    learns: ClassVar[bool] = False  # True: `learn` runs every u W steps after warm-up
    picks: ClassVar[str] = "best-scored"  # what `best` is, for the arch.mmnas header

    def __init__(self, space: SearchSpace, settings: SearchSettings, seed: int) -> None:
        self.space, self.settings, self.seed = space, settings, seed

    def uniform(self, generator: torch.Generator) -> Arch:
        """One candidate per point, uniformly."""
        return uniform_arch(self.space.sizes, generator)

    def uniform_routes(self, generator: torch.Generator) -> list[Route]:
        """Algorithm 1's warm-up: one uniformly drawn path."""
        return [(Leg(i),) for i in self.uniform(generator)]

    @abstractmethod
    def w_routes(self, generator: torch.Generator, warmup: bool) -> list[Route]:
        """What the next W step computes, one route per choice point."""

    @abstractmethod
    def candidate(self, generator: torch.Generator) -> Arch:
        """The architecture to score on D_a at the end of an epoch."""

    def epoch_start(self, epoch: int) -> None:  # noqa: B027 (optional hook)
        """An epoch begins (0-based, warm-up included): schedules move here."""

    def feedback(self, arch: Arch, reward: float) -> None:  # noqa: B027 (optional hook)
        """The candidate's D_a metric (higher is better)."""

    @abstractmethod
    def best(self) -> Arch:
        """The search's current answer, written as arch.mmnas."""

    def learn(self, batch: ThetaBatch, generator: torch.Generator) -> float:
        """One update of the searcher's own parameters on a D_a batch; returns the loss."""
        raise NotImplementedError

    def probabilities(self) -> list[list[float]]:
        """Per point, how likely each candidate is now (θ in history.json; uniform here)."""
        return [[1.0 / n] * n for n in self.space.sizes]

    def to(self, device: torch.device) -> Searcher:
        """Move the searcher's parameters to `device`."""
        return self

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what `state_dict` returned (a resumed search)."""


SEARCHERS: Registry[type[Searcher]] = Registry("searcher", group="mmnasdsl.searchers")


def register_searcher(name: str) -> Callable[[type[Searcher]], type[Searcher]]:
    """Class decorator: make a searcher selectable with `mmnasdsl search --searcher NAME`."""

    def deco(cls: type[Searcher]) -> type[Searcher]:
        cls.name = name
        return SEARCHERS.register(name)(cls)

    return deco
