"""Random search, the ablation's baseline (MMnas Table 2, "random" rows).

Architectures are drawn uniformly with a seeded generator. Standalone, `RandomSearcher`
only proposes (the ablation trains the samples from scratch); under the search driver it
is random search with weight sharing (Li & Talwalkar, 2019): W trains on uniform paths
and each epoch one fresh random architecture is scored on D_a; the best scored one wins.
"""

from __future__ import annotations

from typing import Any

import torch

from mmnasdsl.compile.supernet import Route
from mmnasdsl.search.base import Searcher, register_searcher
from mmnasdsl.search.space import Arch, uniform_arch


@register_searcher("random")
class RandomSearcher(Searcher):
    """Uniform proposals; keeps the best-rewarded candidate."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scored: list[tuple[float, Arch]] = []

    def w_routes(self, generator: torch.Generator, warmup: bool = True) -> list[Route]:
        return self.uniform_routes(generator)

    def candidate(self, generator: torch.Generator) -> Arch:
        return self.uniform(generator)

    def feedback(self, arch: Arch, reward: float) -> None:
        self.scored.append((reward, list(arch)))

    def best(self) -> Arch:
        if not self.scored:
            return [0] * len(self.space.sizes)
        return max(self.scored, key=lambda s: s[0])[1]  # first of equals: earliest

    def state_dict(self) -> dict[str, Any]:
        return {"scored": [[r, a] for r, a in self.scored]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scored = [(float(r), [int(i) for i in a]) for r, a in state["scored"]]


def sample_architectures(sizes: list[int], n: int, seed: int) -> list[Arch]:
    """`n` uniform architectures over blocks with `sizes` candidates (seeded): the ablation's
    random nets, without building a supernet."""
    gen = torch.Generator().manual_seed(seed)
    return [uniform_arch(sizes, gen) for _ in range(n)]
