"""Data: the HDF5 feature store, the loader, the built-in `shapes` world and the importers;
BM-NAS's tap stores (`taps.py`) and its planted-pair task (`xor.py`).

Public seams (docs/interfaces.md, "Data"): `open_split`, `make_loader`, `resolve`.
"""

from __future__ import annotations

from mmnasdsl.data import taps, xor  # noqa: F401  (register BM-NAS's stores and its task)
from mmnasdsl.data.loader import FeatureDataset, PairDataset, collate, make_loader
from mmnasdsl.data.resolve import open_split, resolve

__all__ = ["FeatureDataset", "PairDataset", "collate", "make_loader", "open_split", "resolve"]
