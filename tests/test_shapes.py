"""The `shapes` world: deterministic, every family present, unique references, blind features."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from mmnasdsl.data import open_split
from mmnasdsl.data import shapes as S


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vqa")
    S.generate("vqa", out, scenes=150, seed=0)
    return out


def read_all(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        out: dict[str, np.ndarray] = {}
        f.visititems(lambda k, v: out.__setitem__(k, v[:]) if isinstance(v, h5py.Dataset) else None)
        return out


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a, b, c = (
        S.generate("vg", tmp_path / name, scenes=12, seed=s)
        for name, s in (("a", 3), ("b", 3), ("c", 4))
    )
    first, again, other = (read_all(p["train"]) for p in (a, b, c))
    assert first.keys() == again.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    assert not np.array_equal(first["images/boxes"][:10], other["images/boxes"][:10])


def test_test_scenes_leaves_train_and_val_unchanged(tmp_path: Path) -> None:
    """A larger test split (bench/ablation.py: less evaluation noise) is the only change."""
    base = S.generate("vqa", tmp_path / "base", scenes=20, seed=1)
    big = S.generate("vqa", tmp_path / "big", scenes=20, seed=1, test_scenes=30)
    for split in ("train", "val"):
        a, b = read_all(base[split]), read_all(big[split])
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{split}/{key}")
    assert len(open_split(tmp_path / "base", "test").image_ids) == S.split_sizes(20)["test"]
    assert len(open_split(tmp_path / "big", "test").image_ids) == 30


def test_family_share_picks_the_families(tmp_path: Path) -> None:
    share = [float(f == "nearest") for f in S.FAMILIES]
    S.generate("vqa", tmp_path, scenes=20, seed=0, family_share=share)
    families = set(open_split(tmp_path, "train").question_family.tolist())
    assert families == {S.FAMILIES.index("nearest")}
    with pytest.raises(ValueError, match="6 weights"):
        S.generate("vqa", tmp_path / "bad", scenes=5, family_share=[1.0, 0.0])


def test_every_family_and_answer_type_present(vqa_dir: Path) -> None:
    ds = open_split(vqa_dir, "train")
    shares = S.family_shares(ds.question_family)
    assert all(s > 0.03 for s in shares.values()), shares
    assert set(ds.question_answer_type.tolist()) == {0, 1, 2}
    for fam, typ in S.FAMILY_TYPE.items():
        rows = ds.question_family == S.FAMILIES.index(fam)
        assert (ds.question_answer_type[rows] == typ).all()


def test_answers_are_spread_and_annotators_disagree(vqa_dir: Path) -> None:
    ds = open_split(vqa_dir, "train")
    majority = [Counter(ds.raw_answers(i)).most_common(1)[0] for i in range(len(ds))]
    answers = Counter(a for a, _ in majority)
    assert max(answers.values()) / len(ds) < 0.4  # no single answer dominates
    assert len(answers) > 15
    agreement = np.array([n for _, n in majority])
    assert 0.05 < (agreement < 10).mean() < 0.95  # some, not all, questions have dissent
    yes_no = ds.question_answer_type == 0
    yes = np.array([a == "yes" for a, _ in majority])[yes_no].mean()
    assert 0.35 < yes < 0.7


def test_spatial_answers_follow_the_boxes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = S.make_scene(rng)
        q = S.ask(scene, "spatial", rng)
        if q is None:
            continue
        assert q.answer in ("yes", "no") and any(r in q.text for r in S.RELATIONS)


def test_referring_expressions_pick_exactly_one_object() -> None:
    rng = np.random.default_rng(1)
    relational = total = 0
    for _ in range(60):
        scene = S.make_scene(rng)
        for ref in S.vg_samples(scene, rng):
            assert len(S.refer(scene, ref)) == 1, ref.text
            assert len(parse_and_resolve(scene, ref.text)) == 1, ref.text
            relational += ref.relation is not None
            total += 1
    assert total > 100 and relational / total > 0.3


def parse_and_resolve(scene: S.Scene, text: str) -> list[int]:
    """An independent reading of `the X [rel the Y]`: the objects it denotes."""
    words = text.split()
    for rel in ("left or right of", "above or below", "nearest to"):
        if f" {rel} the " in text:
            head, tail = text[4:].split(f" {rel} the ")
            anchors = objects_called(scene, tail)
            if len(anchors) != 1:
                return []
            j, (ax, ay) = anchors[0], scene.centres[anchors[0]]
            cand = [i for i in objects_called(scene, head) if i != j]
            if rel == "nearest to":
                d = sorted((np.hypot(*(scene.centres[i] - (ax, ay))), i) for i in cand)
                return [d[0][1]] if len(d) == 1 or d[1][0] > 1.2 * d[0][0] else []
            # the axis of the offset: every candidate not clearly (1.5x) along the other axis
            axis = 0 if rel == "left or right of" else 1
            off = [np.abs(scene.centres[i] - (ax, ay)) for i in cand]
            return [i for i, o in zip(cand, off, strict=True) if 1.5 * o[axis] > o[1 - axis]]
    assert words[0] == "the"
    return objects_called(scene, " ".join(words[1:]))


def objects_called(scene: S.Scene, phrase: str) -> list[int]:
    words = phrase.split()
    ok = np.ones(scene.n, bool)
    for col, values in enumerate(S.ATTRIBUTES.values()):
        for w in words:
            if w in values:
                ok &= scene.attrs[:, col] == values.index(w)
    return np.flatnonzero(ok).tolist()


def test_features_carry_no_position() -> None:
    """Same attributes and noise, different boxes: identical features; and no correlation."""
    attrs = np.array([[0, 1, 0, 1], [2, 3, 1, 0]])
    f1 = S.object_features(attrs, np.random.default_rng(9))
    f2 = S.object_features(attrs, np.random.default_rng(9))
    np.testing.assert_array_equal(f1, f2)  # object_features never sees a box
    rng = np.random.default_rng(0)
    scenes = [S.make_scene(rng) for _ in range(200)]
    feats = np.concatenate([S.object_features(s.attrs, rng) for s in scenes])
    centres = np.concatenate([s.centres for s in scenes])
    corr = np.corrcoef(np.concatenate([feats, centres], 1).T)[-2:, :-2]
    assert np.abs(corr).max() < 0.15


def test_itm_five_distinct_captions_and_vg_proposals(tmp_path: Path) -> None:
    S.generate("itm", tmp_path / "itm", scenes=10, seed=0)
    ds = open_split(tmp_path / "itm", "train")
    with h5py.File(ds.path) as f:
        raw = f["text/raw"].asstr()[:]
    for img in range(ds.n_images):
        assert len(set(raw[ds.caption_image == img])) == 5
    for c in raw:  # relations only by axis or distance: R holds no side
        rest = c.replace("left or right of", "").replace("above or below", "").split()
        assert not {"left", "right", "above", "below"} & set(rest), c
    rng = np.random.default_rng(0)
    scene = S.make_scene(rng)
    feats, boxes = S.proposals(scene, rng)
    assert len(boxes) <= S.MAX_OBJECTS and feats.shape == (len(boxes), S.FEATURE_DIM)
    iou = S._iou(scene.boxes, boxes).max(1)
    assert (iou >= 0.6).all()  # every true object has a good proposal
