"""build_model: every shipped spec runs forward and backward at a small width; the Supernet's
routes (one path, a weighted mixture, value-only legs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _specs import SHIPPED

import mmnasdsl
from mmnasdsl.compile.build import build_model, scaled_settings
from mmnasdsl.compile.network import Network
from mmnasdsl.compile.supernet import Leg, MixedBlock, Supernet
from mmnasdsl.lang.parse import parse
from mmnasdsl.lang.settings import ObjectsInput, WordsInput, input_settings
from mmnasdsl.lang.spec import Spec
from mmnasdsl.ops import BlockContext

SPECS = SHIPPED  # the MMnas specs (BM-NAS: tests/test_bmnas_model.py)
VOCAB, ANSWERS = 30, 6

SMALL = """
model m { d_model = 32 heads = 4 dropout = 0.1 }
input text = words(max_len = 8, embed = learned(16), lstm)
input image = objects(max = 10, dim = 12, relations = box4)
pool dec = SA | RSA | GA | FFN
encoder text = (SA | FFN) * 2
decoder image(guide = text) = dec * 3
head vqa(answers = 6)
"""


def random_batch(
    spec: Spec, b: int = 2, words: int = 5, objects: int = 6
) -> dict[str, torch.Tensor]:
    """A batch with every key a head may read (docs/interfaces.md, "Batches")."""
    g = torch.Generator().manual_seed(0)
    batch: dict[str, torch.Tensor] = {}
    for name in spec.inputs:
        cfg = input_settings(spec, name)
        if isinstance(cfg, WordsInput):
            batch["words"] = torch.randint(2, VOCAB, (b, words), generator=g)
            batch["words"][1, words - 2 :] = 0
            batch["words_mask"] = batch["words"] != 0
        elif isinstance(cfg, ObjectsInput):
            batch["objects"] = torch.randn(b, objects, cfg.dim, generator=g)
            batch["objects_mask"] = torch.ones(b, objects, dtype=torch.bool)
            batch["objects_mask"][1, objects - 2 :] = False
            xy = torch.rand(b, objects, 2, generator=g) * 40
            size = 5 + torch.rand(b, objects, 2, generator=g) * 30
            batch["boxes"] = torch.cat([xy, xy + size], -1)
    batch["image_size"] = torch.full((b, 2), 80.0)
    batch["answer_scores"] = torch.rand(b, ANSWERS, generator=g)
    batch["label"] = torch.tensor([1.0, 0.0] * b)[:b]
    batch["gt_box"] = batch["boxes"][:, 0] + 1.0
    return batch


@pytest.mark.skipif(not SPECS, reason="no shipped specs yet")
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_forward_backward(path: Path) -> None:
    spec = mmnasdsl.load(path)
    net = build_model(spec, vocab_size=VOCAB, num_answers=ANSWERS, d_model=32)
    batch = random_batch(spec)
    loss = net.loss(net(batch), batch)
    loss.backward()
    assert torch.isfinite(loss)
    if isinstance(net, Supernet):  # every candidate of every block, weighted
        net.set_routes([tuple(Leg(k, 1.0 / n) for k in range(n)) for n in net.sizes])
        net.zero_grad()
        net.loss(net(batch), batch).backward()
        for block in net.mixed:
            assert all(any(p.grad is not None for p in c.parameters()) for c in block.candidates)
    pred = net.predict(net(batch), batch)
    assert pred


def small_supernet() -> Supernet:
    net = build_model(parse(SMALL, "small"), vocab_size=VOCAB)
    assert isinstance(net, Supernet)
    return net


def test_supernet_api() -> None:
    net = small_supernet()
    assert net.sizes == [2, 2, 4, 4, 4]
    assert not any("alpha" in name for name, _ in net.named_parameters())  # α is the searcher's
    net.set_arch([1, 0, 2, 1, 3])
    assert net.arch == [1, 0, 2, 1, 3]
    assert net.arch_names() == {"encoder": ["FFN", "SA"], "decoder": ["GA", "RSA", "FFN"]}
    with pytest.raises(ValueError):
        net.set_arch([0, 0])
    with pytest.raises(ValueError):
        net.set_arch([0, 0, 0, 0, 4])


def test_only_the_chosen_op_runs() -> None:
    net = small_supernet()
    batch = random_batch(parse(SMALL, "small"))
    net.set_arch([0, 1, 2, 2, 3])
    net.loss(net(batch), batch).backward()
    for block, chosen in zip(net.mixed, net.arch, strict=True):
        for i, op in enumerate(block.candidates):
            has_grad = any(p.grad is not None for p in op.parameters())
            assert has_grad == (i == chosen)


def test_a_route_is_the_weighted_sum_of_its_legs() -> None:
    """out = Σ w_k o_k; a value-only leg adds its value but no gradient to its op."""
    net = small_supernet().eval()
    block = net.mixed[2]
    x = torch.randn(2, 6, 32)
    ctx = BlockContext(
        mask=torch.ones(2, 6, dtype=torch.bool),
        guide=torch.randn(2, 5, 32),
        relation=torch.rand(2, 6, 6, 64),
    )
    w = torch.tensor([0.7, 0.3], requires_grad=True)
    block.route = (Leg(0, w[0]), Leg(3, w[1], grad=False))
    out = block(x, ctx)
    want = 0.7 * block.candidates[0](x, ctx) + 0.3 * block.candidates[3](x, ctx)
    assert torch.allclose(out, want, atol=1e-6)
    out.sum().backward()
    assert w.grad is not None and torch.all(w.grad != 0)
    assert all(p.grad is None for p in block.candidates[3].parameters())
    assert all(p.grad is not None for p in block.candidates[0].parameters())
    assert block.chosen == 0


def test_concrete_spec_builds_plain_network() -> None:
    concrete = parse(SMALL, "s").replace_stacks(
        {"encoder": ["SA", "FFN"], "decoder": ["GA", "RSA", "FFN"]}
    )
    net = build_model(concrete, vocab_size=VOCAB)
    assert type(net) is Network
    assert not any(isinstance(m, MixedBlock) for m in net.modules())
    batch = random_batch(concrete)
    n_params = sum(p.numel() for p in net.parameters())
    net.loss(net(batch), batch).backward()
    assert sum(p.numel() for p in net.parameters()) == n_params  # nothing created lazily


def test_glove_init_and_width_override() -> None:
    spec = parse(SMALL, "s")
    vectors = np.random.default_rng(0).normal(size=(VOCAB, 16)).astype("float32")
    net = build_model(spec, vocab_size=VOCAB, glove=vectors)
    assert torch.allclose(net.stems["text"].embed.weight, torch.from_numpy(vectors))
    with pytest.raises(ValueError, match="shape"):
        build_model(spec, vocab_size=VOCAB + 1, glove=vectors)
    wide = scaled_settings(spec, 64)
    assert (wide.d_model, wide.n_heads, wide.d_head) == (64, 8, 8)  # d_h = 8 kept
    vqa = parse("model m { d_model = 512 head_dim = 64 }", "v")
    s = scaled_settings(vqa, 256)
    assert (s.n_heads, s.d_head, s.d_fused) == (4, 64, 512)
