"""Image-text matching head (paper §3.3): s = σ(Linear(d_z -> 1)(z)).

The loss is binary cross-entropy with logits against `batch["label"]` (1 matching pair,
0 negative), weighted per pair by an optional `batch["weight"]` and averaged over the
batch: mean_i w_i · BCE_i. The trainer forms the pairs (each positive with one hard
negative caption and one hard negative image, REFERENCE.md "ITM") and gives the positive
weight 2, which is the reference's "positive counted twice".
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from mmnasdsl.heads._common import Fusion, Head, register_head
from mmnasdsl.lang.settings import ModelSettings


class ITMOptions(BaseModel):
    """`head itm(candidates = 64, top_k = 5)`: hard-negative mining (read by the trainer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    candidates: int = Field(64, ge=1, description="random negatives scored per anchor")
    top_k: int = Field(5, ge=1, description="hardest negatives kept; one is drawn per step")


@register_head("itm")
class ITMHead(Head):
    """One matching logit per (image, caption) pair."""

    Options = ITMOptions
    batch_fields = ("label",)

    def __init__(self, settings: ModelSettings, options: Any = None, **data_sizes: Any) -> None:
        super().__init__(settings, options)
        self.fusion = Fusion(settings)
        self.score = nn.Linear(settings.d_fused, 1)

    def forward(
        self, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, batch: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        z = self.fusion(x, x_mask, y, y_mask)  # (B, d_z)
        return {"logits": self.score(z).squeeze(-1)}  # (B,)

    def loss(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        bce = F.binary_cross_entropy_with_logits(
            out["logits"], batch["label"].float(), reduction="none"
        )  # (B,)
        weight = batch.get("weight")
        return (bce if weight is None else bce * weight).mean()

    def predict(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"score": out["logits"].sigmoid()}  # (B,)

    @classmethod
    def flops(
        cls, settings: ModelSettings, options: Any, words: int, objects: int, **data_sizes: Any
    ) -> int:
        return Fusion.flops(words, objects, settings) + 2 * settings.d_fused
