"""Classification of fused features (BM-NAS's heads): single-label or multi-label.

The head (notes §4): the last m cell outputs concatenated, (B, m·C, L) -> LayerNorm([m·C,
L]) -> ReLU -> flatten -> Linear(m·C·L -> K).

Loss: single-label, softmax cross-entropy against `batch["label"]` (B,) class ids (NTU,
EgoGesture); multi-label (`multilabel`), binary cross-entropy with logits against the
(B, K) 0/1 targets, averaged over classes and samples (MM-IMDB's `BCEWithLogitsLoss()`).

Predictions: single-label the argmax; multi-label every class with sigmoid(logit) >
`threshold` (MM-IMDB: 0.3, strict). Metrics (in %): accuracy (multi-label: exact match of
the whole label set), and F1 weighted by class support and macro F1 from scikit-learn
(`zero_division = 0`: a class never predicted scores 0, as a class never seen adds
nothing); `metric` picks the one that chooses best.pt and the search's kept genotype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmnasdsl.heads._task import Batch, Metrics, Predictions, Runner, Task, register_head

if TYPE_CHECKING:
    from torch import Tensor, nn

    from mmnasdsl.lang.bmnas_settings import FusedFeatures


class ClassifyOptions(BaseModel):
    """`head classify(classes = K, multilabel, threshold = 0.3, metric = f1_weighted)`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    classes: int | None = Field(
        None, ge=2, le=1_000_000, description="number of classes (default: the data's)"
    )
    multilabel: bool = Field(False, description="several labels per sample (sigmoid + BCE)")
    threshold: float = Field(
        0.5, gt=0, lt=1, description="multi-label: a class is predicted when its sigmoid exceeds it"
    )
    metric: Literal["accuracy", "f1_weighted", "f1_macro"] | None = Field(
        None,
        description="what picks best.pt (default: accuracy, multi-label: f1_weighted)",
    )


@register_head("classify")
class Classify(Task):
    """K-way classification of a BM-NAS network's fused cells."""

    Options = ClassifyOptions
    requires = ("taps",)
    data_kind = "taps"
    batch_fields = ("label",)

    def __init__(self, options: Any = None, **sizes: Any) -> None:
        super().__init__(options, **sizes)
        default = "f1_weighted" if self.options.multilabel else "accuracy"
        self.metric = self.options.metric or default

    @property
    def num_classes(self) -> int:
        """K: the data's classes when known, else the `classes` option."""
        k = self.sizes.get("num_answers") or self.options.classes
        if not k:
            raise ValueError("classify needs its number of classes: head classify(classes = K)")
        return int(k)

    # -- the head network ---------------------------------------------------------------------

    def layers(self, s: FusedFeatures) -> dict[str, nn.Module]:
        from torch import nn

        return {
            "norm": nn.LayerNorm([s.cells * s.channels, s.length]),
            "act": nn.ReLU(),
            "out": nn.Linear(s.width, self.num_classes),
        }

    def fuse(self, m: Any, z: Tensor, batch: Batch) -> dict[str, Tensor]:
        return {"logits": m.out(m.act(m.norm(z)).flatten(1))}  # (B, K)

    def params(self, s: FusedFeatures) -> int:  # type: ignore[override]
        return 2 * s.width + s.width * self.num_classes + self.num_classes

    def flops(self, s: FusedFeatures, words: int = 0, objects: int = 0) -> int:  # type: ignore[override]
        return 2 * s.width * self.num_classes

    # -- loss and predictions -----------------------------------------------------------------

    def loss(self, out: dict[str, Tensor], batch: Batch) -> Tensor:
        import torch.nn.functional as F

        logits, label = out["logits"], batch["label"]
        if self.options.multilabel:
            return F.binary_cross_entropy_with_logits(logits, label.float())
        return F.cross_entropy(logits, label)

    def predict(self, out: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        logits = out["logits"]
        if self.options.multilabel:
            scores = logits.sigmoid()
            return {"label": (scores > self.options.threshold).long(), "scores": scores}
        return {"label": logits.argmax(-1), "scores": logits.softmax(-1)}

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(
        self,
        runner: Runner,
        dataset: Any,
        rows: Sequence[int],
        max_images: int | None = None,
    ) -> tuple[Metrics, Predictions]:
        """Accuracy, weighted and macro F1 (%) and the loss over `rows`; one prediction per
        sample: its id and predicted class (multi-label: classes)."""
        import torch

        preds, truths, loss_sum = [], [], 0.0
        for batch, out in runner.outputs(dataset, rows):
            loss_sum += self.loss(out, batch).item() * len(batch["index"])
            preds.append(self.predict(out, batch)["label"].cpu())
            truths.append(batch["label"].cpu())
        pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
        truth = torch.cat(truths) if truths else torch.zeros(0, dtype=torch.long)
        metrics: Metrics = classification_report(pred.numpy(), truth.numpy())
        metrics["loss"] = loss_sum / max(len(rows), 1)
        return metrics, self.prediction_rows(dataset, rows, pred)

    def prediction_rows(self, dataset: Any, rows: Sequence[int], pred: Tensor) -> Predictions:
        names = list(getattr(dataset, "answers", []))
        ids = [int(dataset.ids[r]) for r in rows] if hasattr(dataset, "ids") else list(rows)

        def name(k: int) -> Any:
            return names[k] if k < len(names) else k

        if self.options.multilabel:
            return [
                {"id": i, "labels": [name(k) for k in p.nonzero().flatten().tolist()]}
                for i, p in zip(ids, pred, strict=True)
            ]
        return [{"id": i, "label": name(int(p))} for i, p in zip(ids, pred, strict=True)]


def classification_report(pred: Any, truth: Any) -> dict[str, float]:
    """Accuracy and F1 (weighted, macro) in %, from scikit-learn. Single-label: class ids
    (n,); multi-label: 0/1 indicator matrices (n, K), where accuracy is the exact match."""
    from sklearn.metrics import accuracy_score, f1_score

    if len(truth) == 0:
        return {"accuracy": 0.0, "f1_weighted": 0.0, "f1_macro": 0.0}
    return {
        "accuracy": 100.0 * float(accuracy_score(truth, pred)),
        "f1_weighted": 100.0 * float(f1_score(truth, pred, average="weighted", zero_division=0)),
        "f1_macro": 100.0 * float(f1_score(truth, pred, average="macro", zero_division=0)),
    }
