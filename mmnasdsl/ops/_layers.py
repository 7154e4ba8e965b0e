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


class _ReferenceNorm(torch.autograd.Function):
    """The reference's LayerNorm with a hand-written backward.

    Why: written as tensor ops (mean, std, sub, div, mul, add) autograd saves and revisits
    five full-size tensors; it was 8-10 % of a search step at d = 256 (docs/performance.md,
    "after" profile), 1.9x the time of this function, which saves one (x̂) and uses one
    fused reduction (`var_mean`). It computes in at least fp32 whatever autocast feeds it, as
    torch's own layer_norm does under autocast. With s = std_u + eps and x̂ = (x - mean) / s,
    y = a x̂ + b and g = a dy:
        dx = (g - mean(g)) / s - x̂ · Σ(g x̂) / ((d - 1) std_u)
    (the second term is the std's own derivative, (x - mean) / ((d - 1) std_u)).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        x = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16/fp16 -> fp32
        var, mean = torch.var_mean(x, -1, keepdim=True)  # unbiased, like Tensor.std
        std = var.sqrt()
        inv = (std + eps).reciprocal()
        xhat = (x - mean).mul_(inv)
        ctx.save_for_backward(xhat, inv, std, weight)
        return torch.addcmul(bias, xhat, weight)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
        xhat, inv, std, weight = ctx.saved_tensors
        d = xhat.shape[-1]
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            g = dy * weight
            # a constant row (std 0) has x̂ = 0, so Σ(g x̂) = 0: the clamp makes that term 0
            # where the tensor formula divides 0 by 0 (NaN)
            c = (g * xhat).sum(-1, keepdim=True).div_(std.clamp_min(1e-12) * (d - 1))
            dx = (g - g.mean(-1, keepdim=True)).mul_(inv).sub_(xhat * c)
        if ctx.needs_input_grad[1]:
            dw = (dy * xhat).reshape(-1, d).sum(0)
        if ctx.needs_input_grad[2]:
            db = dy.reshape(-1, d).sum(0)
        return dx, dw, db, None


class ReferenceLayerNorm(nn.Module):
    """a * (x - mean) / (std_unbiased + eps) + b, as in the reference implementation."""

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: Tensor) -> Tensor:  # (..., d) -> (..., d)
        return _ReferenceNorm.apply(x, self.weight, self.bias, self.eps)


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
