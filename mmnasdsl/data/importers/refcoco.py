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

from mmnasdsl.data.importers.common import Sample, Summary, need, read_json, write_splits
from mmnasdsl.data.importers.features import FeatureSource, safe_pickle_load
from mmnasdsl.data.text import tokenize
from mmnasdsl.lang.errors import DataError


def read_boxes(path: str | Path) -> dict[int, np.ndarray]:
    """annotation id -> box x1 y1 x2 y2 from a COCO instances.json (bbox is x y w h)."""
    data = read_json(path, "COCO instances")
    need(data, ("annotations",), str(path))
    out = {}
    for k, a in enumerate(data["annotations"]):
        where = f"{path}: annotations[{k}]"
        need(a, ("id", "bbox"), where)
        box = np.asarray(a["bbox"], dtype=np.float32)
        if box.shape != (4,) or not np.isfinite(box).all():
            raise DataError(f"{where}: bbox {a['bbox']!r} is not 4 finite numbers (x, y, w, h)")
        out[int(a["id"])] = np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]])
    return out


def read_refs(path: str | Path, boxes: dict[int, np.ndarray]) -> dict[str, list[Sample]]:
    """Samples per split, labels = ground-truth boxes."""
    refs = safe_pickle_load(path)
    if not isinstance(refs, list):
        raise DataError(f"{path}: expected a list of refs, found {type(refs).__name__}")
    out: dict[str, list[Sample]] = {}
    for k, ref in enumerate(refs):
        where = f"{path}: ref {ref.get('ref_id', k) if isinstance(ref, dict) else k}"
        need(ref, ("ann_id", "image_id", "split", "sentences"), where)
        if int(ref["ann_id"]) not in boxes:
            raise DataError(f"{where}: annotation {ref['ann_id']} is not in the instances file")
        for j, s in enumerate(ref["sentences"]):
            out.setdefault(str(ref["split"]), []).append(_sample(ref, j, s, boxes, where))
    return out


def _sample(
    ref: dict[str, Any], j: int, sent: Any, boxes: dict[int, np.ndarray], where: str
) -> Sample:
    need(sent, ("raw",), f"{where}.sentences[{j}]")
    tokens = sent.get("tokens") or tokenize(sent["raw"])
    sent_id = int(sent.get("sent_id", int(ref.get("ref_id", 0)) * 100 + j))
    return Sample(
        int(ref["image_id"]),
        tuple(tokenize(" ".join(tokens))),
        sent["raw"],
        sent_id,
        boxes[int(ref["ann_id"])],
        "ref sentence",
    )


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
