"""BM-NAS modules: fusion ops, adapters, the supernet's routes (forward and backward), the
derived network, the classify head, and the formulas `info` counts with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _specs import BMNAS_SHIPPED, ROOT

import mmnasdsl
from mmnasdsl.compile.bmnas import Adapter, FusionNetwork
from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.graph import build_graph
from mmnasdsl.compile.supernet import Leg
from mmnasdsl.heads import build_head, get_head
from mmnasdsl.heads.classify import classification_report
from mmnasdsl.lang.bmnas_settings import BMNasModel, FusedFeatures, taps_of
from mmnasdsl.lang.bmnas_spec import choice_points
from mmnasdsl.lang.settings import head_options
from mmnasdsl.ops.fusion import FUSION_OPS, build_fusion_op, get_fusion_op

S = BMNasModel(channels=6, length=4, dropout=0.0)
VALID = ROOT / "tests" / "specs" / "bmnas" / "valid"


def count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def random_batch(spec, b: int = 5, classes: int = 3, multilabel: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    batch = {
        f"tap/{name}": torch.randn(b, tap.channels, *tap.dims, generator=g)
        for name, tap in taps_of(spec).items()
    }
    if multilabel:
        batch["label"] = (torch.rand(b, classes, generator=g) > 0.5).float()
    else:
        batch["label"] = torch.randint(classes, (b,), generator=g)
    batch["index"] = torch.arange(b)
    return batch


# ------------------------------------------------------------------------------ ops


@pytest.mark.parametrize("name", FUSION_OPS.names())
def test_fusion_op_shapes_and_param_formula(name):
    op = build_fusion_op(name, S)
    x, y = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    assert op(x, y).shape == (2, 6, 4)
    assert get_fusion_op(name).params(S) == count(op)
    assert (get_fusion_op(name).flops(S) > 0) == (name != "Sum")


def test_scale_dot_attn_queries_x_and_reads_y():
    op = build_fusion_op("ScaleDotAttn", S).eval()
    x, y = torch.randn(1, 6, 4), torch.randn(1, 6, 4)
    a = torch.softmax(x.transpose(1, 2) @ y / 6**0.5, -1)
    expected = torch.nn.functional.layer_norm((a @ y.transpose(1, 2)).transpose(1, 2), [6, 4])
    assert torch.allclose(op(x, y), expected, atol=1e-6)
    assert not torch.allclose(op(x, y), op(y, x))


# --------------------------------------------------------------------------- adapters


def test_sequence_pooling_pools_the_first_axis_and_reduces_the_rest():
    a = Adapter(2, S.model_copy(update={"channels": 2}))
    x = torch.arange(2 * 8 * 3, dtype=torch.float32).view(1, 2, 8, 3)
    pooled = a.pool(x)  # (1, 2, 8 time, 3) -> max over the 3, pool time 8 -> 4
    expected = x.amax(-1).view(1, 2, 4, 2).amax(-1)
    assert torch.equal(pooled, expected)
    vec = torch.randn(3, 2)
    assert torch.equal(a.pool(vec), vec[:, :, None].expand(3, 2, 4))  # replicated along L


def test_grid_pooling_pools_two_axes_to_a_square_and_flattens():
    s = BMNasModel(channels=2, length=4, pooling="grid")
    a = Adapter(2, s)
    x = torch.randn(1, 2, 6, 4)
    expected = torch.nn.functional.adaptive_max_pool2d(x, 2).reshape(1, 2, 4)
    assert torch.equal(a.pool(x), expected)
    assert a(x).shape == (1, 2, 4)


# ---------------------------------------------------------------------------- networks


def mixture(net: FusionNetwork) -> list:
    return [tuple(Leg(k, 1.0 / n) for k in range(n)) for n in net.sizes]


@pytest.mark.parametrize("op_inputs", ["shared", "separate"])
def test_tiny_supernet_forward_backward_reaches_every_candidate(op_inputs):
    spec = mmnasdsl.load(VALID / "minimal.mmnas")
    if op_inputs == "separate":
        text = (
            (VALID / "minimal.mmnas")
            .read_text()
            .replace("length = 4\n", "length = 4\n  op_inputs = separate\n")
        )
        spec = mmnasdsl.loads(text)
    net = build_model(spec, num_answers=2)
    assert [p.name for p in net.points] == [
        p.name for p in choice_points(spec, op_inputs == "separate")
    ]
    alpha = [torch.zeros(n, requires_grad=True) for n in net.sizes]
    net.set_routes([tuple(Leg(k, w) for k, w in enumerate(a.softmax(-1))) for a in alpha])
    batch = random_batch(spec, classes=2)
    loss = net.loss(net(batch), batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in alpha)
    for cell in net.cells:
        for step in cell.steps:
            for op in getattr(step, "candidates", [step]):
                assert all(p.grad is not None for p in op.parameters())


def test_shared_inputs_feed_one_sum_and_separate_two():
    for op_inputs, same in (("shared", True), ("separate", False)):
        text = (
            (VALID / "minimal.mmnas")
            .read_text()
            .replace("length = 4\n", f"length = 4\n  op_inputs = {op_inputs}\n")
        )
        spec = mmnasdsl.loads(text)
        net = build_model(spec, num_answers=2).eval()
        weight = {None: 0.5, "x": 0.5, "y": 0.25}  # the y edges (separate) weigh less
        net.set_routes([(Leg(len(p.candidates) - 1, weight[p.slot]),) for p in net.points])
        seen: list = []
        net.cells[0].steps[0].candidates[1].register_forward_hook(
            lambda m, args, out, seen=seen: seen.append(args)
        )
        net(random_batch(spec, classes=2))
        x, y = seen[0]
        assert torch.equal(x, y) is same


def test_set_arch_runs_the_derived_pair_and_a_value_only_leg_passes_no_gradient():
    spec = mmnasdsl.load(VALID / "minimal.mmnas")
    net = build_model(spec, num_answers=2)
    batch = random_batch(spec, classes=2)
    net.set_arch([1 if p.role == "edge" else 0 for p in net.points])
    assert torch.isfinite(net.loss(net(batch), batch))
    w = torch.tensor(0.5, requires_grad=True)
    routes = [(Leg(1, w, grad=False),) if p.role == "edge" else (Leg(0),) for p in net.points]
    net.set_routes(routes)
    net.zero_grad()
    net.loss(net(batch), batch).backward()
    assert w.grad is not None
    # a1 and b0 reach the loss only through c1's value-only edges (a0 is c2's fixed input)
    assert all(p.grad is None for t in ("a1", "b0") for p in net.adapters[t].parameters())
    assert all(p.grad is not None for p in net.adapters["a0"].parameters())
    with pytest.raises(ValueError):
        net.set_routes(routes[:-1])


def test_the_derived_network_runs_its_fixed_pairs_and_steps():
    spec = mmnasdsl.load(VALID / "concrete.mmnas")
    net = build_model(spec, num_answers=5)
    assert net.points == [] and net.sizes == []
    batch = random_batch(spec, classes=5)
    out = net(batch)
    assert out["logits"].shape == (5, 5)
    net.loss(out, batch).backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize(
    "path", BMNAS_SHIPPED + sorted(VALID.glob("*.mmnas")), ids=lambda p: p.name
)
def test_every_param_formula_counts_the_built_modules(path):
    spec = mmnasdsl.load(path)
    classes = head_options(spec).get("classes") or 3
    graph = build_graph(spec, num_answers=classes)
    with torch.device("meta"):
        net = build_model(spec, num_answers=classes)
    assert graph.params()["total"] == count(net)
    if spec.is_concrete:
        assert graph.params(graph.largest_arch())["total"] == count(net)


@pytest.mark.parametrize(
    ("name", "official"),
    [("mmimdb", 482_688), ("ntu", 480_512), ("ego", 716_288)],
)
def test_the_fusion_part_has_the_official_parameter_count(name, official):
    """notes §4: the official FusionNetwork's parameters (its cells and final LayerNorm,
    without the adapters and the classifier), measured on the official code."""
    spec = mmnasdsl.load(ROOT / "specs" / f"bmnas-{name}.mmnas")
    graph = build_graph(spec)
    p, f = graph.params(), graph.fused
    final_norm = 2 * f.cells * f.channels * f.length  # in our classify head
    assert p["cells"] + final_norm == official


# ------------------------------------------------------------------------------- head


def test_classify_single_and_multi_label():
    s = FusedFeatures(channels=3, length=2, cells=2)
    single = get_head("classify")({"classes": 4})
    head = build_head(single, s)
    z = torch.randn(5, 6, 2, requires_grad=True)
    out = head.fused(z, {})
    assert out["logits"].shape == (5, 4) and single.params(s) == count(head)
    batch = {"label": torch.tensor([0, 1, 2, 3, 0])}
    single.loss(out, batch).backward()
    assert z.grad is not None and single.metric == "accuracy"
    multi = get_head("classify")({"classes": 4, "multilabel": True, "threshold": 0.3})
    out = build_head(multi, s).fused(z.detach(), {})
    target = torch.tensor([[1.0, 0, 0, 1]] * 5)
    assert torch.isfinite(multi.loss(out, {"label": target}))
    pred = multi.predict({"logits": torch.tensor([[0.0, -1.0, 2.0, -0.8]])}, {})["label"]
    assert pred.tolist() == [[1, 0, 1, 1]]  # sigmoid: 0.5, 0.27, 0.88, 0.31 against 0.3
    assert multi.metric == "f1_weighted"


def test_classification_report_matches_hand_counts():
    m = classification_report(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    assert m["accuracy"] == pytest.approx(75.0)
    # per class F1: 1, 2/3, 2/3; support 1, 1, 2
    assert m["f1_macro"] == pytest.approx(100 * (1 + 2 / 3 + 2 / 3) / 3)
    assert m["f1_weighted"] == pytest.approx(100 * (1 + 2 / 3 + 2 * 2 / 3) / 4)
    multi = classification_report(np.array([[1, 0], [1, 1]]), np.array([[1, 0], [0, 1]]))
    assert multi["accuracy"] == pytest.approx(50.0)


def test_a_derived_net_builds_no_adapter_for_a_tap_no_cell_reads():
    text = (VALID / "concrete.mmnas").read_text().replace("cell c2(a1, c1,", "cell c2(a0, c1,")
    spec = mmnasdsl.loads(text)
    assert spec.live_taps() == ["a0", "b0"]
    net = build_model(spec, num_answers=5)
    assert set(net.adapters) == {"a0", "b0"}
    batch = random_batch(spec, classes=5)
    assert net(batch)["logits"].shape == (5, 5)
    graph = build_graph(spec, num_answers=5)
    assert graph.params()["total"] == count(net)
    assert graph.g.nodes["tap:a1"]["params"] == 0
