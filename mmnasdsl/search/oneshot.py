"""MMnas's searcher, Algorithm 1 (Yu et al., ACM MM 2020, §4): sampled paths, θ by gates.

W steps: one path, uniformly drawn during the warm-up (from softmax(α / τ) when the search
starts from a prior), then drawn from softmax(α / τ). θ steps
(one per `update_ratio` W steps after the warm-up, on a D_a batch): the estimator of
`search { estimator = two | full }` (`search.estimators`: ProxylessNAS's binary gates over
two sampled candidates, or over all of them as the reference implementation), Adam
(theta_lr, betas (0, 0.999)). The answer is argmax α.
"""

from __future__ import annotations

import torch

from mmnasdsl.compile.supernet import Route
from mmnasdsl.search.base import ThetaBatch, register_searcher
from mmnasdsl.search.estimators import ESTIMATORS, sample_path
from mmnasdsl.search.gradient import GradientSearcher, cpu_probabilities


@register_searcher("oneshot")
class OneShotSearcher(GradientSearcher):
    """Algorithm 1's θ: paths sampled from softmax(α), α learnt by binary gates."""

    def w_routes(self, generator: torch.Generator, warmup: bool) -> list[Route]:
        if warmup and not self.has_prior:
            return self.uniform_routes(generator)
        return [sample_path(p, generator) for p in cpu_probabilities(self.scaled())]

    def learn(self, batch: ThetaBatch, generator: torch.Generator) -> float:
        return self.theta_step(batch, ESTIMATORS[self.settings.estimator], generator)
