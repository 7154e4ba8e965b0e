"""The feature store: one HDF5 file per split (docs/data-format.md describes every field).

The datasets every task shares are checked here; a task's own datasets by its data kind
(`mmnasdsl.data.kinds`).

Objects are variable in number, so features and boxes are stored concatenated without
padding, with per-image offsets; text likewise (token ids + offsets). One text row is one
sample (a VQA question, an ITM caption, a VG referring expression) and points at its image.
Writes are atomic: a store is built in a temporary file in the target folder, fsynced and
renamed into place, so a crash never leaves a half-written file that looks valid.
Reading validates keys, ranks, dtypes, lengths, ranges and finiteness and raises
`DataError` naming file and item; whatever h5py raises on a damaged file (overwritten
metadata, unreadable chunks) is a `DataError` naming the file too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mmnasdsl.data.kinds import get_kind, in_range, offsets_ok, same_len
from mmnasdsl.lang.errors import DataError

FORMAT_VERSION = 1
STR = h5py.string_dtype("utf-8")
FULL_CHECK_BYTES = 256 << 20  # features up to this size are checked for NaN/inf on open

# What h5py and numpy raise on a damaged file: overwritten metadata surfaces as any of these.
H5_ERRORS = (
    OSError,
    KeyError,
    ValueError,
    TypeError,
    RuntimeError,
    IndexError,
    AttributeError,
    OverflowError,
)
# key -> (ndim, fixed trailing dims or None); lengths are cross-checked in `_check_lengths`
COMMON_KEYS: dict[str, tuple[int, tuple[int, ...] | None]] = {
    "images/features": (2, None),
    "images/boxes": (2, (4,)),
    "images/offsets": (1, None),
    "images/size": (2, (2,)),
    "images/id": (1, None),
    "text/tokens": (1, None),
    "text/offsets": (1, None),
    "text/raw": (1, None),
    "text/image": (1, None),
    "text/id": (1, None),
    "text/vocab": (1, None),
}
# key -> what its values must be: "int", "float" or "str" (UTF-8)
COMMON_DTYPES: dict[str, str] = {
    "images/features": "float",
    "images/boxes": "float",
    "images/offsets": "int",
    "images/size": "float",
    "images/id": "int",
    "text/tokens": "int",
    "text/offsets": "int",
    "text/raw": "str",
    "text/image": "int",
    "text/id": "int",
    "text/vocab": "str",
    "text/glove": "float",
}
DECODED = ("text/vocab",)  # small string datasets read whole: their UTF-8 is checked on open
# ----------------------------------------------------------------------------- writing


@dataclass
class TextData:
    """All samples' text: token ids per sample, raw strings, image row and source id."""

    tokens: list[np.ndarray]
    raw: list[str]
    image: np.ndarray  # (n,) int64 image row of each sample
    ids: np.ndarray  # (n,) int64 question / sentence / ref id
    vocab: list[str]
    glove: np.ndarray | None = None  # (V, D) embedding init, train store only


@dataclass
class _Buffer:
    feats: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    rows: int = 0


