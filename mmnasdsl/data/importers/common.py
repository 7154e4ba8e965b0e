"""The part every importer shares: samples + a feature source -> one store, with skips counted.

An importer turns its annotation files into `Sample`s (image id, text, id, label payload)
and a label function; `write_samples` gathers the images the samples need, in order of
first use, checks that each has features (DataError naming the features file, the image
and the sample, or a counted skip with `skip_missing`), and writes the store atomically.
`write_splits` writes several splits all or none.

Annotation files come from the web: every field an importer reads is checked for its type
(`need` for the keys, `take` for each value), so a record like `"image_id": "abc"` is a
DataError naming the file, the record and the field, never a TypeError deep inside.
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
    pending: list[StoreWriter] | None = None,
) -> Summary:
    """Write one split's store: images in order of first use, text, task labels. With
    `pending`, the checked store is left uncommitted and its writer appended there."""
    summary = Summary(out)
    samples = keep_with_features(samples, source, skip_missing, summary)
    if not samples:
        raise DataError(f"{out}: nothing to write (no {split or 'split'} samples with features)")
    order = list(dict.fromkeys(s.image_id for s in samples))
    rows: dict[int, int] = {}
    feats, boxes, size = source.get(order[0])
    writer = StoreWriter(
        out, task, feats.shape[1], split=split, source=origin, commit=pending is None
    )
    with writer as w:
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
    if pending is not None:
        pending.append(writer)
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
    vocabulary is built on train and shared, GloVe (optional) goes into the train store.

    All or none: every split is written and checked under a temporary name first and
    renamed into place only when all succeeded, so an import that fails on its val split
    leaves no train.h5 that reads as valid (and the stores of an earlier import intact).
    """
    vocab = build_vocab((list(s.tokens) for s in splits["train"]), min_word_count)
    pending: list[StoreWriter] = []
    summaries = []
    try:
        for name, samples in splits.items():
            if not samples:
                continue
            summaries.append(
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
                    pending=pending,
                )
            )
        for writer in pending:
            writer.commit()
    finally:
        for writer in pending:
            writer.discard()  # (no-op for the committed ones)
    return summaries


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


ID_LIMIT = 2**63  # ids are stored as int64
_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int": (
        "an integer",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and -ID_LIMIT < v < ID_LIMIT,
    ),
    "number": (
        "a finite number",
        lambda v: (
            isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(float(v)))
        ),
    ),
    "str": ("a string", lambda v: isinstance(v, str)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "dict": ("an object", lambda v: isinstance(v, dict)),
}


def take(record: dict[str, Any], key: str, kind: str, where: str) -> Any:
    """`record[key]` when it is of `kind` ("int", "number", "str", "list", "dict");
    DataError naming the record and the field otherwise (the key must be present: `need`)."""
    value = record[key]
    words, ok = _KINDS[kind]
    if not _fits(ok, value):
        raise DataError(f"{where}: '{key}' should be {words}, found {show(value)}")
    return value


def take_opt(record: dict[str, Any], key: str, kind: str, where: str, default: Any) -> Any:
    """Like `take` for an optional key: `default` when absent or null."""
    if record.get(key) is None:
        return default
    return take(record, key, kind, where)


def _fits(ok: Callable[[Any], bool], value: Any) -> bool:
    try:
        return ok(value)
    except (OverflowError, ValueError, TypeError):  # e.g. an int too large for a float
        return False


def show(value: Any) -> str:
    """A value as an error message quotes it: its JSON-ish text, cut to 60 characters."""
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def vocab_from_store(path: str | Path) -> tuple[list[str], list[str] | None]:
    """(word vocabulary, VQA answer vocabulary or None) of a store: val/test reuse train's."""
    from mmnasdsl.data.store import open_store

    with open_store(path) as f:  # (validated: both vocabularies are UTF-8 string lists)
        answers = list(f["vqa/answers"].asstr()[:]) if "vqa/answers" in f else None
        return list(f["text/vocab"].asstr()[:]), answers
