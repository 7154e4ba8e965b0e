"""The torch side of the ops: the block every op runs in, attention, and the LayerNorms.

`OpBlock` turns an op descriptor into a module (its layers as submodules, named as the
op names them, so checkpoints read `blocks.3.att.q.weight`). `MultiHeadAttention` is the
one attention of SA, GA and RSA: softmax(QKᵀ/√d_h + M) V per head with torch's fused
`scaled_dot_product_attention`, where M is a float additive mask: -1e9 on padded keys (the
reference's masked_fill value; exact after softmax) plus, for RSA, the relation prior.

LayerNorm flavours (`model { norm = ... }`): "reference" (the default) is the MMnas/MCAN
reference's own, which divides by the *unbiased* standard deviation plus eps (eps outside
the square root), so that a spec computes the reference's function and its released
weights load unchanged; "standard" is `nn.LayerNorm` (biased variance, eps inside the
root; a fused kernel, less memory), which moves the reference's logits by ~5e-3 relative
at d = 64 (docs/reference.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.ops._registry import MASKED, additive_mask

__all__ = ["MASKED", "MultiHeadAttention", "OpBlock", "attention_mask", "make_norm"]


class ReferenceLayerNorm(nn.Module):
    """a * (x - mean) / (std_unbiased + eps) + b, as in the reference implementation."""

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: Tensor) -> Tensor:  # (..., d) -> (..., d)
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)  # unbiased, like torch.Tensor.std's default
        return self.weight * (x - mean) / (std + self.eps) + self.bias


def make_norm(d: int, kind: str = "reference") -> nn.Module:
    """The LayerNorm a spec asked for (`model { norm = reference | standard }`)."""
    if kind == "reference":
        return ReferenceLayerNorm(d)
    return nn.LayerNorm(d)


class DescribedModule(nn.Module):
    """A module whose submodules are a descriptor's `layers(settings)`, named as it names
    them (so checkpoints read `blocks.3.att.q.weight`, `head.fusion.norm.weight`)."""

    def __init__(self, layers: dict[str, nn.Module]) -> None:
        super().__init__()
        for name, module in layers.items():
            self.add_module(name, module)


class OpBlock(DescribedModule):
    """One block running op `op`: `LayerNorm(x + Dropout(op.transform(self, x, ctx)))`."""

    def __init__(self, op: Any, settings: ModelSettings) -> None:
        super().__init__(op.layers(settings))
        self.op = op
        self.drop = nn.Dropout(settings.dropout)
        self.norm = make_norm(settings.d_model, settings.norm)

    def forward(self, x: Tensor, ctx: Any) -> Tensor:  # (B, n, d) -> (B, n, d)
        return self.norm(x + self.drop(self.op.transform(self, x, ctx)))

    def flops(self, n: int, m: int, settings: ModelSettings) -> int:
        return int(self.op.flops(n, m, settings))

    def extra_repr(self) -> str:
        return f"op={self.op.__name__}"


def attention_mask(key_mask: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """Float additive mask (B, h|1, n|1, m) from a key mask (B, m) and a score bias (B, h, n, m)."""
    pad = additive_mask(key_mask)  # (B, 1, 1, m)
    if pad is None:
        return bias
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
        self,
        x: Tensor,
        y: Tensor,
        key_mask: Tensor | None = None,
        bias: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """x (B, n, d) queries; y (B, m, d) keys/values; key_mask (B, m); bias (B, h, n, m).

        `attn_mask` (B, h|1, n|1, m), when given, is the whole additive mask already (key
        padding and bias): the ops pass the one their context built once per batch."""
        q, k, v = self.split(self.q(x)), self.split(self.k(y)), self.split(self.v(y))
        mask = attn_mask if attn_mask is not None else attention_mask(key_mask, bias)
        p = self.p_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, h, n, d_h)
        return self.o(out.transpose(1, 2).reshape(x.shape))  # (B, n, d)
