"""MMnas's one-shot search, Algorithm 1 (Yu et al., ACM MM 2020, §4).

The training split is shuffled (seeded) and cut into D_m (weights W) and D_a
(architecture θ), |D_m| : |D_a| = `split` (4:1). Then:

- warm-up, T_w epochs: per D_m batch, a uniformly sampled path, one W update;
- search, T_j epochs: per D_m batch, a path sampled from softmax(α), one W update; after
  every u of them one θ update on a D_a batch.

θ estimator: ProxylessNAS "two" (Cai et al., ICLR 2019), implemented by
`Supernet.theta_step_mode` (mmnasdsl/backbone.py has the derivation): each block draws two
candidates from softmax(α), runs both (the idle one without autograd) and routes through
straight-through binary gates, so a θ step costs two forward paths and one backward, and
only the two sampled logits per block get a gradient. θ uses Adam(theta_lr, betas (0, 0.999))
as the reference; W uses Adam(0.9, 0.98, eps 1e-9), lr 1/4, 2/4, 3/4 of base over the
first three epochs, grad-norm clip.

After every epoch: the argmax architecture is scored on D_a (the task metric) and written
as RUNDIR/arch.mmnas; RUNDIR/history.json and RUNDIR/checkpoint.pt are updated. The search
stops early once the argmax has stayed the same for `patience` search epochs.

Exact resume: the data order, the sampled paths and the dropout masks are pure functions
of (seed, epoch, step) (`runs.step_seed`), so a checkpoint needs only the weights, θ, the
optimisers, the position and the running sums; a run killed at any step and resumed
replays the same steps and ends with the same θ, metrics and arch.mmnas.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmnasdsl.compile.network import Supernet, needs_relations
from mmnasdsl.data import FeatureDataset, open_split
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.settings import SearchSettings
from mmnasdsl.lang.spec import Spec
from mmnasdsl.search.base import SEARCHERS, Arch, Searcher, register_searcher
from mmnasdsl.train import distributed, runs
from mmnasdsl.train.distributed import Dist
from mmnasdsl.train.loop import (
    EPOCH_EVAL_IMAGES,
    TASK_METRIC,
    add_pair_weights,
    batch_iter,
    epoch_batches,
    evaluate,
    itm_triples,
    lr_factor,
    mine_hard_negatives,
    mining_options,
    model_for,
    seed_step,
    set_lr,
    task_of,
    triple_batches,
    w_optimizer,
    w_step,
)
from mmnasdsl.train.progress import LogReporter, Reporter

log = logging.getLogger("mmnasdsl.search")

LR_WARMUP_EPOCHS = 3  # W lr 1/4, 2/4, 3/4 of base, then base (REFERENCE.md "Search")
STREAM_DM, STREAM_DA = 0, 1  # batch-order streams (train.epoch_batches)
SEED_ARCH, SEED_THETA, SEED_EVAL, SEED_MINE = 1, 2, 3, 4  # generator purposes


def device_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` (θ-step sampling runs where α lives)."""
    return torch.Generator(device=device).manual_seed(seed)


@register_searcher("oneshot")
class OneShotSearcher(Searcher):
    """Algorithm 1's θ: paths sampled from softmax(α), α learnt by the "two" estimator."""

    learns_from_batches = True

    def __init__(self, supernet: Supernet, settings: SearchSettings, seed: int) -> None:
        super().__init__(supernet, settings, seed)
        self.opt = torch.optim.Adam(
            supernet.arch_parameters(), lr=settings.theta_lr, betas=(0.0, 0.999)
        )

    def propose(self, generator: torch.Generator, warmup: bool) -> Arch:
        if warmup:
            return self.uniform(generator)
        return [
            int(torch.multinomial(torch.tensor(p), 1, generator=generator))
            for p in self.supernet.probabilities()
        ]

    def candidate(self, generator: torch.Generator) -> Arch:
        return self.best()

    def best(self) -> Arch:
        return self.supernet.argmax_arch()

    def learn(self, net: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> float:
        """One θ step on a D_a batch through two sampled paths per block."""
        self.opt.zero_grad(set_to_none=True)
        with self.supernet.theta_step_mode(generator):
            out = net(batch)
            loss = self.supernet.loss(out, batch)
            if net is self.supernet:
                self.supernet.theta_backward(loss)  # α.grad only: no weight gradients
            else:  # DDP: a full backward, so its hooks all-reduce α.grad across ranks
                loss.backward()
        self.opt.step()
        return loss.item()

    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["opt"])


