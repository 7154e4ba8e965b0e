"""The searcher interface: propose architectures, take feedback (PyGlove's shape).

A search space is a supernet's block list (`spec.blocks()` order); an architecture is one
candidate index per block. The driver (`mmnasdsl.search.oneshot.run_search`) trains the
shared weights W on architectures the searcher proposes, asks it for a candidate at the
end of every epoch, reports the candidate's metric on D_a back, and writes the searcher's
`best()` as a concrete spec. A gradient-based searcher (MMnas) also learns from batches
(`learn`); a black-box one (random search; an evolutionary one) learns from `feedback` only.
BM-NAS, next, is another `Searcher` over another kind of space.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmnasdsl.compile.network import Supernet
from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.settings import SearchSettings

Arch = list[int]


class Searcher(ABC):
    """Proposes the architecture of every W step and picks the result of a search."""

    name: ClassVar[str] = ""
    learns_from_batches: ClassVar[bool] = False  # True: `learn` runs every u W steps

    def __init__(self, supernet: Supernet, settings: SearchSettings, seed: int) -> None:
        self.supernet, self.settings, self.seed = supernet, settings, seed
        self.sizes = [len(p) for p in supernet.probabilities()]

    def uniform(self, generator: torch.Generator) -> Arch:
        """One op per block, uniformly (Algorithm 1's warm-up)."""
        return [int(torch.randint(n, (1,), generator=generator)) for n in self.sizes]

    @abstractmethod
    def propose(self, generator: torch.Generator, warmup: bool) -> Arch:
        """The architecture of the next W step (uniform during warm-up)."""

    @abstractmethod
    def candidate(self, generator: torch.Generator) -> Arch:
        """The architecture to evaluate on D_a at the end of an epoch."""

    def feedback(self, arch: Arch, reward: float) -> None:  # noqa: B027 (optional hook)
        """The candidate's D_a metric (higher is better)."""

    @abstractmethod
    def best(self) -> Arch:
        """The search's current answer, written as arch.mmnas."""

    def learn(self, net: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> float:
        """One update of the searcher's own parameters on a D_a batch; returns the loss."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what `state_dict` returned (a resumed search)."""


SEARCHERS: Registry[type[Searcher]] = Registry("searcher")


def register_searcher(name: str) -> Any:
    """Class decorator: make a searcher selectable with `mmnasdsl search --searcher NAME`."""

    def deco(cls: type[Searcher]) -> type[Searcher]:
        cls.name = name
        return SEARCHERS.register(name)(cls)

    return deco
