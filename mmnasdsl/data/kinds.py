"""Data kinds: the task-specific part of a store, of a dataset item and of a batch.

Every store holds images (features, boxes, sizes) and text samples (docs/data-format.md);
what a task adds lives in one `DataKind` here: the extra HDF5 datasets and how their
lengths are checked, what of them a `FeatureDataset` keeps in memory, the label fields of a
sample, and how samples' labels are batched. A new task is its head file
(`mmnasdsl/heads/`) plus one kind here, registered under the task's data-kind name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import h5py
import numpy as np

from mmnasdsl.lang.errors import DataError
from mmnasdsl.lang.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

Shape = tuple[int, tuple[int, ...] | None]  # (ndim, fixed trailing dims or None)
ANSWER_TYPES = ("yes/no", "number", "other")


class DataKind:
    """Base of the data kinds: a task's store datasets, item fields and batch fields.

    Most kinds extend the image/text store (docs/data-format.md). A kind with a layout of
    its own (`own_layout`, BM-NAS's taps: `data/taps.py`) checks the whole file in `check`,
    opens its splits in `open` and batches whole items in `collate`.
    """

    name: ClassVar[str] = ""
    keys: ClassVar[dict[str, Shape]] = {}
    dtypes: ClassVar[dict[str, str]] = {}  # key -> "int", "float" or "str", checked on open
    decoded: ClassVar[tuple[str, ...]] = ()  # small string datasets read whole: UTF-8 checked
    finite_keys: ClassVar[tuple[str, ...]] = ()  # float datasets checked for NaN/inf on open
    own_layout: ClassVar[bool] = False  # True: not an image/text store at all

    def open(self, path: Any, spec: Any = None) -> Any:
        """A split of a store of this kind as a torch Dataset (own layouts only)."""
        raise NotImplementedError

    def check(self, f: h5py.File, name: str, n_text: int) -> None:
        """Lengths and ranges of the kind's datasets; DataError on the first fault."""

    def read(self, f: h5py.File) -> dict[str, Any]:
        """The kind's small arrays, kept in memory as attributes of the dataset."""
        return {}

    def item(self, ds: Any, i: int) -> dict[str, Any]:
        """The label fields of sample i (added to the image and text parts)."""
        return {}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Tensor]:
        """The label fields of a batch."""
        return {}


DATA_KINDS: Registry[DataKind] = Registry("data kind")


def register_kind(cls: type[DataKind]) -> type[DataKind]:
    DATA_KINDS.register(cls.name)(cls())
    return cls


def same_len(f: h5py.File, name: str, keys: list[str], n: int, what: str) -> None:
    for key in keys:
        if f[key].shape[0] != n:
            raise DataError(f"{name}: '{key}' has {f[key].shape[0]} rows, expected {n} ({what})")


def offsets_ok(f: h5py.File, name: str, key: str, total: int) -> np.ndarray:
    off = f[key][:]
    if len(off) == 0 or off[0] != 0 or off[-1] != total or (np.diff(off) < 0).any():
        raise DataError(f"{name}: '{key}' must rise from 0 to {total} (the rows it indexes)")
    return off


def in_range(f: h5py.File, name: str, key: str, n: int, what: str, low: int = 0) -> None:
    v = f[key][:]
    bad = np.flatnonzero((v < low) | (v >= n))
    if len(bad):
        raise DataError(f"{name}: '{key}' row {bad[0]} holds {v[bad[0]]}, outside the {n} {what}")


def stack(items: list[dict[str, Any]], key: str, dtype: str) -> Tensor:
    """One field of every item as a tensor of torch dtype `dtype` ("int64", "float32")."""
    import torch

    return torch.tensor(np.asarray([it[key] for it in items]), dtype=getattr(torch, dtype))


