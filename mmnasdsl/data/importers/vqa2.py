"""VQA-v2 importer: questions (+ annotations) JSON and region features -> one VQA store.

Answers are normalised as the official evaluation does; soft scores are 0/.3/.6/.9/1 for
0/1/2/3/4+ annotators (REFERENCE.md). The answer vocabulary holds the normalised
`multiple_choice_answer`s seen at least `min_answer_count` times (default 9, i.e. "more
than 8 times", which gives 3129 answers over train+val); pass `answers_from` to count over
several annotation files, or `vocab_from` to reuse the vocabularies of a train store.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mmnasdsl.data.importers.common import (
    Sample,
    Summary,
    load_glove,
    need,
    read_json,
    show,
    take,
    vocab_from_store,
    write_samples,
)
from mmnasdsl.data.importers.features import FeatureSource
from mmnasdsl.data.kinds import ANSWER_TYPES
from mmnasdsl.data.text import build_vocab, normalize_answer, soft_scores, tokenize
from mmnasdsl.lang.errors import DataError


def read_questions(path: str | Path) -> list[dict[str, Any]]:
    """The questions, each checked: integer image_id and question_id, a string question."""
    data = read_json(path, "VQA questions")
    need(data, ("questions",), str(path))
    questions = take(data, "questions", "list", str(path))
    for k, q in enumerate(questions):
        where = f"{path}: questions[{k}]"
        need(q, ("image_id", "question", "question_id"), where)
        take(q, "image_id", "int", where)
        take(q, "question", "str", where)
        take(q, "question_id", "int", where)
    return questions


def read_annotations(path: str | Path) -> dict[int, dict[str, Any]]:
    """question id -> annotation, each with its answers (strings) and an answer type."""
    data = read_json(path, "VQA annotations")
    need(data, ("annotations",), str(path))
    out = {}
    for k, a in enumerate(take(data, "annotations", "list", str(path))):
        where = f"{path}: annotations[{k}]"
        need(a, ("question_id", "answers", "answer_type", "multiple_choice_answer"), where)
        take(a, "question_id", "int", where)
        take(a, "multiple_choice_answer", "str", where)
        if not isinstance(a["answer_type"], str) or a["answer_type"] not in ANSWER_TYPES:
            raise DataError(
                f"{where}: answer_type {show(a['answer_type'])} is not one of "
                f"{', '.join(ANSWER_TYPES)}"
            )
        for j, ans in enumerate(take(a, "answers", "list", where)):
            need(ans, ("answer",), f"{where}.answers[{j}]")
            take(ans, "answer", "str", f"{where}.answers[{j}]")
        out[a["question_id"]] = a
    return out


def answer_vocab(annotation_sets: list[dict[int, dict[str, Any]]], min_count: int = 9) -> list[str]:
    """Normalised multiple-choice answers seen >= min_count times, most frequent first."""
    counts = Counter(
        normalize_answer(a["multiple_choice_answer"])
        for anns in annotation_sets
        for a in anns.values()
    )
    return sorted((a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a))


def vqa_labels(answers: list[str]) -> Any:
    """Label builder over samples whose label is the annotation dict (or None on test)."""
    index = {a: i for i, a in enumerate(answers)}

    def build(samples: list[Sample]) -> dict[str, Any]:
        raw, ids, values, types = [], [], [], []
        for s in samples:
            given = [normalize_answer(x["answer"]) for x in s.label["answers"]] if s.label else []
            raw.append((given + [""] * 10)[:10])
            i, v = soft_scores(given, index)
            ids.append(i)
            values.append(v)
            types.append(ANSWER_TYPES.index(s.label["answer_type"]) if s.label else -1)
        return {
            "vqa/answers": np.array(answers, dtype=object),  # strings even when empty
            "vqa/raw_answers": np.array(raw, dtype=object).reshape(-1, 10),
            "vqa/score_offsets": np.concatenate([[0], np.cumsum([len(i) for i in ids])]),
            "vqa/score_ids": np.concatenate([np.zeros(0, np.int32), *ids]),
            "vqa/score_values": np.concatenate([np.zeros(0, np.float32), *values]),
            "vqa/answer_type": np.array(types, np.int8),
            "vqa/family": np.full(len(samples), -1, np.int16),
            "vqa/family_names": np.array([], dtype=object),
        }

    return build


def import_vqa2(
    questions: str | Path,
    annotations: str | Path | None,
    source: FeatureSource,
    out: str | Path,
    *,
    min_answer_count: int = 9,
    min_word_count: int = 1,
    max_len: int = 14,
    answers_from: list[str | Path] | None = None,
    vocab_from: str | Path | None = None,
    glove: str | Path | None = None,
    skip_missing: bool = False,
    split: str = "",
) -> Summary:
    """Write one VQA store (`out`) from a questions file and (for train/val) its annotations."""
    qs = read_questions(questions)
    anns = read_annotations(annotations) if annotations else {}
    samples = [
        Sample(
            int(q["image_id"]),
            tuple(tokenize(q["question"])),
            q["question"],
            int(q["question_id"]),
            anns.get(int(q["question_id"])),
            "question",
        )
        for q in qs
    ]
    if annotations and (lost := [s.sample_id for s in samples if s.label is None]):
        raise DataError(
            f"{annotations}: no annotation for question {lost[0]} "
            f"({len(lost)} questions unannotated)"
        )
    if vocab_from:
        vocab, answers = vocab_from_store(vocab_from)
        if answers is None:
            raise DataError(f"{vocab_from}: not a VQA store (no answer vocabulary)")
    else:
        vocab = build_vocab((list(s.tokens) for s in samples), min_word_count)
        sets = [read_annotations(p) for p in answers_from or []] or [anns]
        answers = answer_vocab(sets, min_answer_count)
    return write_samples(
        Path(out),
        "vqa",
        samples,
        source,
        vocab=vocab,
        max_len=max_len,
        split=split or Path(out).stem,
        origin=f"vqa2 {Path(questions).name}",
        skip_missing=skip_missing,
        labels=vqa_labels(answers),
        glove=load_glove(glove, vocab),
    )
