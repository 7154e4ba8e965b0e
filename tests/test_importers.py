"""Importers on tiny files in the real community formats, written by the tests."""

from __future__ import annotations

import base64
import collections
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from mmnasdsl.data import open_split
from mmnasdsl.data.importers import (
    import_flickr30k,
    import_refcoco,
    import_vqa2,
    open_features,
    safe_pickle_load,
)
from mmnasdsl.data.text import normalize_answer, tokenize
from mmnasdsl.lang.errors import DataError

DIM = 6
IMAGES = {9: 3, 25: 2, 42: 4}  # image id -> object count


def record(image_id: int) -> tuple[np.ndarray, np.ndarray]:
    k = IMAGES[image_id]
    feats = np.arange(k * DIM, dtype=np.float32).reshape(k, DIM) + image_id
    boxes = np.array([[i, i, i + 10, i + 20] for i in range(k)], np.float32)
    return feats, boxes


def write_npz(folder: Path, transpose: bool = True) -> Path:
    folder.mkdir()
    for image_id in IMAGES:
        feats, boxes = record(image_id)
        np.savez(
            folder / f"COCO_train2014_{image_id:012d}.npz",
            x=feats.T if transpose else feats,
            bbox=boxes,
            image_h=480,
            image_w=640,
        )
    return folder


def write_butd(path: Path, map_kind: str = "json") -> Path:
    feats, boxes, pos = [], [], []
    for image_id in IMAGES:
        f, b = record(image_id)
        pos.append((sum(len(x) for x in feats), sum(len(x) for x in feats) + len(f)))
        feats.append(f)
        boxes.append(b)
    bb = np.concatenate(boxes)
    spatial = np.concatenate([bb / [640, 480, 640, 480], np.zeros((len(bb), 2))], 1)
    with h5py.File(path, "w") as h:
        h["image_features"] = np.concatenate(feats)
        h["image_bb"] = bb
        h["spatial_features"] = spatial
        h["pos_boxes"] = np.array(pos)
    mapping = {image_id: i for i, image_id in enumerate(IMAGES)}
    if map_kind == "json":
        path.with_name(f"{path.stem}_imgid2idx.json").write_text(json.dumps(mapping))
    else:
        path.with_name(f"{path.stem}_imgid2idx.pkl").write_bytes(pickle.dumps(mapping))
    return path


def write_tsv(path: Path) -> Path:
    lines = []
    for image_id in IMAGES:
        f, b = record(image_id)
        enc = lambda a: base64.b64encode(a.tobytes()).decode()  # noqa: E731
        lines.append("\t".join(map(str, [image_id, 640, 480, len(f), enc(b), enc(f)])))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(params=["npz", "butd", "butd-pkl", "tsv"])
