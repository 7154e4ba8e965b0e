"""Image-text matching (paper §3.3): s = σ(Linear(d_z -> 1)(z)), hard negatives, Recall@K.

Loss: binary cross-entropy with logits against `batch["label"]` (1 matching pair, 0
negative), weighted per pair by `batch["weight"]` when present and averaged over the batch:
mean_i w_i · BCE_i.

Training samples (`epoch_data`, REFERENCE.md "ITM"): at the start of each epoch, in eval
mode, every image scores `candidates` random non-matching captions and keeps the `top_k`
highest; every caption does the same over images. Each positive caption then forms a
triple of pairs (its image, it, 1), (its image, a hard negative caption, 0), (a hard
negative image, it, 0), the negatives drawn from the top-k lists; the positive has weight
2, which is the reference's "positive counted twice".

Evaluation: Recall@1/5/10 both ways and ranks over the full image x caption score matrix
(of the first `max_images` images of the rows when given: the matrix grows as images x
captions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mmnasdsl.heads._task import (
    Batch,
    EpochData,
    EpochRequest,
    Metrics,
    Predictions,
    Runner,
    Task,
    fusion_flops,
    fusion_params,
    register_head,
)
from mmnasdsl.lang.settings import ModelSettings

if TYPE_CHECKING:  # numpy and torch load when a task runs, not when a spec is checked
    import numpy as np
    from torch import Tensor, nn

    from mmnasdsl.data import FeatureDataset

SEED_MINE, SEED_DRAW = 0x17, 0x3  # generator purposes of the mining and the triples


class ITMOptions(BaseModel):
    """`head itm(candidates = 64, top_k = 5)`: hard-negative mining."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    candidates: int = Field(64, ge=1, le=100_000, description="random negatives scored per anchor")
    top_k: int = Field(5, ge=1, le=100_000, description="hardest kept; one is drawn per step")


