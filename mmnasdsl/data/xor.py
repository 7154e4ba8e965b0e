"""The planted-pair task of BM-NAS spaces: `data xor(pair = [a2, b0], samples = 4000, seed = 0)`.

Every tap the spec declares holds independent N(0, 1) features of its declared shape. The
label of a sample is the XOR of the signs of two fixed projections, one of each tap of
the planted pair: y = [⟨u, a2⟩ > 0] ≠ [⟨v, b0⟩ > 0], with u, v drawn once from the seed.
Each sign alone is a fair coin independent of the other, so a network that sees only one
of the two taps, or neither, is at chance (50 %), while one that fuses them can reach
100 %: only the planted pair predicts the label. docs/results.md measures both sides.

The stores are generated on first use into `$MMNASDSL_DATA/xor/<name>/` (default `data/`),
named by the pair, the sizes, the seed, a digest of the taps and `XOR_VERSION`, so a spec
with other taps never reuses another's files. Splits: train `samples`, val and test a
quarter each, each from its own generator stream.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from mmnasdsl.data.sources import SOURCES
from mmnasdsl.data.taps import write_split

XOR_VERSION = 1  # bump when what a seed generates changes
CLASSES = ("same sign", "different sign")
SPLITS = {"train": 1, "val": 2, "test": 3}  # generator stream of each split


def split_sizes(samples: int) -> dict[str, int]:
    return {"train": samples, "val": max(1, samples // 4), "test": max(1, samples // 4)}


def tap_shapes(spec: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tap -> (modality, per-sample shape (C, *dims)), in the spec's order."""
    from mmnasdsl.lang.bmnas_settings import taps_of

    modality = {t: m for m, names in spec.modalities.items() for t in names}
    return {name: (modality[name], (s.channels, *s.dims)) for name, s in taps_of(spec).items()}


def folder_for(spec: Any) -> Path:
    """Where the spec's stores live: named by everything that changes them."""
    from mmnasdsl.data.resolve import data_root
    from mmnasdsl.lang.bmnas_settings import xor_data

    d = xor_data(spec)
    digest = hashlib.sha1(repr(sorted(tap_shapes(spec).items())).encode()).hexdigest()[:8]
    name = f"{d.pair[0]}-{d.pair[1]}-{d.samples}-{d.seed}-{digest}-v{XOR_VERSION}"
    return data_root() / "xor" / name


@SOURCES.register("xor")
def resolve_xor(spec: Any, kind: str) -> Path:
    """The folder of the spec's planted-pair stores, generated when missing (any kind: the
    checker has tied `data xor` to a taps head)."""
    from mmnasdsl.lang.bmnas_settings import xor_data

    folder = folder_for(spec)
    if not all((folder / f"{s}.h5").is_file() for s in SPLITS):
        d = xor_data(spec)
        generate(folder, tap_shapes(spec), d.pair, d.samples, d.seed)
    return folder


def projections(
    shapes: dict[str, tuple[str, tuple[int, ...]]], pair: tuple[str, str], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The two fixed unit directions u (over the first tap of the pair) and v (the second)."""
    rng = np.random.default_rng([seed, 0])
    out = []
    for name in pair:
        w = rng.standard_normal(shapes[name][1])
        out.append((w / np.linalg.norm(w)).astype(np.float32))
    return out[0], out[1]


def xor_labels(a: np.ndarray, b: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 where the projections ⟨u, a⟩ and ⟨v, b⟩ have different signs, else 0."""
    p = (a * u).reshape(len(a), -1).sum(1)
    q = (b * v).reshape(len(b), -1).sum(1)
    return ((p > 0) != (q > 0)).astype(np.int64)


def generate(
    folder: Path,
    shapes: dict[str, tuple[str, tuple[int, ...]]],
    pair: tuple[str, str],
    samples: int,
    seed: int,
) -> None:
    """Write train/val/test stores of the planted-pair task into `folder`."""
    u, v = projections(shapes, pair, seed)
    for split, n in split_sizes(samples).items():
        rng = np.random.default_rng([seed, SPLITS[split]])
        taps = {
            name: (modality, rng.standard_normal((n, *shape), dtype=np.float32))
            for name, (modality, shape) in shapes.items()
        }
        labels = xor_labels(taps[pair[0]][1], taps[pair[1]][1], u, v)
        source = f"xor pair={pair[0]},{pair[1]} samples={samples} seed={seed} v{XOR_VERSION}"
        write_split(folder / f"{split}.h5", taps, labels, CLASSES, split=split, source=source)
