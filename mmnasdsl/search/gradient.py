"""What gradient searchers share: α, its optimiser, a θ step through given routes, a prior
to start α from, and a temperature schedule.

Temperature: every route is drawn from softmax(α / τ) (the W paths, the θ estimator's
samples and gates, DARTS' mixture weights); τ starts at `temperature` in the first search
epoch and moves geometrically to `temperature_end` in the last (constant without one).
A τ below 1 sharpens sampling around the current argmax, so the W steps train the leading
candidates more and θ's gradient, which flows through α / τ, grows by 1 / τ. The
probabilities recorded in history.json (θ) and the answer (argmax α) do not depend on τ.

Prior (`search { prior = ... }`): α starts at +s on the prior's op of every block and -s on
the others (the reference implementation starts from MCAN with s = 1), and W paths are
drawn from softmax(α / τ) from the first step, warm-up included, as the reference does.
"""

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
        self.tau = settings.temperature
        self.has_prior = False

    def start_from(self, names: Sequence[str], strength: float) -> None:
        """α = +strength on the named candidate of every point, -strength elsewhere."""
        with torch.no_grad():
            for row, point, name in zip(self.alpha, self.space.points, names, strict=True):
                row.fill_(-strength)
                row[point.candidates.index(name)] = strength
        self.has_prior = True

    def epoch_start(self, epoch: int) -> None:
        """τ of this epoch: `temperature` to `temperature_end` over the search epochs."""
        s = self.settings
        if s.temperature_end is None:
            return
        k = min(max(epoch - s.warmup, 0), max(s.epochs - 1, 0))
        span = max(s.epochs - 1, 1)
        self.tau = s.temperature * (s.temperature_end / s.temperature) ** (k / span)

    def scaled(self) -> list[Tensor]:
        """α / τ per point: what routes are drawn from."""
        return [a / self.tau for a in self.alpha]

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
        loss = batch.loss([routes(a, generator) for a in self.scaled()])
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
        return {"alpha": self.alpha.state_dict(), "opt": self.opt.state_dict(), "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha.load_state_dict(state["alpha"])
        self.opt.load_state_dict(state["opt"])
        self.tau = float(state.get("tau", self.tau))


def cpu_probabilities(alphas: Sequence[Tensor]) -> list[Tensor]:
    return [a.detach().softmax(-1).cpu() for a in alphas]
