"""The reference's conventions are the defaults, the others are options; each checked
against a formula worked out by hand (docs/reference.md, "Conventions").

The reference implementation itself is not importable here, so these are its formulas
(mmnas/model/modules.py `LayerNorm`, mmnas/loader/load_data_vqa.py `relation_embedding`)
written out on small inputs whose values can be checked with a pencil.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import mmnasdsl
from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.network import relation_convention
from mmnasdsl.data.geometry import relation_features
from mmnasdsl.data.kinds import get_kind
from mmnasdsl.data.loader import collate
from mmnasdsl.ops._layers import ReferenceLayerNorm, make_norm

SPEC = """
model m {{ d_model = 16 heads = 2 {model} }}
input text = words(max_len = 6, embed = learned(8), lstm)
input image = objects(max = 4, dim = 6, relations = box4{objects})
encoder text = SA FFN
decoder image(guide = text) = RSA GA FFN
head vqa(answers = 5)
"""

X = torch.tensor([[1.0, 2.0, 3.0, 6.0]])  # mean 3; squares of deviations 4 + 1 + 0 + 9 = 14


def spec(model: str = "", objects: str = "") -> mmnasdsl.Spec:
    """The small RSA spec with extra options in `model { }` and `objects( )`."""
    return mmnasdsl.loads(SPEC.format(model=model, objects=objects), "<conventions>")


def test_reference_layernorm_by_hand() -> None:
    """(x - mean) / (std + 1e-6) with the unbiased std sqrt(14 / 3)."""
    std = math.sqrt(14 / 3)
    want = torch.tensor([[(v - 3.0) / (std + 1e-6) for v in (1.0, 2.0, 3.0, 6.0)]])
    assert torch.allclose(make_norm(4)(X), want, atol=1e-7)


def composite_reference_norm(ln: ReferenceLayerNorm, x: torch.Tensor) -> torch.Tensor:
    """The reference's formula as plain tensor ops (what autograd would differentiate)."""
    mean, std = x.mean(-1, keepdim=True), x.std(-1, keepdim=True)
    return ln.weight * (x - mean) / (std + ln.eps) + ln.bias


def test_reference_layernorm_backward_matches_autograd_of_the_formula() -> None:
    """The hand-written backward gives autograd's gradients of the formula (float64,
    random scale and shift, batch dims), and passes torch's numerical gradcheck."""
    torch.manual_seed(0)
    ln = ReferenceLayerNorm(7).double()
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = (3 * torch.randn(2, 5, 7, dtype=torch.float64)).requires_grad_()
    dy = torch.randn(2, 5, 7, dtype=torch.float64)
    got = [ln(x), *torch.autograd.grad(ln(x), (x, ln.weight, ln.bias), dy)]
    ref = composite_reference_norm(ln, x)
    want = [ref, *torch.autograd.grad(ref, (x, ln.weight, ln.bias), dy)]
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g.to(w.dtype), w, atol=1e-10), (g - w).abs().max()
    small = ReferenceLayerNorm(4).double()
    xs = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(small, (xs,))


def test_reference_layernorm_constant_row_has_finite_gradient() -> None:
    """A constant row (std 0): output b, gradient finite (the formula's autograd gives NaN)."""
    x = torch.full((1, 4), 2.5, requires_grad=True)
    ln = ReferenceLayerNorm(4)
    y = ln(x)
    y.sum().backward()
    assert torch.equal(y.detach(), torch.zeros(1, 4))
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_reference_layernorm_runs_in_fp32_under_bf16_autocast() -> None:
    """Like torch's layer_norm under autocast: statistics in fp32, an fp32 output."""
    x = torch.randn(3, 8).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ReferenceLayerNorm(8)(x)
    assert y.dtype == torch.float32
    y.sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16


def test_standard_layernorm_by_hand() -> None:
    """`norm = standard`: (x - mean) / sqrt(var + 1e-5) with the biased variance 14 / 4."""
    root = math.sqrt(14 / 4 + 1e-5)
    want = torch.tensor([[(v - 3.0) / root for v in (1.0, 2.0, 3.0, 6.0)]])
    assert torch.allclose(make_norm(4, "standard")(X), want, atol=1e-7)


def test_reference_layernorm_scale_and_shift() -> None:
    """a * normalised + b, with a and b the parameters the reference calls a_2 and b_2."""
    ln = ReferenceLayerNorm(4)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor([2.0, 1.0, 1.0, 0.5]))
        ln.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 0.0]))
    z = (X - 3.0) / (math.sqrt(14 / 3) + 1e-6)
    want = z * torch.tensor([2.0, 1.0, 1.0, 0.5]) + torch.tensor([0.0, 1.0, -1.0, 0.0])
    assert torch.allclose(ln(X), want, atol=1e-7)


