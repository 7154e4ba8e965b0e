"""The task interface: one class per task owns its head, loss, metric and training data.

A task (VQA, ITM, VG; paper §3.3) is a torch-free descriptor registered by name; the spec's
`head NAME(...)` picks it. It owns everything that differs between tasks:

- the head network: `layers(settings)` (modules; torch imported inside) and `forward(m, x,
  x_mask, y, y_mask, batch)` over the MMnas streams, or `fuse(m, z, batch)` over a BM-NAS
  network's fused cells, which the compiler wraps into one module (`_layers.HeadModule`);
- `loss(out, batch)`, `predict(out, batch)` and `batch_fields`, the label keys the loss reads;
- `metric` (the validation metric that picks best.pt, higher is better) and
  `evaluate(runner, dataset, rows)`, the metrics and the predictions file of a split;
- `epoch_data(...)`, the training samples of one epoch (ITM mines hard negatives there);
- `Options` (its spec options, a pydantic schema the checker validates), `requires` (the
  input kinds it reads), `data_kind` (the store layout, `mmnasdsl.data.kinds`) and `flops`.

So a new task is one file here plus its data kind. The training stage hands a task a
`Runner` to run the network in eval mode, so tasks stay below the training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.settings import ModelSettings

if TYPE_CHECKING:
    from torch import Tensor, nn
    from torch.utils.data import Dataset

    from mmnasdsl.data import FeatureDataset

Batch = dict[str, "Tensor"]
Metrics = dict[str, Any]
Predictions = list[dict[str, Any]]


class Runner(Protocol):
    """What a task may ask of the training stage: the network's outputs on some rows."""

    def outputs(
        self,
        dataset: Dataset,
        rows: Sequence[int],
        batch_size: int | None = None,
        *,
        share_words: bool = False,
    ) -> Iterator[tuple[Batch, dict[str, Tensor]]]:
        """(batch, network outputs) for `rows` of `dataset`, in order, eval mode, no grad.

        `share_words`: rows of one batch that read the same sentence run the network's word
        stream once (when it reads no guide, `compile.network.Network.words_alone`); the
        outputs equal the plain ones up to float rounding. Worth it when many rows share a
        sentence, i.e. a caption scored against many images: order such rows next to each
        other.
        """
        ...


@dataclass
class EpochData:
    """One epoch's training samples: a dataset and its batches of rows, in order."""

    dataset: Dataset
    batches: list[list[int]]


