"""RefCOCO / RefCOCO+ / RefCOCOg importer: refs pickle + COCO instances + features -> VG stores.

One sample per sentence of each ref; its ground-truth box is the ref's annotation box
(COCO xywh -> x1y1x2y2). The image's objects (the detector proposals with their
features) are the candidate boxes. One store per split found in the refs
(train/val/testA/testB, or train/val/test for RefCOCOg). The refs pickle is read with a
restricted unpickler that admits plain containers only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmnasdsl.data.importers.common import (
    Sample,
    Summary,
    need,
    read_json,
    show,
    take,
    take_opt,
    write_splits,
)
from mmnasdsl.data.importers.features import FeatureSource, safe_pickle_load
from mmnasdsl.data.text import tokenize
from mmnasdsl.lang.errors import DataError


def read_boxes(path: str | Path) -> dict[int, np.ndarray]:
    """annotation id -> box x1 y1 x2 y2 from a COCO instances.json (bbox is x y w h)."""
    data = read_json(path, "COCO instances")
    need(data, ("annotations",), str(path))
    out = {}
    for k, a in enumerate(take(data, "annotations", "list", str(path))):
        where = f"{path}: annotations[{k}]"
        need(a, ("id", "bbox"), where)
        take(a, "id", "int", where)
        bbox = a["bbox"]
        numbers = isinstance(bbox, list) and len(bbox) == 4
        if numbers:
            box = np.array([_finite(v) for v in bbox], dtype=np.float64)
        if not numbers or not np.isfinite(box).all() or (np.abs(box) > 1e9).any():
            raise DataError(f"{where}: bbox {show(bbox)} is not 4 finite numbers (x, y, w, h)")
        out[a["id"]] = np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]], np.float32)
    return out


def _finite(v: Any) -> float:
    """A JSON number as a float; NaN for anything else (then refused as not finite)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return float("nan")
    try:
        return float(v)
    except OverflowError:
        return float("nan")


def read_refs(path: str | Path, boxes: dict[int, np.ndarray]) -> dict[str, list[Sample]]:
    """Samples per split, labels = ground-truth boxes."""
    refs = safe_pickle_load(path)
    if not isinstance(refs, list):
        raise DataError(f"{path}: expected a list of refs, found {type(refs).__name__}")
    out: dict[str, list[Sample]] = {}
    for k, ref in enumerate(refs):
        where = f"{path}: refs[{k}]"
        need(ref, ("ann_id", "image_id", "split", "sentences"), where)
        ref_id = take_opt(ref, "ref_id", "int", where, None)
        where = f"{path}: ref {ref_id}" if ref_id is not None else where
        ann_id = take(ref, "ann_id", "int", where)
        take(ref, "image_id", "int", where)
        split = take(ref, "split", "str", where)
        if ann_id not in boxes:
            raise DataError(f"{where}: annotation {ann_id} is not in the instances file")
        for j, s in enumerate(take(ref, "sentences", "list", where)):
            out.setdefault(split, []).append(_sample(ref, j, s, boxes, where))
    return out


def _sample(
    ref: dict[str, Any], j: int, sent: Any, boxes: dict[int, np.ndarray], where: str
) -> Sample:
    at = f"{where}.sentences[{j}]"
    need(sent, ("raw",), at)
    raw = take(sent, "raw", "str", at)
    tokens = take_opt(sent, "tokens", "list", at, [])
    if not all(isinstance(t, str) for t in tokens):
        raise DataError(f"{at}: 'tokens' should be a list of strings, found {show(tokens)}")
    tokens = tokens or tokenize(raw)
    ref_id = take_opt(ref, "ref_id", "int", where, 0)
    sent_id = take_opt(sent, "sent_id", "int", at, None)
    if sent_id is None:
        sent_id = _sent_id(ref_id, j, at)
    return Sample(
        ref["image_id"],
        tuple(tokenize(" ".join(tokens))),
        raw,
        sent_id,
        boxes[ref["ann_id"]],
        "ref sentence",
    )


def _sent_id(ref_id: int, j: int, where: str) -> int:
    """The id of a sentence without `sent_id`: ref_id * 100 + its position (within int64)."""
    sent_id = ref_id * 100 + j
    if not -(2**63) < sent_id < 2**63:
        raise DataError(f"{where}: no sent_id, and ref_id {ref_id} is too large to derive one")
    return sent_id


def vg_labels(samples: list[Sample]) -> dict[str, Any]:
    return {"vg/gt_box": np.stack([s.label for s in samples]).astype(np.float32)}


def import_refcoco(
    refs: str | Path,
    instances: str | Path,
    source: FeatureSource,
    out_dir: str | Path,
    *,
    min_word_count: int = 1,
    max_len: int = 14,
    glove: str | Path | None = None,
    skip_missing: bool = False,
) -> list[Summary]:
    """Write `out_dir/<split>.h5` for every split in the refs file."""
    splits = read_refs(refs, read_boxes(instances))
    if "train" not in splits:
        raise DataError(f"{refs}: no 'train' refs (found splits: {', '.join(sorted(splits))})")
    return write_splits(
        dict(sorted(splits.items())),
        "vg",
        source,
        out_dir,
        origin=f"refcoco {Path(refs).name}",
        min_word_count=min_word_count,
        max_len=max_len,
        glove=glove,
        skip_missing=skip_missing,
        labels=vg_labels,
    )