def norms(net: nn.Module) -> set[type]:
    """The classes of every LayerNorm-like module in a network."""
    return {type(m) for m in net.modules() if isinstance(m, (nn.LayerNorm, ReferenceLayerNorm))}


def test_default_spec_uses_reference_norm_everywhere() -> None:
    net = build_model(spec(), vocab_size=20, num_answers=5)
    assert norms(net) == {ReferenceLayerNorm}  # ops and the head's fusion norm


def test_norm_standard_uses_torch_layernorm_everywhere() -> None:
    net = build_model(spec("norm = standard"), vocab_size=20, num_answers=5)
    assert norms(net) == {nn.LayerNorm}


# Two boxes: A = (0, 0, 9, 9), B = (20, 0, 29, 19).
# pixel:      w = (10, 10), h = (10, 20); cx = (4.5, 24.5), cy = (4.5, 9.5)
# continuous: w = (9, 9),   h = (9, 19);  same centres
BOXES = torch.tensor([[[0.0, 0.0, 9.0, 9.0], [20.0, 0.0, 29.0, 19.0]]])
PIXEL_AB = [math.log(20 / 10), math.log(5 / 10), math.log(10 / 10), math.log(10 / 20)]
PIXEL_BA = [math.log(20 / 10), math.log(5 / 20), math.log(10 / 10), math.log(20 / 10)]
CONTINUOUS_AB = [math.log(20 / 9), math.log(5 / 9), 0.0, math.log(9 / 19)]
CONTINUOUS_BA = [math.log(20 / 9), math.log(5 / 19), 0.0, math.log(19 / 9)]
SELF = [math.log(1e-3), math.log(1e-3), 0.0, 0.0]  # |dx| = 0 is floored at 1e-3


@pytest.mark.parametrize(
    ("convention", "ab", "ba"),
    [("pixel", PIXEL_AB, PIXEL_BA), ("continuous", CONTINUOUS_AB, CONTINUOUS_BA)],
)
def test_relation_features_by_hand(convention: str, ab: list[float], ba: list[float]) -> None:
    r = relation_features(BOXES, convention)[0]
    assert torch.allclose(r[0, 1], torch.tensor(ab), atol=1e-6)
    assert torch.allclose(r[1, 0], torch.tensor(ba), atol=1e-6)
    assert torch.allclose(r[0, 0], torch.tensor(SELF), atol=1e-6)


def test_relation_features_default_is_pixel() -> None:
    assert torch.equal(relation_features(BOXES), relation_features(BOXES, "pixel"))


def test_relation_features_unknown_convention() -> None:
    with pytest.raises(ValueError, match="pixel"):
        relation_features(BOXES, "centre")


@pytest.mark.parametrize(
    ("objects", "want"), [("", "pixel"), (", box_convention = continuous", "continuous")]
)
def test_spec_box_convention(objects: str, want: str) -> None:
    """The spec says which convention the loader and the network use."""
    s = spec(objects=objects)
    assert relation_convention(s) == want
    net = build_model(s, vocab_size=20, num_answers=5)
    assert net.relation is not None and net.relation.convention == want


def test_collate_and_network_agree_on_the_convention() -> None:
    """R from the collate (the loader) and R the network computes from the boxes are the
    same, in either convention, so a batch with or without `relations` gives one result."""
    item = {
        "words": np.array([3, 4, 5]),
        "objects": np.random.default_rng(0).normal(size=(2, 6)).astype("float32"),
        "boxes": BOXES[0].numpy(),
        "image_size": np.array([40.0, 40.0], dtype="float32"),
        "index": 0,
        "score_ids": np.array([1]),
        "score_values": np.array([1.0], dtype="float32"),
        "answer_type": 0,
        "family": 0,
        "n_answers": 5,
    }
    for convention, ab in (("pixel", PIXEL_AB), ("continuous", CONTINUOUS_AB)):
        batch = collate([item], get_kind("vqa"), relations=convention)
        assert torch.allclose(batch["relations"][0, 0, 1], torch.tensor(ab), atol=1e-6)
        objects = "" if convention == "pixel" else ", box_convention = continuous"
        net = build_model(spec(objects=objects), vocab_size=20, num_answers=5).eval()
        without = {k: v for k, v in batch.items() if k != "relations"}
        with torch.no_grad():
            assert torch.equal(net(batch)["logits"], net(without)["logits"])
