"""Readers for the community region-feature formats (REFERENCE.md "Community data formats").

Each reader maps an image id to (features (K, F) float32, boxes (K, 4) x1y1x2y2 pixels,
(image_w, image_h)) and raises `DataError` naming the file and the image when a record is
malformed. `open_features(path)` picks the reader from the path:
- a folder of per-image `.npz` (x 2048xK or Kx2048, bbox, image_h, image_w; the image id is
  the integer after the last `_` of the file name, before `.npz` or an image extension:
  `COCO_train2014_000000000009.jpg.npz` as the reference names them, `..._9.npz`, `9.npz`),
- a bottom-up-attention `.h5` (image_features, image_bb, pos_boxes; ids below),
- a `.tsv` (image_id, image_w, image_h, num_boxes, boxes, features; base64 float32).
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from mmnasdsl.lang.errors import DataError

Record = tuple[np.ndarray, np.ndarray, tuple[float, float]]


class FeatureSource(Protocol):
    path: Path

    def ids(self) -> list[int]: ...
    def __contains__(self, image_id: int) -> bool: ...
    def get(self, image_id: int) -> Record: ...


def open_features(path: str | Path, id_map: str | Path | None = None) -> FeatureSource:
    """The reader for a features path: folder -> npz, `.h5`/`.hdf5` -> BUTD, `.tsv` -> TSV."""
    p = Path(path)
    if p.is_dir():
        return NpzFolder(p)
    if not p.is_file():
        raise DataError(f"{p}: no such features file or folder")
    if p.suffix in (".h5", ".hdf5"):
        return ButdH5(p, id_map)
    if p.suffix == ".tsv":
        return TsvFeatures(p)
    raise DataError(f"{p}: unknown features format (expected a folder of .npz, .h5 or .tsv)")


def _checked(name: str, feats: np.ndarray, boxes: np.ndarray, size: tuple[float, float]) -> Record:
    """A record as float32 arrays, or DataError: numbers of the right shapes, finite, and a
    positive finite image size."""
    for what, a in (("features", feats), ("boxes", boxes)):
        kind = getattr(a, "dtype", np.dtype(object)).kind
        if kind not in "iuf":
            raise DataError(f"{name}: the {what} hold {a.dtype}, expected numbers")
    feats = np.asarray(feats, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float32)
    if feats.ndim != 2 or boxes.shape != (feats.shape[0], 4):
        raise DataError(
            f"{name}: features {feats.shape} and boxes {boxes.shape} disagree "
            "(expected (K, F) and (K, 4))"
        )
    if not (np.isfinite(feats).all() and np.isfinite(boxes).all()):
        raise DataError(f"{name}: NaN or inf in the features or boxes")
    if not (0 < size[0] < float("inf") and 0 < size[1] < float("inf")):
        raise DataError(f"{name}: image size {size} is not positive and finite")
    return feats, boxes, size


# ------------------------------------------------------------------------------ .npz


# `<prefix>_<id>.npz`, `<prefix>_<id>.<ext>.npz` (the reference's
# `COCO_train2014_000000000009.jpg.npz`), `<id>.npz`, `<id>.<ext>.npz`.
_NPZ_NAME = re.compile(r"(?:.*_)?([0-9]+)(?:\.[A-Za-z][A-Za-z0-9]*)?\.npz", re.ASCII)


def npz_image_id(name: str) -> int | None:
    """`COCO_train2014_000000000009.jpg.npz` or `..._000000000009.npz` -> 9,
    `1000092795.npz` -> 1000092795; None when the name holds no such integer (or one
    beyond int64, the store's id type)."""
    m = _NPZ_NAME.fullmatch(Path(name).name)
    if m is None or len(m.group(1).lstrip("0")) > 19:
        return None
    image_id = int(m.group(1))
    return image_id if image_id < 2**63 else None


class NpzFolder:
    """A folder of per-image `.npz` files (OpenVQA / MMnas bottom-up features)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: dict[int, Path] = {}
        for f in sorted(path.glob("*.npz")):
            image_id = npz_image_id(f.name)
            if image_id is not None:
                self._files[image_id] = f  # (two files of one image: the last name wins)
        if not self._files:
            raise DataError(
                f"{path}: no feature files named <prefix>_<image id>.npz or "
                "<prefix>_<image id>.<ext>.npz (e.g. COCO_train2014_000000000009.jpg.npz)"
            )

    def ids(self) -> list[int]:
        return sorted(self._files)

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._files

    def get(self, image_id: int) -> Record:
        f = self._files[image_id]
        try:
            loaded = np.load(f, allow_pickle=False)
            if not hasattr(loaded, "files"):  # a bare .npy array renamed .npz
                raise DataError(f"{f}: an array, not an .npz archive of x, bbox, ...")
            with loaded as z:
                lost = [k for k in ("x", "bbox", "image_h", "image_w") if k not in z.files]
                if lost:
                    raise DataError(
                        f"{f}: missing key '{lost[0]}' (needs x, bbox, image_h, image_w)"
                    )
                x, bbox = z["x"], z["bbox"]
                size = (_scalar(z["image_w"], f, "image_w"), _scalar(z["image_h"], f, "image_h"))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise DataError(f"{f}: not a readable .npz ({exc})") from None
        if x.ndim == 2 and bbox.ndim >= 1 and x.shape[0] != len(bbox) and x.shape[1] == len(bbox):
            x = x.T  # stored as F x K
        return _checked(str(f), x, bbox, size)


def _scalar(a: np.ndarray, f: Path, key: str) -> float:
    """One number stored as an array (image_h, image_w): DataError for anything else."""
    if a.size != 1 or a.dtype.kind not in "iuf":
        raise DataError(f"{f}: '{key}' should be one number, found {a.dtype} of shape {a.shape}")
    return float(a.reshape(()))


# ------------------------------------------------------------------------------ BUTD h5


class ButdH5:
    """Bottom-up-attention HDF5 (BAN style): rows `pos_boxes[i]` of image_features/image_bb.

    The image id -> index map is, in order of preference: `id_map` (JSON object or pickled
    dict), a sidecar `<stem>_imgid2idx.json|.pkl` or `imgid2idx.json|.pkl` next to the file,
    or an `image_ids` dataset inside it (index i -> id). Image sizes come from `image_w` /
    `image_h` datasets when present, else from `spatial_features` (x2 / (x2/w)), else the
    largest box extent.
    """

    def __init__(self, path: Path, id_map: str | Path | None = None) -> None:
        self.path = path
        try:
            self._h5 = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
        for key in ("image_features", "image_bb", "pos_boxes"):
            if key not in self._h5:
                raise DataError(f"{path}: missing dataset '{key}'")
        try:
            self._pos = self._h5["pos_boxes"][:]
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{path}: cannot read 'pos_boxes' ({exc})") from None
        if self._pos.ndim != 2 or self._pos.shape[1] != 2 or self._pos.dtype.kind not in "iuf":
            raise DataError(
                f"{path}: 'pos_boxes' holds {self._pos.dtype} of shape {self._pos.shape}, "
                "expected (N, 2) row numbers"
            )
        self._index = self._load_map(id_map)

    def _load_map(self, id_map: str | Path | None) -> dict[int, int]:
        candidates = (
            [Path(id_map)]
            if id_map
            else [
                self.path.with_name(f"{self.path.stem}_imgid2idx{ext}") for ext in (".json", ".pkl")
            ]
            + [self.path.with_name(f"imgid2idx{ext}") for ext in (".json", ".pkl")]
        )
        for c in candidates:
            if c.is_file():
                return _read_id_map(c)
        if id_map:
            raise DataError(f"{id_map}: no such id map file")
        if "image_ids" in self._h5:
            try:
                return {int(v): i for i, v in enumerate(self._h5["image_ids"][:])}
            except (OSError, KeyError, ValueError, TypeError, OverflowError) as exc:
                raise DataError(f"{self.path}: 'image_ids' are not integers ({exc})") from None
        raise DataError(
            f"{self.path}: no image id -> index map (pass --id-map, or put "
            f"{self.path.stem}_imgid2idx.json next to it)"
        )

    def ids(self) -> list[int]:
        return sorted(self._index)

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._index

    def get(self, image_id: int) -> Record:
        i = self._index[image_id]
        name = f"{self.path}: image {image_id} (index {i})"
        if not 0 <= i < len(self._pos):
            raise DataError(f"{name}: index outside pos_boxes ({len(self._pos)} rows)")
        try:
            lo, hi = (int(v) for v in self._pos[i])
            n = self._h5["image_features"].shape[0]
            if not 0 <= lo <= hi <= n:
                raise DataError(f"{name}: pos_boxes rows {lo}:{hi} outside the {n} features")
            feats, boxes = self._h5["image_features"][lo:hi], self._h5["image_bb"][lo:hi]
            size = self._size(i, lo, hi, np.asarray(boxes, dtype=np.float64))
        except (OSError, KeyError, ValueError, TypeError, IndexError, OverflowError) as exc:
            raise DataError(f"{name}: a malformed record ({exc})") from None
        return _checked(name, feats, boxes, size)

    def _size(self, i: int, lo: int, hi: int, boxes: np.ndarray) -> tuple[float, float]:
        f = self._h5
        if "image_w" in f and "image_h" in f:
            return float(f["image_w"][i]), float(f["image_h"][i])
        if "spatial_features" in f and hi > lo:
            sp = f["spatial_features"][lo:hi]
            k = int(np.argmax(sp[:, 2]))
            if sp[k, 2] > 0 and sp[:, 3].max() > 0:
                j = int(np.argmax(sp[:, 3]))
                return float(boxes[k, 2] / sp[k, 2]), float(boxes[j, 3] / sp[j, 3])
        return float(boxes[:, 2].max(initial=1.0)), float(boxes[:, 3].max(initial=1.0))


def _read_id_map(path: Path) -> dict[int, int]:
    try:
        raw = json.loads(path.read_text()) if path.suffix == ".json" else safe_pickle_load(path)
        return {int(k): int(v) for k, v in dict(raw).items()}
    except (ValueError, TypeError, OSError) as exc:
        raise DataError(f"{path}: not an image id -> index map ({exc})") from None


# ------------------------------------------------------------------------------ TSV


class TsvFeatures:
    """The original bottom-up-attention TSV; indexed by byte offset, read per image."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offsets: dict[int, int] = {}
        with open(path, "rb") as fh:
            pos = 0
            for n, line in enumerate(fh, 1):
                head = line.split(b"\t", 1)[0]
                try:
                    self._offsets[int(head)] = pos
                except ValueError:
                    raise DataError(
                        f"{path}: line {n}: image_id {head[:20]!r} is not an integer"
                    ) from None
                pos += len(line)

    def ids(self) -> list[int]:
        return sorted(self._offsets)

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._offsets

    def get(self, image_id: int) -> Record:
        with open(self.path, "rb") as fh:
            fh.seek(self._offsets[image_id])
            cols = fh.readline().rstrip(b"\r\n").split(b"\t")
        name = f"{self.path}: image {image_id}"
        if len(cols) < 6:
            raise DataError(
                f"{name}: {len(cols)} columns, expected image_id, image_w, image_h, "
                "num_boxes, boxes, features"
            )
        try:
            w, h, k = float(cols[1]), float(cols[2]), int(cols[3])
            boxes = np.frombuffer(base64.b64decode(cols[4]), np.float32).reshape(k, 4)
            feats = np.frombuffer(base64.b64decode(cols[5]), np.float32).reshape(k, -1)
        except (ValueError, OverflowError) as exc:
            raise DataError(f"{name}: malformed record ({exc})") from None
        return _checked(name, feats, boxes, (w, h))


# ------------------------------------------------------------------------------ pickles


class _PlainUnpickler(pickle.Unpickler):
    """Admits plain containers only: a pickle is code, and refs files come from the web."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only plain data "
            "(dict, list, tuple, str, int, float, bool, None)"
        )


def safe_pickle_load(path: str | Path) -> Any:
    """Load a pickle that may hold only dict, list, tuple, str, int, float, bool, None."""
    try:
        data = Path(path).read_bytes()
        obj = _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
        raise DataError(f"{path}: not a plain-data pickle ({exc})") from None
    bad = _first_unplain(obj)
    if bad is not None:
        raise DataError(f"{path}: the pickle holds a {bad}; only plain data is admitted")
    return obj


_PLAIN = (str, int, float, bool, type(None))


def _first_unplain(obj: Any) -> str | None:
    """The type name of the first value that is not a plain container or scalar, or None."""
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif not isinstance(x, _PLAIN):
            return type(x).__name__
    return None


def iter_records(source: FeatureSource, ids: list[int]) -> Iterator[tuple[int, Record]]:
    for image_id in ids:
        yield image_id, source.get(image_id)
