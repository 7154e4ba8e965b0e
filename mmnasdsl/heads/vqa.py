"""VQA head (paper §3.3): fused z -> Linear(d_z -> K answers).

Loss "bce" (default, VQA-v2): binary cross-entropy with logits against the soft scores
(0, .3, .6, .9, 1 by annotator count), summed over the K answers and averaged over the
batch. The reference sums over the batch too; a per-sample mean keeps the loss scale
independent of the batch size, and summing over answers keeps the reference's scale
per sample (a mean over 3129 answers would shrink gradients ~3000x).
Loss "ce" (single-answer data): softmax cross-entropy against the soft scores
normalised to a distribution (one-hot for single-answer data); a sample with no
scored answer contributes zero.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from mmnasdsl.heads._common import Fusion, Head, register_head
from mmnasdsl.lang.settings import ModelSettings


class VQAOptions(BaseModel):
    """`head vqa(answers = K, loss = bce|ce)`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    answers: int = Field(3129, ge=1, description="answer vocabulary size K")
    loss: Literal["bce", "ce"] = Field("bce", description="bce on soft scores, or softmax ce")


@register_head("vqa")
class VQAHead(Head):
    """Answer classification over a fixed vocabulary."""

    Options = VQAOptions
    batch_fields = ("answer_scores",)

    def __init__(
        self,
        settings: ModelSettings,
        options: Any = None,
        num_answers: int | None = None,
        **data_sizes: Any,
    ) -> None:
        super().__init__(settings, options)
        self.num_answers = num_answers or self.options.answers
        self.fusion = Fusion(settings)
        self.classify = nn.Linear(settings.d_fused, self.num_answers)

    def forward(
        self, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, batch: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        z = self.fusion(x, x_mask, y, y_mask)  # (B, d_z)
        return {"logits": self.classify(z)}  # (B, K)

    def loss(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        logits, scores = out["logits"], batch["answer_scores"]  # (B, K), (B, K)
        if self.options.loss == "ce":
            target = scores / scores.sum(-1, keepdim=True).clamp(min=1e-9)
            return -(target * logits.log_softmax(-1)).sum(-1).mean()
        bce = F.binary_cross_entropy_with_logits(logits, scores, reduction="none")
        return bce.sum(-1).mean()

    def predict(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = out["logits"]
        probs = logits.softmax(-1) if self.options.loss == "ce" else logits.sigmoid()
        return {"answer": logits.argmax(-1), "scores": probs}  # (B,), (B, K)

    @classmethod
    def flops(
        cls,
        settings: ModelSettings,
        options: Any,
        words: int,
        objects: int,
        num_answers: int | None = None,
        **data_sizes: Any,
    ) -> int:
        k = num_answers or cls.Options.model_validate(options or {}).answers
        return Fusion.flops(words, objects, settings) + 2 * settings.d_fused * k
