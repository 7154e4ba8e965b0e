"""The one training loop, shared by `train` and `search`: epochs of seeded steps over batches,
checkpointed and exactly resumable.

A `Loop` opens the training split, builds its network (a `Network` to train, a `Supernet`
to search), and runs epochs: the epoch's samples come from the task
(`Task.epoch_data`: ITM mines hard negatives there), each step reseeds the global RNG
from (seed, epoch, step) and runs `step(batch)`, and every `checkpoint_every` steps and at
every epoch end the run is saved, so a run killed at any step and resumed replays the same
steps. What differs between training and search lives in the subclasses: `train.trainer.
Trainer` and `search.driver.SearchDriver`.

The schedule pieces are the reference implementation's (REFERENCE.md "Final training"):
Adam(0.9, 0.98, eps 1e-9) for the weights, lr warm-up 1/4, 2/4, 3/4, gradient-norm clip;
the batch order is a pure function of (seed, epoch, stream).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mmnasdsl.compile.network import relation_convention
from mmnasdsl.data import FeatureDataset, collate, open_split
from mmnasdsl.heads import EpochData, EpochRequest, Task, get_head
from mmnasdsl.lang.errors import DataError, UsageError
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.spec import Spec
from mmnasdsl.train import distributed, runs
from mmnasdsl.train.distributed import Dist
from mmnasdsl.train.precision import Amp
from mmnasdsl.train.progress import LogReporter, Reporter

log = logging.getLogger("mmnasdsl.train")

EVAL_BATCH = 256
# ITM scores every (image, caption) pair: the per-epoch evaluations (val in training, D_a
# in search) use the first EPOCH_EVAL_IMAGES images of the split and their captions;
# `mmnasdsl eval` scores the whole split unless told otherwise.
EPOCH_EVAL_IMAGES = 100


def require_head(spec: Spec) -> str:
    """The task a spec's head names; UsageError for a spec without one."""
    if spec.task is None:
        raise UsageError(f"{spec.source}: the spec has no head, so there is nothing to train")
    get_head(spec.task)
    return spec.task


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
    dataset: Dataset,
    batches: Sequence[Sequence[int]],
    *,
    relations: bool | str | None,
    device: torch.device,
) -> Iterator[dict[str, Tensor]]:
    """Collated batches of the given rows, in order, on `device`."""
    loader = DataLoader(
        dataset,
        batch_sampler=batches,  # type: ignore[arg-type]
        collate_fn=partial(collate, kind=dataset.kind, relations=relations),  # type: ignore[attr-defined]
    )
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def chunks(rows: Sequence[int], size: int) -> list[list[int]]:
    rows = list(rows)
    return [rows[i : i + size] for i in range(0, len(rows), size)]


