"""`mmnasdsl data ...`: generate `shapes` or `planted`, import community datasets and
BM-NAS taps, describe a store."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import numpy as np

from mmnasdsl.lang.errors import DataError, UsageError
from mmnasdsl.lang.settings import MAX_SCENES, MAX_SEED

data_app = typer.Typer(
    help="Feature stores: the built-in shapes and planted worlds, importers, info.",
    no_args_is_help=True,
)
import_app = typer.Typer(
    help="Convert a community dataset into feature stores.", no_args_is_help=True
)
data_app.add_typer(import_app, name="import")
console = Console(stderr=False)

FeaturesOpt = Annotated[Path, typer.Option("--features", help="folder of .npz, BUTD .h5 or .tsv")]
SkipOpt = Annotated[
    bool,
    typer.Option(
        "--skip-missing",
        help="skip samples whose image has no features (counted) instead of failing",
    ),
]
GloveOpt = Annotated[
    Path | None,
    typer.Option("--glove", help="GloVe text file: stored as text/glove in the train store"),
]
IdMapOpt = Annotated[
    Path | None, typer.Option("--id-map", help="BUTD .h5: image id -> index map (.json or .pkl)")
]
MinWordOpt = Annotated[
    int, typer.Option("--min-word-count", min=1, help="keep words seen this often in train")
]
MaxLenOpt = Annotated[
    int, typer.Option("--max-len", min=1, max=1024, help="tokens kept per sample")
]


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("shapes")
def shapes(
    task: Annotated[str, typer.Option("--task", help="vqa, itm or vg")],
    out: Annotated[Path, typer.Option("-o", "--out", help="folder for train/val/test .h5")],
    scenes: Annotated[
        int,
        typer.Option("--scenes", min=10, max=MAX_SCENES, help="train scenes (val, test: 1/4)"),
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED)] = 0,
) -> None:
    """Generate the built-in synthetic world for a task (deterministic for a seed)."""
    from mmnasdsl.data.resolve import SHAPES_TASKS, generate_with_progress

    if task not in SHAPES_TASKS:
        raise UsageError(f"--task {task!r}: expected one of {', '.join(SHAPES_TASKS)}")
    generate_with_progress(task, out, scenes, seed)
    for split in ("train", "val", "test"):
        console.print(f"wrote {out / f'{split}.h5'}")


@data_app.command("planted")
def planted(
    task: Annotated[str, typer.Option("--task", help="rsa or ga: the op the world plants")],
    out: Annotated[Path, typer.Option("-o", "--out", help="folder for train/val/test .h5")],
    scenes: Annotated[
        int, typer.Option("--scenes", min=10, help="train scenes (val: 1/4, test: 1/2)")
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
) -> None:
    """Generate a planted VQA world, answerable only with RSA or only with GA (docs/planted.md)."""
    from mmnasdsl.data.planted import TASKS
    from mmnasdsl.data.resolve import generate_planted_with_progress

    if task not in TASKS:
        raise UsageError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    generate_planted_with_progress(task, out, scenes, seed)
    for split in ("train", "val", "test"):
        console.print(f"wrote {out / f'{split}.h5'}")


@import_app.command("vqa2")
def import_vqa2_cmd(
    questions: Annotated[Path, typer.Option("--questions", help="v2_OpenEnded_*_questions.json")],
    features: FeaturesOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="the store to write (.h5)")],
    annotations: Annotated[
        Path | None,
        typer.Option("--annotations", help="v2_mscoco_*_annotations.json (absent for test)"),
    ] = None,
    min_answer_count: Annotated[
        int,
        typer.Option(
            "--min-answer-count", min=1, help="keep answers seen this often (9 = more than 8 times)"
        ),
    ] = 9,
    answers_from: Annotated[
        list[Path] | None,
        typer.Option(
            "--answers-from", help="annotation files to count answers over (e.g. train and val)"
        ),
    ] = None,
    vocab_from: Annotated[
        Path | None,
        typer.Option(
            "--vocab-from", help="reuse the word and answer vocabularies of this (train) store"
        ),
    ] = None,
    min_word_count: MinWordOpt = 1,
    max_len: MaxLenOpt = 14,
    glove: GloveOpt = None,
    id_map: IdMapOpt = None,
    skip_missing: SkipOpt = False,
) -> None:
    """VQA-v2 questions (+ annotations) and features -> one VQA store."""
    from mmnasdsl.data.importers import import_vqa2

    _import(
        import_vqa2,
        questions,
        annotations,
        features=features,
        id_map=id_map,
        out=out,
        min_answer_count=min_answer_count,
        min_word_count=min_word_count,
        max_len=max_len,
        answers_from=answers_from,
        vocab_from=vocab_from,
        glove=glove,
        skip_missing=skip_missing,
    )


@import_app.command("flickr30k")
def import_flickr_cmd(
    karpathy: Annotated[Path, typer.Option("--karpathy", help="dataset_flickr30k.json")],
    features: FeaturesOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="folder for train/val/test .h5")],
    min_word_count: MinWordOpt = 1,
    max_len: MaxLenOpt = 50,
    glove: GloveOpt = None,
    id_map: IdMapOpt = None,
    skip_missing: SkipOpt = False,
) -> None:
    """Flickr30K (Karpathy split) and features -> train/val/test ITM stores."""
    from mmnasdsl.data.importers import import_flickr30k

    _import(
        import_flickr30k,
        karpathy,
        features=features,
        id_map=id_map,
        out=out,
        min_word_count=min_word_count,
        max_len=max_len,
        glove=glove,
        skip_missing=skip_missing,
    )


@import_app.command("refcoco")
def import_refcoco_cmd(
    refs: Annotated[Path, typer.Option("--refs", help="refs(unc).p / refs(umd).p")],
    instances: Annotated[Path, typer.Option("--instances", help="COCO instances.json")],
    features: FeaturesOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="folder for <split>.h5")],
    min_word_count: MinWordOpt = 1,
    max_len: MaxLenOpt = 14,
    glove: GloveOpt = None,
    id_map: IdMapOpt = None,
    skip_missing: SkipOpt = False,
) -> None:
    """RefCOCO/+/g refs, COCO instances and features -> one VG store per split."""
    from mmnasdsl.data.importers import import_refcoco

    _import(
        import_refcoco,
        refs,
        instances,
        features=features,
        id_map=id_map,
        out=out,
        min_word_count=min_word_count,
        max_len=max_len,
        glove=glove,
        skip_missing=skip_missing,
    )


@import_app.command("taps")
def import_taps_cmd(
    spec: Annotated[Path, typer.Option("--spec", help="the BM-NAS spec declaring the taps")],
    features: Annotated[
        Path,
        typer.Option(
            "--features", help="a folder of <tap>.npy/.npz/.h5 files, or one .npz/.h5 of all"
        ),
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="the store to write (.h5)")],
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="class ids (.npy/.npz/.h5/text) unless in --features"),
    ] = None,
    classes: Annotated[
        Path | None, typer.Option("--classes", help="class names, one per line")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="train, val or test (recorded)")] = "",
) -> None:
    """Per-layer backbone features + labels -> one BM-NAS tap store (checked against SPEC)."""
    import mmnasdsl
    from mmnasdsl.data.importers import import_taps

    loaded = mmnasdsl.load(spec)
    if loaded.kind != "bmnas":
        raise UsageError(f"--spec {spec}: tap stores are for BM-NAS spaces (`space bmnas`)")
    split = split or out.stem
    summary = import_taps(loaded, features, out, labels=labels, classes=classes, split=split)
    console.print(summary.line())


def _import(
    importer: Callable[..., Any],
    *inputs: Any,
    features: Path,
    id_map: Path | None,
    out: Path,
    **options: Any,
) -> None:
    """Open the features, run one importer (`inputs`, features, `out`) and print a line per
    store it wrote."""
    from mmnasdsl.data.importers import open_features

    written = importer(*inputs, open_features(features, id_map), out, **options)
    for summary in written if isinstance(written, list) else [written]:
        console.print(summary.line())


@data_app.command("info")
def info(file: Annotated[Path, typer.Argument(help="a store (.h5)")]) -> None:
    """Counts, shapes, vocabulary sizes and the object-count histogram of a store."""
    import numpy as np

    from mmnasdsl.data.store import iter_keys, open_store

    with open_store(file) as f:
        if f.attrs.get("task") == "taps":  # a BM-NAS tap store
            console.print(_taps_table(f, file))
            return
        console.print(_summary_table(f, file))
        console.print(_histogram_table(np.diff(f["images/offsets"][:])))
        keys = Table(title="datasets")
        for col in ("key", "shape", "dtype"):
            keys.add_column(col)
        for key, ds in iter_keys(f):
            keys.add_row(key, str(ds.shape), str(ds.dtype))
        console.print(keys)


def _summary_table(f: object, file: Path) -> Table:
    import h5py
    import numpy as np

    assert isinstance(f, h5py.File)
    t = Table(title=str(file), show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    n_obj = np.diff(f["images/offsets"][:])
    rows = [
        ("task", str(f.attrs["task"])),
        ("split", str(f.attrs.get("split", ""))),
        ("source", str(f.attrs.get("source", ""))),
        ("format version", str(f.attrs["format_version"])),
        ("images", str(len(n_obj))),
        ("objects", str(int(n_obj.sum()))),
        (
            "objects per image",
            f"{n_obj.min()}-{n_obj.max()}, mean {n_obj.mean():.1f}" if len(n_obj) else "-",
        ),
        ("feature dim", str(f["images/features"].shape[1])),
        ("samples", str(f["text/image"].shape[0])),
        ("vocabulary", str(f["text/vocab"].shape[0])),
        ("max tokens", str(int(np.diff(f["text/offsets"][:]).max(initial=0)))),
    ]
    if "vqa/answers" in f:
        rows.append(("answer vocabulary", str(f["vqa/answers"].shape[0])))
    if "text/glove" in f:
        rows.append(("glove", str(f["text/glove"].shape)))
    for r in rows:
        t.add_row(*r)
    return t


def _taps_table(f: Any, file: Path) -> Table:
    """A tap store: its attributes, samples, classes and one row per tap."""
    from mmnasdsl.data.taps import store_taps

    t = Table(title=f"{file} (taps, {f.attrs.get('split', '')}, {f['ids'].shape[0]} samples)")
    for col in ("tap", "input", "per sample", "dtype"):
        t.add_column(col)
    for name, info in store_taps(f).items():
        t.add_row(name, info.modality, str(info.shape), str(f[f"taps/{name}"].dtype))
    labels = "multi-label" if f.attrs.get("multilabel") else "single-label"
    t.caption = f"{f['classes'].shape[0]} classes, {labels}; source: {f.attrs.get('source', '')}"
    return t


def _histogram_table(counts: np.ndarray) -> Table:
    import numpy as np

    t = Table(title="objects per image")
    t.add_column("objects", justify="right")
    t.add_column("images", justify="right")
    t.add_column("")
    hist = np.bincount(counts) if len(counts) else np.zeros(0, int)
    top = max(1, int(hist.max(initial=0)))
    if len(hist) > 20:  # bin wide ranges (paper-sized stores: 10-100 objects)
        edges = np.linspace(0, len(hist), 11).astype(int)
        bins = [(f"{lo}-{hi - 1}", int(hist[lo:hi].sum())) for lo, hi in itertools.pairwise(edges)]
        top = max(1, max(c for _, c in bins))
    else:
        bins = [(str(k), int(c)) for k, c in enumerate(hist) if c]
    for label, c in bins:
        t.add_row(label, str(c), "█" * round(30 * c / top))
    return t


__all__ = ["DataError", "register"]
