"""Training from scratch and evaluation of a concrete spec, for every task (vqa, itm, vg).

The schedule is the reference implementation's (REFERENCE.md "Final training"): Adam
(0.9, 0.98, eps 1e-9), lr warm-up 1/4, 2/4, 3/4 over the first `warmup` epochs, x`decay`
after each epoch in `decay_at`, gradient-norm clip. After every epoch the model is
evaluated on val; RUNDIR gets last.pt (resumable), best.pt and metrics.json.

The pieces the search shares live here too: the lr schedule, the batch order (a pure
function of (seed, epoch), so a resumed run replays it), one W step, ITM hard-negative
mining (REFERENCE.md "ITM": mined at each epoch start in eval mode) and evaluation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.network import Network, needs_relations
from mmnasdsl.data import FeatureDataset, collate, open_split
from mmnasdsl.heads._metrics import grounding_report, retrieval_report, vqa_report
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.settings import TrainSettings, head_options, input_settings, words_stream
from mmnasdsl.lang.spec import Spec
from mmnasdsl.train import distributed, runs
from mmnasdsl.train.distributed import Dist
from mmnasdsl.train.progress import LogReporter, Reporter

log = logging.getLogger("mmnasdsl.train.loop")

# The metric that picks best.pt and that the search reports on D_a (higher is better).
TASK_METRIC = {"vqa": "accuracy", "itm": "rsum", "vg": "accuracy"}
EVAL_BATCH = 256
# ITM scores every (image, caption) pair: the per-epoch evaluations (val in training, D_a
# in search) use the first EPOCH_EVAL_IMAGES images of the split and their captions;
# `mmnasdsl eval` scores the whole split unless told otherwise.
EPOCH_EVAL_IMAGES = 100


def task_of(spec: Spec) -> str:
    if spec.head is None:
        raise UsageError(f"{spec.source}: the spec has no head, so there is nothing to train")
    return spec.head.call.name


# ---------------------------------------------------------------------------- schedules


def lr_factor(epoch: int, warmup: int, decay_at: Sequence[int] = (), decay: float = 1.0) -> float:
    """The lr multiplier of 0-based `epoch`: (e+1)/(warmup+1) while warming up, then 1,
    times `decay` for every decay epoch reached (the reference: 1/4, 2/4, 3/4, 1, ... x0.2)."""
    factor = (epoch + 1) / (warmup + 1) if epoch < warmup else 1.0
    return factor * decay ** sum(epoch >= d for d in decay_at)


def w_optimizer(params: Sequence[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam(0.9, 0.98, eps 1e-9): the reference's optimiser for the network weights W.

    The fused kernel is ~8x faster on CPU than the default (bench/step.py: 0.09 s vs 0.72 s
    for 24M parameters); torch builds without a CPU fused Adam fall back to the default.
    """
    try:
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.98), eps=1e-9, fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.98), eps=1e-9)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------------------ batches


def epoch_batches(
    rows: Sequence[int],
    batch_size: int,
    seed: int,
    epoch: int,
    dist: Dist | None = None,
    stream: int = 0,
) -> list[list[int]]:
    """This rank's batches of `rows` for one epoch, shuffled from (seed, epoch, stream) alone.

    A global batch of `batch_size` rows is split across the ranks; a final batch too
    small to give every rank a row is dropped. `stream` tells apart orders drawn for
    different purposes in the same epoch (the search's D_m and D_a).
    """
    dist = dist or Dist()
    rng = np.random.default_rng([seed, epoch, stream])
    order = np.asarray(rows)[rng.permutation(len(rows))]
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return [dist.shard(b) for b in batches if len(b) >= dist.world]


def batch_iter(
    dataset: Dataset, batches: Sequence[Sequence[int]], *, relations: bool, device: torch.device
) -> Iterator[dict[str, Tensor]]:
    """Collated batches of the given rows, in order, on `device`."""
    loader = DataLoader(
        dataset,
        batch_sampler=batches,  # type: ignore[arg-type]
        collate_fn=partial(collate, relations=relations),
    )
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def seed_step(seed: int, epoch: int, step: int, dist: Dist) -> None:
    """Seed the global torch RNG (dropout) from where the run is: resume replays it."""
    torch.manual_seed(runs.step_seed(seed, epoch, step, dist.rank))


def w_step(
    net: nn.Module, batch: dict[str, Tensor], opt: torch.optim.Optimizer, clip: float
) -> float:
    """One update of the weights on a batch: forward, loss, backward, clip, Adam."""
    opt.zero_grad(set_to_none=True)
    out = net(batch)
    loss = distributed.unwrap(net).loss(out, batch)
    loss.backward()
    params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
    nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return loss.item()