class Clock:
    """Wall and CPU time since the last lap, added to a run's running sums as
    `<prefix>seconds` and `<prefix>cpu_seconds`. CPU time is the process's (all its threads):
    on a shared machine it measures the work, which wall time does not."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self, sums: dict[str, float], prefix: str = "") -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        sums[f"{prefix}seconds"] = sums.get(f"{prefix}seconds", 0.0) + wall - self.wall
        sums[f"{prefix}cpu_seconds"] = sums.get(f"{prefix}cpu_seconds", 0.0) + cpu - self.cpu
        self.wall, self.cpu = wall, cpu


def epoch_times(sums: dict[str, float]) -> dict[str, float]:
    """An epoch record's times: wall and CPU seconds of the epoch, and the part of each spent
    building the epoch's samples (`Task.epoch_data`: ITM's negatives)."""
    keys = ("seconds", "cpu_seconds", "data_seconds", "data_cpu_seconds")
    return {k: sums.get(k, 0.0) for k in keys}


def seed_step(seed: int, epoch: int, step: int, dist: Dist) -> None:
    """Seed the global torch RNG (dropout) from where the run is: resume replays it."""
    torch.manual_seed(runs.step_seed(seed, epoch, step, dist.rank))


def w_step(
    net: nn.Module,
    batch: dict[str, Tensor],
    opt: torch.optim.Optimizer,
    clip: float,
    amp: Amp | None = None,
) -> float:
    """One update of the weights on a batch: forward and loss in the run's precision,
    backward, clip, Adam."""
    amp = amp or Amp()
    opt.zero_grad(set_to_none=True)
    with amp.autocast():
        out = net(batch)
        loss = distributed.unwrap(net).loss(out, batch)
    amp.update(loss, opt, clip)
    return loss.item()


# --------------------------------------------------------------------------- the runner


class NetRunner:
    """The network's outputs on rows of a dataset, in eval mode without gradients: what a
    task scores with (`heads.Runner`), for evaluation and for ITM's hard negatives."""

    def __init__(self, net: nn.Module, device: torch.device, relations: bool | str | None) -> None:
        self.net, self.device, self.relations = net, device, relations

    def outputs(
        self,
        dataset: Dataset,
        rows: Sequence[int],
        batch_size: int | None = None,
        *,
        share_words: bool = False,
    ) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor]]]:
        model = distributed.unwrap(self.net)
        # a model that can run each sentence once (`Network.forward_sharing_words`) does so
        # when asked; any other module (a plug-in kind, a bench baseline) runs plainly
        shared = getattr(model, "forward_sharing_words", None) if share_words else None
        run = shared or model
        was_training = model.training
        model.eval()
        try:
            batches = chunks(rows, batch_size or EVAL_BATCH)
            for batch in batch_iter(dataset, batches, relations=self.relations, device=self.device):
                with torch.no_grad():
                    out = run(batch)
                yield batch, out
        finally:
            model.train(was_training)


