"""Shared test helpers for the spec-language tests: corpus paths and expectations."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from mmnasdsl.lang.kinds import declared_kind

ROOT = Path(__file__).resolve().parent.parent


def of_kind(paths: list[Path], kind: str) -> list[Path]:
    return [p for p in paths if declared_kind(p.read_text(encoding="utf-8"))[0] == kind]


ALL_SHIPPED = sorted((ROOT / "specs").glob("*.mmnas"))
SHIPPED = of_kind(ALL_SHIPPED, "mmnas")  # the MMnas specs; BM-NAS: below
VALID = sorted((ROOT / "tests" / "specs" / "valid").glob("*.mmnas"))
INVALID = sorted((ROOT / "tests" / "specs" / "invalid").glob("*.mmnas"))

# BM-NAS (`space bmnas`): shipped specs and the corpus of tests/specs/bmnas/
BMNAS_SHIPPED = of_kind(ALL_SHIPPED, "bmnas")
BMNAS_VALID = sorted((ROOT / "tests" / "specs" / "bmnas" / "valid").glob("*.mmnas"))
BMNAS_INVALID = sorted((ROOT / "tests" / "specs" / "bmnas" / "invalid").glob("*.mmnas"))
BMNAS_KEYWORDS = ("space", "model", "input", "pool", "cell", "head", "data", "search", "train")

# The keywords of the grammar (mmnas.lark): reserved, so never a name.
KEYWORDS = (
    "model",
    "input",
    "pool",
    "encoder",
    "decoder",
    "head",
    "data",
    "search",
    "train",
    "guide",
)

_HEADER = re.compile(r"# error: (\d+):(\d+) (.+)")


def expected_errors(path: Path) -> list[tuple[int, int, str]]:
    """The `# error: LINE:COL fragment` lines at the top of an invalid spec, in order."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _HEADER.fullmatch(line.strip())
        if m is None:
            break
        out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return out


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py imported as module `bench_<name>` (bench/ is no package); registered in
    sys.modules so its dataclasses and pickles resolve."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
