"""What every task head shares: the head interface, AttFlat reduction and fusion (paper §3.3).

AttFlat (Eq. 10): an MLP(d -> 512 -> 1) scores each position, a masked softmax over the
positions weights them, and the weighted sum goes through Linear(d -> d_z). Fusion adds
the two reduced streams and normalises: z = LayerNorm(x̃ + ỹ), d_z = settings.d_fused.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel
from torch import Tensor, nn

from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.ops import make_norm

FLAT_HIDDEN = 512  # the reference's AttFlat MLP width, independent of d


class Head(nn.Module):
    """Base of the task heads; a subclass sets Options, requires, batch_fields and the methods."""

    Options: ClassVar[type[BaseModel]]
    requires: ClassVar[tuple[str, ...]] = ("words", "objects")
    batch_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        settings: ModelSettings,
        options: BaseModel | dict[str, Any] | None = None,
        **data_sizes: Any,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.options = (
            self.Options.model_validate(options or {})
            if not isinstance(options, self.Options)
            else options
        )

    def forward(
        self, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, batch: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        raise NotImplementedError

    def loss(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def predict(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    @classmethod
    def flops(
        cls,
        settings: ModelSettings,
        options: BaseModel,
        words: int,
        objects: int,
        **data_sizes: Any,
    ) -> int:
        """Forward FLOPs per sample (2 x multiply-adds of the matmuls)."""
        return 0


HEADS: Registry[type[Head]] = Registry("head")


def register_head(name: str) -> Any:
    """Class decorator: make a head usable as `head NAME(...)` in a spec."""
    return HEADS.register(name)


def get_head(name: str) -> type[Head]:
    """The head class registered as `name`; KeyError with a did-you-mean otherwise."""
    return HEADS.get(name)


def list_heads() -> list[str]:
    return HEADS.names()


def masked_fill_scores(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Scores (B, n) with padded positions at -1e9, so a softmax gives them zero weight."""
    return scores if mask is None else scores.masked_fill(~mask, -1e9)


class AttFlat(nn.Module):
    """Attentional reduction (paper Eq. 10): (B, n, d) -> (B, d_z)."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__()
        d = settings.d_model
        self.mlp = nn.Sequential(
            nn.Linear(d, FLAT_HIDDEN),
            nn.ReLU(),
            nn.Dropout(settings.dropout),
            nn.Linear(FLAT_HIDDEN, 1),
        )
        self.proj = nn.Linear(d, settings.d_fused)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        att = masked_fill_scores(self.mlp(x).squeeze(-1), mask).softmax(-1)  # (B, n)
        pooled = (att.unsqueeze(-1) * x).sum(1)  # (B, d)
        return self.proj(pooled)  # (B, d_z)

    @staticmethod
    def flops(n: int, settings: ModelSettings) -> int:
        d = settings.d_model
        return 2 * (n * d * FLAT_HIDDEN + n * FLAT_HIDDEN + n * d + d * settings.d_fused)


class Fusion(nn.Module):
    """z = LayerNorm(AttFlat(x) + AttFlat(y)): the fused multimodal vector (B, d_z)."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__()
        self.flat_x = AttFlat(settings)
        self.flat_y = AttFlat(settings)
        self.norm = make_norm(settings.d_fused, settings.norm)

    def forward(self, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor) -> Tensor:
        return self.norm(self.flat_x(x, x_mask) + self.flat_y(y, y_mask))  # (B, d_z)

    @staticmethod
    def flops(words: int, objects: int, settings: ModelSettings) -> int:
        return AttFlat.flops(words, settings) + AttFlat.flops(objects, settings)