@register_head("itm")
class ITM(Task):
    """One matching logit per (image, caption) pair."""

    Options = ITMOptions
    metric = "rsum"
    batch_fields = ("label",)

    def layers(self, s: ModelSettings) -> dict[str, nn.Module]:
        from torch import nn

        from mmnasdsl.heads._layers import Fusion

        return {"fusion": Fusion(s), "score": nn.Linear(s.d_fused, 1)}

    def forward(
        self, m: Any, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, batch: Batch
    ) -> dict[str, Tensor]:
        z = m.fusion(x, x_mask, y, y_mask)  # (B, d_z)
        return {"logits": m.score(z).squeeze(-1)}  # (B,)

    def loss(self, out: dict[str, Tensor], batch: Batch) -> Tensor:
        import torch.nn.functional as F

        bce = F.binary_cross_entropy_with_logits(
            out["logits"], batch["label"].float(), reduction="none"
        )  # (B,)
        weight = batch.get("weight")
        return (bce if weight is None else bce * weight).mean()

    def predict(self, out: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        return {"score": out["logits"].sigmoid()}  # (B,)

    def params(self, s: ModelSettings) -> int:
        return fusion_params(s) + s.d_fused + 1

    def flops(self, s: ModelSettings, words: int, objects: int) -> int:
        return fusion_flops(words, objects, s) + 2 * s.d_fused

    # -- training samples ---------------------------------------------------------------------

    def epoch_data(self, request: EpochRequest) -> EpochData:
        """Hard-negative triples of this stream's rows (mined once per epoch over `pool`)."""
        r = request
        if "negatives" not in r.memo:
            r.memo["negatives"] = self.mine(r.runner, r.dataset, r.pool or r.rows, r.seed, r.epoch)
        negatives = r.memo["negatives"]
        triples = itm_triples(r.dataset, r.rows, negatives, r.seed + r.stream, r.epoch)
        return EpochData(triples, triple_batches(r.batches, r.rows))

    def mine(
        self,
        runner: Runner,
        dataset: FeatureDataset,
        captions: Sequence[int],
        seed: int,
        epoch: int,
    ) -> dict[str, Tensor]:
        """For each image, the top-k of `candidates` random non-matching captions by the current
        score; for each caption, the same over images (REFERENCE.md "ITM"). Eval mode.

        Returns {"captions": (n_images_in_dataset, k) caption rows (-1 where unused),
                 "images": (n_captions_in_dataset, k) image rows (-1 where unused)}.
        """
        import numpy as np
        import torch

        n, k = self.options.candidates, min(self.options.top_k, self.options.candidates)
        rng = np.random.default_rng([seed, epoch, SEED_MINE])
        caps = np.asarray(captions, dtype=np.int64)
        cap_img = np.asarray(dataset.caption_image, dtype=np.int64)
        imgs = np.unique(cap_img[caps])
        cand_c = draw_negatives(imgs, caps, cap_img, n, rng)  # (I, n) captions
        cand_i = draw_negatives(cap_img[caps], imgs, np.arange(dataset.n_images), n, rng)  # (C, n)
        s_c = pair_scores(self, runner, dataset, np.repeat(imgs, n), cand_c.ravel())
        s_i = pair_scores(self, runner, dataset, cand_i.ravel(), np.repeat(caps, n))
        out_c = torch.full((dataset.n_images, k), -1, dtype=torch.int64)
        out_c[imgs] = torch.from_numpy(cand_c).gather(1, s_c.view(len(imgs), n).topk(k, 1).indices)
        out_i = torch.full((len(dataset), k), -1, dtype=torch.int64)
        out_i[caps] = torch.from_numpy(cand_i).gather(1, s_i.view(len(caps), n).topk(k, 1).indices)
        return {"captions": out_c, "images": out_i}

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(
        self,
        runner: Runner,
        dataset: FeatureDataset,
        rows: Sequence[int],
        max_images: int | None = None,
    ) -> tuple[Metrics, Predictions]:
        import numpy as np
        import torch

        from mmnasdsl.heads._metrics import retrieval_report

        rows = first_images(dataset, np.asarray(rows, dtype=np.int64), max_images)
        cap_img = np.asarray(dataset.caption_image, dtype=np.int64)
        images = np.unique(cap_img[rows])
        img_pos = {int(r): k for k, r in enumerate(images)}
        scores = pair_scores(
            self, runner, dataset, np.repeat(images, len(rows)), np.tile(rows, len(images))
        ).view(len(images), len(rows))
        truth = torch.tensor([img_pos[int(cap_img[c])] for c in rows])
        metrics: Metrics = retrieval_report(scores, truth)
        top = scores.topk(min(10, len(rows)), 1).indices
        preds = [
            {
                "image_id": int(dataset.image_ids[img]),
                "captions": [int(dataset.text_ids[rows[j]]) for j in top[k]],
            }
            for k, img in enumerate(images)
        ]
        return metrics, preds


def pair_scores(
    task: ITM, runner: Runner, dataset: FeatureDataset, images: np.ndarray, captions: np.ndarray
) -> Tensor:
    """Match scores of explicit (image, caption) pairs, in eval mode -> (n_pairs,)."""
    import torch

    pairs = dataset.pairs(images.tolist(), captions.tolist(), [0.0] * len(images))
    scores = [
        task.predict(out, batch)["score"].float().cpu()
        for batch, out in runner.outputs(pairs, range(len(images)))
    ]
    return torch.cat(scores) if scores else torch.zeros(0)


def draw_negatives(
    anchor_of: np.ndarray, pool: np.ndarray, owner: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """(len(anchor_of), n) rows of `pool` whose owner differs from each anchor's.

    `anchor_of[a]` is what anchor a must not match; `owner[pool[j]]` what pool row j shows.
    """
    picks = pool[rng.integers(0, len(pool), (len(anchor_of), n))]
    for _ in range(100):
        bad = owner[picks] == anchor_of[:, None]
        if not bad.any():
            break
        picks[bad] = pool[rng.integers(0, len(pool), int(bad.sum()))]
    return picks


def itm_triples(
    dataset: FeatureDataset,
    positives: Sequence[int],
    negatives: dict[str, Tensor],
    seed: int,
    epoch: int,
) -> Any:
    """The epoch's training pairs: for positive caption k, rows 3k, 3k+1, 3k+2 hold
    (its image, it, 1), (its image, a hard negative caption, 0), (a hard negative image, it, 0);
    the negatives are drawn from the top-k lists with a (seed, epoch) generator."""
    import numpy as np

    rng = np.random.default_rng([seed, epoch, SEED_DRAW])
    caps = np.asarray(positives, dtype=np.int64)
    img = np.asarray(dataset.caption_image, dtype=np.int64)[caps]
    k = negatives["captions"].shape[1]
    neg_cap = negatives["captions"].numpy()[img, rng.integers(0, k, len(caps))]
    neg_img = negatives["images"].numpy()[caps, rng.integers(0, k, len(caps))]
    images = np.stack([img, img, neg_img], 1).ravel()
    captions = np.stack([caps, neg_cap, caps], 1).ravel()
    labels = np.tile(np.array([1.0, 0.0, 0.0]), len(caps))
    return dataset.pairs(images.tolist(), captions.tolist(), labels.tolist(), weights=1.0 + labels)


def triple_batches(batches: list[list[int]], positives: Sequence[int]) -> list[list[int]]:
    """Batches of positive caption rows -> batches of their rows in `itm_triples`' dataset."""
    where = {int(c): k for k, c in enumerate(positives)}
    return [[3 * where[c] + j for c in b for j in range(3)] for b in batches]


def first_images(dataset: FeatureDataset, rows: np.ndarray, n: int | None) -> np.ndarray:
    """The rows whose image is among the first `n` images of `rows` (all when n is None)."""
    import numpy as np

    cap_img = np.asarray(dataset.caption_image, dtype=np.int64)[rows]
    images = np.unique(cap_img)
    return rows if n is None or len(images) <= n else rows[np.isin(cap_img, images[:n])]
