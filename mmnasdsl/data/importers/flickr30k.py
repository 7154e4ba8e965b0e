"""Flickr30K importer: Karpathy's `dataset_flickr30k.json` + features -> train/val/test ITM stores.

One sample per caption (5 per image); `restval` images join train. The features' image id
is the integer stem of `filename` (`1000092795.jpg` -> 1000092795), else `imgid`. The
vocabulary is built on train captions and shared by the three stores; GloVe (optional)
goes into the train store as `text/glove`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from mmnasdsl.data.importers.features import FeatureSource
from mmnasdsl.data.text import tokenize
from mmnasdsl.lang.errors import DataError

SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
CAPTIONS_PER_IMAGE = 5


def image_key(record: dict[str, Any]) -> int:
    """The integer stem of `filename` (`1000092795.jpg`), else `imgid` (both checked)."""
    stem = Path(str(record.get("filename", ""))).stem
    if stem.isascii() and stem.isdigit() and len(stem) <= 18:
        return int(stem)
    return record["imgid"]


def read_karpathy(path: str | Path) -> dict[str, list[Sample]]:
    """Samples per split (train/val/test); each image must have at least 5 captions."""
    data = read_json(path, "Karpathy split")
    need(data, ("images",), str(path))
    out: dict[str, list[Sample]] = {s: [] for s in ("train", "val", "test")}
    for k, img in enumerate(take(data, "images", "list", str(path))):
        where = f"{path}: images[{k}]"
        need(img, ("split", "sentences", "imgid"), where)
        take(img, "imgid", "int", where)
        take_opt(img, "filename", "str", where, "")
        split = SPLITS.get(img["split"]) if isinstance(img["split"], str) else None
        if split is None:
            raise DataError(f"{where}: split {show(img['split'])} is not train/restval/val/test")
        sents = take(img, "sentences", "list", where)
        if len(sents) < CAPTIONS_PER_IMAGE:
            raise DataError(f"{where}: {len(sents)} captions, expected {CAPTIONS_PER_IMAGE}")
        for j, s in enumerate(sents[:CAPTIONS_PER_IMAGE]):
            at = f"{where}.sentences[{j}]"
            need(s, ("raw",), at)
            raw = take(s, "raw", "str", at)
            sent_id = take_opt(s, "sentid", "int", at, k * CAPTIONS_PER_IMAGE + j)
            out[split].append(
                Sample(image_key(img), tuple(tokenize(raw)), raw, sent_id, None, "caption")
            )
    return out


def import_flickr30k(
    karpathy: str | Path,
    source: FeatureSource,
    out_dir: str | Path,
    *,
    min_word_count: int = 1,
    max_len: int = 50,
    glove: str | Path | None = None,
    skip_missing: bool = False,
) -> list[Summary]:
    """Write `out_dir/{train,val,test}.h5` (a split with no images is left out)."""
    return write_splits(
        read_karpathy(karpathy),
        "itm",
        source,
        out_dir,
        origin=f"flickr30k {Path(karpathy).name}",
        min_word_count=min_word_count,
        max_len=max_len,
        glove=glove,
        skip_missing=skip_missing,
    )
