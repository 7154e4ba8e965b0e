"""Attention ops of MMnas (paper §3.1): SA, GA and RSA on one multi-head attention.

All three compute softmax(QKᵀ/√d_h + M) V per head with torch's fused
`scaled_dot_product_attention`, where M is a float additive mask: -1e9 on padded
keys (the reference's masked_fill value; exact after softmax) plus, for RSA, the
relation prior log(max(r, 1e-6)) with one bias map per head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.ops._registry import BlockContext, Op, register_op

MASKED = -1e9  # added to the scores of padded keys
NEUTRAL_STD = 0.01  # RSA's relation weights at a neutral init: r = 1 + O(0.01) for every pair


def attention_mask(key_mask: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """Float additive mask (B, h|1, n|1, m) from a key mask (B, m) and a score bias (B, h, n, m)."""
    if key_mask is None:
        return bias
    pad = torch.zeros(key_mask.shape, dtype=torch.float32, device=key_mask.device)
    pad = pad.masked_fill(~key_mask, MASKED)[:, None, None, :]  # (B, 1, 1, m)
    return pad if bias is None else bias + pad


class MultiHeadAttention(nn.Module):
    """Q from x, K and V from y, h heads of width d_h, output projection (paper Eq. 2-3)."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__()
        d, bias = settings.d_model, settings.bias
        self.n_heads, self.d_head = settings.n_heads, settings.d_head
        self.q = nn.Linear(d, d, bias=bias)
        self.k = nn.Linear(d, d, bias=bias)
        self.v = nn.Linear(d, d, bias=bias)
        self.o = nn.Linear(d, d, bias=bias)
        self.p_drop = settings.dropout  # dropout on the attention map

    def split(self, t: Tensor) -> Tensor:  # (B, n, d) -> (B, h, n, d_h)
        return t.view(t.shape[0], t.shape[1], self.n_heads, self.d_head).transpose(1, 2)

    def forward(
        self, x: Tensor, y: Tensor, key_mask: Tensor | None = None, bias: Tensor | None = None
    ) -> Tensor:
        """x (B, n, d) queries; y (B, m, d) keys/values; key_mask (B, m); bias (B, h, n, m)."""
        q, k, v = self.split(self.q(x)), self.split(self.k(y)), self.split(self.v(y))
        mask = attention_mask(key_mask, bias)
        p = self.p_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, h, n, d_h)
        return self.o(out.transpose(1, 2).reshape(x.shape))  # (B, n, d)


def attention_flops(n: int, m: int, d: int) -> int:
    """Q and output projections over n, K and V over m, QKᵀ and AV: 2 FLOPs per multiply-add."""
    return 2 * (2 * n * d * d + 2 * m * d * d + 2 * n * m * d)


@register_op("SA")
class SelfAttention(Op):
    """SA(X) = MHA(X, X, X): each position attends to the real positions of its own stream."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        self.att = MultiHeadAttention(settings)

    def transform(self, x: Tensor, ctx: BlockContext) -> Tensor:
        return self.att(x, x, ctx.mask)

    @staticmethod
    def flops(n: int, m: int, settings: ModelSettings) -> int:
        return attention_flops(n, n, settings.d_model)


@register_op("GA")
class GuidedAttention(Op):
    """GA(X, Y) = MHA(X, Y, Y): queries from this stream, keys/values from the guide (Eq. 5)."""

    needs = ("guide",)

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        self.att = MultiHeadAttention(settings)

    def transform(self, x: Tensor, ctx: BlockContext) -> Tensor:
        if ctx.guide is None:
            raise ValueError("GA needs a guide stream: declare the stack with (guide = NAME)")
        return self.att(x, ctx.guide, ctx.guide_mask)

    @staticmethod
    def flops(n: int, m: int, settings: ModelSettings) -> int:
        return attention_flops(n, m, settings.d_model)


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

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        self.att = MultiHeadAttention(settings)
        self.rel = nn.Linear(settings.relation_dim, settings.n_heads)
        if settings.relation_init == "neutral":
            nn.init.normal_(self.rel.weight, 0.0, NEUTRAL_STD)
            nn.init.ones_(self.rel.bias)

    def transform(self, x: Tensor, ctx: BlockContext) -> Tensor:
        if ctx.relation is None:
            raise ValueError("RSA needs relation features: an objects input with relations = box4")
        r = F.relu(self.rel(ctx.relation))  # (B, n, n, h)
        bias = r.clamp(min=1e-6).log().permute(0, 3, 1, 2)  # (B, h, n, n)
        return self.att(x, x, ctx.mask, bias)

    @staticmethod
    def flops(n: int, m: int, settings: ModelSettings) -> int:
        rel = 2 * n * n * settings.relation_dim * settings.n_heads
        return attention_flops(n, n, settings.d_model) + rel
