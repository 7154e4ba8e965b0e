"""BM-NAS's data: per-sample features of several backbone layers ("taps"), one HDF5 file per
split, with a class label (or a set of labels) per sample.

The store (docs/data-format.md, "Taps"): attributes `format_version`, `task = "taps"`,
`split`, `source`, `multilabel`; datasets `taps/<tap>` (S, C, *dims) float32 (attribute
`modality`), `labels` (S,) int64 class ids or (S, K) uint8 0/1, `classes` (K,) str and `ids`
(S,) int64. Written atomically (a temporary file in the target folder, checked, fsynced,
renamed); validated on open, every problem a `DataError` naming the file and the item.

`TapData` is its data kind (`own_layout`: not an image/text store); `TapDataset` a split
as a torch Dataset whose item i is sample i: `{"index", "taps": {name: (C, *dims)},
"label"}`, batched to `tap/<name>` (B, C, *dims), `label` and `index`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import h5py
import numpy as np

from mmnasdsl.data.kinds import DATA_KINDS, DataKind, register_kind
from mmnasdsl.data.store import FORMAT_VERSION, STR, first_nonfinite, fsync
from mmnasdsl.lang.errors import DataError

if TYPE_CHECKING:
    from torch import Tensor

    from mmnasdsl.lang.spec import Spec

TASK = "taps"
CACHE_BYTES = 512 << 20  # stores up to this size are read into memory once
FULL_CHECK_BYTES = 256 << 20  # taps up to this size are checked for NaN/inf on open


@dataclass(frozen=True)
class TapInfo:
    """One tap of a store: its modality and its per-sample shape (C, *dims)."""

    modality: str
    shape: tuple[int, ...]


# ------------------------------------------------------------------------------ writing


class TapWriter:
    """Writes one split: `add_tap` per tap (arrays or chunks), then `set_labels`; atomic on a
    clean exit of the `with` block (a crash leaves the old file, or none)."""

    def __init__(self, path: str | Path, *, split: str = "", source: str = "") -> None:
        self.path = Path(path)
        self.split, self.source = split, source
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._file: h5py.File | None = None

    def __enter__(self) -> TapWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._tmp, "w")
        return self

    def add_tap(self, name: str, modality: str, data: np.ndarray | Sequence[np.ndarray]) -> None:
        """Tap `name`: an (S, C, *dims) array, or chunks of one concatenated along samples."""
        assert self._file is not None
        chunks = [data] if isinstance(data, np.ndarray) else list(data)
        first = np.asarray(chunks[0])
        where = f"{self.path}: tap '{name}'"
        if first.ndim < 2:
            raise DataError(f"{where} has shape {first.shape}; expected (samples, channels, ...)")
        total = sum(len(c) for c in chunks)
        per = first.shape[1:]
        row = max(1, min(total, (1 << 20) // max(1, 4 * int(np.prod(per)))))
        ds = self._file.create_dataset(
            f"taps/{name}", (total, *per), np.float32, chunks=(row, *per)
        )
        ds.attrs["modality"] = modality
        start = 0
        for chunk in chunks:
            part = np.asarray(chunk, dtype=np.float32)
            if part.shape[1:] != per:
                raise DataError(f"{where}: a chunk has shape {part.shape}, expected (n, *{per})")
            bad = first_nonfinite(part)
            if bad is not None:
                raise DataError(f"{where}: NaN or inf in sample {start + bad}")
            ds[start : start + len(part)] = part
            start += len(part)

    def set_labels(
        self, labels: np.ndarray, classes: Sequence[str], ids: np.ndarray | None = None
    ) -> None:
        """(S,) class ids, or (S, K) 0/1 for multi-label data; the class names; sample ids."""
        assert self._file is not None
        labels = np.asarray(labels)
        multilabel = labels.ndim == 2
        f = self._file
        f["labels"] = labels.astype(np.uint8 if multilabel else np.int64)
        f.create_dataset("classes", data=np.array(list(classes), dtype=object), dtype=STR)
        n = len(labels)
        f["ids"] = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        f.attrs["multilabel"] = multilabel

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            if self._file is not None and self._file.id.valid:
                self._file.close()
            if self._tmp.exists():
                with contextlib.suppress(FileNotFoundError):
                    self._tmp.unlink()

    def _finish(self) -> None:
        assert self._file is not None
        f = self._file
        f.attrs.update(
            format_version=FORMAT_VERSION, task=TASK, split=self.split, source=self.source
        )
        check_taps_file(f, str(self.path), check_values=False)
        f.flush()
        f.close()
        fsync(self._tmp)
        os.replace(self._tmp, self.path)
        fsync(self.path.parent)


# ----------------------------------------------------------------------------- checking


def check_taps_file(f: h5py.File, name: str, *, check_values: bool = True) -> None:
    """Keys, shapes, lengths, label ranges and finiteness; DataError on the first fault."""
    for key in ("labels", "classes", "ids"):
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise DataError(f"{name}: missing dataset '{key}'")
    if "taps" not in f or not isinstance(f["taps"], h5py.Group) or not len(f["taps"]):
        raise DataError(f"{name}: no taps (expected datasets 'taps/<name>')")
    n = f["ids"].shape[0]
    if f["ids"].ndim != 1:
        raise DataError(f"{name}: 'ids' has shape {f['ids'].shape}, expected ({n},)")
    for tap, ds in f["taps"].items():
        if not isinstance(ds, h5py.Dataset) or ds.ndim < 2 or ds.shape[0] != n:
            shape = getattr(ds, "shape", "a group")
            raise DataError(f"{name}: tap '{tap}' has shape {shape}, expected ({n}, channels, ...)")
        if check_values and ds.size * 4 <= FULL_CHECK_BYTES:
            bad = first_nonfinite(ds)
            if bad is not None:
                raise DataError(f"{name}: NaN or inf in tap '{tap}' of sample {bad}")
    check_labels(f, name, n)


def check_labels(f: h5py.File, name: str, n: int) -> None:
    labels, k = f["labels"], f["classes"].shape[0]
    if k < 1:
        raise DataError(f"{name}: 'classes' is empty")
    multilabel = bool(f.attrs.get("multilabel", labels.ndim == 2))
    want = (n, k) if multilabel else (n,)
    if labels.shape != want:
        raise DataError(f"{name}: 'labels' has shape {labels.shape}, expected {want}")
    values = labels[:]
    low, high = (0, 1) if multilabel else (0, k - 1)
    bad = np.flatnonzero(((values < low) | (values > high)).reshape(n, -1).any(1))
    if len(bad):
        what = "0 or 1" if multilabel else f"a class id in 0..{k - 1}"
        raise DataError(f"{name}: 'labels' of sample {bad[0]} is not {what}")


def store_taps(f: h5py.File) -> dict[str, TapInfo]:
    """Tap name -> modality and per-sample shape, in the file's order."""
    return {
        tap: TapInfo(_text(ds.attrs.get("modality", "")), tuple(ds.shape[1:]))
        for tap, ds in f["taps"].items()
    }


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# ----------------------------------------------------------------------------- reading


