"""Attention ops of MMnas (paper §3.1): SA, GA and RSA on one multi-head attention.

Each is softmax(QKᵀ/√d_h + M) V per head (`_layers.MultiHeadAttention`), residual and
LayerNorm around it; they differ in where keys and values come from and in the score bias.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.ops._registry import BlockContext, Op, linear_params, register_op

if TYPE_CHECKING:
    from torch import Tensor, nn

NEUTRAL_STD = 0.01  # RSA's relation weights at a neutral init: r = 1 + O(0.01) for every pair


def attention_flops(n: int, m: int, d: int) -> int:
    """Q and output projections over n, K and V over m, QKᵀ and AV: 2 FLOPs per multiply-add."""
    return 2 * (2 * n * d * d + 2 * m * d * d + 2 * n * m * d)


def attention_params(s: ModelSettings) -> int:
    """Q, K, V and output projections d -> d (bias only with `bias = true`)."""
    return 4 * linear_params(s.d_model, s.d_model, s.bias)


def attention(s: ModelSettings) -> nn.Module:
    from mmnasdsl.ops._layers import MultiHeadAttention

    return MultiHeadAttention(s)


def relation_mask(r: Tensor, ctx: BlockContext) -> Tensor:
    """W r (B, n, n, h) -> the additive mask log(max(ReLU(W r), 1e-6)) + key padding,
    (B, h, n, n): the reference's RSA scores bias (Eq. 6) and its -1e9 on padded keys."""
    prior = r.relu().clamp(min=1e-6).log().permute(0, 3, 1, 2)
    pad = ctx.key_bias()
    return prior if pad is None else prior + pad


@register_op("SA")
class SelfAttention(Op):
    """SA(X) = MHA(X, X, X): each position attends to the real positions of its own stream."""

    @staticmethod
    def layers(s: ModelSettings) -> dict[str, nn.Module]:
        return {"att": attention(s)}

    @staticmethod
    def transform(m: Any, x: Tensor, ctx: BlockContext) -> Tensor:
        return m.att(x, x, attn_mask=ctx.key_bias())

    @staticmethod
    def flops(n: int, m: int, s: ModelSettings) -> int:
        return attention_flops(n, n, s.d_model)

    @staticmethod
    def params(s: ModelSettings) -> int:
        return attention_params(s)


@register_op("GA")
class GuidedAttention(Op):
    """GA(X, Y) = MHA(X, Y, Y): queries from this stream, keys/values from the guide (Eq. 5)."""

    needs = ("guide",)

    @staticmethod
    def layers(s: ModelSettings) -> dict[str, nn.Module]:
        return {"att": attention(s)}

    @staticmethod
    def transform(m: Any, x: Tensor, ctx: BlockContext) -> Tensor:
        if ctx.guide is None:
            raise ValueError("GA needs a guide stream: declare the stack with (guide = NAME)")
        return m.att(x, ctx.guide, attn_mask=ctx.guide_bias())

    @staticmethod
    def flops(n: int, m: int, s: ModelSettings) -> int:
        return attention_flops(n, m, s.d_model)

    @staticmethod
    def params(s: ModelSettings) -> int:
        return attention_params(s)


@register_op("RSA")
class RelationSelfAttention(Op):
    """RSA(X, R) = MHA(X, X, X, log(max(ReLU(W r), 1e-6))): SA with a box-geometry prior (Eq. 6).

    The relation MLP's first layer ReLU(Linear(4 -> relation_dim)) is shared by the whole
    network and arrives as `ctx.relation`; this block owns the second, relation_dim -> h.

    Init (`relation_init`): with torch's default init about a fifth of the (pair, head)
    outputs start at ReLU's zero, i.e. at the -13.8 floor, so RSA begins by masking random
    pairs, and those get no gradient. "neutral" starts every output at r = 1 (bias 0 for
    every pair: RSA begins as SA) and lets the geometry grow from there. On a shapes world of
    `nearest` questions (bench/ablation.py --probe, 2 seeds) RSA nets reach 55 % with it and
    50 % with the reference's init; MCAN-2, which cannot see positions, 44 %.
    """

    needs = ("relations",)

    @staticmethod
    def layers(s: ModelSettings) -> dict[str, nn.Module]:
        from torch import nn

        rel = nn.Linear(s.relation_dim, s.n_heads)
        if s.relation_init == "neutral":
            nn.init.normal_(rel.weight, 0.0, NEUTRAL_STD)
            nn.init.ones_(rel.bias)
        return {"att": attention(s), "rel": rel}

    @staticmethod
    def prepare(blocks: list[Any], ctx: BlockContext) -> None:
        """Every block's mask log(max(ReLU(W_k r), 1e-6)) + padding in one matmul over the
        relation tensor: (B, n, n, r) is read once, not once per block, and its gradient
        is one (B, n, n, r) tensor, not one per block summed (docs/performance.md)."""
        if ctx.relation is None or not blocks:
            return
        import torch

        weight = torch.cat([b.rel.weight for b in blocks])  # (K h, r)
        bias = torch.cat([b.rel.bias for b in blocks])
        masks = relation_mask(torch.nn.functional.linear(ctx.relation, weight, bias), ctx)
        h = blocks[0].rel.out_features
        for b, mask in zip(blocks, masks.split(h, dim=1), strict=True):
            ctx.shared[id(b)] = mask  # (B, h, n, n)

    @staticmethod
    def transform(m: Any, x: Tensor, ctx: BlockContext) -> Tensor:
        if ctx.relation is None:
            raise ValueError("RSA needs relation features: an objects input with relations = box4")
        mask = ctx.shared.get(id(m))
        if mask is None:  # a block `prepare` did not see (an idle leg without autograd)
            mask = relation_mask(m.rel(ctx.relation), ctx)
        return m.att(x, x, attn_mask=mask)

    @staticmethod
    def flops(n: int, m: int, s: ModelSettings) -> int:
        rel = 2 * n * n * s.relation_dim * s.n_heads
        return attention_flops(n, n, s.d_model) + rel

    @staticmethod
    def params(s: ModelSettings) -> int:
        return attention_params(s) + linear_params(s.relation_dim, s.n_heads)