class StoreWriter:
    """Streams images into a new store, then text and labels; atomic on a clean exit.

    Images are appended in order (row = call order) through a buffer, so importers of
    paper-sized feature sets never hold all features in memory.
    """

    def __init__(
        self,
        path: str | Path,
        task: str,
        feature_dim: int,
        *,
        split: str = "",
        source: str = "",
        flush_rows: int = 65536,
        commit: bool = True,
    ) -> None:
        """`commit=False` leaves the checked store under its temporary name on a clean
        exit; `commit()` or `discard()` decides later (a multi-split import commits all
        its splits or none)."""
        get_kind(task, str(path))
        self.path = Path(path)
        self.auto_commit = commit
        self.task, self.dim, self.split, self.source = task, feature_dim, split, source
        self.flush_rows = flush_rows
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._buf = _Buffer()
        self._sizes: list[tuple[float, float]] = []
        self._ids: list[int] = []
        self._counts: list[int] = []
        self._file: h5py.File | None = None

    def __enter__(self) -> StoreWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._tmp, "w")
        chunk = max(1, min(4096, (256 << 10) // (4 * self.dim)))
        self._file.create_dataset(
            "images/features",
            (0, self.dim),
            np.float32,
            maxshape=(None, self.dim),
            chunks=(chunk, self.dim),
        )
        self._file.create_dataset(
            "images/boxes", (0, 4), np.float32, maxshape=(None, 4), chunks=(4096, 4)
        )
        return self

    def add_image(
        self,
        features: np.ndarray,
        boxes: np.ndarray,
        size: tuple[float, float],
        image_id: int,
        *,
        where: str = "",
    ) -> int:
        """Append one image's (K, F) features and (K, 4) boxes; returns its row."""
        item = where or f"{self.path}: image {image_id}"
        features = np.asarray(features, dtype=np.float32)
        boxes = np.asarray(boxes, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise DataError(
                f"{item}: features have shape {features.shape}, expected (K, {self.dim})"
            )
        if boxes.shape != (features.shape[0], 4):
            raise DataError(
                f"{item}: boxes have shape {boxes.shape}, expected ({features.shape[0]}, 4)"
            )
        if not (np.isfinite(features).all() and np.isfinite(boxes).all()):
            raise DataError(f"{item}: NaN or inf in the features or boxes")
        self._buf.feats.append(features)
        self._buf.boxes.append(boxes)
        self._buf.rows += len(features)
        self._sizes.append((float(size[0]), float(size[1])))
        self._ids.append(int(image_id))
        self._counts.append(len(features))
        if self._buf.rows >= self.flush_rows:
            self._flush()
        return len(self._ids) - 1

    @property
    def n_images(self) -> int:
        return len(self._ids)

    def _flush(self) -> None:
        if not self._buf.rows:
            return
        assert self._file is not None
        for key, parts in (("images/features", self._buf.feats), ("images/boxes", self._buf.boxes)):
            ds = self._file[key]
            start = ds.shape[0]
            ds.resize(start + self._buf.rows, axis=0)
            ds[start:] = np.concatenate(parts)
        self._buf = _Buffer()

    def set_text(self, text: TextData) -> None:
        """Token ids (unpadded, with offsets), raw strings, image rows, ids and vocabulary."""
        assert self._file is not None
        f = self._file
        lengths = np.array([len(t) for t in text.tokens], dtype=np.int64)
        f["text/tokens"] = (
            np.concatenate(text.tokens).astype(np.int32) if text.tokens else np.zeros(0, np.int32)
        )
        f["text/offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        f.create_dataset("text/raw", data=np.array(text.raw, dtype=object), dtype=STR)
        f["text/image"] = np.asarray(text.image, dtype=np.int64)
        f["text/id"] = np.asarray(text.ids, dtype=np.int64)
        f.create_dataset("text/vocab", data=np.array(text.vocab, dtype=object), dtype=STR)
        if text.glove is not None:
            f["text/glove"] = np.asarray(text.glove, dtype=np.float32)

    def set_labels(self, labels: dict[str, Any]) -> None:
        """Task datasets by key (`vqa/...`, `vg/...`); lists of str are stored as UTF-8."""
        assert self._file is not None
        for key, value in labels.items():
            arr = np.asarray(value)
            if arr.dtype.kind in "OU":
                self._file.create_dataset(key, data=arr.astype(object), dtype=STR)
            else:
                self._file[key] = arr

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        finished = False
        try:
            if exc_type is None:
                self._finish()
                finished = True
        finally:
            if self._file is not None and self._file.id.valid:
                self._file.close()
            if not (finished and not self.auto_commit):
                self.discard()

    def commit(self) -> None:
        """Move the finished store into place (atomic rename, then the folder is synced)."""
        os.replace(self._tmp, self.path)
        fsync(self.path.parent)

    def discard(self) -> None:
        """Remove the temporary file (an uncommitted or failed store)."""
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def _finish(self) -> None:
        assert self._file is not None
        self._flush()
        f = self._file
        counts = np.array(self._counts, dtype=np.int64)
        f["images/offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        f["images/size"] = np.array(self._sizes, dtype=np.float32).reshape(-1, 2)
        f["images/id"] = np.array(self._ids, dtype=np.int64)
        f.attrs.update(
            format_version=FORMAT_VERSION,
            task=self.task,
            split=self.split,
            source=self.source,
            feature_dim=self.dim,
        )
        check_file(f, str(self.path), check_features=False)
        f.flush()
        f.close()
        fsync(self._tmp)
        if self.auto_commit:
            self.commit()


def fsync(path: Path) -> None:
    """Flush a file or folder to disk, so a replace that follows survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- reading


def open_store(path: str | Path) -> h5py.File:
    """Open and validate a store read-only; any problem is a `DataError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such store file")
    try:
        f = h5py.File(p, "r")
    except H5_ERRORS as exc:
        raise DataError(f"{p}: not a readable HDF5 store ({exc})") from None
    try:
        check_file(f, str(p))
    except DataError:
        f.close()
        raise
    except H5_ERRORS as exc:  # damaged metadata or chunks
        f.close()
        raise DataError(f"{p}: a damaged store ({type(exc).__name__}: {exc})") from None
    except BaseException:
        f.close()
        raise
    return f


def check_file(f: h5py.File, name: str, *, check_features: bool = True) -> None:
    """Keys, ranks, lengths, index ranges and finiteness; DataError on the first fault."""
    version = f.attrs.get("format_version")
    if version is None:
        raise DataError(f"{name}: not an mmnasdsl store (no format_version attribute)")
    if not _is_int(version):
        raise DataError(f"{name}: format_version {_short(version)} is not an integer")
    if int(version) != FORMAT_VERSION:
        raise DataError(f"{name}: format_version {version}, this mmnasdsl reads {FORMAT_VERSION}")
    kind = get_kind(attr_str(f.attrs.get("task", "")), name)
    if kind.own_layout:  # a layout of its own (BM-NAS taps): the kind checks all of it
        kind.check(f, name, 0)
        return
    dtypes = {**COMMON_DTYPES, **kind.dtypes}
    for key, (ndim, trailing) in {**COMMON_KEYS, **kind.keys}.items():
        _check_key(f, name, key, ndim, trailing)
        _check_dtype(f, name, key, dtypes.get(key))
    if "text/glove" in f:
        _check_key(f, name, "text/glove", 2, None)
        _check_dtype(f, name, "text/glove", "float")
        same_len(f, name, ["text/glove"], f["text/vocab"].shape[0], "one per vocabulary word")
    for key in (*DECODED, *kind.decoded):
        _check_utf8(f, name, key)
    n_text = _check_lengths(f, name)
    kind.check(f, name, n_text)
    _check_finite(f, name, check_features, kind.finite_keys)


def attr_str(v: Any) -> str:
    """A string attribute as h5py returns it (str, or bytes from other writers)."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _short(v: Any) -> str:
    text = repr(v.tolist() if isinstance(v, np.ndarray) else v)
    return text if len(text) <= 40 else text[:39] + "…"


_DTYPE_WORDS = {"int": "integers", "float": "floating-point numbers", "str": "UTF-8 strings"}


def _check_dtype(f: h5py.File, name: str, key: str, want: str | None) -> None:
    """DataError unless dataset `key` holds `want` ("int", "float", "str")."""
    if want is None:
        return
    dtype = f[key].dtype
    ok = {
        "int": dtype.kind in "iu",
        "float": dtype.kind == "f",
        "str": h5py.check_string_dtype(dtype) is not None,
    }[want]
    if not ok:
        raise DataError(f"{name}: dataset '{key}' holds {dtype}, expected {_DTYPE_WORDS[want]}")


def _check_utf8(f: h5py.File, name: str, key: str) -> None:
    try:
        f[key].asstr()[:]
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: dataset '{key}' is not UTF-8 ({exc.reason})") from None


def _check_key(
    f: h5py.File, name: str, key: str, ndim: int, trailing: tuple[int, ...] | None
) -> None:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise DataError(f"{name}: missing dataset '{key}'")
    shape = f[key].shape
    if len(shape) != ndim or (trailing is not None and shape[1:] != trailing):
        want = f"(N, {', '.join(map(str, trailing))})" if trailing else f"{ndim} dimensions"
        raise DataError(f"{name}: dataset '{key}' has shape {shape}, expected {want}")


def _check_lengths(f: h5py.File, name: str) -> int:
    """Lengths and index ranges of the common datasets; returns the number of samples."""
    n_obj = f["images/features"].shape[0]
    same_len(f, name, ["images/boxes"], n_obj, "one per object")
    n_img = len(offsets_ok(f, name, "images/offsets", n_obj)) - 1
    same_len(f, name, ["images/size", "images/id"], n_img, "one per image")
    n_text = len(offsets_ok(f, name, "text/offsets", f["text/tokens"].shape[0])) - 1
    same_len(f, name, ["text/raw", "text/image", "text/id"], n_text, "one per sample")
    in_range(f, name, "text/image", n_img, "image rows")
    in_range(f, name, "text/tokens", f["text/vocab"].shape[0], "vocabulary ids")
    return n_text


def _check_finite(f: h5py.File, name: str, features: bool, kind_keys: tuple[str, ...]) -> None:
    keys = ["images/boxes", "images/size", *kind_keys] + (
        ["text/glove"] if "text/glove" in f else []
    )
    for key in keys:
        bad = first_nonfinite(f[key])
        if bad is not None:
            raise DataError(f"{name}: NaN or inf in '{key}' row {bad}")
    feats = f["images/features"]
    if features and feats.size * 4 <= FULL_CHECK_BYTES:
        bad = first_nonfinite(feats)
        if bad is not None:
            raise DataError(
                f"{name}: NaN or inf in the features of image row "
                f"{image_of_row(f, bad)} (object row {bad})"
            )


def first_nonfinite(ds: h5py.Dataset | np.ndarray, block: int = 1 << 16) -> int | None:
    """The first row holding a NaN or inf, read in blocks, or None."""
    for lo in range(0, ds.shape[0], block):
        part = np.asarray(ds[lo : lo + block])
        ok = np.isfinite(part).reshape(len(part), -1).all(1)
        if not ok.all():
            return lo + int(np.flatnonzero(~ok)[0])
    return None


def image_of_row(f: h5py.File, row: int) -> int:
    """The image holding object row `row` (for error messages)."""
    return int(np.searchsorted(f["images/offsets"][:], row, side="right") - 1)


def iter_keys(f: h5py.File) -> Iterator[tuple[str, h5py.Dataset]]:
    """Every dataset in a store with its path, in a stable order (for `data info`)."""
    out: list[tuple[str, h5py.Dataset]] = []
    f.visititems(lambda k, v: out.append((k, v)) if isinstance(v, h5py.Dataset) else None)
    return iter(sorted(out, key=lambda kv: kv[0]))
