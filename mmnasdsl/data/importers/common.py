"""The part every importer shares: samples + a feature source -> one store, with skips counted.

An importer turns its annotation files into `Sample`s (image id, text, id, label payload)
and a label function; `write_samples` gathers the images the samples need, in order of
first use, checks that each has features (DataError naming the features file, the image
and the sample, or a counted skip with `skip_missing`), and writes the store atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmnasdsl.data.importers.features import FeatureSource
from mmnasdsl.data.store import StoreWriter, TextData
from mmnasdsl.data.text import build_vocab, encode, read_glove
from mmnasdsl.lang.errors import DataError


@dataclass(frozen=True)
class Sample:
    image_id: int
    tokens: tuple[str, ...]
    raw: str
    sample_id: int
    label: Any = None
    what: str = "sample"  # "question", "caption", "ref" — for messages


@dataclass
class Summary:
    """What an import wrote and skipped; the CLI prints it."""

    path: Path
    samples: int = 0
    images: int = 0
    skipped_samples: int = 0
    missing_images: list[int] = field(default_factory=list)

    def line(self) -> str:
        skip = (
            f", skipped {self.skipped_samples} samples of {len(self.missing_images)} images "
            "with no features"
            if self.skipped_samples
            else ""
        )
        return f"{self.path}: {self.samples} samples, {self.images} images{skip}"


def keep_with_features(
    samples: list[Sample], source: FeatureSource, skip_missing: bool, summary: Summary
) -> list[Sample]:
    """The samples whose image has features; a missing image is an error unless skipping."""
    missing = sorted({s.image_id for s in samples if s.image_id not in source})
    if missing and not skip_missing:
        first = next(s for s in samples if s.image_id == missing[0])
        raise DataError(
            f"{source.path}: no features for image {missing[0]} "
            f"({first.what} {first.sample_id}; {len(missing)} images missing in all; "
            "--skip-missing skips them)"
        )
    gone = set(missing)
    kept = [s for s in samples if s.image_id not in gone]
    summary.skipped_samples += len(samples) - len(kept)
    summary.missing_images += missing
    return kept


def write_samples(
    out: Path,
    task: str,
    samples: list[Sample],
    source: FeatureSource,
    *,
    vocab: list[str],
    max_len: int,
    split: str,
    origin: str,
    skip_missing: bool,
    labels: Callable[[list[Sample]], dict[str, Any]] | None = None,
    glove: np.ndarray | None = None,
) -> Summary:
    """Write one split's store: images in order of first use, text, task labels."""
    summary = Summary(out)
    samples = keep_with_features(samples, source, skip_missing, summary)
    if not samples:
        raise DataError(f"{out}: nothing to write (no {split or 'split'} samples with features)")
    order = list(dict.fromkeys(s.image_id for s in samples))
    rows: dict[int, int] = {}
    feats, boxes, size = source.get(order[0])
    with StoreWriter(out, task, feats.shape[1], split=split, source=origin) as w:
        for image_id in order:
            feats, boxes, size = source.get(image_id)
            rows[image_id] = w.add_image(
                feats, boxes, size, image_id, where=f"{source.path}: image {image_id}"
            )
        index = {t: i for i, t in enumerate(vocab)}
        w.set_text(
            TextData(
                [encode(list(s.tokens), index, max_len) for s in samples],
                [s.raw for s in samples],
                np.array([rows[s.image_id] for s in samples], np.int64),
                np.array([s.sample_id for s in samples], np.int64),
                vocab,
                glove,
            )
        )
        if labels is not None:
            w.set_labels(labels(samples))
        summary.images = w.n_images
    summary.samples = len(samples)
    return summary


def write_splits(
    splits: dict[str, list[Sample]],
    task: str,
    source: FeatureSource,
    out_dir: str | Path,
    *,
    origin: str,
    min_word_count: int,
    max_len: int,
    glove: str | Path | None,
    skip_missing: bool,
    labels: Callable[[list[Sample]], dict[str, Any]] | None = None,
) -> list[Summary]:
    """Write `out_dir/<split>.h5` for every split with samples, in the order given; the
    vocabulary is built on train and shared, GloVe (optional) goes into the train store."""
    vocab = build_vocab((list(s.tokens) for s in splits["train"]), min_word_count)
    return [
        write_samples(
            Path(out_dir) / f"{name}.h5",
            task,
            samples,
            source,
            vocab=vocab,
            max_len=max_len,
            split=name,
            origin=origin,
            skip_missing=skip_missing,
            labels=labels,
            glove=load_glove(glove, vocab) if name == "train" else None,
        )
        for name, samples in splits.items()
        if samples
    ]


def load_glove(path: str | Path | None, vocab: list[str]) -> np.ndarray | None:
    return None if path is None else read_glove(path, vocab)


def read_json(path: str | Path, what: str) -> Any:
    """A JSON file, or DataError naming it."""
    import json

    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{p}: cannot read {what} ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not valid JSON ({exc})") from None


def need(record: Any, keys: tuple[str, ...], where: str) -> None:
    """DataError unless `record` is a dict holding every key."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object, found {type(record).__name__}")
    for k in keys:
        if k not in record:
            raise DataError(f"{where}: missing key '{k}'")


def vocab_from_store(path: str | Path) -> tuple[list[str], list[str] | None]:
    """(word vocabulary, VQA answer vocabulary or None) of a store: val/test reuse train's."""
    from mmnasdsl.data.store import open_store

    with open_store(path) as f:
        answers = list(f["vqa/answers"].asstr()[:]) if "vqa/answers" in f else None
        return list(f["text/vocab"].asstr()[:]), answers
