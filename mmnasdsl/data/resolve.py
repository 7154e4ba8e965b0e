"""Where a spec's data lives: the `--data` folder, or the source its `data NAME(...)`
statement names in `data.sources.SOURCES`: `h5(root)` (imported stores), a built-in world's
cache (`shapes`, `planted`, registered here) or BM-NAS's `xor` (`data/xor.py`).

`shapes` data is generated on first use into `data/shapes/<task>-<scenes>-<seed>-v<world>/`
under $MMNASDSL_DATA (default: `data/` in the working directory), so every command runs on
a fresh machine with no download and the second run reuses the files; `<world>` is
`shapes.WORLD_VERSION`, so files of an older world are never reused. `planted` data
(VQA only) goes likewise into `data/planted/<rsa|ga>-<scenes>-<seed>-v<world>/`, keyed by
`planted.WORLD_VERSION`.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from mmnasdsl.data.kinds import DataKind, get_kind
from mmnasdsl.data.loader import FeatureDataset
from mmnasdsl.data.sources import SOURCES
from mmnasdsl.lang.errors import DataError
from mmnasdsl.lang.settings import data_settings, input_settings
from mmnasdsl.lang.spec import Spec

SPLIT_NAMES = ("train", "val", "test")
SHAPES_TASKS = ("vqa", "itm", "vg")  # the data kinds the built-in world generates


def data_root() -> Path:
    return Path(os.environ.get("MMNASDSL_DATA", "data"))


def shapes_folder(task: str, scenes: int, seed: int) -> Path:
    from mmnasdsl.data.shapes import WORLD_VERSION

    return data_root() / "shapes" / f"{task}-{scenes}-{seed}-v{WORLD_VERSION}"


def planted_folder(task: str, scenes: int, seed: int) -> Path:
    from mmnasdsl.data.planted import WORLD_VERSION

    return data_root() / "planted" / f"{task}-{scenes}-{seed}-v{WORLD_VERSION}"


def resolve(spec: Spec, kind: str, data: str | None = None) -> Path:
    """The folder with train.h5/val.h5/test.h5 for this spec; a generated source makes its
    stores there when they are missing.

    Args:
        spec: a checked spec; its `data NAME(...)` statement names the source (default
            `shapes`), looked up in `data.sources.SOURCES`.
        kind: the data kind of its task (`Task.data_kind`: "vqa", "itm", "vg", "taps").
        data: the `--data` flag, which wins over the spec.
    """
    if data is not None:
        return _existing(Path(data), "--data")
    name = spec.data.call.name if spec.data is not None else "shapes"
    return SOURCES.get(name)(spec, kind)


@SOURCES.register("h5")
def _h5_source(spec: Spec, kind: str) -> Path:
    """`data h5(root = "DIR")`: stores the user imported."""
    root = data_settings(spec).root
    if not root:
        raise DataError(f'{spec.source}: data h5(...) needs root = "FOLDER"')
    return _existing(Path(root), "data h5(root)")


@SOURCES.register("planted")
def _planted_source(spec: Spec, kind: str) -> Path:
    """`data planted(task = rsa|ga, ...)`: the worlds that plant one op (VQA only)."""
    settings = data_settings(spec)
    if kind != "vqa":
        raise DataError(
            f"{spec.source}: planted data is VQA data, but the head's data kind is "
            f"{kind!r} (use head vqa(...))"
        )
    assert settings.task is not None  # DataSettings requires it
    folder = planted_folder(settings.task, settings.scenes, settings.seed)
    if not all((folder / f"{s}.h5").is_file() for s in SPLIT_NAMES):
        generate_planted_with_progress(settings.task, folder, settings.scenes, settings.seed)
    return folder


@SOURCES.register("shapes")
def _shapes_source(spec: Spec, kind: str) -> Path:
    """`data shapes(...)` or no data statement: the built-in world, for the task's kind."""
    settings = data_settings(spec)
    if kind not in SHAPES_TASKS:
        raise DataError(
            f"{spec.source}: the built-in shapes world has no {kind!r} data "
            f"(it makes {', '.join(SHAPES_TASKS)}); give --data or data h5(root = ...)"
        )
    folder = shapes_folder(kind, settings.scenes, settings.seed)
    if not all((folder / f"{s}.h5").is_file() for s in SPLIT_NAMES):
        generate_with_progress(kind, folder, settings.scenes, settings.seed)
    return folder


def _existing(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such data folder (from {what})")
    return folder


def generate_with_progress(task: str, folder: Path, scenes: int, seed: int) -> None:
    """Generate `shapes` stores with a rich progress bar on stderr."""
    from rich.progress import Progress

    from mmnasdsl.data.shapes import generate, split_sizes

    total = sum(split_sizes(scenes).values())
    with Progress(transient=True) as bar:
        job = bar.add_task(f"generating shapes {task} ({scenes} scenes) in {folder}", total=total)
        generate(task, folder, scenes, seed, progress=lambda n: bar.advance(job, n))


def generate_planted_with_progress(task: str, folder: Path, scenes: int, seed: int) -> None:
    """Generate `planted` stores (task "rsa" or "ga") with a rich progress bar on stderr."""
    from rich.progress import Progress

    from mmnasdsl.data.planted import generate, split_sizes

    total = sum(split_sizes(scenes).values())
    with Progress(transient=True) as bar:
        job = bar.add_task(f"generating planted {task} ({scenes} scenes) in {folder}", total=total)
        generate(task, folder, scenes, seed, progress=lambda n: bar.advance(job, n))


def open_split(folder: str | Path, split: str, spec: Spec | None = None) -> FeatureDataset:
    """One split of a data folder (`<folder>/<split>.h5`) as a lazy FeatureDataset.

    With a spec, sentences and object lists are cut to its `words(max_len)` and
    `objects(max)`.
    """
    path = Path(folder) / f"{split}.h5"
    if not path.is_file():
        raise DataError(f"{path}: no '{split}' split in {folder}")
    kind = store_kind(path)
    if kind is not None and kind.own_layout:  # BM-NAS taps: data/taps.py
        return kind.open(path, spec)
    if spec is None:
        return FeatureDataset(path)
    limits, dim = _limits(spec)
    dataset = FeatureDataset(path, **limits)
    if dim is not None and dataset.feature_dim != dim:
        raise DataError(
            f"{path}: object features are {dataset.feature_dim}-d but "
            f"{spec.source} declares objects(dim = {dim})"
        )
    return dataset


def store_kind(path: Path) -> DataKind | None:
    """The data kind a store says it holds (its `task` attribute), or None when the file
    does not say (`FeatureDataset` then reports what is wrong with it)."""
    try:
        with h5py.File(path, "r") as f:
            task = f.attrs.get("task")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 store ({exc})") from None
    if task is None:
        return None
    name = task.decode() if isinstance(task, bytes) else str(task)
    return get_kind(name, str(path))


def _limits(spec: Spec) -> tuple[dict[str, int], int | None]:
    """Cut lengths from the spec's inputs, and its declared object feature width."""
    out, dim = {}, None
    for name, decl in spec.inputs.items():
        s = input_settings(spec, name)
        if decl.source.name == "words":
            out["max_words"] = s.max_len  # type: ignore[union-attr]
        elif decl.source.name == "objects":
            out["max_objects"] = s.max  # type: ignore[union-attr]
            dim = s.dim  # type: ignore[union-attr]
    return out, dim
