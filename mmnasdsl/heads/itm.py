"""Image-text matching (paper §3.3): s = σ(Linear(d_z -> 1)(z)), negatives, Recall@K.

Training samples (`epoch_data`): each positive caption forms a triple of pairs (its image,
it, 1), (its image, a negative caption, 0), (a negative image, it, 0), in consecutive batch
rows. Which negatives (`negatives_plan`, REFERENCE.md "ITM"): epochs before
`negatives_from` (and every epoch when it is 0, the default) draw them at random among
the non-matching captions and images; from it on, every `mine_every` epochs the current
net scores, in eval mode, `candidates` random non-matching captions per image and
images per caption and keeps the `top_k` highest, from which the triples draw (the
epochs between reuse the lists). Random by default because, on `shapes`, mining from the
first epoch never leaves chance and mining after a warm-up costs 30-60 % of an epoch's CPU
(4-16 candidates) for a gain within seed noise (docs/results.md, "Image-text matching").

Losses (`loss = ...`, `itm_loss`):

- `bce` (default): binary cross-entropy with logits against `batch["label"]`, a matching
  pair weighted `positive_weight` (2: the reference's "positive counted twice", which
  balances the two negatives of its triple), times an optional per-pair `batch["weight"]`,
  averaged over the pairs: mean_i w_i · BCE_i.
- `margin`: the reference's Margin_Loss on σ scores, per triple
  max(0, m − s⁺ + s⁻_caption) + max(0, m − s⁺ + s⁻_image), averaged over the triples.

Scoring (evaluation, mining) ranks by the logit, not by σ(logit): σ rounds to 1.0 in
float32 above ~17, which would tie the most confident pairs. Pairs are scored caption by
caption so that each caption's word stream runs once (`Runner.outputs(share_words=True)`).

Evaluation: Recall@1/5/10 both ways and ranks over the full image x caption score matrix
(of the first `max_images` images of the rows when given: the matrix grows as images x
captions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

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

# generator purposes: mining candidates, the triples' draws, random negatives
SEED_MINE, SEED_DRAW, SEED_RANDOM = 0x17, 0x3, 0x2A


class ITMOptions(BaseModel):
    """`head itm(negatives_from = 0, candidates = 64, top_k = 5, loss = bce, ...)`: which
    negatives an epoch trains on, and the loss (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    candidates: int = Field(
        64, ge=1, le=100_000, description="random negatives scored per anchor when mining"
    )
    top_k: int = Field(5, ge=1, le=100_000, description="hardest kept; one is drawn per step")
    negatives_from: int = Field(
        0,
        ge=0,
        le=100_000,
        description="first epoch (1-based) trained on mined hard negatives, random ones "
        "before it; 0: random negatives throughout",
    )
    mine_every: int = Field(
        1, ge=1, le=100_000, description="epochs between two minings (those between reuse)"
    )
    loss: Literal["bce", "margin"] = Field(
        "bce", description="bce per pair, or the reference's margin ranking loss per triple"
    )
    positive_weight: float = Field(
        2.0, gt=0, le=1000, description="bce weight of a matching pair (a negative weighs 1)"
    )
    margin: float = Field(0.2, gt=0, le=1, description="margin of loss = margin, on σ scores")


def negatives_plan(epoch: int, options: ITMOptions) -> Literal["random", "mine", "reuse"]:
    """What 0-based `epoch` trains on: "random" negatives (before `negatives_from`, or always
    when it is 0), freshly "mine"d ones (that epoch and every `mine_every`-th after it), or
    the last mined lists ("reuse")."""
    since = epoch + 1 - options.negatives_from
    if options.negatives_from == 0 or since < 0:
        return "random"
    return "mine" if since % options.mine_every == 0 else "reuse"


def itm_loss(
    logits: Tensor, labels: Tensor, options: ITMOptions, weight: Tensor | None = None
) -> Tensor:
    """The loss of a batch of pairs (B,) -> scalar, per `options.loss` (module docstring).

    `margin` needs the pairs in triples (positive, negative caption, negative image), as
    `itm_triples` and `triple_batches` lay them out.
    """
    import torch.nn.functional as F

    labels = labels.float()
    if options.loss == "margin":
        if logits.numel() % 3:
            raise ValueError("the margin loss needs pairs in triples (pos, neg caption, neg image)")
        if not bool((labels.view(-1, 3) == labels.new_tensor([1.0, 0.0, 0.0])).all()):
            raise ValueError("the margin loss needs triples labelled (1, 0, 0)")
        s = logits.sigmoid().view(-1, 3)
        return (options.margin - s[:, :1] + s[:, 1:]).clamp(min=0).sum(1).mean()
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # (B,)
    w = 1.0 + (options.positive_weight - 1.0) * labels
    return (bce * (w if weight is None else w * weight)).mean()


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
        return itm_loss(out["logits"], batch["label"], self.options, batch.get("weight"))

    def predict(self, out: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        # "logit" ranks as "score" does, without σ's float32 saturation at 1.0 (no ties)
        return {"score": out["logits"].sigmoid(), "logit": out["logits"]}  # (B,) each

    def params(self, s: ModelSettings) -> int:
        return fusion_params(s) + s.d_fused + 1

    def flops(self, s: ModelSettings, words: int, objects: int) -> int:
        return fusion_flops(words, objects, s) + 2 * s.d_fused

    # -- training samples ---------------------------------------------------------------------

    def epoch_data(self, request: EpochRequest) -> EpochData:
        """Triples of this stream's rows with the epoch's negatives (`negatives`)."""
        r = request
        triples = itm_triples(r.dataset, r.rows, self.negatives(r), r.seed + r.stream, r.epoch)
        return EpochData(triples, triple_batches(r.batches, r.rows))

    def negatives(self, r: EpochRequest) -> dict[str, Tensor]:
        """The epoch's negative lists over `pool` (`negatives_plan`): made once per epoch and
        kept in `memo`, so a second stream (the search's D_a) or a resumed run reuses them,
        and a later epoch can reuse mined ones."""
        memo = r.memo
        if memo.get("negatives_epoch") == r.epoch:
            return memo["negatives"]
        plan = negatives_plan(r.epoch, self.options)
        pool = r.pool or r.rows
        if plan == "random":
            lists = random_negatives(r.dataset, pool, r.seed, r.epoch)
        elif plan == "reuse" and memo.get("negatives_mined"):
            lists = memo["negatives"]
        else:  # "mine", or "reuse" with nothing mined to reuse
            lists = self.mine(r.runner, r.dataset, pool, r.seed, r.epoch)
        memo.update(negatives=lists, negatives_epoch=r.epoch, negatives_mined=plan != "random")
        return lists

    def mine(
        self,
        runner: Runner,
        dataset: FeatureDataset,
        captions: Sequence[int],
        seed: int,
        epoch: int,
    ) -> dict[str, Tensor]:
        """For each image, the top-k of `candidates` random non-matching captions by the current
        score; for each caption, the same over images (REFERENCE.md "ITM"). Eval mode; both
        directions' pairs are scored in one pass, caption by caption (`pair_scores`).

        Returns {"captions": (n_images_in_dataset, k) caption rows (-1 where unused),
                 "images": (n_captions_in_dataset, k) image rows (-1 where unused)}.
        """
        import numpy as np
        import torch

        n, k = self.options.candidates, min(self.options.top_k, self.options.candidates)
        rng = np.random.default_rng([seed, epoch, SEED_MINE])
        caps, cap_img, imgs = anchors(dataset, captions)
        cand_c = draw_negatives(imgs, caps, cap_img, n, rng)  # (I, n) captions
        cand_i = draw_negatives(cap_img[caps], imgs, np.arange(dataset.n_images), n, rng)  # (C, n)
        images = np.concatenate([np.repeat(imgs, n), cand_i.ravel()])
        scores = pair_scores(
            runner, dataset, images, np.concatenate([cand_c.ravel(), np.repeat(caps, n)])
        )
        s_c, s_i = (
            scores[: cand_c.size].view(len(imgs), n),
            scores[cand_c.size :].view(len(caps), n),
        )
        hard_c = torch.from_numpy(cand_c).gather(1, s_c.topk(k, 1).indices)
        hard_i = torch.from_numpy(cand_i).gather(1, s_i.topk(k, 1).indices)
        return negative_lists(dataset, imgs, caps, hard_c, hard_i)

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
            runner, dataset, np.repeat(images, len(rows)), np.tile(rows, len(images))
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
    runner: Runner, dataset: FeatureDataset, images: np.ndarray, captions: np.ndarray
) -> Tensor:
    """Match logits of explicit (image, caption) pairs, eval mode -> (n_pairs,), in the order
    given. The pairs run sorted by caption, so that each caption's word stream runs once
    for all its pairs in a batch (`share_words`); logits rank as σ would, without ties."""
    import numpy as np
    import torch

    images, captions = np.asarray(images, np.int64), np.asarray(captions, np.int64)
    order = np.argsort(captions, kind="stable")
    pairs = dataset.pairs(images[order].tolist(), captions[order].tolist(), [0.0] * len(order))
    outs = [
        out["logits"].float().cpu()
        for _, out in runner.outputs(pairs, range(len(order)), share_words=True)
    ]
    scores = torch.zeros(len(order))
    if outs:
        scores[torch.from_numpy(order)] = torch.cat(outs)
    return scores


def anchors(dataset: FeatureDataset, captions: Sequence[int]) -> tuple[np.ndarray, ...]:
    """(caption rows, caption -> image of the whole dataset, the captions' distinct images)."""
    import numpy as np

    caps = np.asarray(captions, dtype=np.int64)
    cap_img = np.asarray(dataset.caption_image, dtype=np.int64)
    return caps, cap_img, np.unique(cap_img[caps])


def negative_lists(
    dataset: FeatureDataset, imgs: np.ndarray, caps: np.ndarray, neg_c: Tensor, neg_i: Tensor
) -> dict[str, Tensor]:
    """Per-anchor lists in dataset rows, -1 where a row is no anchor: {"captions": (images,
    k) negative captions of each image, "images": (captions, k) negative images of each
    caption}."""
    import torch

    out_c = torch.full((dataset.n_images, neg_c.shape[1]), -1, dtype=torch.int64)
    out_c[imgs] = neg_c
    out_i = torch.full((len(dataset), neg_i.shape[1]), -1, dtype=torch.int64)
    out_i[caps] = neg_i
    return {"captions": out_c, "images": out_i}


def random_negatives(
    dataset: FeatureDataset, captions: Sequence[int], seed: int, epoch: int, k: int = 1
) -> dict[str, Tensor]:
    """For each image of `captions`, k random non-matching captions among them; for each
    caption, k random other images among theirs: `mine`'s format, a pure function of (seed,
    epoch), no scoring."""
    import numpy as np
    import torch

    rng = np.random.default_rng([seed, epoch, SEED_RANDOM])
    caps, cap_img, imgs = anchors(dataset, captions)
    neg_c = draw_negatives(imgs, caps, cap_img, k, rng)
    neg_i = draw_negatives(cap_img[caps], imgs, np.arange(dataset.n_images), k, rng)
    return negative_lists(dataset, imgs, caps, torch.from_numpy(neg_c), torch.from_numpy(neg_i))


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
    (its image, it, 1), (its image, a negative caption, 0), (a negative image, it, 0); the
    negatives are drawn from the lists (random or top-k) with a (seed, epoch) generator.
    The positive's weight is the loss's (`positive_weight`), not the pairs'."""
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
    return dataset.pairs(images.tolist(), captions.tolist(), labels.tolist())


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
