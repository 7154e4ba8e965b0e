"""The search driver: MMnas's Algorithm 1 loop (Yu et al., ACM MM 2020, §4) for any searcher.

The training split is shuffled (seeded) and cut into D_m (weights W) and D_a
(architecture θ), |D_m| : |D_a| = `split` (4:1). Then:

- warm-up, T_w epochs: per D_m batch, one W update on the searcher's warm-up routes
  (Algorithm 1: a uniformly sampled path);
- search, T_j epochs: per D_m batch, one W update on the searcher's routes; after every u
  of them, for a learning searcher, one θ update on a D_a batch (`Searcher.learn`). With
  `search { alternate = epochs }` (BM-NAS), the epoch's W updates come first, then one θ
  update per D_a batch.

W uses Adam(0.9, 0.98, eps 1e-9), lr 1/4, 2/4, 3/4 of base over the first three epochs,
grad-norm clip; the searcher says how a step runs and how θ learns (`search.oneshot`:
sampled paths and ProxylessNAS gates; `search.darts`: a weighted mixture).

After every epoch: the searcher's candidate is scored on D_a (the task metric) and its
answer written as RUNDIR/arch.mmnas (`keep = best`, BM-NAS: the best-scored candidate of
the search epochs instead); RUNDIR/history.json and RUNDIR/checkpoint.pt are updated. The
search stops early once the answer has stayed the same for `patience` search epochs.

Exact resume: the data order, the sampled paths and the dropout masks are pure functions
of (seed, epoch, step) (`runs.step_seed`), so a checkpoint needs only the weights, the
searcher's state, the optimisers, the position and the running sums; a run killed at any
step and resumed replays the same steps and ends with the same θ, metrics and arch.mmnas.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import mmnasdsl
from mmnasdsl.compile.supernet import Route, Supernet
from mmnasdsl.heads import EpochData
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.settings import SearchSettings
from mmnasdsl.lang.spec import Spec
from mmnasdsl.search.base import SEARCHERS, Searcher, ThetaBatch
from mmnasdsl.search.space import SPACES, Arch, SearchSpace, space_of
from mmnasdsl.train import distributed, runs
from mmnasdsl.train.loop import (
    Clock,
    Job,
    Loop,
    epoch_times,
    lr_factor,
    model_for,
    seed_step,
    w_step,
)

log = logging.getLogger("mmnasdsl.search")

LR_WARMUP_EPOCHS = 3  # W lr 1/4, 2/4, 3/4 of base, then base (REFERENCE.md "Search")
STREAM_DM, STREAM_DA = 0, 1  # batch-order streams (train.loop.epoch_batches)
SEED_ARCH, SEED_THETA, SEED_EVAL, SEED_MINE = 1, 2, 3, 4  # generator purposes


def device_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` (θ-step sampling runs where α lives)."""
    return torch.Generator(device=device).manual_seed(seed)


def split_rows(n: int, split: tuple[int, int], seed: int) -> tuple[list[int], list[int]]:
    """D_m, D_a rows of a split of n samples: a seeded shuffle, cut at |D_m|:|D_a|."""
    order = np.random.default_rng([seed, 0xDA]).permutation(n)
    n_a = max(1, round(n * split[1] / (split[0] + split[1])))
    if n - n_a < 1:
        raise UsageError(
            f"the training split has {n} samples, too few for a {split[0]}:"
            f"{split[1]} split into D_m and D_a"
        )
    return sorted(order[n_a:].tolist()), sorted(order[:n_a].tolist())


def entropies(probabilities: list[list[float]]) -> list[float]:
    """Per point, the entropy of its probabilities over log(#candidates): 1 = uniform,
    0 = settled on one candidate (a single-candidate point is 0)."""
    out = []
    for p in probabilities:
        h = -sum(q * math.log(q) for q in p if q > 0)
        out.append(h / math.log(len(p)) if len(p) > 1 else 0.0)
    return out


def prior_names(
    spec: Spec, prior: str | tuple[str, ...] | None, space: SearchSpace
) -> list[str] | None:
    """The op of every choice point that `search { prior }` names: inline (checked by the
    checker), or the blocks of a concrete spec file, relative to the spec's folder."""
    if prior is None:
        return None
    if not isinstance(prior, str):
        return list(prior)
    path = Path(spec.source).parent / prior
    net = mmnasdsl.load(path if path.is_file() else prior)
    names = [b.choices[0] for b in net.blocks()]
    if not net.is_concrete or len(names) != len(space.points):
        raise UsageError(
            f"{spec.source}: prior {prior!r} must be a concrete spec with one op for each "
            f"of the {len(space.points)} blocks (it has {len(names)} blocks)"
        )
    for point, name in zip(space.points, names, strict=True):
        if name not in point.candidates:
            raise UsageError(
                f"{spec.source}: prior {prior!r} puts {name} at {point.name}, whose "
                f"candidates are {', '.join(point.candidates)}"
            )
    return names


