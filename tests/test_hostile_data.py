"""Hostile data files: every malformed store, annotation, feature and GloVe file of issue
15 is a DataError naming the file and the item; multi-split imports are all or none; the
reference implementation's feature file names import."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_importers import DIM, IMAGES, record, refcoco_files, vqa_files, write_butd, write_npz

from mmnasdsl.data import open_split
from mmnasdsl.data.importers import import_flickr30k, import_refcoco, import_vqa2, open_features
from mmnasdsl.data.store import open_store
from mmnasdsl.lang.errors import DataError


def store(tmp_path: Path) -> Path:
    """A small valid VQA store (train.h5) from the importer."""
    q, a = vqa_files(tmp_path)
    out = tmp_path / "train.h5"
    import_vqa2(q, a, open_features(write_npz(tmp_path / "f")), out, min_answer_count=1)
    return out


# ----------------------------------------------------------------------------- stores


def replace(path: Path, key: str, value: Any, dtype: Any = None) -> None:
    with h5py.File(path, "r+") as f:
        del f[key]
        f.create_dataset(key, data=value, dtype=dtype)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.attrs.__setitem__("format_version", "abc"), "format_version 'abc' is not"),
        (lambda f: f.attrs.__setitem__("format_version", np.array([1, 1])), "format_version"),
        (lambda f: f.attrs.__setitem__("task", np.array([1, 2])), "unknown task"),
        (lambda f: f.attrs.__setitem__("task", b"vqa\xff"), "unknown task"),
    ],
)
def test_store_attributes_of_the_wrong_type(tmp_path: Path, change: Any, message: str) -> None:
    path = store(tmp_path)
    with h5py.File(path, "r+") as f:
        change(f)
    with pytest.raises(DataError, match=message) as err:
        open_store(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("key", "value", "dtype", "message"),
    [
        ("text/image", ["a", "b", "c"], h5py.string_dtype(), "'text/image' holds object"),
        ("text/tokens", np.full(13, np.nan), None, "'text/tokens' holds float64"),
        ("images/boxes", np.zeros((9, 4), np.int8), None, "'images/boxes' holds int8"),
        ("text/vocab", np.zeros(5), None, "'text/vocab' holds float64"),
        ("vqa/score_values", ["x"] * 3, h5py.string_dtype(), "'vqa/score_values'"),
        ("text/vocab", [b"<pad>", b"<unk>", b"\xff\xfe"], h5py.string_dtype(), "not UTF-8"),
        ("text/glove", np.zeros((3, 4), np.float32), None, "'text/glove' has 3 rows"),
    ],
)
def test_store_datasets_of_the_wrong_type(
    tmp_path: Path, key: str, value: Any, dtype: Any, message: str
) -> None:
    path = store(tmp_path)
    with h5py.File(path, "r+") as f:
        if key in f:
            del f[key]
        f.create_dataset(key, data=value, dtype=dtype)
    with pytest.raises(DataError, match=message) as err:
        open_split(tmp_path, "train")
    assert str(path) in str(err.value)


@pytest.mark.parametrize("span", [(800, 1600), (2000, 2600), (0, 64)])
def test_overwritten_metadata_is_a_damaged_store(tmp_path: Path, span: tuple[int, int]) -> None:
    path = store(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[span[0] : span[1]] = b"\xff" * (span[1] - span[0])
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        open_split(tmp_path, "train")
    assert str(path) in str(err.value)


def test_vocab_from_a_corrupt_store(tmp_path: Path) -> None:
    q, _ = vqa_files(tmp_path)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\xff" * 4000)
    with pytest.raises(DataError, match=r"bad\.h5"):
        import_vqa2(q, None, open_features(write_npz(tmp_path / "f")), tmp_path / "t.h5",
                    vocab_from=bad)  # fmt: skip
    assert not (tmp_path / "t.h5").exists()


# ------------------------------------------------------------------------ VQA-v2 JSON


def questions(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "q.json"
    path.write_text(json.dumps(data))
    return path


QUESTION = {"image_id": 9, "question": "What is it?", "question_id": 1}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"questions": 5}, "'questions' should be a list, found 5"),
        ([1, 2], "expected an object, found list"),
        ({"questions": [{**QUESTION, "image_id": "abc"}]}, r"questions\[0\]: 'image_id' should"),
        ({"questions": [{**QUESTION, "image_id": None}]}, "'image_id' should be an integer"),
        ({"questions": [{**QUESTION, "image_id": True}]}, "'image_id' should be an integer"),
        ({"questions": [{**QUESTION, "image_id": 2**70}]}, "'image_id' should be an integer"),
        ({"questions": [{**QUESTION, "question": 123}]}, "'question' should be a string"),
        ({"questions": [{**QUESTION, "question_id": [1]}]}, "'question_id' should be an"),
        ({"questions": ["x"]}, r"questions\[0\]: expected an object"),
    ],
)
def test_malformed_questions(tmp_path: Path, data: Any, message: str) -> None:
    q = questions(tmp_path, data)
    feats = open_features(write_npz(tmp_path / "f"))
    with pytest.raises(DataError, match=message) as err:
        import_vqa2(q, None, feats, tmp_path / "t.h5")
    assert "q.json" in str(err.value)


def annotation(**change: Any) -> dict[str, Any]:
    base = {
        "question_id": 1,
        "answer_type": "other",
        "multiple_choice_answer": "red",
        "answers": [{"answer": "red"}] * 10,
    }
    return {**base, **change}


@pytest.mark.parametrize(
    ("ann", "message"),
    [
        (annotation(answers=5), "'answers' should be a list"),
        (annotation(answers=[5]), r"answers\[0\]: expected an object"),
        (annotation(answers=[{"answer": 5}]), "'answer' should be a string"),
        (annotation(multiple_choice_answer=5), "'multiple_choice_answer' should be a string"),
        (annotation(answer_type=["other"]), r"answer_type \['other'\] is not one of"),
        (annotation(question_id="1"), "'question_id' should be an integer"),
    ],
)
def test_malformed_annotations(tmp_path: Path, ann: dict[str, Any], message: str) -> None:
    q = questions(tmp_path, {"questions": [QUESTION]})
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"annotations": [ann]}))
    with pytest.raises(DataError, match=message) as err:
        import_vqa2(q, a, open_features(write_npz(tmp_path / "f")), tmp_path / "t.h5")
    assert "a.json" in str(err.value)


QUESTION_FIELDS = st.sampled_from(["image_id", "question", "question_id"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(field=QUESTION_FIELDS, value=JSON_VALUES)
def test_any_value_in_a_question_is_read_or_refused(tmp_path: Path, field: str, value: Any) -> None:
    q = tmp_path / "q.json"
    q.write_text(json.dumps({"questions": [{**QUESTION, field: value}]}, allow_nan=True))
    feats = tmp_path / "f"
    if not feats.exists():
        write_npz(feats)
    try:
        import_vqa2(q, None, open_features(feats), tmp_path / "t.h5")
    except DataError as exc:  # the question's field, or the image it names has no features
        assert "q.json: questions[0]" in str(exc) or "no features for image" in str(exc)


# -------------------------------------------------------------------------- features


def test_npz_records_of_the_wrong_type(tmp_path: Path) -> None:
    folder = write_npz(tmp_path / "f")
    feats, boxes = record(9)
    np.savez(folder / "COCO_x_000000000009.npz", x=feats, bbox=boxes, image_h=[1, 2], image_w=3)
    with pytest.raises(DataError, match="'image_h' should be one number"):
        open_features(folder).get(9)
    strings = np.array([["a"] * DIM] * 3)
    np.savez(folder / "COCO_x_000000000009.npz", x=strings, bbox=boxes, image_h=1, image_w=1)
    with pytest.raises(DataError, match="features hold <U1, expected numbers"):
        open_features(folder).get(9)
    np.savez(folder / "COCO_x_000000000009.npz", x=feats, bbox=boxes, image_h="h", image_w=1)
    with pytest.raises(DataError, match="'image_h' should be one number"):
        open_features(folder).get(9)
    (folder / "COCO_x_000000000009.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        open_features(folder).get(9)
    np.save(folder / "COCO_x_000000000009.npy", feats)
    (folder / "COCO_x_000000000009.npy").rename(folder / "COCO_x_000000000009.npz")
    with pytest.raises(DataError, match=r"not an \.npz archive"):
        open_features(folder).get(9)


def test_butd_records_of_the_wrong_type(tmp_path: Path) -> None:
    path = write_butd(tmp_path / "f.h5")
    with h5py.File(path, "r+") as h:
        h["pos_boxes"][0] = [0, 1000]
    with pytest.raises(DataError, match="outside the 9 features"):
        open_features(path).get(9)
    with h5py.File(path, "r+") as h:
        del h["pos_boxes"]
        h["pos_boxes"] = np.array([["a", "b"]] * 3, dtype="S1")
    with pytest.raises(DataError, match="'pos_boxes' holds"):
        open_features(path)


def test_reference_npz_names_import(tmp_path: Path) -> None:
    """The reference's docs/dataset_setup.md names the features
    `COCO_train2014_000000000009.jpg.npz`: the id is the integer before the image suffix."""
    folder = tmp_path / "train2014"
    folder.mkdir()
    for image_id in IMAGES:
        feats, boxes = record(image_id)
        np.savez(
            folder / f"COCO_train2014_{image_id:012d}.jpg.npz",
            x=feats.T,
            bbox=boxes,
            image_h=480,
            image_w=640,
        )
    source = open_features(folder)
    assert source.ids() == sorted(IMAGES)
    q, a = vqa_files(tmp_path)
    summary = import_vqa2(q, a, source, tmp_path / "train.h5", min_answer_count=1)
    assert summary.samples == 3 and summary.images == 3
    ds = open_split(tmp_path, "train")
    assert sorted(ds.image_ids.tolist()) == sorted(IMAGES)
    np.testing.assert_array_equal(ds[0]["objects"], record(9)[0])


def test_glove_that_is_not_utf8(tmp_path: Path) -> None:
    q, a = vqa_files(tmp_path)
    glove = tmp_path / "glove.txt"
    glove.write_bytes("caf\xe9 0.1 0.2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"glove\.txt: not a UTF-8 GloVe text file"):
        import_vqa2(q, a, open_features(write_npz(tmp_path / "f")), tmp_path / "t.h5",
                    glove=glove, min_answer_count=1)  # fmt: skip
    assert not (tmp_path / "t.h5").exists()


# --------------------------------------------------------------------------- RefCOCO


REF = {
    "ref_id": 1,
    "ann_id": 501,
    "image_id": 9,
    "split": "train",
    "sentences": [{"tokens": ["left", "man"], "raw": "Left man", "sent_id": 11}],
}


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({**REF, "ann_id": "x"}, "'ann_id' should be an integer"),
        ({**REF, "ann_id": [501]}, "'ann_id' should be an integer"),
        ({**REF, "image_id": 9.5}, "'image_id' should be an integer"),
        ({**REF, "ref_id": "one"}, "'ref_id' should be an integer"),
        ({**REF, "split": ["train"]}, "'split' should be a string"),
        ({**REF, "sentences": 5}, "'sentences' should be a list"),
        ({**REF, "sentences": [{"raw": 5}]}, "'raw' should be a string"),
        ({**REF, "sentences": [{"raw": "a", "tokens": [1]}]}, "'tokens' should be a list of"),
        ({**REF, "sentences": [{"raw": "a", "sent_id": "s"}]}, "'sent_id' should be an"),
    ],
)
def test_malformed_refs(tmp_path: Path, ref: dict[str, Any], message: str) -> None:
    refs, inst = refcoco_files(tmp_path, [ref])
    feats = open_features(write_butd(tmp_path / "f.h5"))
    with pytest.raises(DataError, match=message) as err:
        import_refcoco(refs, inst, feats, tmp_path / "vg")
    assert "refs(unc).p" in str(err.value)


@pytest.mark.parametrize(
    "bbox", [["a", 1, 2, 3], [1, 2, 3], 5, [1, 2, 3, float("nan")], [1, 2, 3, 10**400], None]
)
def test_malformed_boxes(tmp_path: Path, bbox: Any) -> None:
    refs, inst = refcoco_files(tmp_path, [REF])
    data = json.loads(inst.read_text())
    data["annotations"][0]["bbox"] = bbox
    inst.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"bbox .* is not 4 finite numbers") as err:
        import_refcoco(refs, inst, open_features(write_butd(tmp_path / "f.h5")), tmp_path / "vg")
    assert "instances.json" in str(err.value)


def test_a_failed_split_leaves_no_store(tmp_path: Path) -> None:
    """The val split needs an image without features: nothing is written, not even the
    train store that was complete, and an earlier import's stores stay as they were."""
    val = {**REF, "ref_id": 2, "image_id": 77, "split": "val"}
    refs, inst = refcoco_files(tmp_path, [REF, val])
    feats = open_features(write_butd(tmp_path / "f.h5"))
    out = tmp_path / "vg"
    with pytest.raises(DataError, match="no features for image 77"):
        import_refcoco(refs, inst, feats, out)
    assert not out.exists() or not list(out.iterdir())
    refs, inst = refcoco_files(tmp_path, [REF])
    import_refcoco(refs, inst, feats, out)
    before = (out / "train.h5").read_bytes()
    refs, inst = refcoco_files(tmp_path, [REF, val])
    with pytest.raises(DataError):
        import_refcoco(refs, inst, feats, out)
    assert sorted(p.name for p in out.iterdir()) == ["train.h5"]
    assert (out / "train.h5").read_bytes() == before


