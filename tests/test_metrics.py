"""Metrics against hand-computed examples (official VQA formula, Recall@K, IoU 0.5)."""

import pytest
import torch

from mmnasdsl.heads._metrics import (
    grounding_report,
    normalize_answer,
    retrieval_report,
    vqa_accuracy,
    vqa_report,
)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Two", "2"),
        ("the dog.", "dog"),
        ("A Red Cube!", "red cube"),
        ("yes", "yes"),
        ("dont", "don't"),
        ("1,000", "1000"),
        ("left-side", "left side"),
        ("3.5", "3.5"),
    ],
)
def test_normalize(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


@pytest.mark.parametrize(
    ("matches", "acc"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]
)
def test_vqa_accuracy_leave_one_out(matches: int, acc: float) -> None:
    answers = ["two"] * matches + ["three"] * (10 - matches)
    assert vqa_accuracy("2", answers) == pytest.approx(acc)


def test_vqa_report_types_and_families() -> None:
    preds = ["yes", "2", "red"]
    answers = [["yes"] * 10, ["3"] * 10, ["red"] * 2 + ["blue"] * 8]
    out = vqa_report(
        preds, answers, answer_types=[0, 1, 2], families=[0, 1, 1], family_names=["exist", "count"]
    )
    assert out["accuracy"] == pytest.approx((100 + 0 + 60) / 3)
    assert out["per_type"] == pytest.approx({"yes/no": 100.0, "number": 0.0, "other": 60.0})
    assert out["per_family"] == pytest.approx({"exist": 100.0, "count": 30.0})


def test_retrieval_by_hand() -> None:
    # 2 images, 4 captions: captions 0,1 show image 0; captions 2,3 show image 1.
    scores = torch.tensor(
        [
            [0.1, 0.9, 0.8, 0.2],  # image 0: best caption 1 -> rank 1
            [0.7, 0.6, 0.5, 0.4],
        ]
    )  # image 1: its captions at 3rd, 4th -> 3
    out = retrieval_report(scores, torch.tensor([0, 0, 1, 1]), ks=(1, 2))
    assert out["i2t_r1"] == pytest.approx(50.0)
    assert out["i2t_r2"] == pytest.approx(50.0)
    assert out["i2t_meanr"] == pytest.approx(2.0)
    # caption columns: c0 -> image 1 first (rank 2); c1 -> 1; c2 -> 1; c3 -> 2.
    assert out["t2i_r1"] == pytest.approx(50.0)
    assert out["t2i_r2"] == pytest.approx(100.0)
    assert out["t2i_medr"] == pytest.approx(1.0)  # torch's median takes the lower middle
    assert out["t2i_meanr"] == pytest.approx(1.5)
    assert out["rsum"] == pytest.approx(50 + 50 + 50 + 100)


def test_grounding_iou_half() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10]] * 3)
    pred = torch.tensor(
        [
            [0.0, 0, 10, 10],  # IoU 1
            [0.0, 0, 10, 5],  # IoU 0.5 -> hit
            [5.0, 5, 15, 15],
        ]
    )  # IoU 25/175 -> miss
    assert grounding_report(pred, gt)["accuracy"] == pytest.approx(200 / 3)
