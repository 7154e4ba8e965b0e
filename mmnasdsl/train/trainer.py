"""Training a concrete spec from scratch, and evaluating a trained checkpoint (any task).

The schedule is the reference implementation's (REFERENCE.md "Final training"): Adam
(0.9, 0.98, eps 1e-9), lr warm-up 1/4, 2/4, 3/4 over the first `warmup` epochs, x`decay`
after each epoch in `decay_at`, gradient-norm clip. After every epoch the model is
evaluated on val; RUNDIR gets last.pt (resumable), best.pt and metrics.json.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.network import relation_convention
from mmnasdsl.data import open_split
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.settings import TrainSettings
from mmnasdsl.lang.spec import Spec
from mmnasdsl.train import runs
from mmnasdsl.train.loop import (
    Clock,
    Job,
    Loop,
    epoch_times,
    evaluate,
    lr_factor,
    model_for,
    model_sizes,
)

log = logging.getLogger("mmnasdsl.train")


@dataclass
class TrainJob(Job):
    """A training run: the common job fields and the training schedule."""

    settings: TrainSettings = field(default_factory=TrainSettings)


class Trainer(Loop):
    """Trains a concrete spec from scratch with the reference schedule (one class, any task)."""

    kind = "train"
    checkpoint_name = "last.pt"

    def __init__(self, job: TrainJob) -> None:
        if not job.spec.is_concrete:
            raise UsageError(
                f"{job.spec.source} is a search space, not one network; run "
                f"`mmnasdsl search {job.spec.source}` and train its arch.mmnas"
            )
        super().__init__(job, job.settings)
        self.val_set = open_split(job.data, "val", job.spec)

    def build_model(self) -> nn.Module:
        return model_for(self.job.spec, self.train_set)

    def lr_factor(self, epoch: int) -> float:
        return lr_factor(epoch, self.s.warmup, self.s.decay_at, self.s.decay)

    def resume_keys(self) -> dict[str, Any]:
        # `--resume --epochs N` may extend a run; every other setting must be the run's own
        return {
            "seed": self.job.seed,
            "settings": self.s.model_dump(mode="json", exclude={"epochs"}),
        }

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"sizes": model_sizes(self.train_set), "epoch": self.state.epoch}

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
        self.run()
        return self.summary()

    def end_epoch(self, epoch: int) -> None:
        clock = Clock()
        metrics = self.evaluate(self.val_set)
        st, key = self.state, self.task.metric
        clock.lap(st.sums)
        seconds = st.sums["seconds"]
        record = {
            "epoch": st.epoch + 1,
            "loss": st.mean("loss") or 0.0,
            "lr": self.opt.param_groups[0]["lr"],
            "val": metrics,
            **epoch_times(st.sums),
        }
        st.history.append(record)
        improved = metrics[key] > st.best
        st.best = max(st.best, metrics[key])
        st.next_epoch()
        self.job.reporter.finish(
            f"epoch {st.epoch}/{self.s.epochs}: loss {record['loss']:.4f} "
            f"val {key} {metrics[key]:.2f} ({seconds:.0f}s)"
        )
        if self.job.dist.is_main:
            if improved:
                runs.save_checkpoint(self.job.run_dir / "best.pt", self.model_checkpoint(metrics))
            self.save()
            runs.write_json(self.job.run_dir / "metrics.json", self.summary())

    def summary(self) -> dict[str, Any]:
        key = self.task.metric
        best = max(self.state.history, key=lambda r: r["val"][key], default=None)
        return {
            "spec": self.job.spec.source,
            "task": self.task_name,
            "metric": key,
            "best_epoch": best["epoch"] if best else None,
            "best": best["val"] if best else None,
            "epochs": self.state.history,
        }

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


def checkpoint_sizes(ckpt: dict[str, Any], checkpoint: Path) -> tuple[int, int]:
    """(vocabulary size, answers) a checkpoint's model was built with; UsageError when the
    file holds something else there (an edited or foreign checkpoint)."""
    sizes = ckpt["sizes"]
    vocab = sizes.get("vocab_size") if isinstance(sizes, dict) else None
    answers = sizes.get("num_answers", 0) if isinstance(sizes, dict) else None
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (vocab, answers))
    # vocab 0: a space without words (BM-NAS taps); a words input has at least <pad>, <unk>
    vocab_ok = ok and (vocab == 0 or 2 <= vocab <= 10**8)  # type: ignore[operator]
    if not vocab_ok or not 0 <= answers <= 10**8:  # type: ignore[operator]
        raise UsageError(f"{checkpoint}: damaged sizes {sizes!r:.80} (vocab_size, num_answers)")
    return vocab, answers  # type: ignore[return-value]


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
    vocab_size, num_answers = checkpoint_sizes(ckpt, checkpoint)
    model = build_model(spec, vocab_size=vocab_size, num_answers=num_answers or None).to(device)
    try:
        model.load_state_dict(ckpt["model"])
    except runs.DAMAGED as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{checkpoint} does not fit {spec.source}: {reason}") from None
    dataset = open_split(data, split, spec)
    relations = relation_convention(spec)
    return evaluate(model, dataset, device=device, relations=relations, max_images=max_images)
