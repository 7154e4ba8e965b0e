"""VQA (paper §3.3): fused z -> Linear(d_z -> K answers); official accuracy.

Loss "bce" (default, VQA-v2): binary cross-entropy with logits against the soft scores
(0, .3, .6, .9, 1 by annotator count), summed over the K answers and averaged over the
batch. The reference sums over the batch too; a per-sample mean keeps the loss scale
independent of the batch size, and summing over answers keeps the reference's scale
per sample (a mean over 3129 answers would shrink gradients ~3000x).
Loss "ce" (single-answer data): softmax cross-entropy against the soft scores
normalised to a distribution (one-hot for single-answer data); a sample with no
scored answer contributes zero.

Evaluation: the official accuracy overall, per answer type and per question family
(`_metrics.vqa_report`); predictions in the EvalAI result format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmnasdsl.heads._task import (
    Batch,
    Metrics,
    Predictions,
    Runner,
    Task,
    fusion_flops,
    fusion_params,
    register_head,
)
from mmnasdsl.lang.settings import ModelSettings

if TYPE_CHECKING:
    from torch import Tensor, nn

    from mmnasdsl.data import FeatureDataset


class VQAOptions(BaseModel):
    """`head vqa(answers = K, loss = bce|ce)`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    answers: int = Field(3129, ge=1, le=10_000_000, description="answer vocabulary size K")
    loss: Literal["bce", "ce"] = Field("bce", description="bce on soft scores, or softmax ce")


@register_head("vqa")
class VQA(Task):
    """Answer classification over a fixed vocabulary."""

    Options = VQAOptions
    metric = "accuracy"
    batch_fields = ("answer_scores",)

    @property
    def num_answers(self) -> int:
        """K: the data's answer vocabulary when known, else the `answers` option."""
        return int(self.sizes.get("num_answers") or self.options.answers)

    def layers(self, s: ModelSettings) -> dict[str, nn.Module]:
        from torch import nn

        from mmnasdsl.heads._layers import Fusion

        return {"fusion": Fusion(s), "classify": nn.Linear(s.d_fused, self.num_answers)}

    def forward(
        self, m: Any, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, batch: Batch
    ) -> dict[str, Tensor]:
        z = m.fusion(x, x_mask, y, y_mask)  # (B, d_z)
        return {"logits": m.classify(z)}  # (B, K)

    def loss(self, out: dict[str, Tensor], batch: Batch) -> Tensor:
        import torch.nn.functional as F

        logits, scores = out["logits"], batch["answer_scores"]  # (B, K), (B, K)
        if self.options.loss == "ce":
            target = scores / scores.sum(-1, keepdim=True).clamp(min=1e-9)
            return -(target * logits.log_softmax(-1)).sum(-1).mean()
        bce = F.binary_cross_entropy_with_logits(logits, scores, reduction="none")
        return bce.sum(-1).mean()

    def predict(self, out: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        logits = out["logits"]
        probs = logits.softmax(-1) if self.options.loss == "ce" else logits.sigmoid()
        return {"answer": logits.argmax(-1), "scores": probs}  # (B,), (B, K)

    def params(self, s: ModelSettings) -> int:
        return fusion_params(s) + s.d_fused * self.num_answers + self.num_answers

    def flops(self, s: ModelSettings, words: int, objects: int) -> int:
        return fusion_flops(words, objects, s) + 2 * s.d_fused * self.num_answers

    def evaluate(
        self,
        runner: Runner,
        dataset: FeatureDataset,
        rows: Sequence[int],
        max_images: int | None = None,
    ) -> tuple[Metrics, Predictions]:
        from mmnasdsl.heads._metrics import vqa_report

        pred, loss = self.collect(runner, dataset, rows, "answer")
        answers = [dataset.answers[int(a)] for a in pred]
        metrics: Metrics = dict(
            vqa_report(
                answers,
                [dataset.raw_answers(int(i)) for i in rows],
                dataset.question_answer_type[rows].tolist(),
                dataset.question_family[rows].tolist(),
                dataset.families,
            )
        )
        metrics["loss"] = loss
        ids = dataset.text_ids[rows].tolist()  # the EvalAI result format
        return metrics, [{"question_id": q, "answer": a} for q, a in zip(ids, answers, strict=True)]
