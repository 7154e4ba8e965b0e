"""Ops: every registered op (shapes, backward, masks, FLOPs) and parity with the formulas;
the registry is torch-free."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.network import Network
from mmnasdsl.lang.parse import parse
from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.ops import OPS, BlockContext, Op, build_op, get_op, list_ops, register_op
from mmnasdsl.ops._layers import MultiHeadAttention, ReferenceLayerNorm

S = ModelSettings(d_model=16, heads=2, dropout=0.0, relation_dim=8)
B, N, M = 2, 5, 4


def context(seed: int = 0) -> BlockContext:
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[True] * N, [True, True, True, False, False]])
    guide_mask = torch.tensor([[True] * M, [True, True, False, False]])
    return BlockContext(
        mask=mask,
        guide=torch.randn(B, M, 16, generator=g),
        guide_mask=guide_mask,
        relation=torch.randn(B, N, N, 8, generator=g).relu(),
    )


@pytest.mark.parametrize("name", list_ops())
def test_op_shape_and_backward(name: str) -> None:
    op = build_op(name, S)
    x = torch.randn(B, N, 16, requires_grad=True)
    y = op(x, context())
    assert y.shape == (B, N, 16)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in op.parameters())


@pytest.mark.parametrize("name", list_ops())
def test_padding_changes_nothing(name: str) -> None:
    """Changing padded positions (own stream, guide, relations) leaves real outputs unchanged."""
    op = build_op(name, S).eval()
    x, ctx = torch.randn(B, N, 16), context()
    before = op(x, ctx)
    x2 = x.clone()
    x2[1, 3:] = 100.0
    guide = ctx.guide.clone()
    guide[1, 2:] = -50.0
    rel = ctx.relation.clone()
    rel[1, :, 3:] = 7.0
    rel[1, 3:, :] = 7.0
    after = op(x2, BlockContext(ctx.mask, guide, ctx.guide_mask, rel))
    assert torch.allclose(before[ctx.mask], after[ctx.mask], atol=1e-5)


@pytest.mark.parametrize("name", list_ops())
def test_flops_match_counter(name: str) -> None:
    """The static FLOP count agrees with torch's counter (which may skip the fused attention)."""
    op = build_op(name, S).eval()
    ctx = BlockContext(
        mask=torch.ones(1, N, dtype=torch.bool),
        guide=torch.randn(1, M, 16),
        guide_mask=torch.ones(1, M, dtype=torch.bool),
        relation=torch.randn(1, N, N, 8),
    )
    with FlopCounterMode(display=False) as counter:
        op(torch.randn(1, N, 16), ctx)
    counted, static = counter.get_total_flops(), get_op(name).flops(N, M, S)
    assert counted <= static <= counted + 2 * 2 * N * max(N, M) * 16


def hand_attention(
    att: MultiHeadAttention,
    x: torch.Tensor,
    y: torch.Tensor,
    key_mask: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """softmax(QKᵀ/√d_h + R + mask) V, per head, then the output projection."""
    h, dh = att.n_heads, att.d_head
    q = (x @ att.q.weight.T).view(B, -1, h, dh).transpose(1, 2)
    k = (y @ att.k.weight.T).view(B, -1, h, dh).transpose(1, 2)
    v = (y @ att.v.weight.T).view(B, -1, h, dh).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + bias
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, -1, h * dh)
    return out @ att.o.weight.T


def test_attention_equals_formula() -> None:
    att = MultiHeadAttention(S).eval()
    x, y, ctx = torch.randn(B, N, 16), torch.randn(B, M, 16), context()
    bias = torch.randn(B, 2, N, M)
    got = att(x, y, ctx.guide_mask, bias)
    assert torch.allclose(got, hand_attention(att, x, y, ctx.guide_mask, bias), atol=1e-5)


def test_rsa_equals_formula() -> None:
    """RSA = LayerNorm(x + MHA(x, x, x, log max(ReLU(W r), 1e-6)))."""
    op = build_op("RSA", S).eval()
    x, ctx = torch.randn(B, N, 16), context()
    bias = F.relu(op.rel(ctx.relation)).clamp(min=1e-6).log().permute(0, 3, 1, 2)
    want = op.norm(x + hand_attention(op.att, x, x, ctx.mask, bias))
    assert torch.allclose(op(x, ctx), want, atol=1e-5)


def rsa_bias(settings: ModelSettings, seed: int) -> torch.Tensor:
    """The per-head score bias log max(ReLU(W r), 1e-6) of a fresh RSA block."""
    torch.manual_seed(seed)
    op = build_op("RSA", settings)
    return F.relu(op.rel(context(seed).relation)).clamp(min=1e-6).log()


def test_rsa_neutral_init_starts_as_sa() -> None:
    """relation_init = neutral (the default): every pair's bias starts near 0, so RSA begins
    as SA; the reference's torch init starts some (pair, head) biases at the -13.8 floor."""
    assert S.relation_init == "neutral"
    for seed in range(3):
        assert rsa_bias(S, seed).abs().max() < 0.2
    reference = S.model_copy(update={"relation_init": "reference"})
    floors = [(rsa_bias(reference, seed) < -13).float().mean() for seed in range(3)]
    assert max(floors) > 0.05, floors


def test_no_projection_bias_by_default() -> None:
    att = MultiHeadAttention(S)
    assert all(lin.bias is None for lin in (att.q, att.k, att.v, att.o))
    assert MultiHeadAttention(S.model_copy(update={"bias": True})).q.bias is not None


