"""`shapes`: the built-in synthetic world, so every command runs with no download (DESIGN.md, Data).

A scene holds 3-12 objects, each with a colour, shape, size and material and a box in a
320x240 image. An object's feature is a fixed random projection (seed `PROJECTION_SEED`,
independent of the scene seed) of its one-hot attributes plus Gaussian noise: it carries
no position, so where things are reaches a model only through the boxes, i.e. the relation
features R of RSA. Counting needs attention among objects; spatial questions and
relational referring expressions need R.

From scenes it writes stores for the three MMnas tasks:
- VQA: questions of six families (`FAMILIES`), 10 answers each from simulated annotators
  who sometimes disagree, so soft scores and the official accuracy are exercised.
- ITM: 5 distinct captions per image.
- VG: referring expressions that pick out exactly one object (often only by a spatial
  relation); proposals are jittered true boxes plus background distractors.
Everything is drawn from numpy Generators seeded from (seed, task, split): deterministic.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmnasdsl.data.store import StoreWriter, TextData
from mmnasdsl.data.text import build_vocab, encode, soft_scores, tokenize

COLORS = ("red", "green", "blue", "yellow", "purple", "cyan", "gray", "brown")
SHAPES = ("cube", "sphere", "cylinder", "cone")
SIZES = ("small", "large")
MATERIALS = ("rubber", "metal")
ATTRIBUTES = {"color": COLORS, "shape": SHAPES, "size": SIZES, "material": MATERIALS}
ATTR_NAMES = tuple(ATTRIBUTES)  # column order of Scene.attrs
WORD_ORDER = ("size", "color", "material", "shape")  # "the small red metal cube"

WORLD_VERSION = 3  # bump when what a seed generates changes (bench/ablation.py keys results by it)
IMAGE_W, IMAGE_H = 320, 240
FEATURE_DIM = 64
MAX_OBJECTS = 12
MAX_WORDS = 16
PROJECTION_SEED = 20200612
NOISE = 0.3
SPLITS = {"train": 1.0, "val": 0.25, "test": 0.25}  # scenes per split, relative to --scenes
TASK_INDEX = {"vqa": 0, "itm": 1, "vg": 2}

FAMILIES = ("exist", "count", "query", "spatial", "nearest", "compare")
# Target mix before rejections. Geometry (spatial + nearest) is 45 %: RSA, the op the pool
# ablation is about, only pays on it (docs/results.md, "Three fixes to the world", 4).
FAMILY_SHARE = (0.15, 0.1, 0.15, 0.1, 0.35, 0.15)
FAMILY_TYPE = {"exist": 0, "count": 1, "query": 2, "spatial": 0, "nearest": 2, "compare": 0}
ANNOTATOR_ACCURACY = (0.9, 0.75, 0.85)  # per answer type: yes/no, number, other
ANSWERS = ("yes", "no", *map(str, range(MAX_OBJECTS + 1)), *COLORS, *SHAPES, *SIZES, *MATERIALS)
RELATIONS = ("above or below", "left or right of")  # the axis of an offset, never its side
NEAREST_MARGIN = 1.25  # the runner-up at least this much farther for "nearest" to be asked
AXIS_RATIO = 1.5  # one axis of an offset at least this much longer than the other to be named

Desc = dict[str, int]  # attribute name -> value index; {} is "object"


@dataclass(frozen=True)
class Scene:
    attrs: np.ndarray  # (n, 4) int: color, shape, size, material
    boxes: np.ndarray  # (n, 4) float32 x1 y1 x2 y2

    @property
    def n(self) -> int:
        return len(self.attrs)

    @property
    def centres(self) -> np.ndarray:  # (n, 2)
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2


# ---------------------------------------------------------------------------- scenes


@functools.cache
def projection() -> np.ndarray:
    """(17, FEATURE_DIM) fixed projection: 16 one-hot attribute values + 1 background.

    Seeded by the constant PROJECTION_SEED, not the scene seed, so that every split and
    every seed share one attribute -> feature map.
    """
    n_values = sum(len(v) for v in ATTRIBUTES.values()) + 1
    p = np.random.default_rng(PROJECTION_SEED).normal(0, 0.5, (n_values, FEATURE_DIM))
    p.setflags(write=False)
    return p


def one_hot(attrs: np.ndarray) -> np.ndarray:
    """(n, 4) attribute indices -> (n, 17) one-hot rows (last column: background)."""
    sizes = [len(v) for v in ATTRIBUTES.values()]
    starts = np.cumsum([0, *sizes[:-1]])
    out = np.zeros((len(attrs), sum(sizes) + 1), np.float32)
    np.put_along_axis(out, attrs + starts, 1.0, axis=1)
    return out


def object_features(attrs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Projection of the attributes plus noise; deliberately blind to position."""
    return (one_hot(attrs) @ projection() + rng.normal(0, NOISE, (len(attrs), FEATURE_DIM))).astype(
        np.float32
    )


