"""α's estimators: the routes they give and the gradients they send to α, against formulas."""

from __future__ import annotations

import pytest
import torch
from test_build import SMALL, VOCAB, random_batch

from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.supernet import Leg, Supernet
from mmnasdsl.lang.parse import parse
from mmnasdsl.search.estimators import Alpha, all_paths, mixture, sample_path, two_path

ALPHA = torch.tensor([0.3, -0.2, 0.1, 0.4])


def one_block_net() -> tuple[Supernet, dict[str, torch.Tensor]]:
    """SMALL with a one-block decoder: the last block is the one under test."""
    spec = parse(SMALL.replace("dec * 3", "dec"), "one")
    net = build_model(spec, vocab_size=VOCAB).eval()
    assert isinstance(net, Supernet)
    return net, random_batch(spec)


def gate_grads(net: Supernet, batch: dict, legs: list[int]) -> torch.Tensor:
    """∂L/∂g_l = <∂L/∂out, o_l> for the last block's candidates `legs`, at its current route."""
    block = net.mixed[-1]
    seen: dict[str, tuple] = {}
    h1 = block.register_forward_hook(lambda m, args, out: seen.update(block=args))
    h2 = net.head.register_forward_hook(lambda m, args, out: seen.update(head=args))
    with torch.no_grad():
        net(batch)
    h1.remove()
    h2.remove()
    x, ctx = seen["block"]
    x_text, x_mask, _, y_mask, _ = seen["head"]
    outs = [block.candidates[i](x, ctx).detach() for i in legs]
    y = outs[legs.index(block.chosen)].clone().requires_grad_(True)
    loss = net.loss(net.head(x_text, x_mask, y, y_mask, batch), batch)
    (grad_out,) = torch.autograd.grad(loss, y)
    return torch.stack([(grad_out * o).sum() for o in outs])


def alpha_grad(net: Supernet, batch: dict, estimator, seed: int) -> torch.Tensor:
    """α.grad of the last block after one θ-step forward through `estimator`'s route."""
    alpha = ALPHA.clone().requires_grad_(True)
    g = torch.Generator().manual_seed(seed)
    fixed = [(Leg(0),)] * (len(net.mixed) - 1)  # the other blocks run their first op
    net.set_routes([*fixed, estimator(alpha, g)])
    net.loss(net(batch), batch).backward()
    return alpha.grad


def test_two_path_gradient_matches_the_proxylessnas_formula() -> None:
    """∂L/∂α_k = Σ_l ∂L/∂g_l q_l (δ_kl − q_k) over the two sampled candidates."""
    net, batch = one_block_net()
    grad = alpha_grad(net, batch, two_path, seed=5)
    pair = [leg.index for leg in net.mixed[-1].route]
    assert len(pair) == 2 and abs(float(grad.sum())) < 1e-6
    assert all(grad[k] == 0 for k in range(4) if k not in pair)
    q = ALPHA[pair].softmax(-1)
    g = gate_grads(net, batch, pair)
    want = torch.stack(
        [sum(g[j] * q[j] * (float(k == j) - q[k]) for j in range(2)) for k in range(2)]
    )
    assert torch.allclose(grad[pair], want, atol=1e-5)


def test_full_gradient_matches_the_formula_over_every_candidate() -> None:
    """All candidates: ∂L/∂α_k = Σ_l ∂L/∂g_l p_l (δ_kl − p_k); only the active op trains."""
    net, batch = one_block_net()
    grad = alpha_grad(net, batch, all_paths, seed=2)
    route = net.mixed[-1].route
    assert [leg.index for leg in route] == [0, 1, 2, 3]
    assert [leg.grad for leg in route].count(True) == 1
    p = ALPHA.softmax(-1)
    g = gate_grads(net, batch, [0, 1, 2, 3])
    want = torch.stack(
        [sum(g[j] * p[j] * (float(k == j) - p[k]) for j in range(4)) for k in range(4)]
    )
    assert torch.allclose(grad, want, atol=1e-5)
    active = net.mixed[-1].chosen
    for i, cand in enumerate(net.mixed[-1].candidates):
        assert any(p.grad is not None for p in cand.parameters()) == (i == active)


def test_mixture_is_the_softmax_weighted_sum() -> None:
    route = mixture(ALPHA)
    assert [leg.index for leg in route] == [0, 1, 2, 3]
    assert torch.allclose(torch.stack([leg.weight for leg in route]), ALPHA.softmax(-1))
    assert all(not leg.weight.requires_grad for leg in mixture(ALPHA.requires_grad_(), detach=True))


@pytest.mark.parametrize("estimator", [two_path, all_paths, mixture])
def test_a_single_candidate_is_a_plain_leg(estimator) -> None:
    one = torch.zeros(1)
    route = mixture(one) if estimator is mixture else estimator(one, torch.Generator())
    assert len(route) == 1 and route[0].index == 0 and route[0].weight is None


def test_sampling_follows_p_and_alpha_rows() -> None:
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(2000):
        counts[sample_path(torch.tensor([0.7, 0.2, 0.1]), g)[0].index] += 1
    assert torch.allclose(counts / 2000, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)
    alpha = Alpha([2, 1, 4])
    assert [a.numel() for a in alpha] == [2, 1, 4] and len(alpha.trainable()) == 2
    assert alpha.argmax() == [0, 0, 0]
    assert all(abs(sum(p) - 1) < 1e-6 for p in alpha.probabilities())