def theta_batch(
    model: Supernet,
    batch: dict[str, Tensor],
    reduce: Callable[[list[Tensor]], None] | None = None,
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> ThetaBatch:
    """A batch's loss under given routes, through the supernet without DDP wrapping (θ's
    gradients are averaged over the ranks by `reduce`; W gets none). `autocast` is the
    run's precision context (`train.precision.autocast`), entered around the forward."""

    def loss(routes: Sequence[Route]) -> Tensor:
        model.set_routes(routes)
        with autocast():
            return model.loss(model(batch), batch)

    return ThetaBatch(loss) if reduce is None else ThetaBatch(loss, reduce)


@dataclass
class SearchJob(Job):
    """A search run: the common job fields, the search settings and the searcher's name."""

    settings: SearchSettings = field(default_factory=SearchSettings)
    searcher: str = "oneshot"
    checkpoint_every: int = 50  # W steps between mid-epoch checkpoints (and every epoch end)


class SearchDriver(Loop):
    """Algorithm 1 as a loop over epochs and steps; one instance per run (per rank)."""

    kind = "search"
    checkpoint_name = "checkpoint.pt"

    def __init__(self, job: SearchJob) -> None:
        if job.spec.is_concrete:
            raise UsageError(
                f"{job.spec.source} has no searchable block (every block is one "
                f"op); train it with `mmnasdsl train {job.spec.source}`"
            )
        super().__init__(job, job.settings)
        self.job: SearchJob = job
        self.d_m, self.d_a = split_rows(len(self.train_set), self.s.split, job.seed)
        self.space = space_of(job.spec)
        self.space_kind = SPACES.get(job.spec.kind)
        self.searcher: Searcher = SEARCHERS.get(job.searcher)(self.space, self.s, job.seed)
        self.start_from_prior()
        self.searcher.to(job.device)
        self.theta_data: EpochData | None = None
        self.kept: tuple[float, Arch] | None = None  # keep = best: (D_a metric, candidate)

    def start_from_prior(self) -> None:
        """`search { prior = ... }`: α starts from a concrete net (searchers that learn α)."""
        names = prior_names(self.job.spec, self.s.prior, self.space)
        if names is None:
            return
        start = getattr(self.searcher, "start_from", None)
        if start is None:
            raise UsageError(f"--searcher {self.job.searcher} does not start from a prior")
        start(names, self.s.prior_strength)

    @property
    def supernet(self) -> Supernet:
        return self.model  # type: ignore[return-value]

    def build_model(self) -> nn.Module:
        return model_for(self.job.spec, self.train_set, self.s.d_model)

    @property
    def total_epochs(self) -> int:
        return self.s.warmup + self.s.epochs

    def warmup(self, epoch: int) -> bool:
        return epoch < self.s.warmup

    def lr_factor(self, epoch: int) -> float:
        return lr_factor(epoch, LR_WARMUP_EPOCHS)

    def phase(self, epoch: int) -> str:
        return "warm-up epoch" if self.warmup(epoch) else "search epoch"

    def rows(self) -> list[int]:
        return self.d_m

    def pool_rows(self) -> list[int]:
        return self.d_m + self.d_a

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:  # type: ignore[override]
        """Search until the last epoch or the early stop; returns history.json's content."""
        self._log_start()
        super().run()
        if not self.state.done:  # the last epoch was cut short (--epochs 0, ...)
            self.state.done = True
            self.save()
        if self.state.history:  # idempotent: also completes a run killed while writing
            self.write_outputs(self.state.history[-1])
        return self.history()

    def before_epoch(self, epoch: int) -> None:
        """A sampled path for the task's per-epoch scoring (ITM mines with it, as the
        reference), then the D_a samples the θ steps draw from."""
        self.searcher.epoch_start(epoch)
        routes = self.searcher.w_routes(self._gen(SEED_MINE, step=0), self.warmup(epoch))
        self.supernet.set_routes(routes)
        self.theta_data = self.epoch_data(epoch, self.d_a, STREAM_DA)

    def step(self, batch: dict[str, Tensor]) -> float:
        warmup = self.warmup(self.state.epoch)
        self.supernet.set_routes(self.searcher.w_routes(self._gen(SEED_ARCH), warmup))
        return w_step(self.net, batch, self.opt, self.s.clip, self.amp)

    def learns(self, epoch: int) -> bool:
        return self.searcher.learns and not self.warmup(epoch)

    def after_step(self) -> None:
        st = self.state
        steps = self.s.alternate == "steps" and self.learns(st.epoch)
        if steps and st.step % self.s.update_ratio == 0:
            self.theta_step(st.step // self.s.update_ratio - 1, st.step)

    def train_epoch(self, epoch: int) -> None:
        """The epoch's W steps; with `alternate = epochs` (BM-NAS), then a θ step on every
        D_a batch in order."""
        super().train_epoch(epoch)
        if self.s.alternate == "epochs" and self.learns(epoch):
            self.theta_pass(epoch)

    def theta_pass(self, epoch: int) -> None:
        assert self.theta_data is not None
        st, clock = self.state, Clock()
        n = len(self.theta_data.batches)
        self.job.reporter.start(f"θ pass {epoch + 1}/{self.total_epochs}", n)
        for k in range(n):
            self.theta_step(k, st.step + 1 + k)  # seeded after the epoch's W steps
            self.job.reporter.advance(self.s.batch, **self.running())
        clock.lap(st.sums)

    def theta_step(self, k: int, at: int) -> None:
        """The k-th θ step of the epoch, on D_a batch k (cycling when D_a is short); its
        generator and dropout are seeded by its place `at` in the epoch."""
        assert self.theta_data is not None
        data, st = self.theta_data, self.state
        batch = next(self.batches(data.dataset, [data.batches[k % len(data.batches)]]))
        gen = device_generator(
            self.job.device, runs.step_seed(self.job.seed, st.epoch, at, SEED_THETA)
        )
        seed_step(self.job.seed + 1, st.epoch, at, self.job.dist)
        st.add("theta", self.searcher.learn(self.theta_batch(batch), gen))

    def theta_batch(self, batch: dict[str, Tensor]) -> ThetaBatch:
        """θ's view of a D_a batch, its gradients averaged over the ranks."""
        dist = self.job.dist
        reduce = lambda g: distributed.all_reduce_mean(g, dist)  # noqa: E731
        return theta_batch(self.supernet, batch, reduce, self.amp.autocast)

    def end_epoch(self, epoch: int) -> None:
        """Score the candidate on D_a, record the epoch, write the run files, early stop."""
        st, clock = self.state, Clock()
        candidate = self.searcher.candidate(self._gen(SEED_EVAL, step=0))
        self.supernet.set_arch(candidate)
        metric = float(self.evaluate(self.train_set, self.d_a)[self.task.metric])
        self.searcher.feedback(candidate, metric)
        better = self.kept is None or metric >= self.kept[0]  # ties: the later, longer searched
        if self.s.keep == "best" and not self.warmup(epoch) and better:
            self.kept = (metric, list(candidate))
        clock.lap(st.sums)
        record = self.epoch_record(epoch, metric, candidate)
        if st.history and not self.warmup(epoch):
            same = record["arch"] == st.history[-1]["arch"]
            st.unchanged = st.unchanged + 1 if same else 0
        st.history.append(record)
        st.next_epoch()
        st.done = st.unchanged >= self.s.patience or st.epoch >= self.total_epochs
        self.job.reporter.finish(self._summary_line(record))
        if st.done and st.epoch < self.total_epochs:
            log.info("early stop: the answer has not changed for %d epochs", st.unchanged)
        self.write_outputs(record)  # before the checkpoint: a kill in between replays the epoch
        self.save()

    def picks(self) -> str:
        """What the answer is, for the arch.mmnas header and the log."""
        return "best-scored" if self.s.keep == "best" else self.searcher.picks

    def answer(self) -> Arch:
        """What the run writes: the searcher's answer, or (`keep = best`) the candidate of the
        search epoch with the best D_a metric so far."""
        if self.s.keep == "best" and self.kept is not None:
            return self.kept[1]
        return self.searcher.best()

    def epoch_record(self, epoch: int, metric: float, candidate: Arch) -> dict[str, Any]:
        """One entry of history.json's "epochs" (docs/interfaces.md)."""
        st = self.state
        describe = self.space_kind.describe
        return {
            "epoch": epoch + 1,
            "phase": "warmup" if self.warmup(epoch) else "search",
            "theta": self.searcher.probabilities(),
            "entropy": entropies(self.searcher.probabilities()),
            "loss_w": st.mean("loss") or 0.0,
            "loss_theta": st.mean("theta"),
            "metric": metric,
            "metric_name": self.task.metric,
            "arch": describe(self.job.spec, self.space, self.answer()),
            "candidate": describe(self.job.spec, self.space, candidate),
            **epoch_times(st.sums),
        }

    def running(self) -> dict[str, float]:
        out = {"loss": self.state.mean("loss") or 0.0}
        theta = self.state.mean("theta")
        if theta is not None:
            out["θ loss"] = theta
        return out

    # -- outputs and checkpoints --------------------------------------------------------------

    def write_outputs(self, record: dict[str, Any]) -> None:
        """arch.mmnas (the current answer as a concrete spec) and history.json; rank 0 only."""
        if not self.job.dist.is_main:
            return
        runs.write_text(self.job.run_dir / "arch.mmnas", self.arch_text(record))
        runs.write_json(self.job.run_dir / "history.json", self.history())

    def arch_text(self, record: dict[str, Any]) -> str:
        concrete = self.space_kind.concrete(self.job.spec, self.space, self.answer())
        stop = " (final)" if self.state.done else ""
        picks = self.picks()
        header = (
            f"# mmnasdsl search ({self.job.searcher}): {picks} architecture after "
            f"epoch {record['epoch']}/{self.total_epochs}{stop}, {record['phase']} phase\n"
            f"# run: {self.job.run_dir.name}  spec: {self.job.spec.source}  "
            f"seed: {self.job.seed}  D_a {record['metric_name']}: {record['metric']:.2f}\n"
        )
        return header + format_spec(concrete)

    def history(self) -> dict[str, Any]:
        return {
            "spec": self.job.spec.source,
            "searcher": self.job.searcher,
            "seed": self.job.seed,
            "blocks": self.space_kind.points_record(self.job.spec, self.space),
            "epochs": self.state.history,
            "done": self.state.done,
        }

    def resume_keys(self) -> dict[str, Any]:
        return {
            "seed": self.job.seed,
            "searcher": self.job.searcher,
            "settings": self.s.model_dump(mode="json"),
        }

    def checkpoint_extra(self) -> dict[str, Any]:
        kept = None if self.kept is None else [self.kept[0], self.kept[1]]
        return {"searcher_state": self.searcher.state_dict(), "kept": kept}

    def load_extra(self, ckpt: dict[str, Any]) -> None:
        self.searcher.load_state_dict(ckpt["searcher_state"])
        kept = ckpt.get("kept")
        self.kept = None if kept is None else (float(kept[0]), [int(i) for i in kept[1]])

    # -- small helpers -----------------------------------------------------------------------

    def _gen(self, purpose: int, step: int | None = None) -> torch.Generator:
        st = self.state
        return runs.generator(self.job.seed, st.epoch, st.step if step is None else step, purpose)

    def _summary_line(self, r: dict[str, Any]) -> str:
        arch = self.space_kind.brief(r["arch"])
        theta = "" if r["loss_theta"] is None else f" θ loss {r['loss_theta']:.4f}"
        searchable = [h for h, p in zip(r["entropy"], r["theta"], strict=True) if len(p) > 1]
        entropy = sum(searchable) / len(searchable) if searchable else 0.0
        return (
            f"epoch {r['epoch']}/{self.total_epochs} ({r['phase']}): loss {r['loss_w']:.4f}"
            f"{theta}, D_a {r['metric_name']} {r['metric']:.2f}, θ entropy {entropy:.2f}, "
            f"{r['seconds']:.0f}s; {self.picks()} {arch}"
        )

    def _log_start(self) -> None:
        log.info(
            "search %s: %d choice points, %s architectures; |D_m| %d, |D_a| %d; warm-up %d + "
            "search %d epochs, searcher %s",
            self.job.spec.source,
            len(self.space.points),
            f"{self.job.spec.search_space_size():,}",
            len(self.d_m),
            len(self.d_a),
            self.s.warmup,
            self.s.epochs,
            self.job.searcher,
        )


def run_search(job: SearchJob) -> dict[str, Any]:
    """Run (or resume) a search; returns history.json's content."""
    return SearchDriver(job).run()
