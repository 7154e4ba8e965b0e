"""LayerNorm flavours shared by the ops and the heads (ModelSettings.norm).

"standard" is `nn.LayerNorm`; "reference" is the MMnas/MCAN reference's own LayerNorm,
which divides by the *unbiased* standard deviation plus eps (eps outside the square
root). The two differ by a few 1e-3 relative; a user reproducing the reference's
numbers can ask for the second.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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


def make_norm(d: int, kind: str = "standard") -> nn.Module:
    """The LayerNorm a spec asked for (`model { norm = standard | reference }`)."""
    if kind == "reference":
        return ReferenceLayerNorm(d)
    return nn.LayerNorm(d)
