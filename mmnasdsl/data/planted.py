"""`planted`: small built-in VQA worlds in which, by construction, one op decides the answer.

They exist to test the search (docs/planted.md): a search space over {SA, RSA, GA, FFN}
should find the op a world plants, because without it no net can beat chance.

- `rsa`: five objects, one *marked* (the anchor, no colour), four with distinct colours.
  The question is always the same, "what color is the object nearest to the marked
  object". Object features carry no position (as in `shapes`): where an object is reaches
  a net only through its box, i.e. through the relation features R that RSA reads
  (`mmnasdsl.geometry.relation_features`). Without RSA every op and the head are blind to
  the boxes, so a net can only pick one of the four colours: 25 %. The nearest object
  lies `NEAR` px from the anchor, every other at least `FAR` px, so one fixed radius
  separates them in every scene (see `make_rsa_scene`).
- `ga`: four objects with distinct colours and distinct shapes (every scene holds each
  shape once); one question per object, "what shape is the <colour> object". Without GA
  the object stream never sees the question and the head only adds the pooled question
  to the pooled objects (LayerNorm(x + y), then a Linear), which cannot express which
  object the colour word selects: a net answers from the question alone or the scene
  alone, and each alone is at 25 %.

Stores are written with `StoreWriter` like `shapes` (VQA task, one answer per question,
given by all 10 annotators; train with `head vqa(loss = ce)`). Everything is drawn from
numpy Generators seeded by `SeedSequence([seed, TASK_INDEX[task]]).spawn(3)` (one per
split); the feature projection has its own constant seed: the same seed gives identical
stores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmnasdsl.data.store import StoreWriter, TextData
from mmnasdsl.data.text import build_vocab, encode, soft_scores, tokenize

# Bump when what a seed generates changes: the spec cache folder is keyed by it
# (data/planted/<task>-<scenes>-<seed>-v<version>, mmnasdsl.data.resolve).
WORLD_VERSION = 1
TASKS = ("rsa", "ga")
TASK_INDEX = {"rsa": 0, "ga": 1}
FAMILY = {"rsa": "nearest", "ga": "select"}  # one question family per world
OTHER = 2  # answer type "other" (vqa/answer_type)

COLORS = ("red", "green", "blue", "yellow", "purple", "cyan", "gray", "brown")
SHAPES = ("cube", "sphere", "cylinder", "cone")
ANSWERS = {"rsa": COLORS, "ga": SHAPES}

IMAGE_W, IMAGE_H = 320, 240
BOX = 20.0  # every box is BOX x BOX px: R's size ratios are 0, its offsets are distances
FEATURE_DIM = 32
PROJECTION_SEED = 20240512
NOISE = 0.3
MAX_WORDS = 12
SPLITS = {"train": 1.0, "val": 0.25, "test": 0.5}  # scenes per split, relative to `scenes`

RSA_OBJECTS = 5  # the anchor and 4 coloured objects
NEAR = (28.0, 40.0)  # centre distance of the nearest object to the anchor, px
FAR = 100.0  # every other object at least this far from the anchor, px
MIN_GAP = 1.5 * BOX  # centre distance between any two objects (no overlap), px
RSA_QUESTION = "what color is the object nearest to the marked object"

GA_OBJECTS = 4  # = len(SHAPES): every scene holds each shape once


@dataclass(frozen=True)
class Scene:
    """Objects with a colour and a shape (-1: none) and a box; `anchor` is the marked one
    (-1 in `ga` scenes)."""

    colors: np.ndarray  # (n,) int, -1 for the anchor
    shapes: np.ndarray  # (n,) int
    boxes: np.ndarray  # (n, 4) float32 x1 y1 x2 y2
    anchor: int = -1

    @property
    def n(self) -> int:
        return len(self.colors)

    @property
    def centres(self) -> np.ndarray:  # (n, 2)
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2


@dataclass(frozen=True)
class Question:
    text: str
    answer: str


# --------------------------------------------------------------------------- features


@functools.cache
def projection() -> np.ndarray:
    """(len(COLORS) + len(SHAPES) + 1, FEATURE_DIM) fixed projection of the one-hot rows:
    colours, shapes, and the anchor mark; its seed is a constant, not the scene seed."""
    rows = len(COLORS) + len(SHAPES) + 1
    p = np.random.default_rng(PROJECTION_SEED).normal(0, 0.5, (rows, FEATURE_DIM))
    p.setflags(write=False)
    return p


def object_features(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Projection of one-hot colour, shape and mark plus noise: blind to position."""
    onehot = np.zeros((scene.n, len(projection())), np.float32)
    for i in range(scene.n):
        if scene.colors[i] >= 0:
            onehot[i, scene.colors[i]] = 1.0
        if scene.shapes[i] >= 0:
            onehot[i, len(COLORS) + scene.shapes[i]] = 1.0
        if i == scene.anchor:
            onehot[i, -1] = 1.0
    noise = rng.normal(0, NOISE, (scene.n, FEATURE_DIM))
    return (onehot @ projection() + noise).astype(np.float32)


