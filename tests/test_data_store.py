"""The feature store: round trip, validation errors naming file and item, atomic writes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mmnasdsl.data.store import StoreWriter, TextData, open_store
from mmnasdsl.lang.errors import DataError


def write_vg(path: Path, n_images: int = 3, dim: int = 8) -> dict[str, np.ndarray]:
    """A tiny VG store: image i has i + 2 objects, one expression per image."""
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(i + 2, dim)).astype(np.float32) for i in range(n_images)]
    boxes = [
        np.tile([1.0, 2.0, 11.0, 22.0], (i + 2, 1)).astype(np.float32) for i in range(n_images)
    ]
    with StoreWriter(path, "vg", dim, split="train") as w:
        for i in range(n_images):
            w.add_image(feats[i], boxes[i], (100, 50), 1000 + i)
        w.set_text(
            TextData(
                [np.array([2, 3, 4][: i + 1], np.int32) for i in range(n_images)],
                [f"text {i}" for i in range(n_images)],
                np.arange(n_images),
                np.arange(n_images) + 7,
                ["<pad>", "<unk>", "a", "b", "c"],
            )
        )
        w.set_labels({"vg/gt_box": np.tile([1.0, 2.0, 11.0, 22.0], (n_images, 1))})
    return {"feats": np.concatenate(feats), "boxes": np.concatenate(boxes)}


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    want = write_vg(path)
    with open_store(path) as f:
        assert f.attrs["task"] == "vg" and int(f.attrs["format_version"]) == 1
        np.testing.assert_array_equal(f["images/features"][:], want["feats"])
        np.testing.assert_array_equal(f["images/offsets"][:], [0, 2, 5, 9])
        np.testing.assert_array_equal(f["images/id"][:], [1000, 1001, 1002])
        np.testing.assert_array_equal(f["text/offsets"][:], [0, 1, 3, 6])
        assert list(f["text/raw"].asstr()[:]) == ["text 0", "text 1", "text 2"]
        assert list(f["text/vocab"].asstr()[:])[:2] == ["<pad>", "<unk>"]


def corrupt(path: Path, key: str, value: object) -> None:
    with h5py.File(path, "r+") as f:
        if value is None:
            del f[key]
        else:
            del f[key]
            f[key] = value


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("vg/gt_box", None, "missing dataset 'vg/gt_box'"),
        ("images/boxes", np.zeros((9, 3), np.float32), "'images/boxes' has shape (9, 3)"),
        ("images/offsets", np.array([0, 2, 5, 8]), "'images/offsets' must rise from 0 to 9"),
        ("text/image", np.array([0, 1, 5]), "'text/image' row 2 holds 5"),
        ("images/size", np.array([[1, 1], [np.nan, 1], [1, 1]], np.float32), "'images/size' row 1"),
    ],
)
def test_corrupted_file_names_file_and_item(
    tmp_path: Path, key: str, value: object, message: str
) -> None:
    path = tmp_path / "s.h5"
    write_vg(path)
    corrupt(path, key, value)
    with pytest.raises(DataError) as err:
        open_store(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_nan_features_name_the_image(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    write_vg(path)
    with h5py.File(path, "r+") as f:
        f["images/features"][3, 0] = np.inf  # image row 1 holds object rows 2-4
    with pytest.raises(DataError, match="image row 1"):
        open_store(path)


def test_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(DataError, match=r"junk\.h5"):
        open_store(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(DataError, match="format_version"):
        open_store(tmp_path / "empty.h5")


def test_writer_rejects_bad_images(tmp_path: Path) -> None:
    with (
        pytest.raises(DataError, match="NaN or inf"),
        StoreWriter(tmp_path / "a.h5", "itm", 4) as w,
    ):
        w.add_image(np.full((2, 4), np.nan), np.zeros((2, 4)), (1, 1), 5)
    with (
        pytest.raises(DataError, match=r"expected \(K, 4\)"),
        StoreWriter(tmp_path / "a.h5", "itm", 4) as w,
    ):
        w.add_image(np.zeros((2, 3)), np.zeros((2, 4)), (1, 1), 5)


def test_atomic_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    write_vg(path, n_images=2)
    with pytest.raises(RuntimeError), StoreWriter(path, "vg", 8) as w:
        w.add_image(np.zeros((2, 8)), np.zeros((2, 4)), (1, 1), 1)
        raise RuntimeError("crash mid-write")
    with open_store(path) as f:  # the previous store is untouched
        assert f["images/offsets"].shape == (3,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.h5"]


def test_incomplete_store_is_not_committed(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    with pytest.raises(DataError, match="missing dataset"), StoreWriter(path, "vg", 8) as w:
        w.add_image(np.zeros((2, 8)), np.zeros((2, 4)), (1, 1), 1)  # no text, no labels
    assert not path.exists() and not list(tmp_path.iterdir())


def test_streams_in_chunks(tmp_path: Path) -> None:
    """Images are flushed to disk in several appends; offsets still line up."""
    path = tmp_path / "s.h5"
    with StoreWriter(path, "itm", 3, flush_rows=4) as w:
        for i in range(5):
            w.add_image(np.full((3, 3), i, np.float32), np.zeros((3, 4)), (1, 1), i)
        w.set_text(
            TextData(
                [np.array([2], np.int32)] * 5,
                ["x"] * 5,
                np.arange(5),
                np.arange(5),
                ["<pad>", "<unk>", "x"],
            )
        )
    with open_store(path) as f:
        np.testing.assert_array_equal(f["images/features"][::3, 0], np.arange(5))