def background_features(k: int, rng: np.random.Generator) -> np.ndarray:
    bg = np.zeros((k, len(projection())), np.float32)
    bg[:, -1] = 1.0
    return (bg @ projection() + rng.normal(0, NOISE, (k, FEATURE_DIM))).astype(np.float32)


def make_scene(rng: np.random.Generator) -> Scene:
    """3-12 objects with random attributes, placed with little overlap."""
    n = int(rng.integers(3, MAX_OBJECTS + 1))
    attrs = np.stack([rng.integers(0, len(v), n) for v in ATTRIBUTES.values()], 1)
    boxes: list[np.ndarray] = []
    for size in attrs[:, 2]:
        boxes.append(_place(rng, 40.0 if size else 24.0, np.array(boxes).reshape(-1, 4)))
    return Scene(attrs.astype(np.int64), np.array(boxes, np.float32))


def _place(rng: np.random.Generator, side: float, others: np.ndarray) -> np.ndarray:
    for _ in range(30):
        w, h = side * rng.uniform(0.85, 1.25, 2)
        x, y = rng.uniform(0, IMAGE_W - w), rng.uniform(0, IMAGE_H - h)
        box = np.array([x, y, x + w, y + h])
        if not len(others) or _iou(box[None], others).max() < 0.05:
            break
    return box


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


# ------------------------------------------------------------------------ descriptions


def matches(scene: Scene, desc: Desc) -> np.ndarray:
    """(n,) bool: the objects a description fits."""
    ok = np.ones(scene.n, bool)
    for name, value in desc.items():
        ok &= scene.attrs[:, ATTR_NAMES.index(name)] == value
    return ok


def describe(desc: Desc, plural: bool = False) -> str:
    words = [ATTRIBUTES[a][desc[a]] for a in WORD_ORDER if a in desc and a != "shape"]
    noun = SHAPES[desc["shape"]] if "shape" in desc else "object"
    return " ".join([*words, noun + ("s" if plural else "")])


def desc_of(scene: Scene, i: int, names: tuple[str, ...]) -> Desc:
    return {a: int(scene.attrs[i, ATTR_NAMES.index(a)]) for a in names}


_SUBSETS = [c for k in range(1, 5) for c in itertools.combinations(ATTR_NAMES, k)]


def unique_desc(scene: Scene, i: int, rng: np.random.Generator) -> Desc | None:
    """A shortest description that fits object i alone (random among ties), or None."""
    for k in range(1, 5):
        options = [c for c in _SUBSETS if len(c) == k]
        for j in rng.permutation(len(options)):
            desc = desc_of(scene, i, options[j])
            if matches(scene, desc).sum() == 1:
                return desc
    return None


def random_desc(scene: Scene, rng: np.random.Generator, from_scene: bool) -> Desc:
    """One or two attributes, taken from a scene object or drawn at random."""
    names = _SUBSETS[int(rng.integers(0, 10))]  # the 4 singles and 6 pairs
    if from_scene:
        return desc_of(scene, int(rng.integers(scene.n)), names)
    return {a: int(rng.integers(len(ATTRIBUTES[a]))) for a in names}


def axis_ratio(scene: Scene, i: int, j: int) -> float:
    """|dy| / |dx| of the centres of i and j in pixels (> 1: the offset is mainly vertical)."""
    dx, dy = np.abs(scene.centres[i] - scene.centres[j])
    return float(max(dy, 1e-6) / max(dx, 1e-6))


def axis_relation(scene: Scene, i: int, j: int) -> str | None:
    """The `RELATIONS` entry for the offset between i and j, or None when neither axis is
    `AXIS_RATIO` times the other (borderline: a reader could not tell).

    Only the axis, never the side: R holds |dx| and |dy| (paper §3.1), so "left of" and
    "right of" differ only by a sign no model sees.
    """
    ratio = axis_ratio(scene, i, j)
    if ratio >= AXIS_RATIO:
        return RELATIONS[0]
    return RELATIONS[1] if ratio <= 1 / AXIS_RATIO else None