# ------------------------------------------------------------------- ITM hard negatives


@dataclass(frozen=True)
class MiningOptions:
    candidates: int = 64  # random negatives scored per anchor
    top_k: int = 5  # hardest kept; training draws one


def mining_options(spec: Spec) -> MiningOptions:
    opts = head_options(spec)
    return MiningOptions(int(opts.get("candidates", 64)), int(opts.get("top_k", 5)))


def _draw_negatives(
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


@torch.no_grad()
def pair_scores(
    net: nn.Module,
    dataset: FeatureDataset,
    images: np.ndarray,
    captions: np.ndarray,
    device: torch.device,
    relations: bool,
) -> Tensor:
    """Match scores of explicit (image, caption) pairs, in eval mode -> (n_pairs,)."""
    pairs = dataset.pairs(images.tolist(), captions.tolist(), [0.0] * len(images))
    rows = np.arange(len(images))
    batches = [rows[i : i + EVAL_BATCH].tolist() for i in range(0, len(rows), EVAL_BATCH)]
    model, scores = distributed.unwrap(net), []
    for batch in batch_iter(pairs, batches, relations=relations, device=device):
        scores.append(model.predict(model(batch), batch)["score"].float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


def mine_hard_negatives(
    net: nn.Module,
    dataset: FeatureDataset,
    captions: Sequence[int],
    options: MiningOptions,
    seed: int,
    epoch: int,
    device: torch.device,
    relations: bool,
) -> dict[str, Tensor]:
    """For each image, the top-k of `candidates` random non-matching captions by the current
    score; for each caption, the same over images (REFERENCE.md "ITM"). Eval mode.

    Returns {"captions": (n_images_in_dataset, k) caption rows (-1 where unused),
             "images": (n_captions_in_dataset, k) image rows (-1 where unused)}.
    """
    rng = np.random.default_rng([seed, epoch, 0x17])
    caps = np.asarray(captions, dtype=np.int64)
    cap_img = np.asarray(dataset.caption_image, dtype=np.int64)
    imgs = np.unique(cap_img[caps])
    log.info(
        "epoch %d: mining hard negatives (%d images, %d captions, %d candidates each)",
        epoch + 1,
        len(imgs),
        len(caps),
        options.candidates,
    )
    was_training = net.training
    net.eval()
    cand_c = _draw_negatives(imgs, caps, cap_img, options.candidates, rng)  # (I, n) captions
    cand_i = _draw_negatives(
        cap_img[caps], imgs, np.arange(dataset.n_images), options.candidates, rng
    )  # (C, n) images
    s_c = pair_scores(
        net, dataset, np.repeat(imgs, options.candidates), cand_c.ravel(), device, relations
    ).view(len(imgs), -1)
    s_i = pair_scores(
        net, dataset, cand_i.ravel(), np.repeat(caps, options.candidates), device, relations
    ).view(len(caps), -1)
    net.train(was_training)
    k = min(options.top_k, options.candidates)
    out_c = torch.full((dataset.n_images, k), -1, dtype=torch.int64)
    out_c[imgs] = torch.from_numpy(cand_c).gather(1, s_c.topk(k, 1).indices)
    out_i = torch.full((len(dataset), k), -1, dtype=torch.int64)
    out_i[caps] = torch.from_numpy(cand_i).gather(1, s_i.topk(k, 1).indices)
    return {"captions": out_c, "images": out_i}


def itm_triples(
    dataset: FeatureDataset,
    positives: Sequence[int],
    negatives: dict[str, Tensor],
    seed: int,
    epoch: int,
) -> Dataset:
    """The epoch's training pairs: for positive caption k, rows 3k, 3k+1, 3k+2 hold
    (its image, it, 1), (its image, a hard negative caption, 0), (a hard negative image, it, 0);
    the negatives are drawn from the top-k lists with a (seed, epoch) generator."""
    rng = np.random.default_rng([seed, epoch, 0x3])
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


def add_pair_weights(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """ITM: the positive counts twice (REFERENCE.md), via the head's per-pair `weight`."""
    return {**batch, "weight": 1.0 + batch["label"]}


# ------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate(
    net: nn.Module,
    dataset: FeatureDataset,
    *,
    indices: Sequence[int] | None = None,
    device: torch.device,
    relations: bool,
    reporter: Reporter | None = None,
    max_images: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The task's metrics on `dataset` (or its rows `indices`) and the predictions.

    VQA: official accuracy overall / per answer type / per family, predictions in the
    EvalAI result format. VG: accuracy at IoU >= 0.5. ITM: Recall@K both ways and ranks
    over the full image x caption score matrix of the rows' images and captions (of the
    first `max_images` images when given: the matrix grows with images x captions).
    """
    rows = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    was_training = net.training
    net.eval()
    try:
        if dataset.task == "itm":
            return _evaluate_itm(
                net, dataset, _first_images(dataset, rows, max_images), device, relations
            )
        return _evaluate_samples(net, dataset, rows, device, relations, reporter)
    finally:
        net.train(was_training)


def _first_images(dataset: FeatureDataset, rows: np.ndarray, n: int | None) -> np.ndarray:
    """The rows whose image is among the first `n` images of `rows` (all when n is None)."""
    cap_img = np.asarray(dataset.caption_image, dtype=np.int64)[rows]
    images = np.unique(cap_img)
    return rows if n is None or len(images) <= n else rows[np.isin(cap_img, images[:n])]


def _evaluate_samples(
    net: nn.Module,
    dataset: FeatureDataset,
    rows: np.ndarray,
    device: torch.device,
    relations: bool,
    reporter: Reporter | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    model = distributed.unwrap(net)
    batches = [rows[i : i + EVAL_BATCH].tolist() for i in range(0, len(rows), EVAL_BATCH)]
    preds: list[Tensor] = []
    loss_sum = 0.0
    if reporter:
        reporter.start("eval", len(batches))
    for batch in batch_iter(dataset, batches, relations=relations, device=device):
        out = model(batch)
        loss_sum += model.loss(out, batch).item() * len(batch["index"])
        p = model.predict(out, batch)
        preds.append((p["answer"] if dataset.task == "vqa" else p["box"]).cpu())
        if reporter:
            reporter.advance(len(batch["index"]))
    pred = torch.cat(preds) if preds else torch.zeros(0)
    metrics = (
        _vqa_metrics(dataset, rows, pred)
        if dataset.task == "vqa"
        else grounding_report(pred, torch.as_tensor(dataset.gt_box[rows]).float())
    )
    metrics["loss"] = loss_sum / max(len(rows), 1)
    return metrics, _predictions(dataset, rows, pred)


def _vqa_metrics(dataset: FeatureDataset, rows: np.ndarray, pred: Tensor) -> dict[str, Any]:
    answers = [dataset.answers[int(a)] for a in pred]
    truth = [dataset.raw_answers(int(i)) for i in rows]
    return dict(
        vqa_report(
            answers,
            truth,
            dataset.question_answer_type[rows].tolist(),
            dataset.question_family[rows].tolist(),
            dataset.families,
        )
    )


def _predictions(dataset: FeatureDataset, rows: np.ndarray, pred: Tensor) -> list[dict[str, Any]]:
    ids = dataset.text_ids[rows].tolist()
    if dataset.task == "vqa":  # the EvalAI result format
        return [
            {"question_id": q, "answer": dataset.answers[int(a)]}
            for q, a in zip(ids, pred, strict=True)
        ]
    return [
        {"id": i, "box": [round(float(v), 2) for v in b]} for i, b in zip(ids, pred, strict=True)
    ]


def _evaluate_itm(
    net: nn.Module, dataset: FeatureDataset, rows: np.ndarray, device: torch.device, relations: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cap_img = np.asarray(dataset.caption_image, dtype=np.int64)
    images = np.unique(cap_img[rows])
    img_pos = {int(r): k for k, r in enumerate(images)}
    scores = pair_scores(
        net, dataset, np.repeat(images, len(rows)), np.tile(rows, len(images)), device, relations
    ).view(len(images), len(rows))
    truth = torch.tensor([img_pos[int(cap_img[c])] for c in rows])
    metrics: dict[str, Any] = retrieval_report(scores, truth)
    top = scores.topk(min(10, len(rows)), 1).indices
    preds = [
        {
            "image_id": int(dataset.image_ids[img]),
            "captions": [int(dataset.text_ids[rows[j]]) for j in top[k]],
        }
        for k, img in enumerate(images)
    ]
    return metrics, preds


# ------------------------------------------------------------------------- the trainer


def model_for(spec: Spec, train: FeatureDataset, d_model: int | None = None) -> Network:
    """The spec's network sized by the training split (vocabulary, answers, GloVe init)."""
    name = words_stream(spec)
    glove = None
    if name is not None and train.glove is not None:
        embed = input_settings(spec, name).embed  # type: ignore[union-attr]
        if embed.kind == "glove" and train.glove.shape == (len(train.vocab), embed.dim):
            glove = train.glove
    answers = len(train.answers) if train.task == "vqa" else None
    return build_model(
        spec, vocab_size=len(train.vocab), num_answers=answers, glove=glove, d_model=d_model
    )


def model_sizes(train: FeatureDataset) -> dict[str, int]:
    """What `build_model` needs besides the spec, stored in checkpoints for `eval`."""
    return {
        "vocab_size": len(train.vocab),
        "num_answers": len(train.answers) if train.task == "vqa" else 0,
    }


@dataclass
class TrainJob:
    """Everything a training run needs; the CLI fills it from the spec and the flags."""

    spec: Spec
    data: Path
    run_dir: Path
    settings: TrainSettings
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resume: bool = False
    reporter: Reporter = field(default_factory=LogReporter)
    dist: Dist = field(default_factory=Dist)
    checkpoint_every: int = 200  # steps between mid-epoch checkpoints (and every epoch end)


@dataclass
class TrainState:
    """Where a run is: what last.pt stores besides weights and optimiser."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps done in the current epoch
    loss_sum: float = 0.0
    loss_n: int = 0
    best: float = float("-inf")
    history: list[dict[str, Any]] = field(default_factory=list)
    negatives: dict[str, Tensor] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "loss_sum": self.loss_sum,
            "loss_n": self.loss_n,
            "best": self.best,
            "history": self.history,
            "negatives": self.negatives,
        }


class Trainer:
    """Trains a concrete spec from scratch with the reference schedule (one class, any task)."""

    def __init__(self, job: TrainJob) -> None:
        if not job.spec.is_concrete:
            raise UsageError(
                f"{job.spec.source} is a search space, not one network; run "
                f"`mmnasdsl search {job.spec.source}` and train its arch.mmnas"
            )
        self.job, self.s = job, job.settings
        self.task = task_of(job.spec)
        self.train_set = open_split(job.data, "train", job.spec)
        self.val_set = open_split(job.data, "val", job.spec)
        torch.manual_seed(job.seed)
        self.model = model_for(job.spec, self.train_set).to(job.device)
        self.relations = needs_relations(job.spec.blocks())
        self.net = distributed.wrap(self.model, job.dist, job.device)
        self.opt = w_optimizer(list(self.model.parameters()), self.s.lr)
        self.state = TrainState()
        if job.resume:
            self._load(runs.load_checkpoint(job.run_dir / "last.pt"))

    # -- the loop ---------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs; evaluate on val after each; return metrics.json."""
        log.info(
            "training %s: %d epochs, %d train / %d val samples, %s params",
            self.job.spec.source,
            self.s.epochs,
            len(self.train_set),
            len(self.val_set),
            f"{sum(p.numel() for p in self.model.parameters()):,}",
        )
        while self.state.epoch < self.s.epochs:
            t0 = time.perf_counter()
            self.train_epoch(self.state.epoch)
            metrics, _ = evaluate(
                self.net,
                self.val_set,
                device=self.job.device,
                relations=self.relations,
                max_images=EPOCH_EVAL_IMAGES,
            )
            self.end_epoch(metrics, time.perf_counter() - t0)
        return self.summary()

    def train_epoch(self, epoch: int) -> None:
        job, st = self.job, self.state
        set_lr(self.opt, self.s.lr * lr_factor(epoch, self.s.warmup, self.s.decay_at, self.s.decay))
        dataset, batches = self.epoch_data(epoch)
        job.reporter.start(f"epoch {epoch + 1}/{self.s.epochs}", len(batches), st.step)
        self.net.train()
        todo = batches[st.step :]
        for batch in batch_iter(dataset, todo, relations=self.relations, device=job.device):
            seed_step(job.seed, epoch, st.step, job.dist)
            if self.task == "itm":
                batch = add_pair_weights(batch)
            loss = w_step(self.net, batch, self.opt, self.s.clip)
            st.step, st.loss_sum, st.loss_n = st.step + 1, st.loss_sum + loss, st.loss_n + 1
            job.reporter.advance(len(batch["index"]) * job.dist.world, loss=st.loss_sum / st.loss_n)
            if st.step % job.checkpoint_every == 0 and st.step < len(batches):
                self.save_last()

    def epoch_data(self, epoch: int) -> tuple[Dataset, list[list[int]]]:
        """The epoch's dataset and batches; ITM mines hard negatives first (once per epoch)."""
        rows = list(range(len(self.train_set)))
        batches = epoch_batches(rows, self.s.batch, self.job.seed, epoch, self.job.dist)
        if self.task != "itm":
            return self.train_set, batches
        if self.state.negatives is None:
            self.state.negatives = mine_hard_negatives(
                self.net,
                self.train_set,
                rows,
                mining_options(self.job.spec),
                self.job.seed,
                epoch,
                self.job.device,
                self.relations,
            )
        triples = itm_triples(self.train_set, rows, self.state.negatives, self.job.seed, epoch)
        return triples, triple_batches(batches, rows)

    def end_epoch(self, metrics: dict[str, Any], seconds: float) -> None:
        st, key = self.state, TASK_METRIC[self.task]
        record = {
            "epoch": st.epoch + 1,
            "loss": st.loss_sum / max(st.loss_n, 1),
            "lr": self.opt.param_groups[0]["lr"],
            "val": metrics,
            "seconds": seconds,
        }
        st.history.append(record)
        improved = metrics[key] > st.best
        st.best = max(st.best, metrics[key])
        st.epoch, st.step, st.loss_sum, st.loss_n, st.negatives = st.epoch + 1, 0, 0.0, 0, None
        self.job.reporter.finish(
            f"epoch {st.epoch}/{self.s.epochs}: loss {record['loss']:.4f} "
            f"val {key} {metrics[key]:.2f} ({seconds:.0f}s)"
        )
        if self.job.dist.is_main:
            if improved:
                runs.save_checkpoint(self.job.run_dir / "best.pt", self.model_checkpoint(metrics))
            self.save_last()
            runs.write_json(self.job.run_dir / "metrics.json", self.summary())

    def summary(self) -> dict[str, Any]:
        key = TASK_METRIC[self.task]
        best = max(self.state.history, key=lambda r: r["val"][key], default=None)
        return {
            "spec": self.job.spec.source,
            "task": self.task,
            "metric": key,
            "best_epoch": best["epoch"] if best else None,
            "best": best["val"] if best else None,
            "epochs": self.state.history,
        }

    # -- checkpoints -------------------------------------------------------------------------

    def model_checkpoint(self, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """What `eval` needs: weights, the spec text and the sizes the model was built with."""
        return {
            "kind": "model",
            "spec": format_spec(self.job.spec),
            "sizes": model_sizes(self.train_set),
            "model": self.model.state_dict(),
            "epoch": self.state.epoch,
            "metrics": json.loads(json.dumps(metrics or {})),
        }

    def save_last(self) -> None:
        if not self.job.dist.is_main:
            return
        state = {
            **self.model_checkpoint(),
            "kind": "train",
            "optimizer": self.opt.state_dict(),
            "state": self.state.as_dict(),
            "seed": self.job.seed,
            "settings": self.s.model_dump(mode="json"),
            "rng": runs.rng_state(),
        }
        runs.save_checkpoint(self.job.run_dir / "last.pt", state)

    def _load(self, ckpt: dict[str, Any]) -> None:
        path = self.job.run_dir / "last.pt"
        # `--resume --epochs N` may extend a run; every other setting must be the run's own
        theirs = {k: v for k, v in ckpt["settings"].items() if k != "epochs"}
        runs.check_resumable(
            {**ckpt, "settings": theirs},
            path,
            "train",
            format_spec(self.job.spec),
            seed=self.job.seed,
            settings=self.s.model_dump(mode="json", exclude={"epochs"}),
        )
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.state = TrainState(**ckpt["state"])
        runs.resumed(ckpt, self.job.run_dir, log)


# ----------------------------------------------------------------------------- evaluation


def evaluate_checkpoint(
    spec: Spec,
    checkpoint: Path,
    data: Path,
    split: str,
    device: torch.device,
    max_images: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`mmnasdsl eval`: load best.pt/last.pt of a concrete spec and evaluate one split."""
    if not spec.is_concrete:
        raise UsageError(f"{spec.source} is a search space; evaluate a concrete spec")
    ckpt = runs.load_checkpoint(checkpoint)
    if "model" not in ckpt or "sizes" not in ckpt:
        raise UsageError(f"{checkpoint} holds no trained model (expected best.pt or last.pt)")
    sizes = ckpt["sizes"]
    model = build_model(
        spec, vocab_size=sizes["vocab_size"], num_answers=sizes["num_answers"] or None
    ).to(device)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise UsageError(
            f"{checkpoint} does not fit {spec.source}: {str(exc).splitlines()[0]}"
        ) from None
    dataset = open_split(data, split, spec)
    return evaluate(
        model,
        dataset,
        device=device,
        relations=needs_relations(spec.blocks()),
        max_images=max_images,
    )
