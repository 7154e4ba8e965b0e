"""build_model: every shipped spec runs forward and backward at a small width; the Supernet API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mmnasdsl
from mmnasdsl.compile.build import build_model, scaled_settings
from mmnasdsl.compile.network import MixedBlock, Network, Supernet
from mmnasdsl.lang.parse import parse
from mmnasdsl.lang.settings import ObjectsInput, WordsInput, input_settings
from mmnasdsl.lang.spec import Spec

SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.mmnas"))
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
    if isinstance(net, Supernet):
        net.zero_grad()
        with net.theta_step_mode(torch.Generator().manual_seed(1)):
            net.loss(net(batch), batch).backward()
        searchable = [b for b in net.mixed if len(b.names) > 1]
        assert all(b.alpha.grad is not None for b in searchable)
    pred = net.predict(net(batch), batch)
    assert pred


def small_supernet() -> Supernet:
    net = build_model(parse(SMALL, "small"), vocab_size=VOCAB)
    assert isinstance(net, Supernet)
    return net


def test_supernet_api() -> None:
    net = small_supernet()
    assert [len(a) for a in net.arch_parameters()] == [2, 2, 4, 4, 4]
    n_arch = sum(a.numel() for a in net.arch_parameters())
    assert sum(p.numel() for p in net.weight_parameters()) + n_arch == sum(
        p.numel() for p in net.parameters()
    )
    g = torch.Generator().manual_seed(3)
    arch = net.sample_arch(g)
    assert net.arch == arch
    net.set_arch([1, 0, 2, 1, 3])
    assert net.arch_names() == {"encoder": ["FFN", "SA"], "decoder": ["GA", "RSA", "FFN"]}
    with torch.no_grad():
        net.arch_parameters()[2][3] = 5.0
    assert net.argmax_arch()[2] == 3
    probs = net.probabilities()
    assert len(probs) == 5 and all(abs(sum(p) - 1) < 1e-6 for p in probs)
    with pytest.raises(ValueError):
        net.set_arch([0, 0])


def test_only_the_chosen_op_runs() -> None:
    net = small_supernet()
    batch = random_batch(parse(SMALL, "small"))
    net.set_arch([0, 1, 2, 2, 3])
    net.loss(net(batch), batch).backward()
    for block, chosen in zip(net.mixed, net.arch, strict=True):
        for i, op in enumerate(block.candidates):
            has_grad = any(p.grad is not None for p in op.parameters())
            assert has_grad == (i == chosen)
    assert all(a.grad is None for a in net.arch_parameters())


def test_theta_two_path_gradient_matches_formula() -> None:
    """∂L/∂α_k = Σ_l <∂L/∂out, o_l> q_l (δ_kl - q_k) over the two sampled candidates."""
    spec = parse(SMALL.replace("dec * 3", "dec"), "one")
    net = build_model(spec, vocab_size=VOCAB).eval()
    batch = random_batch(spec)
    block = net.mixed[-1]
    with torch.no_grad():
        block.alpha.copy_(torch.tensor([0.3, -0.2, 0.1, 0.4]))
    seen: dict[str, tuple] = {}
    block.register_forward_hook(lambda m, args, out: seen.update(block=args))
    net.head.register_forward_hook(lambda m, args, out: seen.update(head=args))
    for b in net.mixed[:-1]:
        b.alpha.requires_grad_(False)  # only the last block's α is checked
    with net.theta_step_mode(torch.Generator().manual_seed(5)):
        net.loss(net(batch), batch).backward()
    pair = block.alpha.grad.nonzero().flatten().tolist()
    assert len(pair) == 2 and abs(block.alpha.grad.sum()) < 1e-6
    x, ctx = seen["block"]
    x_text, x_mask, _, y_mask, _ = seen["head"]
    outs = [block.candidates[i](x, ctx).detach() for i in pair]
    y = outs[pair.index(block.chosen)].clone().requires_grad_(True)
    loss = net.head.loss(net.head(x_text, x_mask, y, y_mask, batch), batch)
    (grad_out,) = torch.autograd.grad(loss, y)
    g = torch.stack([(grad_out * o).sum() for o in outs])  # ∂L/∂g_l
    q = block.alpha.detach()[pair].softmax(-1)
    want = torch.stack(
        [sum(g[j] * q[j] * (float(k == j) - q[k]) for j in range(2)) for k in range(2)]
    )
    assert torch.allclose(block.alpha.grad[pair], want, atol=1e-5)


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


def test_theta_backward_equals_backward_without_weight_grads() -> None:
    spec = parse(SMALL, "s")
    net = build_model(spec, vocab_size=VOCAB).eval()
    batch = random_batch(spec)
    grads = []
    for use_helper in (False, True):
        net.zero_grad(set_to_none=True)
        with net.theta_step_mode(torch.Generator().manual_seed(3)):
            loss = net.loss(net(batch), batch)
        if use_helper:
            net.theta_backward(loss)
        else:
            loss.backward()
        grads.append([a.grad.clone() for a in net.arch_parameters()])
    assert all(torch.allclose(a, b) for a, b in zip(*grads, strict=True))
    assert all(p.grad is None for p in net.weight_parameters())
