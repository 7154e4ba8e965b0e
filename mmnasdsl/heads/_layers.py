"""The torch side of the heads: the module a task's layers run in, AttFlat and fusion.

AttFlat (paper Eq. 10): an MLP(d -> 512 -> 1) scores each position, a masked softmax over
the positions weights them, and the weighted sum goes through Linear(d -> d_z). Fusion
adds the two reduced streams and normalises: z = LayerNorm(x̃ + ỹ), d_z = settings.d_fused.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mmnasdsl.heads._task import FLAT_HIDDEN
from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.ops._layers import DescribedModule, make_norm


class HeadModule(DescribedModule):
    """A task's head as a module: the task's layers as submodules, its forward, loss, predict."""

    def __init__(self, task: Any, settings: ModelSettings) -> None:
        super().__init__(task.layers(settings))
        self.task = task

    def forward(
        self, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, batch: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        return self.task.forward(self, x, x_mask, y, y_mask, batch)

    def fused(self, z: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The head over a BM-NAS network's concatenated cells (`Task.fuse`)."""
        return self.task.fuse(self, z, batch)

    def loss(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        return self.task.loss(out, batch)

    def predict(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.task.predict(out, batch)


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


class Fusion(nn.Module):
    """z = LayerNorm(AttFlat(x) + AttFlat(y)): the fused multimodal vector (B, d_z)."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__()
        self.flat_x = AttFlat(settings)
        self.flat_y = AttFlat(settings)
        self.norm = make_norm(settings.d_fused, settings.norm)

    def forward(self, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor) -> Tensor:
        return self.norm(self.flat_x(x, x_mask) + self.flat_y(y, y_mask))  # (B, d_z)
