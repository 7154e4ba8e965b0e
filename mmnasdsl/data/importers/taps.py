"""`mmnasdsl data import taps`: per-layer features a user extracted from their own backbones
-> one BM-NAS tap store (data/taps.py), checked against the spec that declares the taps.

Features (`--features PATH`), one array of shape (samples, C, *dims) per tap of the spec:

- a folder with one file per tap, named after it: `<tap>.npy`, `<tap>.npz` (its only
  array, or `features`) or `<tap>.h5` / `.hdf5` (its only dataset, or `features`);
- or one `.npz` / `.h5` / `.hdf5` file with an array per tap, named after it (in HDF5 also
  `<input>/<tap>`), and optionally `labels` and `ids` beside them.

Labels (`--labels PATH`, unless the features file holds `labels`): `.npy`, `.npz` or
`.h5` (`labels` or the only array), or text with one integer per line: (samples,) class
ids, or (samples, K) 0/1 for multi-label data. Class names (`--classes FILE`, one per
line) default to 0..K-1, K the head's `classes` or the largest id + 1.

Large `.npy` and HDF5 arrays are copied in blocks of samples, never whole. Every problem is
a `DataError` naming the file and the tap (or sample).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mmnasdsl.data.taps import TapWriter
from mmnasdsl.lang.errors import DataError

BLOCK = 4096  # samples copied at a time
ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")


@dataclass
class TapSummary:
    path: Path
    samples: int
    taps: int
    classes: int

    def line(self) -> str:
        return f"{self.path}: {self.samples} samples, {self.taps} taps, {self.classes} classes"


def _only(names: list[str], preferred: str, where: str) -> str:
    if preferred in names:
        return preferred
    if len(names) == 1:
        return names[0]
    raise DataError(
        f"{where}: holds {', '.join(names) or 'nothing'}; expected one array or '{preferred}'"
    )


def _open_array(path: Path, preferred: str = "features") -> Any:
    """An array-like (numpy memmap or h5py dataset) from a file: its only array, or the one
    named `preferred`."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if suffix == ".npz":
            z = np.load(path, allow_pickle=False)
            return z[_only(list(z.files), preferred, str(path))]
        f = h5py.File(path, "r")
        names: list[str] = []
        f.visititems(lambda k, v: names.append(k) if isinstance(v, h5py.Dataset) else None)
        return f[_only(names, preferred, str(path))]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


class FeatureFiles:
    """Where each tap's array comes from: a folder of per-tap files, or one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        self.single: Any = None
        if path.is_file():
            self.single = _container(path)

    def tap(self, name: str, modality: str) -> Any:
        if self.single is not None:
            for key in (name, f"{modality}/{name}"):
                if key in self.single:
                    return self.single[key]
            raise DataError(f"{self.path}: no array for tap '{name}'")
        for suffix in ARRAY_SUFFIXES:
            candidate = self.path / f"{name}{suffix}"
            if candidate.is_file():
                return _open_array(candidate)
        raise DataError(
            f"{self.path}: no file for tap '{name}' (expected {name}.npy, .npz, .h5 or .hdf5)"
        )

    def optional(self, key: str) -> Any:
        if self.single is not None and key in self.single:
            return self.single[key]
        return None


def _container(path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            return np.load(path, allow_pickle=False)
        if suffix in (".h5", ".hdf5"):
            return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    raise DataError(f"{path}: expected a folder of per-tap files, or one .npz / .h5 / .hdf5")


def read_labels(path: Path | None, features: FeatureFiles) -> np.ndarray:
    if path is None:
        found = features.optional("labels")
        if found is None:
            raise DataError(f"{features.path}: no labels; give --labels FILE")
        return np.asarray(found[()])
    if not path.is_file():
        raise DataError(f"{path}: no such labels file")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return np.asarray(_open_array(path, "labels")[()])
    try:
        return np.array([int(x) for x in path.read_text(encoding="utf-8").split()], np.int64)
    except ValueError as exc:
        raise DataError(f"{path}: expected one integer class id per line ({exc})") from None


def blocks(array: Any, n: int) -> Iterator[np.ndarray]:
    for lo in range(0, n, BLOCK):
        yield np.asarray(array[lo : lo + BLOCK], dtype=np.float32)


def import_taps(
    spec: Any,
    features: Path,
    out: Path,
    *,
    labels: Path | None = None,
    classes: Path | None = None,
    split: str = "",
) -> TapSummary:
    """Write the store `out` of one split from the spec's taps' features and the labels."""
    from mmnasdsl.lang.bmnas_settings import taps_of
    from mmnasdsl.lang.settings import head_options

    files = FeatureFiles(features)
    modality = {t: m for m, names in spec.modalities.items() for t in names}
    arrays = {name: files.tap(name, modality[name]) for name in spec.tap_names}
    n = _check_shapes(arrays, taps_of(spec), features, spec.source)
    y = read_labels(labels, files)
    if len(y) != n or y.ndim not in (1, 2):
        raise DataError(
            f"{labels or features}: labels have shape {y.shape}; expected ({n},) or ({n}, K)"
        )
    names = _class_names(classes, y, head_options(spec).get("classes"))
    ids = files.optional("ids")
    with TapWriter(out, split=split, source=f"import taps {features}") as w:
        for name, array in arrays.items():
            w.add_tap(name, modality[name], blocks(array, n))
        w.set_labels(y, names, None if ids is None else np.asarray(ids[()]))
    return TapSummary(out, n, len(arrays), len(names))


def _check_shapes(arrays: dict[str, Any], taps: dict[str, Any], where: Path, spec: str) -> int:
    sizes = {}
    for name, array in arrays.items():
        tap = taps[name]
        want = (tap.channels, *tap.dims)
        if tuple(array.shape[1:]) != want:
            raise DataError(
                f"{where}: tap '{name}' has shape {tuple(array.shape)}; {spec} declares "
                f"(samples, {', '.join(map(str, want))})"
            )
        sizes[name] = array.shape[0]
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{k} {v}" for k, v in sizes.items())
        raise DataError(f"{where}: the taps hold different numbers of samples ({detail})")
    return next(iter(sizes.values()))


def _class_names(path: Path | None, y: np.ndarray, declared: int | None) -> list[str]:
    if path is not None:
        try:
            names = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return names
    k = y.shape[1] if y.ndim == 2 else max(int(declared or 0), int(y.max(initial=-1)) + 1)
    return [str(i) for i in range(k)]