def features(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return {
        "npz": lambda: write_npz(tmp_path / "feats"),
        "butd": lambda: write_butd(tmp_path / "train36.h5"),
        "butd-pkl": lambda: write_butd(tmp_path / "train36.h5", "pkl"),
        "tsv": lambda: write_tsv(tmp_path / "train.tsv"),
    }[request.param]()


def test_feature_readers_agree(features: Path) -> None:
    source = open_features(features)
    assert source.ids() == sorted(IMAGES)
    for image_id in IMAGES:
        feats, boxes, size = source.get(image_id)
        want_f, want_b = record(image_id)
        np.testing.assert_array_equal(feats, want_f)
        np.testing.assert_array_equal(boxes, want_b)
        assert size == pytest.approx((640, 480))


def vqa_files(tmp: Path, image_ids: tuple[int, ...] = (9, 25, 42)) -> tuple[Path, Path]:
    qs = [
        {"image_id": im, "question": f"What colour is the cat-{k}?", "question_id": k}
        for k, im in enumerate(image_ids)
    ]
    answers = [["red"] * 7 + ["Red."] + ["blue"] * 2, ["2"] * 3 + ["two"] + ["3"] * 6, ["yes"] * 10]
    types = ["other", "number", "yes/no"]
    anns = [
        {
            "question_id": k,
            "image_id": im,
            "question_type": "what",
            "answer_type": types[k % 3],
            "multiple_choice_answer": answers[k % 3][0],
            "answers": [
                {"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                for j, a in enumerate(answers[k % 3])
            ],
        }
        for k, im in enumerate(image_ids)
    ]
    q, a = tmp / "questions.json", tmp / "annotations.json"
    q.write_text(json.dumps({"questions": qs}))
    a.write_text(json.dumps({"annotations": anns}))
    return q, a


def test_vqa2(tmp_path: Path) -> None:
    q, a = vqa_files(tmp_path)
    out = tmp_path / "out" / "train.h5"
    summary = import_vqa2(q, a, open_features(write_npz(tmp_path / "f")), out, min_answer_count=1)
    assert summary.samples == 3 and summary.images == 3
    ds = open_split(out.parent, "train")
    assert ds.task == "vqa" and sorted(ds.answers) == ["2", "red", "yes"]
    assert ds.raw_answers(0).count("red") == 8  # "Red." normalised
    assert ds.raw_answers(1).count("2") == 4  # "two" -> "2"
    item = ds[1]
    ids, values = item["score_ids"], item["score_values"]
    scores = {ds.answers[i]: v for i, v in zip(ids, values, strict=True)}
    assert scores == {"2": 1.0}  # 3 x "2" + "two"; "3" is no multiple-choice answer: no score
    first = ds[0]
    assert [ds.answers[i] for i in first["score_ids"]] == ["red"] and first["score_values"][0] == 1
    assert ds.question_answer_type.tolist() == [2, 1, 0] and ds.question_ids.tolist() == [0, 1, 2]
    assert [ds.vocab[t] for t in ds[0]["words"]] == tokenize("What colour is the cat-0?")


def test_vqa2_test_split_and_shared_vocab(tmp_path: Path) -> None:
    q, a = vqa_files(tmp_path)
    feats = open_features(write_npz(tmp_path / "f"))
    import_vqa2(q, a, feats, tmp_path / "train.h5", min_answer_count=1)
    import_vqa2(q, None, feats, tmp_path / "test.h5", vocab_from=tmp_path / "train.h5")
    test = open_split(tmp_path, "test")
    assert test.answers == open_split(tmp_path, "train").answers
    assert test.raw_answers(0) == [] and (test.question_answer_type == -1).all()


def test_answer_vocab_min_count(tmp_path: Path) -> None:
    q, a = vqa_files(tmp_path, image_ids=(9, 25, 42, 9, 25))  # red, 2, yes, red, 2 as MC answers
    import_vqa2(
        q, a, open_features(write_npz(tmp_path / "f")), tmp_path / "t.h5", min_answer_count=2
    )
    with h5py.File(tmp_path / "t.h5") as f:
        assert sorted(f["vqa/answers"].asstr()[:]) == ["2", "red"]


def test_missing_image_error_and_skip(tmp_path: Path) -> None:
    q, a = vqa_files(tmp_path, image_ids=(9, 77, 42))
    feats = open_features(write_npz(tmp_path / "f"))
    with pytest.raises(DataError, match=r"no features for image 77 \(question 1"):
        import_vqa2(q, a, feats, tmp_path / "t.h5")
    assert not (tmp_path / "t.h5").exists()
    summary = import_vqa2(q, a, feats, tmp_path / "t.h5", skip_missing=True, min_answer_count=1)
    assert summary.samples == 2 and summary.skipped_samples == 1 and summary.missing_images == [77]
    assert "skipped 1 samples of 1 images" in summary.line()


def test_flickr30k(tmp_path: Path) -> None:
    images = [
        {
            "filename": f"{im}.jpg",
            "imgid": k,
            "split": split,
            "sentences": [
                {"raw": f"A dog runs, number {j}!", "tokens": [], "sentid": k * 5 + j}
                for j in range(5)
            ],
        }
        for k, (im, split) in enumerate(zip(IMAGES, ("train", "restval", "test"), strict=True))
    ]
    karpathy = tmp_path / "dataset_flickr30k.json"
    karpathy.write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    glove = tmp_path / "glove.txt"
    glove.write_text("dog 0.5 0.25 1\nruns 1 2 3\nzebra 9 9 9\n")
    out = tmp_path / "itm"
    summaries = import_flickr30k(
        karpathy, open_features(write_tsv(tmp_path / "f.tsv")), out, glove=glove
    )
    assert [s.path.name for s in summaries] == ["train.h5", "test.h5"]
    train = open_split(out, "train")
    assert train.n_images == 2 and len(train) == 10 and train.caption_image.tolist()[5] == 1
    assert train.glove is not None and train.glove.shape == (len(train.vocab), 3)
    np.testing.assert_array_equal(train.glove[train.vocab.index("dog")], [0.5, 0.25, 1])
    assert (train.glove[0] == 0).all()
    assert open_split(out, "test").glove is None


def refcoco_files(tmp: Path, refs_obj: object | None = None) -> tuple[Path, Path]:
    refs = (
        refs_obj
        if refs_obj is not None
        else [
            {
                "ref_id": 1,
                "ann_id": 501,
                "image_id": 9,
                "split": "train",
                "category_id": 1,
                "sentences": [
                    {"tokens": ["left", "man"], "raw": "Left man", "sent_id": 11},
                    {"tokens": ["guy", "on", "left"], "raw": "guy on left", "sent_id": 12},
                ],
            },
            {
                "ref_id": 2,
                "ann_id": 502,
                "image_id": 42,
                "split": "testA",
                "sentences": [{"tokens": ["red", "car"], "raw": "red car", "sent_id": 21}],
            },
        ]
    )
    (tmp / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    instances = {
        "images": [],
        "annotations": [
            {"id": 501, "image_id": 9, "bbox": [10, 20, 30, 40], "category_id": 1},
            {"id": 502, "image_id": 42, "bbox": [0, 0, 5, 5], "category_id": 3},
        ],
    }
    (tmp / "instances.json").write_text(json.dumps(instances))
    return tmp / "refs(unc).p", tmp / "instances.json"


def test_refcoco(tmp_path: Path) -> None:
    refs, inst = refcoco_files(tmp_path)
    feats = open_features(write_butd(tmp_path / "f.h5"))
    summaries = import_refcoco(refs, inst, feats, tmp_path / "vg")
    assert sorted(s.path.name for s in summaries) == ["testA.h5", "train.h5"]
    train = open_split(tmp_path / "vg", "train")
    assert len(train) == 2 and train.n_images == 1
    np.testing.assert_array_equal(train.gt_box[0], [10, 20, 40, 60])  # xywh -> x1y1x2y2
    assert train.text_ids.tolist() == [11, 12]
    assert train[0]["objects"].shape == (IMAGES[9], DIM)


def test_restricted_unpickler(tmp_path: Path) -> None:
    evil = tmp_path / "evil.p"
    evil.write_bytes(pickle.dumps(collections.OrderedDict(a=1)))
    with pytest.raises(DataError, match="refusing to load"):
        safe_pickle_load(evil)
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(DataError, match=r"refusing to load os\.system"):
        safe_pickle_load(evil)
    evil.write_bytes(pickle.dumps({"a": b"bytes"}, protocol=4))
    with pytest.raises(DataError, match="bytes"):
        safe_pickle_load(evil)
    plain = tmp_path / "ok.p"
    plain.write_bytes(pickle.dumps([{"a": (1, 2.0, None, True, "x")}], protocol=2))
    assert safe_pickle_load(plain) == [{"a": (1, 2.0, None, True, "x")}]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda t: (t / "q.json").write_text("{not json"), "not valid JSON"),
        (
            lambda t: (t / "q.json").write_text('{"questions": [{"image_id": 9}]}'),
            r"questions\[0\]: missing key 'question'",
        ),
        (lambda t: None, "cannot read VQA questions"),
    ],
)
def test_bad_annotation_files(tmp_path: Path, setup: object, message: str) -> None:
    setup(tmp_path)  # type: ignore[operator]
    with pytest.raises(DataError, match=message) as err:
        import_vqa2(
            tmp_path / "q.json", None, open_features(write_npz(tmp_path / "f")), tmp_path / "o.h5"
        )
    assert "q.json" in str(err.value)