@dataclass
class EpochRequest:
    """What `Task.epoch_data` is given: the split, this stream's rows and batches, where the
    run is (seed, epoch, stream: the search draws D_m and D_a as streams 0 and 1), a runner
    for scoring, every training row of the epoch (`pool`), and `memo`, a dict kept (and
    checkpointed) for the rest of the epoch, so that work shared by streams or by a resumed
    run is done once."""

    dataset: FeatureDataset
    rows: list[int]
    batches: list[list[int]]
    seed: int
    epoch: int
    runner: Runner
    stream: int = 0
    pool: list[int] = field(default_factory=list)
    memo: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base of the tasks; a subclass sets the class attributes and the methods."""

    Options: ClassVar[type[BaseModel]]
    requires: ClassVar[tuple[str, ...]] = ("words", "objects")
    metric: ClassVar[str] = "accuracy"
    batch_fields: ClassVar[tuple[str, ...]] = ()
    data_kind: ClassVar[str] = ""  # default: the task's registered name

    def __init__(self, options: BaseModel | dict[str, Any] | None = None, **sizes: Any) -> None:
        self.options: Any = (
            options
            if isinstance(options, self.Options)
            else self.Options.model_validate(options or {})
        )
        self.sizes = {k: v for k, v in sizes.items() if v is not None}

    # -- the head network -------------------------------------------------------------------

    def layers(self, s: ModelSettings) -> dict[str, nn.Module]:
        """The head's modules; `forward` reads them as attributes of `m`."""
        raise NotImplementedError

    def forward(
        self, m: Any, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, batch: Batch
    ) -> dict[str, Tensor]:
        """Final word stream x (B, T, d) and object stream y (B, N, d) -> outputs."""
        raise NotImplementedError

    def fuse(self, m: Any, z: Tensor, batch: Batch) -> dict[str, Tensor]:
        """The head of a fusion-cell space (BM-NAS, `requires = ("taps",)`): z (B, m·C, L) is
        the concatenation of the network's last m cell outputs -> outputs."""
        raise NotImplementedError

    def loss(self, out: dict[str, Tensor], batch: Batch) -> Tensor:
        raise NotImplementedError

    def predict(self, out: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError

    def flops(self, s: ModelSettings, words: int, objects: int) -> int:
        """Forward FLOPs per sample (2 x multiply-adds of the matmuls)."""
        return 0

    def params(self, s: ModelSettings) -> int | None:
        """Parameters of the head's layers, or None to have them counted on a meta-device
        build. A formula keeps `info` free of torch."""
        return None

    # -- data -------------------------------------------------------------------------------

    def epoch_data(self, request: EpochRequest) -> EpochData:
        """The epoch's training samples; by default the split itself, in the given batches."""
        return EpochData(request.dataset, request.batches)

    def evaluate(
        self,
        runner: Runner,
        dataset: FeatureDataset,
        rows: Sequence[int],
        max_images: int | None = None,
    ) -> tuple[Metrics, Predictions]:
        """Metrics (with "loss" and `metric`) and the predictions file of `rows`."""
        raise NotImplementedError

    def collect(
        self, runner: Runner, dataset: Dataset, rows: Sequence[int], key: str
    ) -> tuple[Tensor, float]:
        """Prediction `key` of every row, in order, and the mean loss over the rows."""
        import torch

        preds, loss_sum = [], 0.0
        for batch, out in runner.outputs(dataset, rows):
            loss_sum += self.loss(out, batch).item() * len(batch["index"])
            preds.append(self.predict(out, batch)[key].cpu())
        return (torch.cat(preds) if preds else torch.zeros(0)), loss_sum / max(len(rows), 1)


FLAT_HIDDEN = 512  # the reference's AttFlat MLP width, independent of d


def attflat_params(s: ModelSettings) -> int:
    """AttFlat: MLP d -> 512 -> 1 and the projection d -> d_z."""
    d = s.d_model
    return d * FLAT_HIDDEN + FLAT_HIDDEN + FLAT_HIDDEN + 1 + d * s.d_fused + s.d_fused


def fusion_params(s: ModelSettings) -> int:
    """Two AttFlats and the LayerNorm of width d_z."""
    return 2 * attflat_params(s) + 2 * s.d_fused


def attflat_flops(n: int, s: ModelSettings) -> int:
    """FLOPs of AttFlat over n positions (paper Eq. 10): MLP scores, weighted sum, projection."""
    d = s.d_model
    return 2 * (n * d * FLAT_HIDDEN + n * FLAT_HIDDEN + n * d + d * s.d_fused)


def fusion_flops(words: int, objects: int, s: ModelSettings) -> int:
    """FLOPs of the fusion z = LayerNorm(AttFlat(x) + AttFlat(y))."""
    return attflat_flops(words, s) + attflat_flops(objects, s)


HEADS: Registry[type[Task]] = Registry("head", group="mmnasdsl.heads")


def register_head(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: make a task usable as `head NAME(...)` in a spec."""

    def deco(cls: type[Task]) -> type[Task]:
        cls.data_kind = cls.data_kind or name
        return HEADS.register(name)(cls)

    return deco


def get_head(name: str) -> type[Task]:
    """The task registered as `name`; KeyError with a did-you-mean otherwise."""
    return HEADS.get(name)


def list_heads() -> list[str]:
    return HEADS.names()
