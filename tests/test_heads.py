"""Heads: each loss on a hand-computed example, predictions, and the box geometry they use."""

from __future__ import annotations

import math

import pytest
import torch

from mmnasdsl.data.geometry import decode_deltas, encode_deltas, relation_features
from mmnasdsl.heads import HEADS, build_head, get_head, list_heads
from mmnasdsl.heads._layers import AttFlat
from mmnasdsl.lang.settings import ModelSettings

S = ModelSettings(d_model=16, heads=2, dropout=0.0)
MMNAS_HEADS = [n for n in list_heads() if "taps" not in get_head(n).requires]  # MMnas streams


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_registry_and_options() -> None:
    assert {"vqa", "itm", "vg"} <= set(HEADS.names())
    assert get_head("vqa").Options().answers == 3129
    assert get_head("vg").Options().box_weight == 1.0
    with pytest.raises(ValueError):
        get_head("vqa").Options(answer=3)  # extra="forbid"
    for name in MMNAS_HEADS:
        assert get_head(name).requires == ("words", "objects")
        assert get_head(name).data_kind == name
    assert get_head("classify").requires == ("taps",)  # BM-NAS: tests/test_bmnas_model.py


@pytest.mark.parametrize("name", MMNAS_HEADS)
def test_every_head_runs_and_its_loss_reads_only_its_batch_fields(name: str) -> None:
    """Forward, loss and backward on a batch with the head's `batch_fields` (and masks)."""
    task = get_head(name)({}, num_answers=7)
    head = build_head(task, S)
    x, y = torch.randn(2, 4, 16), torch.randn(2, 3, 16, requires_grad=True)
    masks = {"objects_mask": torch.ones(2, 3, dtype=torch.bool)}
    fields = {
        "answer_scores": torch.rand(2, 7),
        "label": torch.tensor([1.0, 0.0]),
        "gt_box": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]),
        "boxes": torch.tensor([[[0.0, 0, 10, 10], [0, 0, 5, 5], [9, 9, 30, 30]]] * 2),
        "image_size": torch.tensor([[40.0, 40.0]] * 2),
    }
    batch = {**masks, **{k: fields[k] for k in task.batch_fields}}
    out = head(x, torch.ones(2, 4, dtype=torch.bool), y, masks["objects_mask"], batch)
    loss = task.loss(out, batch)
    loss.backward()
    assert torch.isfinite(loss) and y.grad is not None
    assert task.predict(out, batch)
    assert task.metric and task.flops(S, 4, 3) > 0


@pytest.mark.parametrize("name", ["vqa", "itm", "vg"])
def test_head_forward_shapes(name: str) -> None:
    head = build_head(get_head(name)({}, num_answers=7), S)
    x, y = torch.randn(2, 4, 16), torch.randn(2, 3, 16)
    out = head(x, torch.ones(2, 4, dtype=torch.bool), y, torch.ones(2, 3, dtype=torch.bool), {})
    shapes = {
        "vqa": {"logits": (2, 7)},
        "itm": {"logits": (2,)},
        "vg": {"scores": (2, 3), "deltas": (2, 3, 4)},
    }[name]
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes


def test_vqa_bce_sums_answers_and_averages_batch() -> None:
    head = get_head("vqa")({"answers": 2})
    out = {"logits": torch.tensor([[0.0, 2.0], [1.0, -1.0]])}
    batch = {"answer_scores": torch.tensor([[1.0, 0.3], [0.0, 0.0]])}
    row0 = math.log(2) - (0.3 * math.log(sigmoid(2)) + 0.7 * math.log(1 - sigmoid(2)))
    row1 = -math.log(1 - sigmoid(1)) - math.log(1 - sigmoid(-1))
    assert head.loss(out, batch).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
    assert head.predict(out, batch)["answer"].tolist() == [1, 0]


def test_vqa_ce_on_normalised_scores() -> None:
    head = get_head("vqa")({"answers": 3, "loss": "ce"})
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    batch = {"answer_scores": torch.tensor([[0.0, 0.0, 1.0]])}
    want = -math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))
    assert head.loss({"logits": logits}, batch).item() == pytest.approx(want, rel=1e-5)


def test_itm_weighted_bce() -> None:
    head = get_head("itm")({})  # positive_weight = 2: the reference's "counted twice"
    out = {"logits": torch.tensor([0.5, -1.0, 2.0])}
    batch = {"label": torch.tensor([1.0, 0.0, 0.0])}
    terms = [-2 * math.log(sigmoid(0.5)), -math.log(1 - sigmoid(-1.0)), -math.log(1 - sigmoid(2.0))]
    assert head.loss(out, batch).item() == pytest.approx(sum(terms) / 3, rel=1e-5)
    once = get_head("itm")({"positive_weight": 1})
    plain = (terms[0] / 2 + terms[1] + terms[2]) / 3
    assert once.loss(out, batch).item() == pytest.approx(plain, rel=1e-5)
    batch["weight"] = torch.tensor([2.0, 1.0, 1.0])  # an explicit per-pair weight multiplies
    assert once.loss(out, batch).item() == pytest.approx(sum(terms) / 3, rel=1e-5)


def test_itm_margin_loss_per_triple() -> None:
    head = get_head("itm")({"loss": "margin", "margin": 0.2})
    logits = torch.tensor([0.5, -1.0, 2.0, 3.0, -3.0, -3.0])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    s = [sigmoid(v) for v in logits.tolist()]
    want = (
        max(0, 0.2 - s[0] + s[1])
        + max(0, 0.2 - s[0] + s[2])  # the 2nd term is active
        + max(0, 0.2 - s[3] + s[4])
        + max(0, 0.2 - s[3] + s[5])  # both zero
    ) / 2
    assert head.loss({"logits": logits}, {"label": labels}).item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="triples"):
        head.loss({"logits": logits[:4]}, {"label": labels[:4]})
    with pytest.raises(ValueError, match="triples"):
        head.loss({"logits": logits}, {"label": labels.flip(0)})


