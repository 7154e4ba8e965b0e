"""First-order DARTS (Liu et al., ICLR 2019) over any search space: a weighted mixture.

Every step runs every candidate of every choice point, weighted by softmax(α): W steps
with the weights detached (they train W only), θ steps on D_a with them differentiable
(they train α only: first order, no unrolled W step). The answer is argmax α. A W step
therefore costs all candidates; at the CPU sizes of the shipped specs that is 2-4x a
one-path step. θ uses Adam(theta_lr, betas (0.5, 0.999), weight decay 1e-3), DARTS' and
BM-NAS's optimiser.
"""

from __future__ import annotations

import torch

from mmnasdsl.compile.supernet import Route
from mmnasdsl.search.base import ThetaBatch, register_searcher
from mmnasdsl.search.estimators import mixture
from mmnasdsl.search.gradient import GradientSearcher

WEIGHT_DECAY = 1e-3


@register_searcher("darts")
class DartsSearcher(GradientSearcher):
    """Continuous relaxation: out = Σ_k softmax(α)_k o_k at every choice point."""

    def optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.alpha.parameters(),
            lr=self.settings.theta_lr,
            betas=(0.5, 0.999),
            weight_decay=WEIGHT_DECAY,
        )

    def w_routes(self, generator: torch.Generator, warmup: bool) -> list[Route]:
        return [mixture(a, detach=True) for a in self.scaled()]

    def learn(self, batch: ThetaBatch, generator: torch.Generator) -> float:
        return self.theta_step(batch, lambda a, g: mixture(a), generator)
