"""Run directories: where search and train write, atomically, and how they resume.

A run directory (docs/interfaces.md "Run directories") holds arch.mmnas, history.json,
checkpoint.pt, log.txt (search) or best.pt, last.pt, metrics.json (train). Every file is
written to a temporary name and renamed, so a run killed at any instant leaves either
the old or the new file, never half of one. Checkpoints hold only tensors, dicts, lists,
numbers and strings, so `torch.load(weights_only=True)` reads them.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmnasdsl.lang.errors import UsageError

RUNS_ROOT = Path("runs")
LOG_NAME = "log.txt"  # written from the start of a run; alone, it is no run to resume


# ------------------------------------------------------------------------ atomic writes


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write text atomically (temp file + os.replace)."""
    _atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically, indented so a run directory reads well."""
    write_text(path, json.dumps(obj, indent=1) + "\n")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save atomically."""
    _atomic(path, lambda f: torch.save(state, f))


# What torch.load raises on a file that is not a checkpoint it wrote: a garbage file is an
# UnpicklingError, a truncated one an EOFError or a zip error, a foreign pickle any of the
# others (weights_only refuses to build objects).
_UNREADABLE = (
    OSError,
    RuntimeError,
    EOFError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    UnicodeDecodeError,
)

UNREADABLE = _UNREADABLE  # for the readers of other formats (train/weights.py)

# What loading a checkpoint's contents into a model, an optimiser or the RNGs raises when
# they do not fit (missing keys, wrong shapes or types): a damaged file, not a bug.
DAMAGED = (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True (no pickled code runs); a UsageError naming the
    file for anything that is not a checkpoint dict."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(
            f"{path}: not a mmnasdsl checkpoint ({reason[:200]}); "
            "expected best.pt, last.pt or checkpoint.pt of a run"
        ) from None
    if not isinstance(ckpt, dict):
        raise UsageError(f"{path}: not a mmnasdsl checkpoint (it holds a {type(ckpt).__name__})")
    return ckpt


# kind of run -> how a message names its checkpoint, and what the run did to its spec
_RESUMABLE = {"search": ("search", "searched"), "train": ("training", "trained")}


def check_resumable(
    ckpt: dict[str, Any], path: Path, kind: str, spec_text: str, **same: Any
) -> None:
    """Refuse to resume from `path` (in the run directory) if it was written by another
    kind of run ("search", "train"), for another spec (`spec_text`, formatted), or with
    other values of the checkpoint keys in `same` (seed, settings, ...): a resumed run must
    be the run it continues."""
    noun, verb = _RESUMABLE[kind]
    if ckpt.get("kind") != kind:
        raise UsageError(f"{path} is not a {noun} checkpoint")
    if ckpt.get("spec") != spec_text:
        raise UsageError(f"cannot resume: {path.parent} {verb} a different spec")
    for what, mine in same.items():
        if ckpt.get(what) != mine:
            raise UsageError(
                f"cannot resume: the {what} differs from the run's "
                f"({ckpt.get(what)}); resume with the same flags"
            )


def resumed(ckpt: dict[str, Any], run_dir: Path, log: logging.Logger) -> None:
    """The last step of a resume: the RNG states restored, and a line in the run's log."""
    set_rng_state(ckpt["rng"])
    state = ckpt["state"]
    log.info("resuming %s at epoch %d step %d", run_dir, state["epoch"] + 1, state["step"])


# ------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states as checkpoint-safe values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "python": {"version": version, "state": list(internal), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def step_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, step, ...): resume needs no
    generator state, because every step reseeds from where it is."""
    h = seed & 0xFFFFFFFFFFFF
    for p in parts:
        h = (h * 0x100000001B3 + p + 0x9E3779B97F4A7C15) % (1 << 63)
    return h


def generator(seed: int, *parts: int) -> torch.Generator:
    """A torch.Generator seeded by `step_seed(seed, *parts)`."""
    return torch.Generator().manual_seed(step_seed(seed, *parts))


# ----------------------------------------------------------------------- run directories


def run_name(spec_path: str | Path) -> str:
    """The spec's stem; a searched `<run>/arch.mmnas` is named after its search run, so
    `mmnasdsl train runs/shapes-vqa/arch.mmnas` trains in runs/shapes-vqa-train."""
    p = Path(spec_path)
    return f"{p.resolve().parent.name}-train" if p.stem == "arch" else p.stem


def default_run_dir(spec_path: str | Path, root: Path = RUNS_ROOT) -> Path:
    """runs/<name>, or runs/<name>-2, -3, ... : never an earlier run's directory."""
    stem = run_name(spec_path)
    candidate, n = root / stem, 1
    while candidate.exists() and (not candidate.is_dir() or holds_a_run(candidate)):
        n += 1
        candidate = root / f"{stem}-{n}"
    return candidate


def holds_a_run(path: Path) -> bool:
    """True when a directory holds anything besides a log: a log alone is what a run that
    failed while setting up leaves, and a retry may start over it."""
    return any(p.name != LOG_NAME for p in path.iterdir())


def discard_unused(path: Path, created: bool) -> None:
    """After a run failed: when its directory holds nothing but the log (nothing to resume,
    nothing written), remove the log, and the directory if this run created it, so the
    retry starts clean."""
    try:
        if not path.is_dir() or holds_a_run(path):
            return
        (path / LOG_NAME).unlink(missing_ok=True)
        if created:
            path.rmdir()
    except OSError:  # a busy or read-only directory stays; the failure itself is reported
        pass


def prepare_run_dir(
    out: str | Path | None, spec_path: str | Path, *, resume: bool, marker: str
) -> Path:
    """The run directory to use, created; refuses to overwrite or to resume nothing.

    Args:
        out: the `-o` flag, or None for a fresh directory under runs/.
        spec_path: the spec file (names the default directory).
        resume: continue the run in `out` from its `marker` checkpoint.
        marker: the checkpoint file a resumable run leaves (checkpoint.pt, last.pt).
    """
    if out is None:
        if resume:
            raise UsageError("--resume needs -o RUNDIR (the run to continue)")
        path = default_run_dir(spec_path)
    else:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise UsageError(f"-o {path}: a file, not a run directory; choose another -o")
        busy = path.is_dir() and holds_a_run(path)
        if resume and not (path / marker).is_file():
            raise UsageError(f"cannot resume: {path / marker} does not exist")
        if busy and not resume:
            raise UsageError(
                f"run directory {path} is not empty; pass --resume to continue "
                "that run, or choose another -o"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"-o {path}: cannot write the run directory ({exc.strerror or exc}); choose another -o"
        ) from None
    return path
