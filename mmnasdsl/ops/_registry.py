"""The op registry and the one interface every op shares (timm-style `@register_op`).

An op is a torch-free descriptor class: the language reads its `needs` to check specs,
`mmnasdsl info` its `flops`, and the compiler builds it into a block module
(`mmnasdsl.ops.build_op`): the op's `layers(settings)` become the block's submodules, and
the block computes the post-norm residual `LayerNorm(x + Dropout(transform(block, x, ctx)))`
that every MMnas op shares (paper §3.1). Torch is imported inside `layers` only, so that
importing the registry (what `mmnasdsl check` does) stays cheap.

`needs` names the extra inputs an op reads from the `BlockContext` ("guide", "relations");
`flops(n, m, settings)` is the forward cost per sample for a block over n positions with a
guide of m positions. Adding an op is one decorated class, importable before the spec is
built, or a class named by an entry point of the group `mmnasdsl.ops`:

    @register_op("Conv")
    class Conv(Op):
        '''One line saying what it computes (shown by `mmnasdsl ops`).'''
        @staticmethod
        def layers(s):
            from torch import nn
            return {"conv": nn.Conv1d(s.d_model, s.d_model, 3, padding=1)}
        @staticmethod
        def transform(m, x, ctx):
            return m.conv(x.transpose(1, 2)).transpose(1, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.settings import ModelSettings

if TYPE_CHECKING:
    from torch import Tensor, nn


class Op:
    """Base of the op descriptors; subclasses define `layers`, `transform` and `flops`."""

    needs: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def layers(s: ModelSettings) -> dict[str, nn.Module]:
        """The op's own modules (the block adds the dropout and the norm)."""
        raise NotImplementedError

    @staticmethod
    def transform(m: Any, x: Tensor, ctx: BlockContext) -> Tensor:
        """The op on a stream: m holds the modules of `layers`; (B, n, d) -> (B, n, d)."""
        raise NotImplementedError

    @staticmethod
    def flops(n: int, m: int, s: ModelSettings) -> int:
        """Forward FLOPs (2 x multiply-adds of the matmuls) per sample; n own, m guide positions."""
        return 0

    @staticmethod
    def params(s: ModelSettings) -> int | None:
        """Parameters of the op's layers (the block adds its norm), or None to have them
        counted on a meta-device build. A formula keeps `info` free of torch."""
        return None

    @staticmethod
    def prepare(blocks: list[Any], ctx: BlockContext) -> None:
        """Optional: once per run of a stack, before its blocks, with this op's blocks that
        will run with autograd (or all of them without): work they share goes into
        `ctx.shared` (RSA computes every block's score bias in one matmul)."""


def norm_params(d: int) -> int:
    """Both LayerNorm flavours have a weight and a bias of width d."""
    return 2 * d


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def block_params(name: str, s: ModelSettings) -> int | None:
    """Parameters of op `name`'s block (its layers and the block's norm), from its formula."""
    own = get_op(name).params(s)
    return None if own is None else own + norm_params(s.d_model)


OPS: Registry[type[Op]] = Registry("op", group="mmnasdsl.ops")


def register_op(name: str) -> Callable[[type[Op]], type[Op]]:
    """Class decorator: make an op usable by `name` in a spec. Raises on a duplicate."""
    return OPS.register(name)


def get_op(name: str) -> type[Op]:
    """The op registered as `name`; KeyError with a did-you-mean otherwise."""
    return OPS.get(name)


def list_ops() -> list[str]:
    """Every registered op name, in registration order."""
    return OPS.names()


MASKED = -1e9  # added to the attention scores of padded keys (the reference's fill value)


def additive_mask(key_mask: Tensor | None) -> Tensor | None:
    """(B, m) bool -> (B, 1, 1, m) float: 0 on real keys, -1e9 on padded ones."""
    if key_mask is None:
        return None
    import torch  # here, not at the top: importing the registry stays torch-free

    pad = key_mask.new_zeros(key_mask.shape, dtype=torch.float32)
    return pad.masked_fill(~key_mask, MASKED)[:, None, None, :]


@dataclass
class BlockContext:
    """What a block may read besides its own stream (docs/interfaces.md, "Registries").

    mask: (B, n) bool, True = real position. guide: (B, m, d) final output of the guide
    stream, with guide_mask (B, m). relation: (B, n, n, relation_dim), the shared first
    layer of the relation MLP, computed once per network forward. `shared` holds what an
    op's `prepare` computed once for all its blocks of a run (RSA: every block's score bias,
    in one matmul); the additive masks are built on first use and reused by every block.
    """

    mask: Tensor | None = None
    guide: Tensor | None = None
    guide_mask: Tensor | None = None
    relation: Tensor | None = None
    shared: dict[int, Tensor] = field(default_factory=dict)
    _masks: dict[str, Tensor | None] = field(default_factory=dict, repr=False)

    def key_bias(self) -> Tensor | None:
        """`mask` as an additive (B, 1, 1, n) float mask, built once per context."""
        if "own" not in self._masks:
            self._masks["own"] = additive_mask(self.mask)
        return self._masks["own"]

    def guide_bias(self) -> Tensor | None:
        """`guide_mask` as an additive (B, 1, 1, m) float mask, built once per context."""
        if "guide" not in self._masks:
            self._masks["guide"] = additive_mask(self.guide_mask)
        return self._masks["guide"]


def build_op(name: str, settings: ModelSettings) -> nn.Module:
    """The block module of op `name`: its layers inside the post-norm residual."""
    from mmnasdsl.ops._layers import OpBlock

    return OpBlock(get_op(name), settings)