def test_itm_predict_keeps_logits() -> None:
    head = get_head("itm")({})
    p = head.predict({"logits": torch.tensor([20.0, 30.0])}, {})
    assert p["score"][0] == p["score"][1] == 1.0  # σ saturates in float32 ...
    assert p["logit"][1] > p["logit"][0]  # ... the logit still ranks


def test_itm_options_defaults_and_bounds() -> None:
    options = get_head("itm").Options()
    assert (options.negatives_from, options.mine_every, options.loss) == (0, 1, "bce")
    assert (options.positive_weight, options.margin) == (2.0, 0.2)
    for bad in (
        {"negatives_from": -1},
        {"mine_every": 0},
        {"loss": "hinge"},
        {"positive_weight": 0},
        {"positive_weight": float("inf")},
        {"margin": float("nan")},
        {"margin": 2},
    ):
        with pytest.raises(ValueError):
            get_head("itm").Options(**bad)


def test_itm_negatives_plan() -> None:
    from mmnasdsl.heads.itm import ITMOptions, negatives_plan

    plan = [negatives_plan(e, ITMOptions(negatives_from=3, mine_every=2)) for e in range(7)]
    assert plan == ["random", "random", "mine", "reuse", "mine", "reuse", "mine"]
    assert {negatives_plan(e, ITMOptions(negatives_from=1)) for e in range(5)} == {"mine"}
    assert {negatives_plan(e, ITMOptions()) for e in range(5)} == {"random"}  # the default


def vg_batch() -> dict[str, torch.Tensor]:
    """gt (0,0,10,10); proposals: IoU 1, IoU 0.5, IoU 0, padding."""
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 1, 1]]])
    return {
        "boxes": boxes,
        "gt_box": torch.tensor([[0.0, 0, 10, 10]]),
        "objects_mask": torch.tensor([[True, True, True, False]]),
        "image_size": torch.tensor([[25.0, 25.0]]),
    }


def test_vg_loss_by_hand() -> None:
    head = get_head("vg")({"box_weight": 0.5})
    scores = torch.tensor([[1.0, 0.0, -1.0, -1e9]])
    out = {"scores": scores, "deltas": torch.zeros(1, 4, 4)}
    log_p = [1 - math.log(math.e + 1 + math.exp(-1)), -math.log(math.e + 1 + math.exp(-1))]
    t = [1 / 1.5, 0.5 / 1.5]
    kl = sum(ti * (math.log(ti) - lp) for ti, lp in zip(t, log_p, strict=True))
    # positive 2: dy = (5 - 2.5) / 5 / 0.1 = 5, dh = log(5 / 10) / 0.2; smooth L1 (β = 1)
    dh = abs(math.log(0.5) / 0.2)
    box = ((5 - 0.5) + (dh - 0.5)) / 2  # two positives
    assert head.loss(out, vg_batch()).item() == pytest.approx(kl + 0.5 * box, rel=1e-5)


def test_vg_no_positive_gives_zero() -> None:
    head = get_head("vg")({"iou": 1.0})
    batch = vg_batch()
    batch["gt_box"] = torch.tensor([[100.0, 100, 110, 110]])
    out = {"scores": torch.zeros(1, 4), "deltas": torch.zeros(1, 4, 4)}
    assert head.loss(out, batch).item() == 0.0


def test_vg_predict_refines_and_clips() -> None:
    head = get_head("vg")({})
    batch = vg_batch()
    deltas = torch.zeros(1, 4, 4)
    deltas[0, 2] = torch.tensor([5.0, 0.0, 0.0, 0.0])  # move box 2 right by half its width
    pred = head.predict({"scores": torch.tensor([[0.0, 0.0, 3.0, -1e9]]), "deltas": deltas}, batch)
    assert pred["index"].tolist() == [2]
    assert pred["box"].tolist() == [[25.0, 20.0, 25.0, 25.0]]  # (25, 20, 35, 30) clipped


def test_delta_round_trip() -> None:
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(6, 2, generator=g) * 50
    a = torch.cat([xy, xy + 1 + torch.rand(6, 2, generator=g) * 40], -1)
    xy = torch.rand(6, 2, generator=g) * 50
    b = torch.cat([xy, xy + 1 + torch.rand(6, 2, generator=g) * 40], -1)
    assert torch.allclose(decode_deltas(a, encode_deltas(a, b)), b, atol=1e-3)


def test_relation_features_known_boxes() -> None:
    """Continuous boxes (w = x2 - x1); the pixel default is in tests/test_conventions.py."""
    boxes = torch.tensor([[[0.0, 0, 10, 10], [20, 0, 30, 20]]])
    r = relation_features(boxes, "continuous")
    assert r.shape == (1, 2, 2, 4)
    want01 = [math.log(2.0), math.log(0.5), 0.0, math.log(0.5)]
    assert torch.allclose(r[0, 0, 1], torch.tensor(want01), atol=1e-6)
    assert torch.allclose(r[0, 0, 0], torch.tensor([math.log(1e-3)] * 2 + [0.0, 0.0]))


def test_attflat_ignores_padding() -> None:
    flat = AttFlat(S).eval()
    x, mask = torch.randn(2, 4, 16), torch.tensor([[True] * 4, [True, True, False, False]])
    x2 = x.clone()
    x2[1, 2:] = 99.0
    assert torch.allclose(flat(x, mask), flat(x2, mask), atol=1e-5)
