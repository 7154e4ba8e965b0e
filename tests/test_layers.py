"""The package's layering: each stage imports only from stages below it, and no module-level
import cycle exists (docs/design.md, "The house")."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PKG = Path(__file__).resolve().parents[1] / "mmnasdsl"

# Bottom to top. The facade (`mmnasdsl/__init__.py`: load, loads, catalog) sits above the
# registries it reads; `cli.py` and `__main__.py` are the top.
STAGES = [
    "lang",
    "data",
    "ops",
    "heads",
    "mmnasdsl",
    "compile",
    "train",
    "search",
    "render",
    "commands",
    "cli",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return STAGES.index("mmnasdsl")
    key = "cli" if parts[1] in ("cli", "__main__") else parts[1]
    return STAGES.index(key)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported mmnasdsl module, at module level?) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "mmnasdsl" and is_module(name):
                out.append((name, id(node) in top))
    return out


def is_module(name: str) -> bool:
    path = PKG.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> tuple[nx.DiGraph, list[tuple[str, str]]]:
    g, upward = nx.DiGraph(), []
    for path in PKG.rglob("*.py"):
        me = module_name(path)
        for other, module_level in imports(path):
            if other == me or me.startswith(other + "."):
                continue  # a package's own parents are imported implicitly
            if stage(other) > stage(me):
                upward.append((me, other))
            if module_level:
                g.add_edge(me, other)
    return g, upward


def test_no_module_imports_from_a_stage_above_its_own() -> None:
    _, upward = graph()
    assert upward == [], "imports from a higher stage: " + ", ".join(
        f"{a} -> {b}" for a, b in upward
    )


def test_no_import_cycle() -> None:
    g, _ = graph()
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], cycles


def test_every_folder_says_what_it_owns() -> None:
    for init in PKG.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "TODO" not in doc, f"{init} needs a docstring saying what it owns"