@register_kind
class VQAData(DataKind):
    """Questions with an answer vocabulary, soft scores, raw answers, types and families."""

    name = "vqa"
    keys: ClassVar[dict[str, Shape]] = {
        "vqa/answers": (1, None),
        "vqa/raw_answers": (2, None),
        "vqa/score_offsets": (1, None),
        "vqa/score_ids": (1, None),
        "vqa/score_values": (1, None),
        "vqa/answer_type": (1, None),
        "vqa/family": (1, None),
        "vqa/family_names": (1, None),
    }
    dtypes: ClassVar[dict[str, str]] = {
        "vqa/answers": "str",
        "vqa/raw_answers": "str",
        "vqa/score_offsets": "int",
        "vqa/score_ids": "int",
        "vqa/score_values": "float",
        "vqa/answer_type": "int",
        "vqa/family": "int",
        "vqa/family_names": "str",
    }
    decoded = ("vqa/answers", "vqa/family_names")
    finite_keys = ("vqa/score_values",)

    def check(self, f: h5py.File, name: str, n_text: int) -> None:
        keys = ["vqa/raw_answers", "vqa/answer_type", "vqa/family"]
        same_len(f, name, keys, n_text, "one per question")
        n_scores = f["vqa/score_ids"].shape[0]
        same_len(f, name, ["vqa/score_values"], n_scores, "one per scored answer")
        if f["vqa/score_offsets"].shape[0] != n_text + 1:
            raise DataError(f"{name}: 'vqa/score_offsets' needs {n_text + 1} rows")
        offsets_ok(f, name, "vqa/score_offsets", n_scores)
        in_range(f, name, "vqa/score_ids", f["vqa/answers"].shape[0], "answer ids")
        in_range(f, name, "vqa/answer_type", len(ANSWER_TYPES), "answer types", low=-1)

    def read(self, f: h5py.File) -> dict[str, Any]:
        return {
            "answers": list(f["vqa/answers"].asstr()[:]),
            "answer_types": list(ANSWER_TYPES),
            "families": list(f["vqa/family_names"].asstr()[:]),
            "question_answer_type": f["vqa/answer_type"][:].astype(np.int64),
            "question_family": f["vqa/family"][:].astype(np.int64),
            "score_offsets": f["vqa/score_offsets"][:],
            "score_ids": f["vqa/score_ids"][:].astype(np.int64),
            "score_values": f["vqa/score_values"][:],
        }

    def item(self, ds: Any, i: int) -> dict[str, Any]:
        lo, hi = ds.score_offsets[i], ds.score_offsets[i + 1]
        return {
            "score_ids": ds.score_ids[lo:hi],
            "score_values": ds.score_values[lo:hi],
            "answer_type": ds.question_answer_type[i],
            "family": ds.question_family[i],
            "n_answers": len(ds.answers),
        }

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Tensor]:
        scores = np.zeros((len(items), items[0]["n_answers"]), np.float32)
        rows = np.repeat(np.arange(len(items)), [len(it["score_ids"]) for it in items])
        cols = np.concatenate([it["score_ids"] for it in items])
        scores[rows, cols] = np.concatenate([it["score_values"] for it in items])
        return {
            "answer_scores": _tensor(scores),
            "answer_type": stack(items, "answer_type", "int64"),
            "family": stack(items, "family", "int64"),
        }


@register_kind
class ITMData(DataKind):
    """Captions; a sample is a matching (image, caption) pair unless given as an explicit pair."""

    name = "itm"

    def item(self, ds: Any, i: int) -> dict[str, Any]:
        return {"label": 1.0, "image_id": int(ds.text_image[i]), "caption_id": i}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Tensor]:
        out = {
            "label": stack(items, "label", "float32"),
            "image_id": stack(items, "image_id", "int64"),
            "caption_id": stack(items, "caption_id", "int64"),
        }
        if "weight" in items[0]:
            out["weight"] = stack(items, "weight", "float32")
        return out


@register_kind
class VGData(DataKind):
    """Referring expressions with the referred object's box; the proposals are the objects."""

    name = "vg"
    keys: ClassVar[dict[str, Shape]] = {"vg/gt_box": (2, (4,))}
    dtypes: ClassVar[dict[str, str]] = {"vg/gt_box": "float"}
    finite_keys = ("vg/gt_box",)

    def check(self, f: h5py.File, name: str, n_text: int) -> None:
        same_len(f, name, ["vg/gt_box"], n_text, "one per expression")

    def read(self, f: h5py.File) -> dict[str, Any]:
        return {"gt_box": f["vg/gt_box"][:]}

    def item(self, ds: Any, i: int) -> dict[str, Any]:
        return {"gt_box": ds.gt_box[i]}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Tensor]:
        return {"gt_box": stack(items, "gt_box", "float32")}


def get_kind(name: str, where: str = "") -> DataKind:
    """The data kind `name`; DataError naming `where` (a file) otherwise."""
    if name not in DATA_KINDS:
        prefix = f"{where}: " if where else ""
        raise DataError(
            f"{prefix}unknown task {name!r} (expected one of {', '.join(DATA_KINDS.names())})"
        )
    return DATA_KINDS.get(name)


def _tensor(a: np.ndarray) -> Tensor:
    import torch

    return torch.from_numpy(a)