class TapDataset:
    """One split of a tap store (a torch map-style Dataset); item i is sample i.

    Args:
        path: the `.h5` store.
        taps: the taps to read (a spec's, in its order; default: every tap of the store).
        cache: read the taps into memory (default: when they fit in `CACHE_BYTES`).
    """

    def __init__(
        self, path: str | Path, taps: Sequence[str] | None = None, cache: bool | None = None
    ) -> None:
        self.path = Path(path)
        self.kind = TAP_DATA
        self.task = TASK
        self._h5: h5py.File | None = None
        self._pid = -1
        with h5py.File(self.path, "r") as f:
            check_taps_file(f, str(self.path))
            self.split = _text(f.attrs.get("split", ""))
            self.info = store_taps(f)
            self.taps = list(taps) if taps is not None else list(self.info)
            missing = [t for t in self.taps if t not in self.info]
            if missing:
                have = ", ".join(self.info)
                raise DataError(f"{self.path}: no tap '{missing[0]}' (the store has {have})")
            self.multilabel = bool(f.attrs.get("multilabel", f["labels"].ndim == 2))
            self.labels = f["labels"][:]
            self.answers: list[str] = list(f["classes"].asstr()[:])  # class names (the loop
            self.ids = f["ids"][:]  # reads every task's label vocabulary as `answers`)
            size = sum(f[f"taps/{t}"].size * 4 for t in self.taps)
            keep = cache or (cache is None and size <= CACHE_BYTES)
            self._cache = {t: f[f"taps/{t}"][:] for t in self.taps} if keep else None
        self.vocab: list[str] = []  # no words: what the loop sizes an embedding by
        self.glove = None

    @property
    def classes(self) -> list[str]:
        return self.answers

    def __len__(self) -> int:
        return len(self.ids)

    def object_counts(self) -> np.ndarray:
        """Every sample is one unit of work (the loader's bucketing has nothing to sort)."""
        return np.ones(len(self), dtype=np.int64)

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def tap(self, name: str, i: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[name][i]
        x = self._file()[f"taps/{name}"][i]
        if not np.isfinite(x).all():
            raise DataError(f"{self.path}: NaN or inf in tap '{name}' of sample {i}")
        return x

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        return {"index": i, "taps": {t: self.tap(t, i) for t in self.taps}, "label": self.labels[i]}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"], state["_pid"] = None, -1
        return state


# --------------------------------------------------------------------------- the kind


@register_kind
class TapData(DataKind):
    """Taps of backbones and class labels (BM-NAS): a store layout of its own."""

    name = TASK
    own_layout: ClassVar[bool] = True

    def check(self, f: h5py.File, name: str, n_text: int) -> None:
        check_taps_file(f, name)

    def open(self, path: Any, spec: Spec | None = None) -> TapDataset:
        """A split; with a BM-NAS spec, its taps in its order, checked against what it declares."""
        if spec is None or not hasattr(spec, "tap_names"):
            return TapDataset(path)
        dataset = TapDataset(path, taps=spec.tap_names)
        check_against_spec(dataset, spec)
        return dataset

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Tensor]:
        import torch

        out = {
            f"tap/{t}": torch.from_numpy(np.stack([it["taps"][t] for it in items]))
            for t in items[0]["taps"]
        }
        labels = np.stack([it["label"] for it in items])
        multilabel = labels.ndim == 2
        out["label"] = torch.from_numpy(labels.astype(np.float32 if multilabel else np.int64))
        out["index"] = torch.tensor([it["index"] for it in items], dtype=torch.int64)
        return out


