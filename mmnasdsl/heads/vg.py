"""Visual grounding (paper §3.3, REFERENCE.md "VG"): pick and refine one proposal.

Per object i: z_i = LayerNorm(Linear(d -> d_z)(y_i) + AttFlat(x)), a score s_i =
Linear(d_z -> 1)(z_i) (log-softmax over the real objects) and a box delta
b_i = Linear(d_z -> 4)(z_i).

Targets come from the proposals' IoU with the ground-truth box (`batch["boxes"]`,
`batch["gt_box"]`): proposals with IoU >= options.iou are positives; a sample is valid
when it has one. Score target t = IoU-proportional distribution over the positives; box
target = normalised Fast R-CNN deltas (geometry.encode_deltas) of each positive.

    loss = Σ_valid KL(t ‖ softmax(s)) / #valid
         + box_weight · Σ_positives SmoothL1(b_i, b*_i) / #positives

(SmoothL1 with β = 1, summed over the 4 coordinates). Prediction: the argmax proposal,
moved by its delta and clipped to the image. Metric: accuracy at IoU >= 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mmnasdsl.heads._task import (
    Batch,
    Metrics,
    Predictions,
    Runner,
    Task,
    attflat_flops,
    attflat_params,
    register_head,
)
from mmnasdsl.lang.settings import ModelSettings

if TYPE_CHECKING:
    from torch import Tensor, nn

    from mmnasdsl.data import FeatureDataset


class VGOptions(BaseModel):
    """`head vg(box_weight = 1.0, iou = 0.5)`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    box_weight: float = Field(
        1.0, ge=0, le=1e6, description="λ on the box loss (paper 1, reference 0.5)"
    )
    iou: float = Field(0.5, gt=0, le=1, description="IoU for a proposal to count as positive")


def vg_targets(
    boxes: Tensor, gt_box: Tensor, mask: Tensor, iou_min: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(B, N, 4) proposals, (B, 4) gt, (B, N) mask -> positives (B, N), score target, deltas."""
    from mmnasdsl.data.geometry import box_iou, encode_deltas

    iou = box_iou(boxes, gt_box[:, None, :])[..., 0] * mask  # (B, N)
    pos = (iou >= iou_min) & mask
    weights = iou * pos
    target = weights / weights.sum(-1, keepdim=True).clamp(min=1e-9)  # (B, N)
    deltas = encode_deltas(boxes, gt_box[:, None, :].expand_as(boxes))  # (B, N, 4)
    return pos, target, deltas


@register_head("vg")
class VG(Task):
    """Scores and box deltas for every proposal, conditioned on the pooled expression."""

    Options = VGOptions
    metric = "accuracy"
    batch_fields = ("gt_box", "boxes", "image_size")

    def layers(self, s: ModelSettings) -> dict[str, nn.Module]:
        from torch import nn

        from mmnasdsl.heads._layers import AttFlat
        from mmnasdsl.ops._layers import make_norm

        return {
            "flat_x": AttFlat(s),
            "proj_y": nn.Linear(s.d_model, s.d_fused),
            "norm": make_norm(s.d_fused, s.norm),
            "score": nn.Linear(s.d_fused, 1),
            "delta": nn.Linear(s.d_fused, 4),
        }

    def forward(
        self, m: Any, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, batch: Batch
    ) -> dict[str, Tensor]:
        from mmnasdsl.heads._layers import masked_fill_scores

        z = m.norm(m.proj_y(y) + m.flat_x(x, x_mask)[:, None, :])  # (B, N, d_z)
        scores = masked_fill_scores(m.score(z).squeeze(-1), y_mask)  # (B, N)
        return {"scores": scores, "deltas": m.delta(z)}  # (B, N), (B, N, 4)

    def loss(self, out: dict[str, Tensor], batch: Batch) -> Tensor:
        import torch
        import torch.nn.functional as F

        mask = batch.get("objects_mask")
        if mask is None:
            mask = torch.ones_like(out["scores"], dtype=torch.bool)
        pos, target, deltas = vg_targets(batch["boxes"], batch["gt_box"], mask, self.options.iou)
        valid = pos.any(-1)  # (B,)
        log_p = out["scores"].log_softmax(-1)  # (B, N)
        kl = torch.where(pos, target * (target.clamp(min=1e-9).log() - log_p), 0.0).sum(-1)
        kl = (kl * valid).sum() / valid.sum().clamp(min=1)
        box = F.smooth_l1_loss(out["deltas"], deltas, reduction="none").sum(-1)  # (B, N)
        box = (box * pos).sum() / pos.sum().clamp(min=1)
        return kl + self.options.box_weight * box

    def predict(self, out: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        import torch

        from mmnasdsl.data.geometry import clip_boxes, decode_deltas

        best = out["scores"].argmax(-1)  # (B,)
        rows = torch.arange(best.shape[0], device=best.device)
        box = decode_deltas(batch["boxes"][rows, best], out["deltas"][rows, best])  # (B, 4)
        return {"index": best, "box": clip_boxes(box, batch["image_size"])}

    def params(self, s: ModelSettings) -> int:
        dz = s.d_fused
        return attflat_params(s) + s.d_model * dz + dz + 2 * dz + dz + 1 + 4 * dz + 4

    def flops(self, s: ModelSettings, words: int, objects: int) -> int:
        dz = s.d_fused
        return attflat_flops(words, s) + 2 * objects * (s.d_model * dz + 5 * dz)

    def evaluate(
        self,
        runner: Runner,
        dataset: FeatureDataset,
        rows: Sequence[int],
        max_images: int | None = None,
    ) -> tuple[Metrics, Predictions]:
        import torch

        from mmnasdsl.heads._metrics import grounding_report

        boxes, loss = self.collect(runner, dataset, rows, "box")
        metrics: Metrics = grounding_report(boxes, torch.as_tensor(dataset.gt_box[rows]).float())
        metrics["loss"] = loss
        ids = dataset.text_ids[rows].tolist()
        preds = [
            {"id": i, "box": [round(float(v), 2) for v in b]}
            for i, b in zip(ids, boxes, strict=True)
        ]
        return metrics, preds
