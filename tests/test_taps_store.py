"""BM-NAS data: the tap store (write, validate, read, against the spec), the planted-pair
generator, the importer and the data commands."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from _specs import ROOT
from typer.testing import CliRunner

import mmnasdsl
from mmnasdsl.cli import app
from mmnasdsl.data import collate, open_split, resolve
from mmnasdsl.data.importers import import_taps
from mmnasdsl.data.taps import TapDataset, TapWriter, write_split
from mmnasdsl.data.xor import projections, tap_shapes, xor_labels
from mmnasdsl.lang.errors import DataError

MINIMAL = ROOT / "tests" / "specs" / "bmnas" / "valid" / "minimal.mmnas"


def arrays(n: int = 6, seed: int = 0) -> dict[str, tuple[str, np.ndarray]]:
    """The taps of tests/specs/bmnas/valid/minimal.mmnas."""
    r = np.random.default_rng(seed)
    return {
        "a0": ("a", r.standard_normal((n, 4)).astype(np.float32)),
        "a1": ("a", r.standard_normal((n, 4, 3)).astype(np.float32)),
        "b0": ("b", r.standard_normal((n, 4, 2, 2)).astype(np.float32)),
    }


def test_write_read_and_batch(tmp_path):
    taps = arrays()
    write_split(
        tmp_path / "train.h5",
        taps,
        np.array([0, 1, 1, 0, 1, 0]),
        ["no", "yes"],
        split="train",
        source="test",
    )
    spec = mmnasdsl.load(MINIMAL)
    ds = open_split(tmp_path, "train", spec)
    assert isinstance(ds, TapDataset) and len(ds) == 6 and ds.answers == ["no", "yes"]
    item = ds[2]
    assert np.array_equal(item["taps"]["a1"], taps["a1"][1][2]) and item["label"] == 1
    batch = collate([ds[i] for i in range(3)], ds.kind)
    assert batch["tap/b0"].shape == (3, 4, 2, 2) and batch["label"].tolist() == [0, 1, 1]
    assert not list(tmp_path.glob(".*tmp*"))


def test_multilabel_labels_batch_as_floats(tmp_path):
    y = np.array([[1, 0, 1]] * 6)
    write_split(tmp_path / "val.h5", arrays(), y, ["a", "b", "c"], split="val", source="")
    ds = TapDataset(tmp_path / "val.h5")
    assert ds.multilabel
    batch = ds.kind.collate([ds[0], ds[1]])
    assert batch["label"].dtype.is_floating_point and batch["label"].shape == (2, 3)


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda f: f.__delitem__("labels"), "missing dataset 'labels'"),
        (
            lambda f: f.__delitem__("taps/a0") or f.__setitem__("taps/a0", np.zeros((5, 4))),
            "tap 'a0' has shape",
        ),
        (lambda f: f["labels"].__setitem__(0, 7), "'labels' of sample 0 is not a class id"),
        (lambda f: f["taps/a1"].__setitem__(3, np.nan), "NaN or inf in tap 'a1' of sample 3"),
    ],
)
def test_a_broken_store_names_the_file_and_the_item(tmp_path, break_it, message):
    path = tmp_path / "train.h5"
    write_split(path, arrays(), np.zeros(6, int), ["x", "y"], split="train", source="")
    with h5py.File(path, "r+") as f:
        break_it(f)
    with pytest.raises(DataError, match=message) as info:
        TapDataset(path)
    assert str(path) in str(info.value)


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "train.h5"
    with pytest.raises(DataError, match="NaN"), TapWriter(path) as w:
        w.add_tap("a0", "a", np.full((2, 3), np.nan, np.float32))
    assert not path.exists() and not list(tmp_path.iterdir())


def test_the_store_must_hold_what_the_spec_declares(tmp_path):
    taps = arrays()
    taps["a1"] = ("a", np.zeros((6, 4, 5), np.float32))
    write_split(tmp_path / "train.h5", taps, np.zeros(6, int), ["x", "y"], split="train", source="")
    with pytest.raises(DataError, match=r"tap 'a1' holds \(4, 5\) per sample"):
        open_split(tmp_path, "train", mmnasdsl.load(MINIMAL))
    write_split(
        tmp_path / "val.h5", arrays(), np.zeros(6, int), ["x", "y", "z"], split="val", source=""
    )
    with pytest.raises(DataError, match="3 classes, but"):
        open_split(tmp_path, "val", mmnasdsl.load(MINIMAL))


def test_the_planted_pair_alone_decides_the_label(tmp_path, monkeypatch):
    monkeypatch.setenv("MMNASDSL_DATA", str(tmp_path))
    spec = mmnasdsl.load(MINIMAL)  # data xor(pair = [a0, b0], samples = 100)
    folder = resolve(spec, "taps")
    assert folder.parent.name == "xor" and sorted(p.name for p in folder.iterdir()) == [
        "test.h5",
        "train.h5",
        "val.h5",
    ]
    ds = open_split(folder, "train", spec)
    u, v = projections(tap_shapes(spec), ("a0", "b0"), 0)
    a = np.stack([ds[i]["taps"]["a0"] for i in range(len(ds))])
    b = np.stack([ds[i]["taps"]["b0"] for i in range(len(ds))])
    assert np.array_equal(xor_labels(a, b, u, v), ds.labels)
    assert 0.3 < ds.labels.mean() < 0.7
    assert resolve(spec, "taps") == folder  # generated once


def test_import_from_per_tap_files_and_from_one_file(tmp_path):
    spec = mmnasdsl.load(MINIMAL)
    feats = tmp_path / "feats"
    feats.mkdir()
    taps = arrays(n=10)
    np.save(feats / "a0.npy", taps["a0"][1])
    np.savez(feats / "a1.npz", features=taps["a1"][1])
    with h5py.File(feats / "b0.h5", "w") as f:
        f["x"] = taps["b0"][1]
    np.save(tmp_path / "y.npy", np.arange(10) % 2)
    summary = import_taps(
        spec, feats, tmp_path / "train.h5", labels=tmp_path / "y.npy", split="train"
    )
    assert summary.samples == 10 and summary.taps == 3
    ds = open_split(tmp_path, "train", spec)
    assert np.array_equal(ds[3]["taps"]["a1"], taps["a1"][1][3])
    one = tmp_path / "all.npz"
    np.savez(one, **{k: v for k, (_, v) in taps.items()}, labels=np.ones(10, int))
    import_taps(spec, one, tmp_path / "val.h5", split="val")
    assert open_split(tmp_path, "val", spec).labels.tolist() == [1] * 10


def test_import_errors_name_the_file_and_the_tap(tmp_path):
    spec = mmnasdsl.load(MINIMAL)
    one = tmp_path / "all.npz"
    taps = arrays()
    np.savez(one, a0=taps["a0"][1], a1=taps["a1"][1][:, :2], b0=taps["b0"][1], labels=np.zeros(6))
    with pytest.raises(DataError, match=r"tap 'a1' has shape \(6, 2, 3\)"):
        import_taps(spec, one, tmp_path / "x.h5")
    np.savez(one, a0=taps["a0"][1])
    with pytest.raises(DataError, match="no array for tap 'a1'"):
        import_taps(spec, one, tmp_path / "x.h5")


def test_data_commands(tmp_path: Path):
    runner = CliRunner()
    feats = tmp_path / "all.npz"
    np.savez(feats, **{k: v for k, (_, v) in arrays().items()}, labels=np.zeros(6, int))
    out = tmp_path / "train.h5"
    result = runner.invoke(
        app,
        [
            "data",
            "import",
            "taps",
            "--spec",
            str(MINIMAL),
            "--features",
            str(feats),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "6 samples, 3 taps, 2 classes" in " ".join(result.stdout.split())
    info = runner.invoke(app, ["data", "info", str(out)])
    assert info.exit_code == 0 and "a1" in info.stdout and "(4, 3)" in info.stdout
