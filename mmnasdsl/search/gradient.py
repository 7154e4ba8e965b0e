"""What gradient searchers share: α, its optimiser, and a θ step through given routes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from mmnasdsl.compile.supernet import Route
from mmnasdsl.lang.settings import SearchSettings
from mmnasdsl.search.base import Searcher, ThetaBatch
from mmnasdsl.search.estimators import Alpha
from mmnasdsl.search.space import Arch, SearchSpace, derive


class GradientSearcher(Searcher):
    """A searcher whose answer is derived from α (argmax, for MMnas), learnt by gradient
    steps on D_a batches."""

    learns = True
    picks = "argmax"

    def __init__(self, space: SearchSpace, settings: SearchSettings, seed: int) -> None:
        super().__init__(space, settings, seed)
        self.alpha = Alpha(space.sizes)
        self.opt = self.optimizer()

    def optimizer(self) -> torch.optim.Optimizer:
        """Adam(theta_lr, betas (0, 0.999)): the reference's θ optimiser."""
        return torch.optim.Adam(
            self.alpha.parameters(), lr=self.settings.theta_lr, betas=(0.0, 0.999)
        )

    def theta_step(
        self,
        batch: ThetaBatch,
        routes: Callable[[Tensor, torch.Generator], Route],
        generator: torch.Generator,
    ) -> float:
        """One Adam step on α: routes from α, the batch's loss through them, ∂L/∂α only
        (no weight gradient is computed), averaged over processes."""
        self.opt.zero_grad(set_to_none=True)
        loss = batch.loss([routes(a, generator) for a in self.alpha])
        params = self.alpha.trainable()
        if params:
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [
                torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)
            ]
            batch.reduce(grads)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            self.opt.step()
        return loss.item()

    def candidate(self, generator: torch.Generator) -> Arch:
        return self.best()

    def best(self) -> Arch:
        """The architecture softmax(α) stands for, by the space's kind (`space.derive`: the
        argmax per point, or BM-NAS's pair selection)."""
        return derive(self.space, self.alpha.probabilities())

    def probabilities(self) -> list[list[float]]:
        return self.alpha.probabilities()

    def to(self, device: torch.device) -> GradientSearcher:
        self.alpha.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha.load_state_dict(state["alpha"])
        self.opt.load_state_dict(state["opt"])


def cpu_probabilities(alphas: Sequence[Tensor]) -> list[Tensor]:
    return [a.detach().softmax(-1).cpu() for a in alphas]
