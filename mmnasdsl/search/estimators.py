"""Architecture logits α and how a step runs from them: one path, two, all, a mixture.

α holds one logit vector per choice point (p = softmax(α)); the functions here turn α into
*routes* for the supernet (`compile.supernet.Leg`), which is how a searcher decides what a
step computes:

- `sample_path(p, g)`: one candidate drawn from p (a W step of Algorithm 1).
- `two_path(α, g)`: ProxylessNAS "two" (Cai et al., ICLR 2019, §3.2.1). Two distinct
  candidates i, j are drawn from p; q = softmax((α_i, α_j)); the active one a ∈ {i, j} is
  drawn from q; the gates are g = onehot(a) + q - sg(q) (sg = stop-gradient), so the
  forward value is exactly o_a while ∂L/∂g_k = <∂L/∂out, o_k> and, through the two-way
  softmax Jacobian, ∂L/∂α_k = Σ_l ∂L/∂g_l · q_l (δ_kl − q_k) for k ∈ {i, j}; the other α
  get no gradient. The idle candidate has gate value 0: it runs without autograd (value
  only), so a θ step costs two forward paths and one backward.
- `all_paths(α, g)`: ProxylessNAS "full", as the reference implementation's θ step
  (`ALPHA_BINARY_MODE = 'full'`): the active candidate drawn from p, gates
  g = onehot(a) + p - sg(p) over every candidate, all computed (the idle ones value only),
  so every α_k gets Σ_l ∂L/∂g_l p_l (δ_kl − p_k). It costs every candidate's forward.
- `mixture(α)`: DARTS (Liu et al., ICLR 2019): out = Σ_k softmax(α)_k o_k, every candidate
  with gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mmnasdsl.compile.supernet import Leg, Route


class Alpha(nn.Module):
    """One logit vector per choice point, as parameters `alpha.<k>` (θ rows)."""

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        self.rows = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in sizes)

    def __iter__(self):  # type: ignore[override]
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def trainable(self) -> list[nn.Parameter]:
        """The rows with more than one candidate (a single logit is a constant)."""
        return [a for a in self.rows if a.numel() > 1]

    def probabilities(self) -> list[list[float]]:
        return [a.detach().softmax(-1).tolist() for a in self.rows]

    def argmax(self) -> list[int]:
        return [int(a.detach().argmax()) for a in self.rows]


def sample_path(p: Tensor, generator: torch.Generator) -> Route:
    """One leg: a candidate drawn from p (a CPU tensor)."""
    return (Leg(int(torch.multinomial(p, 1, generator=generator))),)


def two_path(alpha: Tensor, generator: torch.Generator) -> Route:
    """ProxylessNAS "two": two sampled candidates behind straight-through binary gates."""
    if alpha.numel() == 1:
        return (Leg(0),)
    pair = torch.multinomial(alpha.detach().softmax(-1), 2, generator=generator)  # (2,)
    q = alpha[pair].softmax(-1)  # (2,) renormalised, differentiable in α
    active = int(torch.multinomial(q.detach(), 1, generator=generator))
    gates = nn.functional.one_hot(torch.tensor(active, device=q.device), 2).to(q) + q - q.detach()
    idle = 1 - active
    return (
        Leg(int(pair[active]), gates[active]),
        Leg(int(pair[idle]), gates[idle], grad=False),
    )


def all_paths(alpha: Tensor, generator: torch.Generator) -> Route:
    """ProxylessNAS "full": every candidate behind straight-through binary gates."""
    if alpha.numel() == 1:
        return (Leg(0),)
    p = alpha.softmax(-1)
    active = int(torch.multinomial(p.detach(), 1, generator=generator))
    gates = nn.functional.one_hot(torch.tensor(active, device=p.device), len(p)).to(p)
    gates = gates + p - p.detach()
    return tuple(Leg(k, gates[k], grad=k == active) for k in range(len(p)))


def mixture(alpha: Tensor, detach: bool = False) -> Route:
    """DARTS: every candidate weighted by softmax(α) (detached for a W step)."""
    if alpha.numel() == 1:
        return (Leg(0),)
    w = alpha.softmax(-1)
    w = w.detach() if detach else w
    return tuple(Leg(k, w[k]) for k in range(len(w)))


ESTIMATORS = {"two": two_path, "full": all_paths}