def evaluate(
    net: nn.Module,
    dataset: FeatureDataset,
    *,
    indices: Sequence[int] | None = None,
    device: torch.device,
    relations: bool | str | None,
    max_images: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The task's metrics on `dataset` (or its rows `indices`) and the predictions file
    (`Task.evaluate`: VQA accuracy, ITM Recall@K (of the first `max_images` images when
    given), VG accuracy@0.5)."""
    rows = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    task = distributed.unwrap(net).task
    return task.evaluate(NetRunner(net, device, relations), dataset, rows, max_images)


# ----------------------------------------------------------------------------- the loop


@dataclass
class Job:
    """Everything a run needs besides its settings; the CLI fills it from the spec and flags."""

    spec: Spec
    data: Path
    run_dir: Path
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resume: bool = False
    reporter: Reporter = field(default_factory=LogReporter)
    dist: Dist = field(default_factory=Dist)
    checkpoint_every: int = 200  # steps between mid-epoch checkpoints (and every epoch end)


@dataclass
class State:
    """Where a run is: what its checkpoint stores besides weights and optimisers."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps done in the current epoch
    sums: dict[str, float] = field(default_factory=dict)  # this epoch's running sums
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    memo: dict[str, Any] = field(default_factory=dict)  # the task's data across epochs (ITM)
    done: bool = False
    best: float = float("-inf")  # train: best val metric so far
    unchanged: int = 0  # search: search epochs in a row with the same answer

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def add(self, key: str, value: float) -> None:
        """Add to a running sum and its count (`n_<key>`)."""
        self.sums[key] = self.sums.get(key, 0.0) + value
        self.sums[f"n_{key}"] = self.sums.get(f"n_{key}", 0.0) + 1

    def mean(self, key: str) -> float | None:
        n = self.sums.get(f"n_{key}", 0.0)
        return self.sums[key] / n if n else None

    def next_epoch(self) -> None:
        """Move to the next epoch; `memo` stays (a task keys what it keeps by epoch)."""
        self.epoch, self.step, self.sums = self.epoch + 1, 0, {}


class Loop:
    """Epochs of seeded steps, checkpointed and resumable (see the module docstring)."""

    kind: ClassVar[str]  # the checkpoint's kind, checked on resume ("train", "search")
    checkpoint_name: ClassVar[str]  # the file in the run directory ("last.pt", ...)

    def __init__(self, job: Job, settings: Any) -> None:
        self.job, self.s = job, settings
        self.task_name = require_head(job.spec)
        self.train_set: FeatureDataset = open_split(job.data, "train", job.spec)
        torch.manual_seed(job.seed)
        self.model = self.build_model().to(job.device)
        self.model.checkpoint = bool(getattr(self.s, "checkpoint", False))
        self.amp = Amp(getattr(self.s, "precision", "fp32"), job.device)
        self.task: Task = self.model.task
        self.relations = relation_convention(job.spec)
        self.net = distributed.wrap(self.model, job.dist, job.device)
        self.runner = NetRunner(self.net, job.device, self.relations)
        self.opt = w_optimizer(self.weight_parameters(), self.s.lr)
        self.state = State()

    # -- what the subclasses say --------------------------------------------------------------

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    @property
    def total_epochs(self) -> int:
        return int(self.s.epochs)

    def lr_factor(self, epoch: int) -> float:
        return 1.0

    def phase(self, epoch: int) -> str:
        return "epoch"

    def rows(self) -> list[int]:
        """The training rows of the main stream."""
        return list(range(len(self.train_set)))

    def before_epoch(self, epoch: int) -> None:
        """Hook: run once before the epoch's samples are drawn (and on a resumed epoch)."""

    def step(self, batch: dict[str, Tensor]) -> float:
        """One training step on a batch; returns the loss (default: one W step)."""
        return w_step(self.net, batch, self.opt, self.s.clip, self.amp)

    def after_step(self) -> None:
        """Hook: after each step (the search's θ steps)."""

    def end_epoch(self, epoch: int) -> None:
        raise NotImplementedError

    def running(self) -> dict[str, float]:
        """The running values the progress line shows."""
        return {"loss": self.state.mean("loss") or 0.0}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {}

    def load_extra(self, ckpt: dict[str, Any]) -> None:
        """Restore what `checkpoint_extra` saved."""

    def resume_keys(self) -> dict[str, Any]:
        """Checkpoint keys that must equal this run's for a resume (seed, settings, ...)."""
        return {"seed": self.job.seed, "settings": self.s.model_dump(mode="json")}

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        """Run the remaining epochs (or until a subclass sets `state.done`)."""
        if self.job.resume:
            self.load()
        while not self.state.done and self.state.epoch < self.total_epochs:
            self.train_epoch(self.state.epoch)
            self.end_epoch(self.state.epoch)

    def train_epoch(self, epoch: int) -> None:
        """One pass over the epoch's batches, resuming at `state.step`."""
        job, st, clock = self.job, self.state, Clock()
        set_lr(self.opt, self.s.lr * self.lr_factor(epoch))
        self.before_epoch(epoch)
        data = self.epoch_data(epoch, self.rows())
        total = self.total_epochs
        job.reporter.start(f"{self.phase(epoch)} {epoch + 1}/{total}", len(data.batches), st.step)
        self.net.train()
        for batch in self.batches(data.dataset, data.batches[st.step :]):
            seed_step(job.seed, epoch, st.step, job.dist)
            st.add("loss", self.step(batch))
            st.step += 1
            self.after_step()
            job.reporter.advance(len(batch["index"]) * job.dist.world, **self.running())
            if st.step % job.checkpoint_every == 0 and st.step < len(data.batches):
                clock.lap(st.sums)
                self.save()
        clock.lap(st.sums)

    def epoch_data(self, epoch: int, rows: list[int], stream: int = 0) -> EpochData:
        """The task's samples for `rows` this epoch (ITM: triples with random or mined
        negatives); the time it takes is the epoch's `data_seconds` (and `data_cpu_seconds`)."""
        clock = Clock()
        batches = epoch_batches(rows, self.s.batch, self.job.seed, epoch, self.job.dist, stream)
        request = EpochRequest(
            dataset=self.train_set,
            rows=rows,
            batches=batches,
            seed=self.job.seed,
            epoch=epoch,
            runner=self.runner,
            stream=stream,
            pool=self.pool_rows(),
            memo=self.state.memo,
        )
        data = self.task.epoch_data(request)
        clock.lap(self.state.sums, "data_")
        return data

    def pool_rows(self) -> list[int]:
        """Every training row of the epoch (what a task mines over); default: `rows()`."""
        return self.rows()

    def batches(self, dataset: Dataset, batches: list[list[int]]) -> Iterator[dict[str, Tensor]]:
        for batch in batch_iter(dataset, batches, relations=self.relations, device=self.job.device):
            missing = [k for k in self.task.batch_fields if k not in batch]
            if missing:  # a task whose data kind does not carry its labels
                raise DataError(
                    f"{self.job.data}: batches lack {', '.join(missing)}, which the "
                    f"'{self.task_name}' head's loss reads (data kind {self.task.data_kind!r})"
                )
            yield batch

    def evaluate(
        self, dataset: FeatureDataset, rows: Sequence[int] | None = None
    ) -> dict[str, Any]:
        """The task's metrics on rows of a split (ITM: of its first 100 images)."""
        metrics, _ = evaluate(
            self.net,
            dataset,
            indices=rows,
            device=self.job.device,
            relations=self.relations,
            max_images=EPOCH_EVAL_IMAGES,
        )
        return metrics

    # -- checkpoints --------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.job.run_dir / self.checkpoint_name

    def save(self) -> None:
        """The run's checkpoint, atomically; rank 0 only."""
        if not self.job.dist.is_main:
            return
        state = {
            "kind": self.kind,
            "spec": format_spec(self.job.spec),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.amp.state_dict(),
            "state": self.state.as_dict(),
            "rng": runs.rng_state(),
            **self.resume_keys(),
            **self.checkpoint_extra(),
        }
        runs.save_checkpoint(self.checkpoint_path, state)

    def load(self) -> None:
        """Continue from the run's checkpoint; refuse one of another run."""
        ckpt = runs.load_checkpoint(self.checkpoint_path)
        spec_text = format_spec(self.job.spec)
        runs.check_resumable(ckpt, self.checkpoint_path, self.kind, spec_text, **self.resume_keys())
        try:  # a checkpoint of this run whose contents were damaged or edited
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.amp.load_state_dict(ckpt.get("scaler", {}))
            self.state = State(**ckpt["state"])
            self.load_extra(ckpt)
            runs.resumed(ckpt, self.job.run_dir, log)
        except runs.DAMAGED as exc:
            raise UsageError(
                f"cannot resume from {self.checkpoint_path}: its contents are damaged "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None


def model_sizes(train: FeatureDataset) -> dict[str, int]:
    """What `build_model` needs besides the spec, stored in checkpoints for `eval`."""
    return {
        "vocab_size": len(train.vocab),
        "num_answers": len(train.answers) if hasattr(train, "answers") else 0,
    }


def model_for(spec: Spec, train: FeatureDataset, d_model: int | None = None) -> nn.Module:
    """The spec's network sized by the training split (vocabulary, answers, GloVe init)."""
    from mmnasdsl.compile.build import build_model
    from mmnasdsl.lang.settings import input_settings, words_stream

    name = words_stream(spec)
    glove = None
    if name is not None and train.glove is not None:
        embed = input_settings(spec, name).embed  # type: ignore[union-attr]
        if embed.kind == "glove" and train.glove.shape == (len(train.vocab), embed.dim):
            glove = train.glove
    sizes = model_sizes(train)
    return build_model(
        spec,
        vocab_size=sizes["vocab_size"],
        num_answers=sizes["num_answers"] or None,
        glove=glove,
        d_model=d_model,
    )
