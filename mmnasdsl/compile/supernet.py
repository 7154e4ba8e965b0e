"""The one-shot supernet of a search space (paper §4): every candidate of every block.

A `Supernet` is a `Network` whose blocks are `MixedBlock`s. It holds no architecture
parameters and no sampling: what a block computes in a step is its *route*, set from
outside by the searcher (`mmnasdsl.search`), which owns α and its estimators:

- one leg `Leg(i)`: only candidate i runs (a W step on a sampled path; a trained net);
- several legs: out = Σ_legs weight · candidate(x), where a weight may be a tensor that
  carries the gradient to α (ProxylessNAS's binary gates, DARTS' softmax weights), and a
  leg with `grad=False` runs under `torch.no_grad()`: its value enters the sum (and so the
  gradient of its weight) but nothing flows back into its input or parameters.

So one mechanism runs a single path, ProxylessNAS's two or all candidates, and DARTS'
weighted mixture, and a new searcher needs no change here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmnasdsl.compile.network import Network
from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.lang.spec import Block
from mmnasdsl.ops import BlockContext, build_op


@dataclass(frozen=True)
class Leg:
    """One candidate in a block's route: its index, its weight (None = 1), and whether
    gradients flow through it (False: value only, computed without autograd)."""

    index: int
    weight: Tensor | float | None = None
    grad: bool = True


Route = tuple[Leg, ...]


class MixedBlock(nn.Module):
    """One searchable block: all candidate ops, and the route of the current step."""

    def __init__(self, ops: Sequence[str], settings: ModelSettings) -> None:
        super().__init__()
        self.names = tuple(ops)
        self.candidates = nn.ModuleList(build_op(op, settings) for op in ops)
        self.route: Route = (Leg(0),)

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:  # (B, n, d) -> (B, n, d)
        legs = self.route
        if len(legs) == 1 and legs[0].weight is None and legs[0].grad:
            return self.candidates[legs[0].index](x, ctx)
        out: Tensor | None = None
        for leg in legs:
            if leg.grad:
                o = self.candidates[leg.index](x, ctx)
            else:
                with torch.no_grad():
                    o = self.candidates[leg.index](x, ctx)
            term = o if leg.weight is None else leg.weight * o
            out = term if out is None else out + term
        assert out is not None, "a route has at least one leg"
        return out

    @property
    def chosen(self) -> int:
        """The leg that runs with gradient and the largest weight: the op of this step."""
        legs = [leg for leg in self.route if leg.grad] or list(self.route)
        return max(legs, key=lambda leg: _value(leg.weight)).index


def _value(weight: Tensor | float | None) -> float:
    if weight is None:
        return 1.0
    return float(weight.detach()) if isinstance(weight, Tensor) else float(weight)


class Supernet(Network):
    """The supernet of a searchable spec: one MixedBlock per block (single-op blocks too)."""

    def make_block(self, block: Block) -> nn.Module:
        return MixedBlock(block.choices, self.settings)

    def running_ops(self) -> list[nn.Module]:
        return [b.candidates[leg.index] for b in self.mixed for leg in b.route]

    def live_ops(self, indices: Sequence[int]) -> list[nn.Module]:
        """The candidates on legs with autograd (an idle leg computes its own, no_grad)."""
        live = []
        for i in indices:
            b = self.mixed[i]
            live.extend(b.candidates[leg.index] for leg in b.route if leg.grad)
        return live

    @property
    def mixed(self) -> list[MixedBlock]:
        return list(self.blocks)  # type: ignore[arg-type]

    @property
    def sizes(self) -> list[int]:
        """Candidates per block, in block order."""
        return [len(b.names) for b in self.mixed]

    def set_routes(self, routes: Sequence[Route]) -> None:
        """What every block computes in the next forward (one route per block)."""
        if len(routes) != len(self.mixed):
            raise ValueError(f"an architecture has {len(self.mixed)} blocks, got {len(routes)}")
        for b, route in zip(self.mixed, routes, strict=True):
            for leg in route:
                if not 0 <= int(leg.index) < len(b.names):
                    raise ValueError(f"choice {leg.index} out of range for a block of {b.names}")
            b.route = tuple(route)

    def set_arch(self, indices: Sequence[int]) -> None:
        """Run one path: candidate `indices[k]` in block k."""
        self.set_routes([(Leg(int(i)),) for i in indices])

    @property
    def arch(self) -> list[int]:
        """The op each block runs (or ran, in a mixed step: the weightiest live leg)."""
        return [b.chosen for b in self.mixed]

    def arch_names(self, indices: Sequence[int] | None = None) -> dict[str, list[str]]:
        """{"encoder": [op, ...], "decoder": [...]} for an architecture (default: the current)."""
        indices = self.arch if indices is None else indices
        out: dict[str, list[str]] = {}
        for spec_block, b, i in zip(self.block_specs, self.mixed, indices, strict=True):
            out.setdefault(spec_block.stack, []).append(b.names[int(i)])
        return out