def box_at(centre: np.ndarray) -> np.ndarray:
    x, y = centre
    return np.array([x - BOX / 2, y - BOX / 2, x + BOX / 2, y + BOX / 2], np.float32)


def _inside(c: np.ndarray) -> bool:
    h = BOX / 2
    return bool(h <= c[0] <= IMAGE_W - h and h <= c[1] <= IMAGE_H - h)


def _uniform_centre(rng: np.random.Generator) -> np.ndarray:
    h = BOX / 2
    return np.array([rng.uniform(h, IMAGE_W - h), rng.uniform(h, IMAGE_H - h)])


# ------------------------------------------------------------------------------- rsa


def make_rsa_scene(rng: np.random.Generator) -> Scene:
    """The anchor, one object NEAR it, three at least FAR from it; random order.

    NEAR's upper end is below FAR / 2, so the nearest object is at least 2.5x nearer than
    the runner-up, and one radius (between 40 and 100 px, in Euclidean or max-norm
    distance: 40 < 100 / sqrt(2)) tells it apart in every scene. Colours are 4 distinct
    of the 8, assigned before placement: the nearest one's colour is uniform among them.
    """
    while True:
        centres = [_uniform_centre(rng)]
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(*NEAR)
        near = centres[0] + dist * np.array([np.cos(angle), np.sin(angle)])
        if not _inside(near):
            continue
        centres.append(near)
        for _ in range(200):
            c = _uniform_centre(rng)
            if np.linalg.norm(c - centres[0]) < FAR:
                continue
            if min(np.linalg.norm(c - o) for o in centres[1:]) < MIN_GAP:
                continue
            centres.append(c)
            if len(centres) == RSA_OBJECTS:
                break
        if len(centres) == RSA_OBJECTS:
            break
    colors = np.concatenate([[-1], rng.choice(len(COLORS), RSA_OBJECTS - 1, replace=False)])
    shapes = np.concatenate([[-1], rng.integers(0, len(SHAPES), RSA_OBJECTS - 1)])
    order = rng.permutation(RSA_OBJECTS)
    return Scene(
        colors=colors[order].astype(np.int64),
        shapes=shapes[order].astype(np.int64),
        boxes=np.stack([box_at(centres[k]) for k in order]),
        anchor=int(np.flatnonzero(order == 0)[0]),
    )


def nearest_to_anchor(scene: Scene) -> int:
    """The object whose centre is nearest to the anchor's (Euclidean)."""
    d = np.linalg.norm(scene.centres - scene.centres[scene.anchor], axis=1)
    d[scene.anchor] = np.inf
    return int(np.argmin(d))


def rsa_questions(scene: Scene, rng: np.random.Generator) -> list[Question]:
    return [Question(RSA_QUESTION, COLORS[scene.colors[nearest_to_anchor(scene)]])]


# -------------------------------------------------------------------------------- ga


def make_ga_scene(rng: np.random.Generator) -> Scene:
    """GA_OBJECTS objects, distinct colours, each shape once, placed without overlap."""
    centres: list[np.ndarray] = []
    while len(centres) < GA_OBJECTS:
        c = _uniform_centre(rng)
        if all(np.linalg.norm(c - o) >= MIN_GAP for o in centres):
            centres.append(c)
    colors = rng.choice(len(COLORS), GA_OBJECTS, replace=False)
    shapes = rng.permutation(len(SHAPES))[:GA_OBJECTS]
    return Scene(
        colors=colors.astype(np.int64),
        shapes=shapes.astype(np.int64),
        boxes=np.stack([box_at(c) for c in centres]),
    )


def ga_question(scene: Scene, i: int) -> Question:
    return Question(f"what shape is the {COLORS[scene.colors[i]]} object", SHAPES[scene.shapes[i]])


def ga_questions(scene: Scene, rng: np.random.Generator) -> list[Question]:
    """One question per object, in random order: the answers of a scene are all different."""
    return [ga_question(scene, int(i)) for i in rng.permutation(scene.n)]