TAP_DATA: TapData = DATA_KINDS.get(TASK)  # type: ignore[assignment]  (the registered one)


def check_against_spec(dataset: TapDataset, spec: Any) -> None:
    """The store holds the spec's taps at their declared shapes, and its head's classes."""
    from mmnasdsl.lang.bmnas_settings import taps_of
    from mmnasdsl.lang.settings import head_options

    for name, tap in taps_of(spec).items():
        have = dataset.info[name].shape
        want = (tap.channels, *tap.dims)
        if have != want:
            raise DataError(
                f"{dataset.path}: tap '{name}' holds {have} per sample, but {spec.source} "
                f"declares (channels, ...) = {want}"
            )
    options = head_options(spec)
    k = options.get("classes")
    if k is not None and k != len(dataset.answers):
        raise DataError(
            f"{dataset.path}: {len(dataset.answers)} classes, but {spec.source} declares "
            f"head classify(classes = {k})"
        )
    if bool(options.get("multilabel", False)) != dataset.multilabel:
        what = "multi-label" if dataset.multilabel else "single-label"
        raise DataError(
            f"{dataset.path}: the labels are {what}; set `multilabel` in {spec.source}'s head "
            "to match"
        )


def write_split(
    path: Path,
    taps: Mapping[str, tuple[str, np.ndarray]],
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    split: str,
    source: str,
    ids: np.ndarray | None = None,
) -> None:
    """One split from in-memory arrays: {tap: (modality, (S, C, *dims))}, labels, classes."""
    with TapWriter(path, split=split, source=source) as w:
        for name, (modality, data) in taps.items():
            w.add_tap(name, modality, data)
        w.set_labels(labels, classes, ids)
