"""The loader: dynamic padding, masks, relations, bucketing, seeds, workers, task labels."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mmnasdsl.data import FeatureDataset, make_loader, open_split
from mmnasdsl.data.geometry import relation_features
from mmnasdsl.data.shapes import generate
from mmnasdsl.lang.errors import DataError


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    for task in ("vqa", "itm", "vg"):
        generate(task, root / task, scenes=20, seed=1)
    return {t: root / t for t in ("vqa", "itm", "vg")}


def test_padding_and_masks(shapes_dir: dict[str, Path]) -> None:
    ds = open_split(shapes_dir["vqa"], "train")
    batch = next(iter(make_loader(ds, 8, shuffle=False, seed=0)))
    rows = batch["index"].numpy()
    n_words = np.diff(ds.text_offsets)[rows]
    n_obj = ds.object_counts()[rows]
    assert batch["words"].shape == (8, n_words.max())
    assert batch["objects"].shape == (8, n_obj.max(), 64)
    assert (batch["words_mask"].sum(1).numpy() == n_words).all()
    assert (batch["objects_mask"].sum(1).numpy() == n_obj).all()
    assert (batch["words"][~batch["words_mask"]] == 0).all()
    assert (batch["words"][batch["words_mask"]] > 0).all()
    assert (batch["objects"][~batch["objects_mask"]] == 0).all()
    pad = batch["boxes"][~batch["objects_mask"]]
    assert torch.equal(pad, torch.tensor([0.0, 0.0, 1.0, 1.0]).expand_as(pad))
    assert batch["image_size"].tolist()[0] == [320.0, 240.0]


def test_relations_are_geometry_of_the_padded_boxes(shapes_dir: dict[str, Path]) -> None:
    ds = open_split(shapes_dir["vg"], "val")
    batch = next(iter(make_loader(ds, 4, shuffle=True, seed=3)))
    assert torch.equal(batch["relations"], relation_features(batch["boxes"]))
    plain = next(iter(make_loader(ds, 4, shuffle=True, seed=3, relations=False)))
    assert "relations" not in plain and torch.equal(plain["boxes"], batch["boxes"])


def test_batch_keys_per_task(shapes_dir: dict[str, Path]) -> None:
    common = {
        "words",
        "words_mask",
        "objects",
        "objects_mask",
        "boxes",
        "image_size",
        "relations",
        "index",
    }
    extra = {
        "vqa": {"answer_scores", "answer_type", "family"},
        "itm": {"label", "image_id", "caption_id"},
        "vg": {"gt_box"},
    }
    for task, keys in extra.items():
        batch = next(
            iter(make_loader(open_split(shapes_dir[task], "test"), 3, shuffle=False, seed=0))
        )
        assert set(batch) == common | keys


def test_vqa_scores_match_the_annotators(shapes_dir: dict[str, Path]) -> None:
    ds = open_split(shapes_dir["vqa"], "train")
    batch = next(iter(make_loader(ds, 16, shuffle=True, seed=0)))
    for row, scores in zip(batch["index"].tolist(), batch["answer_scores"], strict=False):
        raw = ds.raw_answers(row)
        assert len(raw) == 10
        for a, s in zip(ds.answers, scores.tolist(), strict=False):
            assert s == pytest.approx((0, 0.3, 0.6, 0.9, 1.0)[min(raw.count(a), 4)])
    assert batch["answer_scores"].shape[1] == len(ds.answers)
    assert ds.families[0] == "exist" and ds.answer_types == ["yes/no", "number", "other"]


def test_seeded_order_and_indices(shapes_dir: dict[str, Path]) -> None:
    ds = open_split(shapes_dir["itm"], "train")
    order = lambda loader: [r for b in loader for r in b["index"].tolist()]  # noqa: E731
    a = make_loader(ds, 7, shuffle=True, seed=5)
    first, second = order(a), order(a)
    assert first == order(make_loader(ds, 7, shuffle=True, seed=5))  # reproducible
    assert first != second and sorted(first) == sorted(second) == list(range(len(ds)))
    subset = [3, 1, 4, 15, 9]
    assert order(make_loader(ds, 2, shuffle=False, seed=0, indices=subset)) == subset


def test_bucket_groups_by_object_count(shapes_dir: dict[str, Path]) -> None:
    ds = open_split(shapes_dir["vqa"], "train")
    counts = ds.object_counts()
    loader = make_loader(ds, 10, shuffle=True, seed=0, bucket=True)
    batches = [b["index"].numpy() for b in loader]
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(ds)))
    spans = [np.ptp(counts[b]) for b in batches]
    plain = [np.ptp(counts[b["index"].numpy()]) for b in make_loader(ds, 10, shuffle=True, seed=0)]
    assert sum(spans) < sum(plain)
    assert all(b["objects"].shape[1] == counts[b["index"].numpy()].max() for b in loader)


def test_itm_pairs(shapes_dir: dict[str, Path]) -> None:
    ds = open_split(shapes_dir["itm"], "val")
    assert ds.n_images == 10 and len(ds) == 50
    assert (np.bincount(ds.caption_image) == 5).all()
    pairs = ds.pairs([0, 1, 2], [0, 0, 7], [1.0, 0.0, 0.0])
    batch = next(iter(make_loader(pairs, 3, shuffle=False, seed=0)))
    assert batch["image_id"].tolist() == [0, 1, 2]
    assert batch["caption_id"].tolist() == [0, 0, 7]
    assert batch["label"].tolist() == [1.0, 0.0, 0.0]
    assert torch.equal(batch["words"][0], batch["words"][1])


def test_uncached_reads_match_and_check_finite(shapes_dir: dict[str, Path], tmp_path: Path) -> None:
    path = shapes_dir["vg"] / "test.h5"
    cached, lazy = FeatureDataset(path), FeatureDataset(path, cache=False)
    for i in (0, 5, len(cached) - 1):
        np.testing.assert_array_equal(cached[i]["objects"], lazy[i]["objects"])
    bad = tmp_path / "bad.h5"
    bad.write_bytes(path.read_bytes())
    ds = FeatureDataset(bad, cache=False)
    with h5py.File(bad, "r+") as f:  # corrupted after opening: the per-item check catches it
        f["images/features"][0, 0] = np.nan
    with pytest.raises(DataError, match="image row 0"):
        ds[int(np.flatnonzero(ds.text_image == 0)[0])]


def test_limits_truncate(shapes_dir: dict[str, Path]) -> None:
    ds = FeatureDataset(shapes_dir["vqa"] / "train.h5", max_words=3, max_objects=4)
    batch = next(iter(make_loader(ds, 32, shuffle=False, seed=0)))
    assert batch["words"].shape[1] == 3 and batch["objects"].shape[1] == 4


def test_two_workers(shapes_dir: dict[str, Path]) -> None:
    ds = FeatureDataset(shapes_dir["vg"] / "train.h5", cache=False)
    ds[0]  # opened in the parent first: workers must reopen, not share the handle
    serial = list(make_loader(ds, 16, shuffle=True, seed=2))
    parallel = list(make_loader(ds, 16, shuffle=True, seed=2, num_workers=2))
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel, strict=False):
        assert torch.equal(a["objects"], b["objects"]) and torch.equal(a["gt_box"], b["gt_box"])
