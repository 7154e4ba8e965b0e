"""Text processing shared by the importers and `shapes` (REFERENCE.md "Text", "VQA accuracy").

Questions, captions and referring expressions go through `tokenize` (the reference
implementation's rule); VQA answers through `normalize_answer` (the official evaluation's
rule), so that the answer vocabulary, the soft scores and the accuracy agree on spelling.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mmnasdsl.lang.errors import DataError

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 in every vocabulary (docs/interfaces.md, Batches)

_PUNCT = re.compile(r"[.,'!?\"()*#:;]")


def tokenize(text: str) -> list[str]:
    """Lower case; drop .,'!?"()*#:; ; '-' and '/' become spaces; split on whitespace."""
    return _PUNCT.sub("", text.lower()).replace("-", " ").replace("/", " ").split()


def build_vocab(sentences: Iterable[list[str]], min_count: int = 1) -> list[str]:
    """Words seen at least `min_count` times, most frequent first, after `<pad>` and `<unk>`."""
    counts = Counter(w for s in sentences for w in s)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [PAD, UNK, *(w for w in words if w not in (PAD, UNK))]


def encode(tokens: list[str], index: dict[str, int], max_len: int) -> np.ndarray:
    """Token ids (unknown -> 1), truncated to `max_len`."""
    return np.array([index.get(w, 1) for w in tokens[:max_len]], dtype=np.int32)


# ------------------------------------------------------------------- VQA answers

_CONTRACTIONS = {
    "arent": "aren't",
    "cant": "can't",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "isnt": "isn't",
    "itll": "it'll",
    "shouldnt": "shouldn't",
    "wasnt": "wasn't",
    "werent": "weren't",
    "whats": "what's",
    "wont": "won't",
    "wouldnt": "wouldn't",
    "youre": "you're",
    "youve": "you've",
    "im": "i'm",
    "ive": "i've",
}
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_ANS_PUNCT = [
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")


def _strip_punct(text: str) -> str:
    out = text
    for p in _ANS_PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_DIGIT.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def normalize_answer(answer: str) -> str:
    """The official VQA answer normalisation: punctuation, number words, articles, contractions."""
    text = _strip_punct(answer.replace("\n", " ").replace("\t", " ").strip().lower())
    words = []
    for w in text.split():
        w = _NUMBERS.get(w, w)
        if w not in _ARTICLES:
            words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


SOFT_SCORES = (0.0, 0.3, 0.6, 0.9, 1.0)  # by number of annotators giving the answer, 4+ -> 1


def soft_scores(answers: list[str], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(answer ids, scores) of the in-vocabulary answers among the annotators' (normalised) ones."""
    counts = Counter(answers)
    ids = [index[a] for a in counts if a in index]
    scores = [SOFT_SCORES[min(counts[a], 4)] for a in counts if a in index]
    return np.array(ids, dtype=np.int32), np.array(scores, dtype=np.float32)


# ------------------------------------------------------------------------- GloVe


def read_glove(path: str | Path, vocab: list[str]) -> np.ndarray:
    """A (len(vocab), D) embedding matrix from a GloVe text file (`word f1 ... fD` per line).

    Words absent from the file get small random vectors (seeded), `<pad>` gets zeros,
    so the matrix can initialise a trainable embedding directly.
    """
    index = {w: i for i, w in enumerate(vocab)}
    found: dict[int, np.ndarray] = {}
    dim = None
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                word, *rest = line.rstrip("\n").rstrip().split(" ")
                if dim is None:
                    dim = len(rest)
                if len(rest) != dim or dim == 0:
                    raise DataError(f"{path}: line {n}: expected a word and {dim} numbers")
                if word in index:
                    found[index[word]] = _floats(rest, path, n)
    except OSError as exc:
        raise DataError(f"{path}: cannot read GloVe file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not a UTF-8 GloVe text file (byte {exc.start}: {exc.reason})"
        ) from None
    if dim is None:
        raise DataError(f"{path}: empty GloVe file")
    matrix = np.random.default_rng(0).normal(0, 0.1, (len(vocab), dim)).astype(np.float32)
    matrix[0] = 0.0
    for i, v in found.items():
        matrix[i] = v
    return matrix


def _floats(items: list[str], path: str | Path, line: int) -> np.ndarray:
    try:
        v = np.array(items, dtype=np.float32)
    except ValueError:
        raise DataError(f"{path}: line {line}: not a number in the vector") from None
    if not np.isfinite(v).all():
        raise DataError(f"{path}: line {line}: NaN or inf in the vector")
    return v
