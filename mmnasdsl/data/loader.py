"""Batches from a feature store: a lazy torch Dataset, dynamic padding, optional bucketing.

The HDF5 file is opened lazily once per process (h5py handles must not cross a fork), so
the dataset is safe with DataLoader workers. Small arrays (offsets, boxes, token ids,
labels) live in memory; object features are read per item, or cached whole when the
store is small (the `shapes` world). Each batch is padded to its own longest sentence
and largest object count, and the relation features R (paper §3.1) are computed once per
batch, vectorised, in the collate function (so in the workers). Batch keys: docs/interfaces.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mmnasdsl.data.geometry import BOX_CONVENTIONS, relation_features
from mmnasdsl.data.kinds import DataKind, get_kind
from mmnasdsl.data.store import H5_ERRORS, attr_str, open_store
from mmnasdsl.lang.errors import DataError

CACHE_BYTES = 512 << 20  # features up to this size are read into memory once
PAD_BOX = (0.0, 0.0, 1.0, 1.0)

Item = dict[str, Any]


class FeatureDataset(Dataset):
    """One split of a store; item i is sample i (a question, a caption, an expression).

    Args:
        path: the `.h5` store.
        max_words: truncate sentences to this many tokens (the spec's `words(max_len)`).
        max_objects: keep at most this many objects per image (the spec's `objects(max)`).
        cache: read all features into memory (default: when they fit in `CACHE_BYTES`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_words: int | None = None,
        max_objects: int | None = None,
        cache: bool | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_words, self.max_objects = max_words, max_objects
        self._h5: h5py.File | None = None
        self._pid = -1
        self._raw_answers: np.ndarray | None = None
        with open_store(self.path) as f:
            try:
                self._read_common(f)
                self.kind: DataKind = get_kind(self.task, str(self.path))
                self.__dict__.update(self.kind.read(f))
                n_feat = f["images/features"].size * 4
                self._features = (
                    f["images/features"][:]
                    if (cache or (cache is None and n_feat <= CACHE_BYTES))
                    else None
                )
            except (*H5_ERRORS, UnicodeDecodeError) as exc:  # damaged chunks, bad UTF-8
                raise DataError(f"{self.path}: a damaged store ({exc})") from None

    # -- reading the small arrays once ----------------------------------------------------

    def _read_common(self, f: h5py.File) -> None:
        self.task: str = attr_str(f.attrs["task"])
        self.split: str = attr_str(f.attrs.get("split", ""))
        self.feature_dim = int(f["images/features"].shape[1])
        self.image_offsets = f["images/offsets"][:]
        self.boxes = f["images/boxes"][:]
        self.image_size = f["images/size"][:]
        self.image_ids = f["images/id"][:]
        self.tokens = f["text/tokens"][:].astype(np.int64)
        self.text_offsets = f["text/offsets"][:]
        self.text_image = f["text/image"][:]
        self.text_ids = f["text/id"][:]
        self.vocab: list[str] = list(f["text/vocab"].asstr()[:])
        self.glove = f["text/glove"][:] if "text/glove" in f else None

    # -- public views -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.text_image)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    @property
    def caption_image(self) -> np.ndarray:
        """(n_captions,) image row of each caption (ITM; every sample for other tasks)."""
        return self.text_image

    @property
    def question_ids(self) -> np.ndarray:
        return self.text_ids

    def object_counts(self, image_rows: np.ndarray | None = None) -> np.ndarray:
        """Objects per image (after `max_objects`), for the given rows or every sample's image."""
        rows = self.text_image if image_rows is None else np.asarray(image_rows)
        counts = self.image_offsets[rows + 1] - self.image_offsets[rows]
        return counts if self.max_objects is None else np.minimum(counts, self.max_objects)

    def raw_answers(self, i: int) -> list[str]:
        """The annotators' answers to question i (empty strings dropped), for VQA accuracy."""
        if self._raw_answers is None:
            try:
                self._raw_answers = self._file()["vqa/raw_answers"].asstr()[:]
            except (*H5_ERRORS, UnicodeDecodeError) as exc:
                raise DataError(f"{self.path}: cannot read 'vqa/raw_answers' ({exc})") from None
        return [a for a in self._raw_answers[i] if a]

    def pairs(
        self,
        images: Sequence[int],
        captions: Sequence[int],
        labels: Sequence[float],
        weights: Sequence[float] | None = None,
    ) -> PairDataset:
        """Explicit (image row, caption row, label[, loss weight]) samples: ITM hard
        negatives, the score matrix."""
        return PairDataset(self, images, captions, labels, weights)

    # -- items ----------------------------------------------------------------------------

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def image_part(self, row: int) -> Item:
        """Features, boxes and size of image `row` (features read from disk unless cached)."""
        lo, hi = int(self.image_offsets[row]), int(self.image_offsets[row + 1])
        if self.max_objects is not None:
            hi = min(hi, lo + self.max_objects)
        if self._features is not None:
            feats = self._features[lo:hi]
        else:
            try:
                feats = self._file()["images/features"][lo:hi]
            except H5_ERRORS as exc:
                raise DataError(
                    f"{self.path}: cannot read the features of image row {row} ({exc})"
                ) from None
            if not np.isfinite(feats).all():
                raise DataError(f"{self.path}: NaN or inf in the features of image row {row}")
        return {"objects": feats, "boxes": self.boxes[lo:hi], "image_size": self.image_size[row]}

    def text_part(self, row: int) -> Item:
        lo, hi = int(self.text_offsets[row]), int(self.text_offsets[row + 1])
        if self.max_words is not None:
            hi = min(hi, lo + self.max_words)
        return {"words": self.tokens[lo:hi]}

    def __getitem__(self, i: int) -> Item:
        image = self.image_part(int(self.text_image[i]))
        return {**image, **self.text_part(i), "index": i, **self.kind.item(self, i)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"], state["_pid"] = None, -1
        return state


class PairDataset(Dataset):
    """ITM samples given explicitly as (image row, caption row, label); `index` = pair row."""

    def __init__(
        self,
        base: FeatureDataset,
        images: Sequence[int],
        captions: Sequence[int],
        labels: Sequence[float],
        weights: Sequence[float] | None = None,
    ) -> None:
        self.base, self.kind = base, base.kind
        self.images = np.asarray(images, dtype=np.int64)
        self.captions = np.asarray(captions, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.float32)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        if not len(self.images) == len(self.captions) == len(self.labels):
            raise ValueError("pairs: images, captions and labels differ in length")

    def __len__(self) -> int:
        return len(self.images)

    def object_counts(self) -> np.ndarray:
        return self.base.object_counts(self.images)

    def __getitem__(self, k: int) -> Item:
        img, cap = int(self.images[k]), int(self.captions[k])
        item = {
            **self.base.image_part(img),
            **self.base.text_part(cap),
            "index": k,
            "label": float(self.labels[k]),
            "image_id": img,
            "caption_id": cap,
        }
        if self.weights is not None:
            item["weight"] = float(self.weights[k])
        return item


# ------------------------------------------------------------------------------- collate


def collate(
    items: list[Item], kind: DataKind, relations: bool | str | None = True
) -> dict[str, torch.Tensor]:
    """Pad to the batch's longest sentence and largest object count; masks; R; the kind's
    label fields. A kind with a layout of its own batches its items itself.

    Args:
        relations: whether to add R and how it measures boxes: a box convention
            ("pixel", "continuous"; the spec's `objects(box_convention)`), True for the
            default (pixel), False or None for no R.
    """
    if kind.own_layout:
        return kind.collate(items)
    b = len(items)
    n_words = np.array([len(it["words"]) for it in items])
    n_obj = np.array([len(it["objects"]) for it in items])
    t, n = max(1, int(n_words.max())), max(1, int(n_obj.max()))
    words = np.zeros((b, t), np.int64)
    objects = np.zeros((b, n, items[0]["objects"].shape[1]), np.float32)
    boxes = np.tile(np.array(PAD_BOX, np.float32), (b, n, 1))
    for k, it in enumerate(items):
        words[k, : n_words[k]] = it["words"]
        objects[k, : n_obj[k]] = it["objects"]
        boxes[k, : n_obj[k]] = it["boxes"]
    batch = {
        "words": torch.from_numpy(words),
        "words_mask": torch.from_numpy(np.arange(t) < n_words[:, None]),
        "objects": torch.from_numpy(objects),
        "objects_mask": torch.from_numpy(np.arange(n) < n_obj[:, None]),
        "boxes": torch.from_numpy(boxes),
        "image_size": torch.from_numpy(np.stack([it["image_size"] for it in items])).float(),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.int64),
    }
    convention = box_convention(relations)
    if convention is not None:
        batch["relations"] = relation_features(batch["boxes"], convention)
    batch.update(kind.collate(items))
    return batch


def box_convention(relations: bool | str | None) -> str | None:
    """The `relations` argument of `collate` as a box convention, or None for no R."""
    if relations is None or relations is False:
        return None
    return BOX_CONVENTIONS[0] if relations is True else str(relations)


# ------------------------------------------------------------------------------ batching


class BatchPlan(Sampler[list[int]]):
    """Batches of sample rows: shuffled per epoch from (seed, epoch), optionally bucketed.

    Bucketing sorts the (shuffled) rows by object count and cuts batches from the sorted
    order, so a batch pads to a near-equal count; the batch order is then shuffled.
    """

    def __init__(
        self,
        rows: np.ndarray,
        counts: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        bucket: bool,
        drop_last: bool = False,
    ) -> None:
        self.rows, self.counts = rows, counts
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket, self.drop_last = bucket, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.rows) / self.batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(len(self.rows)) if self.shuffle else np.arange(len(self.rows))
        if self.bucket:
            order = order[np.argsort(self.counts[order], kind="stable")]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.bucket and self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        for batch in batches:
            yield self.rows[batch].tolist()


def make_loader(
    dataset: FeatureDataset | PairDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    indices: Sequence[int] | None = None,
    relations: bool | str | None = True,
    bucket: bool = False,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over `dataset` (or the rows `indices` of it) yielding padded batches.

    Args:
        shuffle: a new order each epoch, drawn from (seed, epoch): reproducible runs.
        relations: add `relations` (B, N, N, 4) computed from the padded boxes, in this
            box convention ("pixel", "continuous"; True = pixel); False: no R.
        bucket: group samples of similar object count into batches (less padding).
    """
    rows = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    counts = dataset.object_counts()[rows]
    plan = BatchPlan(
        rows, counts, batch_size, shuffle=shuffle, seed=seed, bucket=bucket, drop_last=drop_last
    )
    return DataLoader(
        dataset,
        batch_sampler=plan,
        num_workers=num_workers,
        collate_fn=partial(collate, kind=dataset.kind, relations=relations),
        persistent_workers=num_workers > 0,
    )
