"""The op registry and the one interface every op shares (timm-style `@register_op`).

An op is an `nn.Module` built from `ModelSettings` whose `forward(x, ctx)` maps a
stream (B, n, d) to (B, n, d), residual and LayerNorm included. `needs` names the
extra inputs it reads from the `BlockContext` ("guide", "relations"); the checker uses
it to validate specs and the graph to draw guide/relation edges. `flops` gives the
forward cost per sample for `mmnasdsl info`, the graph and the benchmark.

Adding an op is one decorated class, importable before the spec is built:

    @register_op("Conv")
    class Conv(Op):
        def transform(self, x, ctx): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.ops._norm import make_norm

OPS: Registry[type[nn.Module]] = Registry("op")


def register_op(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make an op usable by `name` in a spec. Raises on a duplicate."""
    return OPS.register(name)


def get_op(name: str) -> type[nn.Module]:
    """The op class registered as `name`; KeyError with a did-you-mean otherwise."""
    return OPS.get(name)


def list_ops() -> list[str]:
    """Every registered op name, in registration order."""
    return OPS.names()


@dataclass
class BlockContext:
    """What a block may read besides its own stream (docs/interfaces.md, "Registries").

    mask: (B, n) bool, True = real position. guide: (B, m, d) final output of the guide
    stream, with guide_mask (B, m). relation: (B, n, n, relation_dim), the shared first
    layer of the relation MLP, computed once per network forward.
    """

    mask: Tensor | None = None
    guide: Tensor | None = None
    guide_mask: Tensor | None = None
    relation: Tensor | None = None


class Op(nn.Module):
    """Base of the paper's ops: post-norm residual `LayerNorm(x + Dropout(transform(x)))`."""

    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__()
        self.drop = nn.Dropout(settings.dropout)
        self.norm = make_norm(settings.d_model, settings.norm)

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:  # (B, n, d) -> (B, n, d)
        return self.norm(x + self.drop(self.transform(x, ctx)))

    def transform(self, x: Tensor, ctx: BlockContext) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def flops(n: int, m: int, settings: ModelSettings) -> int:
        """Forward FLOPs (2 x multiply-adds of the matmuls) per sample; n own, m guide positions."""
        return 0