def nearest(scene: Scene, j: int, candidates: np.ndarray) -> int | None:
    """The candidate nearest to object j, if clearly nearer than the runner-up: the
    runner-up at least `NEAREST_MARGIN` times as far."""
    cand = candidates[candidates != j]
    if not len(cand):
        return None
    d = np.linalg.norm(scene.centres[cand] - scene.centres[j], axis=1)
    order = np.argsort(d)
    if len(cand) > 1 and d[order[1]] < NEAREST_MARGIN * d[order[0]]:
        return None
    return int(cand[order[0]])


# ------------------------------------------------------------------------ VQA questions


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    family: int


def ask(scene: Scene, family: str, rng: np.random.Generator) -> Question | None:
    """One question of `family` about the scene, or None when the scene cannot support it."""
    text_answer = _ASKERS[family](scene, rng)
    if text_answer is None:
        return None
    return Question(text_answer[0], text_answer[1], FAMILIES.index(family))


def _exist(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """Half the time about an object in the scene, else (when found) one that is absent."""
    desc = random_desc(scene, rng, from_scene=True)
    if rng.random() < 0.5:
        for _ in range(10):
            desc = random_desc(scene, rng, from_scene=False)
            if not matches(scene, desc).any():
                break
    return f"is there a {describe(desc)}", "yes" if matches(scene, desc).any() else "no"


def _count(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    desc = random_desc(scene, rng, from_scene=bool(rng.random() < 0.8))
    return f"how many {describe(desc, plural=True)} are there", str(int(matches(scene, desc).sum()))


def _query(scene: Scene, rng: np.random.Generator) -> tuple[str, str] | None:
    i = int(rng.integers(scene.n))
    desc = unique_desc(scene, i, rng)
    asked = [a for a in ATTR_NAMES if desc is not None and a not in desc]
    if not asked:
        return None
    attr = asked[int(rng.integers(len(asked)))]
    answer = ATTRIBUTES[attr][scene.attrs[i, ATTR_NAMES.index(attr)]]
    return f"what {attr} is the {describe(desc)}", answer  # type: ignore[arg-type]


def _spatial(scene: Scene, rng: np.random.Generator) -> tuple[str, str] | None:
    """Is the offset between two objects mainly vertical ("above or below") or horizontal
    ("left or right of")? Yes/no, balanced per axis.

    Not "is A left of B": R, the only carrier of position, holds |dx| and |dy| (paper §3.1),
    so the sign of an offset reaches no model, while its axis does (`axis_ratio`).
    """
    vertical, want_yes = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    for _ in range(20):
        i, j = (int(k) for k in rng.choice(scene.n, 2, replace=False))
        ratio = axis_ratio(scene, i, j)  # > 1: mainly vertical
        if max(ratio, 1 / ratio) < AXIS_RATIO or (ratio > 1) != (vertical == want_yes):
            continue
        di, dj = unique_desc(scene, i, rng), unique_desc(scene, j, rng)
        if di is None or dj is None:
            continue
        rel = "above or below" if vertical else "left or right of"
        return f"is the {describe(di)} {rel} the {describe(dj)}", "yes" if want_yes else "no"
    return None


def _nearest(scene: Scene, rng: np.random.Generator) -> tuple[str, str] | None:
    j = int(rng.integers(scene.n))
    dj, i = unique_desc(scene, j, rng), nearest(scene, j, np.arange(scene.n))
    if dj is None or i is None:
        return None
    attr = ("color", "shape")[int(rng.integers(2))]
    answer = ATTRIBUTES[attr][scene.attrs[i, ATTR_NAMES.index(attr)]]
    return f"what {attr} is the object nearest to the {describe(dj)}", answer


def _compare(scene: Scene, rng: np.random.Generator) -> tuple[str, str] | None:
    a, b = random_desc(scene, rng, True), random_desc(scene, rng, True)
    na, nb = matches(scene, a).sum(), matches(scene, b).sum()
    if describe(a) == describe(b):
        return None
    if na < nb and rng.random() < 0.5:  # balance yes and no (ties answer no)
        a, b, na, nb = b, a, nb, na
    text = f"are there more {describe(a, True)} than {describe(b, True)}"
    return text, "yes" if na > nb else "no"


_ASKERS: dict[str, Callable[[Scene, np.random.Generator], tuple[str, str] | None]] = {
    "exist": _exist,
    "count": _count,
    "query": _query,
    "spatial": _spatial,
    "nearest": _nearest,
    "compare": _compare,
}


def annotate(answer: str, answer_type: int, rng: np.random.Generator) -> list[str]:
    """10 annotators: each right with a per-type probability, else a plausible wrong answer."""
    right = rng.random(10) < ANNOTATOR_ACCURACY[answer_type]
    return [answer if ok else _wrong(answer, answer_type, rng) for ok in right]


def _wrong(answer: str, answer_type: int, rng: np.random.Generator) -> str:
    if answer_type == 0:
        return "no" if answer == "yes" else "yes"
    if answer_type == 1:
        return str(max(0, int(answer) + int(rng.choice([-1, 1]))))
    values = next(v for v in ATTRIBUTES.values() if answer in v)
    others = [v for v in values if v != answer]
    return others[int(rng.integers(len(others)))]


# ----------------------------------------------------------------------- ITM captions


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A true sentence about 1-3 objects: attributes, a relation, or the object count.

    Relations are those R carries (`caption_relations`); a pair with none is redrawn.
    """
    i, j = (int(k) for k in rng.choice(scene.n, 2, replace=False))
    kind = int(rng.integers(3))
    if kind == 0:
        for _ in range(10):
            held = caption_relations(scene, i, j)
            if held:
                rel = held[int(rng.integers(len(held)))]
                di, dj = desc_of(scene, i, _pick_attrs(rng)), desc_of(scene, j, _pick_attrs(rng))
                return f"a {describe(di)} {rel} a {describe(dj)}"
            i, j = (int(k) for k in rng.choice(scene.n, 2, replace=False))
        kind = 1  # no pair with a relation R carries within 10 draws (rare): count instead
    di = desc_of(scene, i, _pick_attrs(rng))
    dj = desc_of(scene, j, _pick_attrs(rng))
    if kind == 1:
        return f"{scene.n} objects including a {describe(di)} and a {describe(dj)}"
    k = int(rng.integers(scene.n))
    dk = desc_of(scene, k, ("color", "shape"))
    return f"a {describe(di)} a {describe(dj)} and a {describe(dk)}"


def caption_relations(scene: Scene, i: int, j: int) -> list[str]:
    """What may be said of `i <rel> j`: the axis of their offset when clear (`axis_relation`),
    and "nearest to" when i is clearly the object nearest to j (`nearest`)."""
    axis = axis_relation(scene, i, j)
    held = [] if axis is None else [axis]
    if nearest(scene, j, np.arange(scene.n)) == i:
        held.append("nearest to")
    return held


def _pick_attrs(rng: np.random.Generator) -> tuple[str, ...]:
    extra = [a for a in ("size", "color", "material") if rng.random() < 0.5]
    return (*extra, "shape")


def captions(scene: Scene, rng: np.random.Generator, k: int = 5) -> list[str]:
    """k distinct captions (distinct when the scene allows it within a few tries)."""
    out: list[str] = []
    for _ in range(20 * k):
        c = caption(scene, rng)
        if c not in out:
            out.append(c)
        if len(out) == k:
            break
    while len(out) < k:
        out.append(caption(scene, rng))
    return out


# ---------------------------------------------------------------- VG referring expressions


@dataclass(frozen=True)
class Ref:
    """`the <target> [<relation> the <anchor>]`: evaluated by `refer`."""

    target: Desc
    relation: str | None = None
    anchor: Desc | None = None

    @property
    def text(self) -> str:
        if self.relation is None:
            return f"the {describe(self.target)}"
        rel = "nearest to" if self.relation == "nearest" else self.relation
        return f"the {describe(self.target)} {rel} the {describe(self.anchor or {})}"


def refer(scene: Scene, ref: Ref) -> np.ndarray:
    """The objects an expression picks out (exactly one for a good expression)."""
    cand = np.flatnonzero(matches(scene, ref.target))
    if ref.relation is None:
        return cand
    anchors = np.flatnonzero(matches(scene, ref.anchor or {}))
    if len(anchors) != 1:
        return np.zeros(0, np.int64)
    j = int(anchors[0])
    if ref.relation == "nearest":
        i = nearest(scene, j, cand)
        return np.zeros(0, np.int64) if i is None else np.array([i])
    others = cand[cand != j]
    axes = [axis_relation(scene, int(c), j) for c in others]
    if len(others) == 0 or None in axes:
        return np.zeros(0, np.int64)  # a borderline case: ambiguous to a reader
    return others[[a == ref.relation for a in axes]]


def referring_expression(scene: Scene, i: int, rng: np.random.Generator) -> Ref | None:
    """An expression for object i: relational when its attributes alone are ambiguous."""
    if rng.random() < 0.7:
        for ref in _relational(scene, i, rng):
            if list(refer(scene, ref)) == [i]:
                return ref
    desc = unique_desc(scene, i, rng)
    return None if desc is None else Ref(desc)


def _relational(scene: Scene, i: int, rng: np.random.Generator) -> list[Ref]:
    """Candidates where the target's description alone fits several objects."""
    refs = []
    for j in rng.permutation(scene.n):
        anchor = unique_desc(scene, int(j), rng) if j != i else None
        if anchor is None:
            continue
        target = desc_of(scene, i, _SUBSETS[int(rng.integers(0, 4))])
        if matches(scene, target).sum() < 2:
            continue
        refs += [Ref(target, rel, anchor) for rel in (*RELATIONS, "nearest")]
        if len(refs) >= 15:
            break
    return [refs[k] for k in rng.permutation(len(refs))]


def proposals(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Jittered true boxes (IoU >= 0.5 with the truth) plus background distractors, shuffled.

    Returns (features (K, F), boxes (K, 4)); K <= MAX_OBJECTS.
    """
    jit = scene.boxes.copy()
    for k in range(scene.n):
        jit[k] = _jitter(scene.boxes[k], rng)
    n_bg = min(int(rng.integers(1, 4)), MAX_OBJECTS - scene.n)
    sides = rng.uniform(20, 60, (n_bg, 2))
    xy = rng.uniform(0, 1, (n_bg, 2)) * ([IMAGE_W, IMAGE_H] - sides)
    boxes = np.concatenate([jit, np.concatenate([xy, xy + sides], 1)]).astype(np.float32)
    feats = np.concatenate([object_features(scene.attrs, rng), background_features(n_bg, rng)])
    order = rng.permutation(len(boxes))
    return feats[order], boxes[order]


def _jitter(box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    for scale in (0.12, 0.06, 0.0):
        out = box + rng.uniform(-scale, scale, 4) * [w, h, w, h]
        if _iou(out[None], box[None])[0, 0] >= 0.6:
            break
    return np.clip(out, 0, [IMAGE_W, IMAGE_H, IMAGE_W, IMAGE_H])


# ------------------------------------------------------------------------- split samples


@dataclass
class Split:
    """One split before encoding: per image (features, boxes); per sample text + labels."""

    images: list[tuple[np.ndarray, np.ndarray]]
    texts: list[str]
    image_rows: list[int]
    labels: list[object]


def vqa_samples(
    scene: Scene,
    rng: np.random.Generator,
    per_scene: int = 5,
    family_share: Sequence[float] = FAMILY_SHARE,
) -> list[Question]:
    out: list[Question] = []
    for _ in range(4 * per_scene):
        family = FAMILIES[int(rng.choice(len(FAMILIES), p=family_share))]
        q = ask(scene, family, rng)
        if q is not None and all(q.text != o.text for o in out):
            out.append(q)
        if len(out) == per_scene:
            break
    return out


def vg_samples(scene: Scene, rng: np.random.Generator, per_scene: int = 3) -> list[Ref]:
    out: list[Ref] = []
    for i in rng.permutation(scene.n):
        ref = referring_expression(scene, int(i), rng)
        if ref is not None:
            out.append(ref)
        if len(out) == per_scene:
            break
    return out


def make_split(
    task: str,
    n_scenes: int,
    rng: np.random.Generator,
    tick: Callable[[], None] = lambda: None,
    family_share: Sequence[float] = FAMILY_SHARE,
) -> Split:
    """Scenes -> images and samples for one task; `tick` is called once per scene."""
    split = Split([], [], [], [])
    for row in range(n_scenes):
        scene = make_scene(rng)
        if task == "vg":
            feats, boxes = proposals(scene, rng)
            samples: list = [
                (r.text, scene.boxes[int(refer(scene, r)[0])]) for r in vg_samples(scene, rng)
            ]
        else:
            feats, boxes = object_features(scene.attrs, rng), scene.boxes
            samples = (
                [(q.text, q) for q in vqa_samples(scene, rng, family_share=family_share)]
                if task == "vqa"
                else [(c, None) for c in captions(scene, rng)]
            )
        split.images.append((feats, boxes))
        for text, label in samples:
            split.texts.append(text)
            split.image_rows.append(row)
            split.labels.append(label)
        tick()
    return split


# --------------------------------------------------------------------------- writing


def write_split(
    path: Path,
    task: str,
    split: Split,
    vocab: list[str],
    name: str,
    seed: int,
    rng: np.random.Generator,
) -> None:
    """Encode one split and write its store atomically."""
    index = {w: i for i, w in enumerate(vocab)}
    tokens = [encode(tokenize(t), index, MAX_WORDS) for t in split.texts]
    text = TextData(tokens, split.texts, np.array(split.image_rows), np.arange(len(tokens)), vocab)
    with StoreWriter(path, task, FEATURE_DIM, split=name, source=f"shapes seed={seed}") as w:
        for row, (feats, boxes) in enumerate(split.images):
            w.add_image(feats, boxes, (IMAGE_W, IMAGE_H), row)
        w.set_text(text)
        if task == "vqa":
            w.set_labels(vqa_labels(split.labels, rng))  # type: ignore[arg-type]
        elif task == "vg":
            w.set_labels({"vg/gt_box": np.array(split.labels, np.float32).reshape(-1, 4)})


def vqa_labels(questions: list[Question], rng: np.random.Generator) -> dict[str, object]:
    """Annotator answers, sparse soft scores, answer types and families."""
    index = {a: i for i, a in enumerate(ANSWERS)}
    raw, ids, values = [], [], []
    for q in questions:
        answers = annotate(q.answer, FAMILY_TYPE[FAMILIES[q.family]], rng)
        raw.append(answers)
        i, v = soft_scores(answers, index)
        ids.append(i)
        values.append(v)
    counts = [len(i) for i in ids]
    return {
        "vqa/answers": list(ANSWERS),
        "vqa/raw_answers": np.array(raw, dtype=object).reshape(-1, 10),
        "vqa/score_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "vqa/score_ids": np.concatenate([np.zeros(0, np.int32), *ids]),
        "vqa/score_values": np.concatenate([np.zeros(0, np.float32), *values]),
        "vqa/answer_type": np.array([FAMILY_TYPE[FAMILIES[q.family]] for q in questions], np.int8),
        "vqa/family": np.array([q.family for q in questions], np.int16),
        "vqa/family_names": list(FAMILIES),
    }


def split_sizes(scenes: int, test_scenes: int | None = None) -> dict[str, int]:
    """Scenes per split: `SPLITS` of `scenes`, or `test_scenes` for test when given (a larger
    test split lowers the evaluation noise without touching train or val)."""
    sizes = {name: max(10, round(scenes * share)) for name, share in SPLITS.items()}
    if test_scenes is not None:
        sizes["test"] = max(10, test_scenes)
    return sizes


def generate(
    task: str,
    out_dir: str | Path,
    scenes: int = 2000,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    test_scenes: int | None = None,
    family_share: Sequence[float] = FAMILY_SHARE,
) -> dict[str, Path]:
    """Write train/val/test stores of `task` to `out_dir`; `progress(n)` reports scenes done.

    The vocabulary comes from the train split and is shared by all three. Each split has
    its own generator, so `test_scenes` leaves train and val byte-identical. `family_share`
    (VQA: one weight per `FAMILIES` entry) builds a world of chosen question families, e.g.
    `nearest` alone for bench/ablation.py's RSA probe.
    """
    if len(family_share) != len(FAMILIES) or min(family_share) < 0 or not sum(family_share):
        raise ValueError(f"family_share needs {len(FAMILIES)} weights >= 0, not all 0 ({FAMILIES})")
    family_share = tuple(np.asarray(family_share, float) / sum(family_share))
    out = Path(out_dir)
    tick = (lambda: progress(1)) if progress else (lambda: None)
    seeds = np.random.SeedSequence([seed, TASK_INDEX[task]]).spawn(len(SPLITS))
    rngs = {name: np.random.default_rng(s) for name, s in zip(SPLITS, seeds, strict=True)}
    splits = {
        name: make_split(task, n, rngs[name], tick, family_share)
        for name, n in split_sizes(scenes, test_scenes).items()
    }
    vocab = build_vocab(tokenize(t) for t in splits["train"].texts)
    paths = {}
    for name, split in splits.items():
        paths[name] = out / f"{name}.h5"
        write_split(paths[name], task, split, vocab, name, seed, rngs[name])
    return paths


def family_shares(families: np.ndarray) -> dict[str, float]:
    """Share of each family among questions (docs/shapes.md is computed with this)."""
    counts = Counter(int(f) for f in families)
    return {name: counts.get(k, 0) / max(1, len(families)) for k, name in enumerate(FAMILIES)}