# ----------------------------------------------------------------------------- the driver


@dataclass
class SearchJob:
    """Everything a search needs; the CLI fills it from the spec and the flags."""

    spec: Spec
    data: Path
    run_dir: Path
    settings: SearchSettings
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resume: bool = False
    searcher: str = "oneshot"
    reporter: Reporter = field(default_factory=LogReporter)
    dist: Dist = field(default_factory=Dist)
    checkpoint_every: int = 50  # W steps between mid-epoch checkpoints (and every epoch end)


@dataclass
class SearchState:
    """Where a search is: what checkpoint.pt stores besides weights and optimisers."""

    epoch: int = 0  # epochs completed
    step: int = 0  # W steps done in the current epoch
    sums: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            ("loss_w", "n_w", "loss_theta", "n_theta", "seconds"), 0.0
        )
    )
    unchanged: int = 0  # search epochs in a row with the same argmax
    done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    negatives: dict[str, Tensor] | None = None  # ITM hard negatives of this epoch

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "sums": dict(self.sums),
            "unchanged": self.unchanged,
            "done": self.done,
            "history": self.history,
            "negatives": self.negatives,
        }


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


class OneShotSearch:
    """Algorithm 1 as a loop over epochs and steps; one instance per run (per rank)."""

    def __init__(self, job: SearchJob) -> None:
        if job.spec.is_concrete:
            raise UsageError(
                f"{job.spec.source} has no searchable block (every block is one "
                f"op); train it with `mmnasdsl train {job.spec.source}`"
            )
        self.job, self.s = job, job.settings
        self.task = task_of(job.spec)
        self.train_set: FeatureDataset = open_split(job.data, "train", job.spec)
        self.d_m, self.d_a = split_rows(len(self.train_set), self.s.split, job.seed)
        torch.manual_seed(job.seed)
        self.supernet: Supernet = model_for(job.spec, self.train_set, self.s.d_model)  # type: ignore[assignment]
        self.supernet.to(job.device)
        self.relations = needs_relations(job.spec.blocks())
        self.net = distributed.wrap(self.supernet, job.dist, job.device)
        self.w_opt = w_optimizer(self.supernet.weight_parameters(), self.s.lr)
        self.searcher = SEARCHERS.get(job.searcher)(self.supernet, self.s, job.seed)
        self.state = SearchState()
        if job.resume:
            self._load(runs.load_checkpoint(job.run_dir / "checkpoint.pt"))

    @property
    def total_epochs(self) -> int:
        return self.s.warmup + self.s.epochs

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Search until the last epoch or the early stop; returns history.json's content."""
        self._log_start()
        while not self.state.done and self.state.epoch < self.total_epochs:
            self.train_epoch(self.state.epoch)
            self.end_epoch(self.state.epoch)
        if not self.state.done:  # the last epoch was cut short (--epochs 0, ...)
            self.state.done = True
            self.save_checkpoint()
        if self.state.history:  # idempotent: also completes a run killed while writing
            self.write_outputs(self.state.history[-1])
        return self.history()

    def train_epoch(self, epoch: int) -> None:
        """One pass over D_m: W steps on proposed paths; in the search phase, a θ step on
        D_a after every u of them."""
        job, st, t0 = self.job, self.state, time.perf_counter()
        warmup = epoch < self.s.warmup
        set_lr(self.w_opt, self.s.lr * lr_factor(epoch, LR_WARMUP_EPOCHS))
        dataset, batches = self.epoch_data(epoch, self.d_m, STREAM_DM)  # ITM: mines first
        theta_data, theta_batches = self.epoch_data(epoch, self.d_a, STREAM_DA)
        phase = "warm-up" if warmup else "search"
        job.reporter.start(f"{phase} epoch {epoch + 1}/{self.total_epochs}", len(batches), st.step)
        self.net.train()
        for batch in self._batches(dataset, batches[st.step :]):
            self.supernet.set_arch(self.searcher.propose(self._gen(SEED_ARCH), warmup))
            seed_step(job.seed, epoch, st.step, job.dist)
            self._add("loss_w", w_step(self.net, batch, self.w_opt, self.s.clip))
            st.step += 1
            learns = not warmup and self.searcher.learns_from_batches
            if learns and st.step % self.s.update_ratio == 0:
                self.theta_step(theta_data, theta_batches, st.step // self.s.update_ratio - 1)
            job.reporter.advance(len(batch["index"]) * job.dist.world, **self._running())
            if st.step % job.checkpoint_every == 0 and st.step < len(batches):
                st.sums["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save_checkpoint()
        st.sums["seconds"] += time.perf_counter() - t0

    def theta_step(self, dataset: Any, batches: list[list[int]], k: int) -> None:
        """The k-th θ step of the epoch, on D_a batch k (cycling when D_a is short)."""
        batch = next(self._batches(dataset, [batches[k % len(batches)]]))
        gen = device_generator(
            self.job.device,
            runs.step_seed(self.job.seed, self.state.epoch, self.state.step, SEED_THETA),
        )
        seed_step(self.job.seed + 1, self.state.epoch, self.state.step, self.job.dist)
        self._add("loss_theta", self.searcher.learn(self.net, batch, gen))

    def epoch_data(self, epoch: int, rows: list[int], stream: int) -> tuple[Any, list[list[int]]]:
        """The epoch's dataset and batches of `rows` (ITM: hard-negative triples)."""
        batches = epoch_batches(rows, self.s.batch, self.job.seed, epoch, self.job.dist, stream)
        if self.task != "itm":
            return self.train_set, batches
        if self.state.negatives is None:
            self.state.negatives = self.mine(epoch)
        triples = itm_triples(
            self.train_set, rows, self.state.negatives, self.job.seed + stream, epoch
        )
        return triples, triple_batches(batches, rows)

    def mine(self, epoch: int) -> dict[str, Tensor]:
        """ITM hard negatives for D_m and D_a with a sampled path (as the reference)."""
        self.supernet.set_arch(
            self.searcher.propose(self._gen(SEED_MINE, step=0), epoch < self.s.warmup)
        )
        return mine_hard_negatives(
            self.net,
            self.train_set,
            self.d_m + self.d_a,
            mining_options(self.job.spec),
            self.job.seed,
            epoch,
            self.job.device,
            self.relations,
        )

    def end_epoch(self, epoch: int) -> None:
        """Score the candidate on D_a, record the epoch, write the run files, early stop."""
        st, t0 = self.state, time.perf_counter()
        candidate = self.searcher.candidate(self._gen(SEED_EVAL, step=0))
        self.supernet.set_arch(candidate)
        metrics, _ = evaluate(
            self.net,
            self.train_set,
            indices=self.d_a,
            device=self.job.device,
            relations=self.relations,
            max_images=EPOCH_EVAL_IMAGES,
        )
        metric = float(metrics[TASK_METRIC[self.task]])
        self.searcher.feedback(candidate, metric)
        st.sums["seconds"] += time.perf_counter() - t0
        record = self.epoch_record(epoch, metric)
        if st.history and epoch >= self.s.warmup:
            same = record["arch"] == st.history[-1]["arch"]
            st.unchanged = st.unchanged + 1 if same else 0
        st.history.append(record)
        st.epoch, st.step, st.negatives = epoch + 1, 0, None
        st.sums = dict.fromkeys(st.sums, 0.0)
        st.done = st.unchanged >= self.s.patience or st.epoch >= self.total_epochs
        self.job.reporter.finish(self._summary_line(record))
        if st.done and st.epoch < self.total_epochs:
            log.info("early stop: the argmax has not changed for %d epochs", st.unchanged)
        self.write_outputs(record)  # before the checkpoint: a kill in between replays the epoch
        self.save_checkpoint()

    def epoch_record(self, epoch: int, metric: float) -> dict[str, Any]:
        """One entry of history.json's "epochs" (docs/interfaces.md)."""
        sums = self.state.sums
        return {
            "epoch": epoch + 1,
            "phase": "warmup" if epoch < self.s.warmup else "search",
            "theta": self.supernet.probabilities(),
            "loss_w": sums["loss_w"] / max(sums["n_w"], 1),
            "loss_theta": sums["loss_theta"] / sums["n_theta"] if sums["n_theta"] else None,
            "metric": metric,
            "metric_name": TASK_METRIC[self.task],
            "arch": self.supernet.arch_names(self.searcher.best()),
            "seconds": sums["seconds"],
        }

    # -- outputs -----------------------------------------------------------------------------

    def write_outputs(self, record: dict[str, Any]) -> None:
        """arch.mmnas (the current answer as a concrete spec) and history.json; rank 0 only."""
        if not self.job.dist.is_main:
            return
        runs.write_text(self.job.run_dir / "arch.mmnas", self.arch_text(record))
        runs.write_json(self.job.run_dir / "history.json", self.history())

    def arch_text(self, record: dict[str, Any]) -> str:
        concrete = self.job.spec.replace_stacks(record["arch"])
        stop = " (final)" if self.state.done else ""
        header = (
            f"# mmnasdsl search ({self.job.searcher}): {self._pick} architecture after epoch "
            f"{record['epoch']}/{self.total_epochs}{stop}, {record['phase']} phase\n"
            f"# run: {self.job.run_dir.name}  spec: {self.job.spec.source}  "
            f"seed: {self.job.seed}  D_a {record['metric_name']}: {record['metric']:.2f}\n"
        )
        return header + format_spec(concrete)

    def history(self) -> dict[str, Any]:
        return {
            "spec": self.job.spec.source,
            "searcher": self.job.searcher,
            "seed": self.job.seed,
            "blocks": [
                {"stack": b.stack, "index": b.index, "choices": list(b.choices)}
                for b in self.job.spec.blocks()
            ],
            "epochs": self.state.history,
            "done": self.state.done,
        }

    def save_checkpoint(self) -> None:
        if not self.job.dist.is_main:
            return
        runs.save_checkpoint(
            self.job.run_dir / "checkpoint.pt",
            {
                "kind": "search",
                "spec": format_spec(self.job.spec),
                "seed": self.job.seed,
                "searcher": self.job.searcher,
                "settings": self.s.model_dump(mode="json"),
                "model": self.supernet.state_dict(),
                "w_opt": self.w_opt.state_dict(),
                "searcher_state": self.searcher.state_dict(),
                "state": self.state.as_dict(),
                "rng": runs.rng_state(),
            },
        )

    def _load(self, ckpt: dict[str, Any]) -> None:
        path = self.job.run_dir / "checkpoint.pt"
        runs.check_resumable(
            ckpt,
            path,
            "search",
            format_spec(self.job.spec),
            seed=self.job.seed,
            searcher=self.job.searcher,
            settings=self.s.model_dump(mode="json"),
        )
        self.supernet.load_state_dict(ckpt["model"])
        self.w_opt.load_state_dict(ckpt["w_opt"])
        self.searcher.load_state_dict(ckpt["searcher_state"])
        self.state = SearchState(**ckpt["state"])
        runs.resumed(ckpt, self.job.run_dir, log)

    # -- small helpers -----------------------------------------------------------------------

    def _gen(self, purpose: int, step: int | None = None) -> torch.Generator:
        st = self.state
        return runs.generator(self.job.seed, st.epoch, st.step if step is None else step, purpose)

    def _batches(self, dataset: Any, batches: list[list[int]]) -> Iterator[dict[str, Tensor]]:
        for batch in batch_iter(dataset, batches, relations=self.relations, device=self.job.device):
            yield add_pair_weights(batch) if self.task == "itm" else batch

    def _add(self, key: str, value: float) -> None:
        self.state.sums[key] += value
        self.state.sums["n_w" if key == "loss_w" else "n_theta"] += 1

    def _running(self) -> dict[str, float]:
        s = self.state.sums
        out = {"loss": s["loss_w"] / max(s["n_w"], 1)}
        if s["n_theta"]:
            out["θ loss"] = s["loss_theta"] / s["n_theta"]
        return out

    @property
    def _pick(self) -> str:
        """What the written architecture is: θ's argmax, or the best-scored candidate."""
        return "argmax" if self.searcher.learns_from_batches else "best-scored"

    def _summary_line(self, r: dict[str, Any]) -> str:
        arch = " | ".join(" ".join(ops) for ops in r["arch"].values())
        theta = "" if r["loss_theta"] is None else f" θ loss {r['loss_theta']:.4f}"
        return (
            f"epoch {r['epoch']}/{self.total_epochs} ({r['phase']}): loss {r['loss_w']:.4f}"
            f"{theta}, D_a {r['metric_name']} {r['metric']:.2f}, {r['seconds']:.0f}s; "
            f"{self._pick} {arch}"
        )

    def _log_start(self) -> None:
        log.info(
            "search %s: %d blocks, %s architectures; |D_m| %d, |D_a| %d; warm-up %d + "
            "search %d epochs, searcher %s",
            self.job.spec.source,
            len(self.supernet.mixed),
            f"{self.job.spec.search_space_size():,}",
            len(self.d_m),
            len(self.d_a),
            self.s.warmup,
            self.s.epochs,
            self.job.searcher,
        )


def run_search(job: SearchJob) -> dict[str, Any]:
    """Run (or resume) a search; returns history.json's content."""
    return OneShotSearch(job).run()
