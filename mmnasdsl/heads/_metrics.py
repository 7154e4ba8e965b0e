"""The paper's metrics: VQA accuracy, image-text retrieval Recall@K, grounding accuracy.

- VQA (Antol et al.; the official evaluation script): an answer's accuracy is the mean,
  over the 10 leave-one-out subsets of 9 annotators, of min(#matches / 3, 1); answers are
  normalised (lower case, punctuation, number words -> digits, articles, contractions)
  before matching. Reported overall, per answer type and per question family.
- ITM (MMnas §5, Flickr30K): Recall@1/5/10 both ways over a full image x caption score
  matrix; image->text counts a hit when any of the image's captions is retrieved; plus
  median and mean rank (1-based).
- VG (MMnas §5, RefCOCO): a prediction is correct when its IoU with the truth is >= 0.5.

Pure functions of plain values and tensors: no model, no files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor

from mmnasdsl.data.geometry import box_iou
from mmnasdsl.data.text import normalize_answer  # the one copy of the official rule

ANSWER_TYPES = ("yes/no", "number", "other")  # batch `answer_type` 0, 1, 2
__all__ = ["grounding_report", "normalize_answer", "retrieval_report", "vqa_accuracy", "vqa_report"]


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official accuracy of one prediction against its (10) human answers, in [0, 1].

    Mean over the leave-one-out subsets of min(#matching humans / 3, 1): with 10
    annotators, 1 agreeing human gives 0.3, 2 give 0.6, 3 give 0.9, 4 or more 1.0.
    """
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    if not gts:
        return 0.0
    matches = [g == pred for g in gts]
    total = sum(matches)
    return sum(min((total - m) / 3.0, 1.0) for m in matches) / len(gts)


def vqa_report(
    predictions: Sequence[str],
    answers: Sequence[Sequence[str]],
    answer_types: Sequence[int] | None = None,
    families: Sequence[int] | None = None,
    family_names: Sequence[str] | None = None,
) -> dict[str, float | dict[str, float]]:
    """VQA accuracy in percent: overall, per answer type and per question family.

    Args:
        predictions: the predicted answer string per question.
        answers: the human answers per question.
        answer_types: 0 yes/no, 1 number, 2 other (batch `answer_type`), or None.
        families: a family id per question (-1 unknown), or None.
        family_names: names for the family ids.
    Returns:
        {"accuracy": float, "per_type": {type: acc}, "per_family": {family: acc}}
    """
    accs = [vqa_accuracy(p, a) for p, a in zip(predictions, answers, strict=True)]
    out: dict[str, float | dict[str, float]] = {"accuracy": _percent(accs)}
    if answer_types is not None:
        out["per_type"] = _grouped(accs, [ANSWER_TYPES[t] for t in answer_types])
    if families is not None and any(f >= 0 for f in families):
        names = list(family_names or [])
        keys = [names[f] if 0 <= f < len(names) else str(f) for f in families]
        out["per_family"] = _grouped(accs, keys)
    return out


def _percent(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


def _grouped(values: Sequence[float], keys: Sequence[str]) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for v, k in zip(values, keys, strict=True):
        groups[k].append(v)
    return {k: _percent(v) for k, v in sorted(groups.items())}


# ---------------------------------------------------------------------------- retrieval


def _first_hit_rank(order: Tensor, hits: Tensor) -> Tensor:
    """0-based position of the first hit in each row of a ranking. order, hits: (R, C)."""
    ranked_hits = hits.gather(1, order)  # (R, C): is the k-th ranked item a hit
    return ranked_hits.float().argmax(1)


def retrieval_report(
    scores: Tensor, caption_image: Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@K (percent) both ways, median and mean rank, from a full score matrix.

    Args:
        scores: (n_images, n_captions) match scores, higher = better.
        caption_image: (n_captions,) the image row of each caption.
    Returns:
        {"i2t_r1", ..., "t2i_r10", "rsum", "i2t_medr", "i2t_meanr", "t2i_medr", "t2i_meanr"}
    """
    n_img = scores.shape[0]
    truth = caption_image.long()[None, :] == torch.arange(n_img)[:, None]  # (I, C)
    i2t = _first_hit_rank(scores.argsort(dim=1, descending=True, stable=True), truth)
    t2i = _first_hit_rank(scores.t().argsort(dim=1, descending=True, stable=True), truth.t())
    out: dict[str, float] = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * (ranks < k).float().mean().item()
        out[f"{name}_medr"] = (ranks.float() + 1).median().item()
        out[f"{name}_meanr"] = (ranks.float() + 1).mean().item()
    out["rsum"] = sum(out[f"{n}_r{k}"] for n in ("i2t", "t2i") for k in ks)
    return out


# ---------------------------------------------------------------------------- grounding


def grounding_hits(pred_boxes: Tensor, gt_boxes: Tensor, threshold: float = 0.5) -> Tensor:
    """(B,) bool: IoU(pred, truth) >= threshold, boxes (B, 4) x1 y1 x2 y2."""
    iou = box_iou(pred_boxes[:, None, :], gt_boxes[:, None, :])[:, 0, 0]
    return iou >= threshold


def grounding_report(pred_boxes: Tensor, gt_boxes: Tensor) -> dict[str, float]:
    """{"accuracy": percent of predictions with IoU >= 0.5}."""
    hits = grounding_hits(pred_boxes, gt_boxes)
    return {"accuracy": 100.0 * hits.float().mean().item() if len(hits) else 0.0}