def test_reference_layernorm() -> None:
    x = torch.randn(3, 16)
    want = (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=True, keepdim=True) + 1e-6)
    assert torch.allclose(ReferenceLayerNorm(16)(x), want, atol=1e-6)
    op = build_op("FFN", S.model_copy(update={"norm": "reference"}))
    assert isinstance(op.norm, ReferenceLayerNorm)


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_op("SA")(Op)
    with pytest.raises(KeyError, match="did you mean 'RSA'"):
        get_op("RSAA")


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x


TOY_SPEC = """
model m { d_model = 16 heads = 2 }
input text = words(max_len = 6, embed = learned(8), lstm)
input image = objects(max = 5, dim = 12, relations = box4)
encoder text = SA Twice
decoder image(guide = text) = GA Twice FFN
head vqa(answers = 5)
"""


def test_toy_op_registers_and_runs() -> None:
    """Adding an op is one decorated class; a spec can then use it by name."""

    @register_op("Twice")
    class Twice(Op):
        """2 * scale * x."""

        @staticmethod
        def layers(s: ModelSettings) -> dict[str, nn.Module]:
            return {"scale": Scale()}

        @staticmethod
        def transform(m: nn.Module, x: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
            return 2 * m.scale(x)

    try:
        net = build_model(parse(TOY_SPEC, "toy"), vocab_size=20)
        assert isinstance(net, Network) and net.blocks[1].op is Twice
        batch = {
            "words": torch.randint(1, 20, (2, 4)),
            "objects": torch.randn(2, 3, 12),
            "objects_mask": torch.ones(2, 3, dtype=torch.bool),
            "answer_scores": torch.rand(2, 5),
        }
        net.loss(net(batch), batch).backward()
        assert net.blocks[1].scale.weight.grad is not None
    finally:
        OPS.unregister("Twice")
    assert "Twice" not in list_ops()


def test_the_registries_load_without_torch() -> None:
    """The language reads ops and heads, and checks every shipped spec of every space kind,
    without torch (what keeps `mmnasdsl check` fast)."""
    import subprocess
    import sys

    code = "import sys, mmnasdsl; mmnasdsl.catalog(); import mmnasdsl.ops, mmnasdsl.heads; "
    code += "import glob; specs = sorted(glob.glob('specs/*.mmnas')); "
    code += "[mmnasdsl.load(p) for p in specs]; print(len(specs), 'torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    count, torch_loaded = out.stdout.split()
    assert int(count) >= 16 and torch_loaded == "False", out.stderr  # both space kinds


def rsa_blocks(k: int) -> list[nn.Module]:
    """k RSA blocks with the reference's init (some pairs at the log floor), eval mode."""
    torch.manual_seed(3)
    reference = S.model_copy(update={"relation_init": "reference"})
    return [build_op("RSA", reference).eval() for _ in range(k)]


def test_rsa_prepare_batches_the_priors_exactly() -> None:
    """`RSA.prepare` (every block's mask in one matmul, padding folded in) gives each block
    the output of the formula, on a batch with padded objects, and the same gradients for
    the relation tensor and every block's weights as block-by-block evaluation."""
    blocks, x = rsa_blocks(3), torch.randn(B, N, 16)

    def run(batched: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        ctx = context()
        rel = ctx.relation.clone().requires_grad_(True)
        ctx = BlockContext(ctx.mask, ctx.guide, ctx.guide_mask, rel)
        if batched:
            get_op("RSA").prepare(blocks, ctx)
            assert set(ctx.shared) == {id(b) for b in blocks}
        outs = [b(x, ctx) for b in blocks]
        params = [rel] + [p for b in blocks for p in b.rel.parameters()]
        return outs, list(torch.autograd.grad(sum(o.square().sum() for o in outs), params))

    (outs, grads), (want_outs, want_grads) = run(True), run(False)
    ctx = context()
    for b, out in zip(blocks, outs, strict=True):
        bias = F.relu(b.rel(ctx.relation)).clamp(min=1e-6).log().permute(0, 3, 1, 2)
        formula = b.norm(x + hand_attention(b.att, x, x, ctx.mask, bias))
        assert torch.allclose(out, formula, atol=1e-5)
    for got, want in zip(outs + grads, want_outs + want_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-5)


def test_context_masks_are_built_once_and_exact() -> None:
    """SA and GA read the additive masks their context built once; softmax over them equals
    the formula with -inf on padded keys (hand_attention)."""
    ctx = context()
    assert ctx.key_bias() is ctx.key_bias() and ctx.guide_bias() is ctx.guide_bias()
    assert ctx.key_bias().shape == (B, 1, 1, N)
    assert (ctx.key_bias()[1, 0, 0, 3:] == -1e9).all() and (ctx.key_bias()[0] == 0).all()
    torch.manual_seed(4)
    sa, ga = build_op("SA", S).eval(), build_op("GA", S).eval()
    x = torch.randn(B, N, 16)
    zero = torch.zeros(B, 2, N, N)
    assert torch.allclose(
        sa(x, ctx), sa.norm(x + hand_attention(sa.att, x, x, ctx.mask, zero)), atol=1e-5
    )
    y, gz = ctx.guide, torch.zeros(B, 2, N, M)
    want = ga.norm(x + hand_attention(ga.att, x, y, ctx.guide_mask, gz))
    assert torch.allclose(ga(x, ctx), want, atol=1e-5)