def test_bad_features(tmp_path: Path) -> None:
    folder = write_npz(tmp_path / "f")
    np.savez(
        folder / "img_25.npz",
        x=np.full((2, DIM), np.nan, np.float32),
        bbox=np.zeros((2, 4)),
        image_h=1,
        image_w=1,
    )
    with pytest.raises(DataError, match=r"img_25.npz: NaN or inf"):
        open_features(folder).get(25)
    np.savez(folder / "img_26.npz", x=np.zeros((2, DIM)), bbox=np.zeros((2, 4)))
    with pytest.raises(DataError, match=r"img_26\.npz: missing key 'image_h'"):
        open_features(folder).get(26)
    np.savez(
        folder / "img_27.npz", x=np.zeros((2, DIM)), bbox=np.zeros((3, 4)), image_h=1, image_w=1
    )
    with pytest.raises(DataError, match=r"img_27\.npz: features .* disagree"):
        open_features(folder).get(27)
    with pytest.raises(DataError, match="no such features"):
        open_features(tmp_path / "nope.h5")
    butd = tmp_path / "b.h5"
    with h5py.File(butd, "w") as h:
        h["image_features"] = np.zeros((2, DIM))
    with pytest.raises(DataError, match=r"b\.h5: missing dataset 'image_bb'"):
        open_features(butd)


def test_glove_errors(tmp_path: Path) -> None:
    from mmnasdsl.data.text import read_glove

    bad = tmp_path / "g.txt"
    bad.write_text("a 1 2\nb 1\n")
    with pytest.raises(DataError, match=r"g\.txt: line 2"):
        read_glove(bad, ["<pad>", "<unk>", "a"])


def test_answer_normalisation() -> None:
    assert normalize_answer("Two dogs.") == "2 dogs"
    assert normalize_answer("the Red") == "red"
    assert normalize_answer("dont know") == "don't know"
    assert normalize_answer("1,000") == "1000"