MAKERS: dict[str, Callable[[np.random.Generator], Scene]] = {
    "rsa": make_rsa_scene,
    "ga": make_ga_scene,
}
ASKERS: dict[str, Callable[[Scene, np.random.Generator], list[Question]]] = {
    "rsa": rsa_questions,
    "ga": ga_questions,
}


# --------------------------------------------------------------------------- writing


@dataclass
class Split:
    """One split before encoding: per image (features, boxes); per question text + answer."""

    scenes: list[Scene]
    images: list[tuple[np.ndarray, np.ndarray]]
    questions: list[Question]
    image_rows: list[int]


def make_split(
    task: str, n_scenes: int, rng: np.random.Generator, tick: Callable[[], None] = lambda: None
) -> Split:
    """`n_scenes` scenes of `task` with their features and questions."""
    split = Split([], [], [], [])
    for row in range(n_scenes):
        scene = MAKERS[task](rng)
        split.scenes.append(scene)
        split.images.append((object_features(scene, rng), scene.boxes))
        for q in ASKERS[task](scene, rng):
            split.questions.append(q)
            split.image_rows.append(row)
        tick()
    return split


def write_split(
    path: Path, task: str, split: Split, vocab: list[str], name: str, seed: int
) -> None:
    """Encode one split and write its store atomically (format: docs/data-format.md)."""
    index = {w: i for i, w in enumerate(vocab)}
    texts = [q.text for q in split.questions]
    tokens = [encode(tokenize(t), index, MAX_WORDS) for t in texts]
    text = TextData(tokens, texts, np.array(split.image_rows), np.arange(len(tokens)), vocab)
    source = f"planted task={task} seed={seed} world={WORLD_VERSION}"
    with StoreWriter(path, "vqa", FEATURE_DIM, split=name, source=source) as w:
        for row, (feats, boxes) in enumerate(split.images):
            w.add_image(feats, boxes, (IMAGE_W, IMAGE_H), row)
        w.set_text(text)
        w.set_labels(vqa_labels(task, split.questions))


def vqa_labels(task: str, questions: list[Question]) -> dict[str, object]:
    """One answer per question, given by all 10 annotators (soft score 1)."""
    answers = ANSWERS[task]
    index = {a: i for i, a in enumerate(answers)}
    raw = [[q.answer] * 10 for q in questions]
    ids, values = zip(*(soft_scores(r, index) for r in raw), strict=True) if raw else ((), ())
    return {
        "vqa/answers": list(answers),
        "vqa/raw_answers": np.array(raw, dtype=object).reshape(-1, 10),
        "vqa/score_offsets": np.arange(len(questions) + 1, dtype=np.int64),
        "vqa/score_ids": np.concatenate([np.zeros(0, np.int32), *ids]),
        "vqa/score_values": np.concatenate([np.zeros(0, np.float32), *values]),
        "vqa/answer_type": np.full(len(questions), OTHER, np.int8),
        "vqa/family": np.zeros(len(questions), np.int16),
        "vqa/family_names": [FAMILY[task]],
    }


def split_sizes(scenes: int) -> dict[str, int]:
    """Scenes per split: `SPLITS` of `scenes`, at least 10."""
    return {name: max(10, round(scenes * share)) for name, share in SPLITS.items()}


def generate(
    task: str,
    out_dir: str | Path,
    scenes: int = 2000,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Path]:
    """Write train/val/test stores of planted `task` ("rsa" or "ga") to `out_dir`.

    `progress(n)` reports scenes done. The vocabulary comes from the train split.
    """
    if task not in TASKS:
        raise ValueError(f"unknown planted task {task!r} (expected one of {', '.join(TASKS)})")
    out = Path(out_dir)
    tick = (lambda: progress(1)) if progress else (lambda: None)
    seeds = np.random.SeedSequence([seed, TASK_INDEX[task]]).spawn(len(SPLITS))
    rngs = {name: np.random.default_rng(s) for name, s in zip(SPLITS, seeds, strict=True)}
    splits = {
        name: make_split(task, n, rngs[name], tick) for name, n in split_sizes(scenes).items()
    }
    vocab = build_vocab(tokenize(q.text) for q in splits["train"].questions)
    paths = {}
    for name, split in splits.items():
        paths[name] = out / f"{name}.h5"
        write_split(paths[name], task, split, vocab, name, seed)
    return paths