def test_a_failed_flickr_split_leaves_no_store(tmp_path: Path) -> None:
    images = [
        {
            "filename": f"{im}.jpg",
            "imgid": k,
            "split": split,
            "sentences": [{"raw": f"a dog {j}"} for j in range(5)],
        }
        for k, (im, split) in enumerate(((9, "train"), (77, "test")))
    ]
    karpathy = tmp_path / "k.json"
    karpathy.write_text(json.dumps({"images": images}))
    with pytest.raises(DataError, match="no features for image 77"):
        import_flickr30k(karpathy, open_features(write_npz(tmp_path / "f")), tmp_path / "itm")
    assert not (tmp_path / "itm").exists() or not list((tmp_path / "itm").iterdir())
    images[0]["split"] = ["train"]
    karpathy.write_text(json.dumps({"images": images}))
    with pytest.raises(DataError, match=r"images\[0\]: split \['train'\]"):
        import_flickr30k(karpathy, open_features(tmp_path / "f"), tmp_path / "itm")


def test_refs_pickle_of_the_wrong_shape(tmp_path: Path) -> None:
    refs, inst = refcoco_files(tmp_path)
    refs.write_bytes(pickle.dumps({"not": "a list"}, protocol=2))
    with pytest.raises(DataError, match="expected a list of refs"):
        import_refcoco(refs, inst, open_features(write_butd(tmp_path / "f.h5")), tmp_path / "vg")
