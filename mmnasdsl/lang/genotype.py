"""Interchange with the official BM-NAS code's genotypes (Somedaywilldo/BM-NAS; notes §8).

Its written form is the repr of two namedtuples:

    Genotype(edges=[('skip', 2), ('skip', 7), ...], steps=[StepGenotype(inner_edges=[('skip',
    0), ('skip', 1), ...], inner_steps=['LinearGLU', ...], inner_concat=[2, 3]), ...],
    concat=[8, 9])

`edges` holds two (op, state) per cell, x then y; a state index is a tap (0..N-1, in the
spec's order: its first input's taps, then the next input's) or a cell's output (N + i).
`inner_edges` holds two per step, over 0 = x, 1 = y, 2 + j = step j; `inner_concat` and
`concat` list the concatenated states, always the last ones. The official code logs that
repr and pickles the namedtuples (`best_genotype.pkl`).

- `read_genotype(text)`: the repr, parsed with `ast` (never evaluated); a log's last
  `Genotype(...)` is taken. `read_genotype_pickle(data)`: the pickle, through an unpickler
  that admits only the two namedtuples and plain values.
- `genotype_to_spec(g, space)`: a concrete spec with every setting of the BM-NAS space
  `space` and the genotype's pairs and steps; the genotype must be one of that space (its
  cells, steps, ops and concat counts), else `ConvertError` says where it differs.
- `spec_to_genotype(spec)`: a concrete BM-NAS spec as that repr.

Op names are the official ones (`Sum`, `ScaleDotAttn`, `LinearGLU`, `ConcatFC`), also its
old ones (`sum`, `scale_dot_attn`, `cat_conv_glu`, `cat_conv_relu`), in any case.
"""

from __future__ import annotations

import ast
import io
import pickle
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from mmnasdsl.lang.bmnas_settings import fused_features
from mmnasdsl.lang.bmnas_spec import BMNasSpec, CellPlan, StepPlan, inner_states
from mmnasdsl.lang.convert import ConvertError

Genotype = namedtuple("Genotype", "edges steps concat")
StepGenotype = namedtuple("StepGenotype", "inner_edges inner_steps inner_concat")

# the official op names before its rename (notes §2.2)
OLD_NAMES = {
    "sum": "Sum",
    "scale_dot_attn": "ScaleDotAttn",
    "cat_conv_glu": "LinearGLU",
    "cat_conv_relu": "ConcatFC",
}


# ------------------------------------------------------------------------------ reading


def read_genotype(text: str, source: str = "<genotype>") -> Genotype:
    """The last `Genotype(...)` in `text` (a repr, or a log holding some), parsed safely."""
    start = text.rfind("Genotype(")
    if start < 0:
        raise ConvertError(f"{source}: no Genotype(...) in the file")
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start = text.rfind("Genotype(", 0, start)  # (that was a StepGenotype)
    body = _balanced(text, start, source)
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError as exc:
        raise ConvertError(f"{source}: not a readable Genotype: {exc.msg}") from None
    value = _literal(tree, source)
    if not isinstance(value, Genotype):
        raise ConvertError(f"{source}: expected Genotype(edges=..., steps=..., concat=...)")
    return value


def _balanced(text: str, start: int, source: str) -> str:
    depth, quote = 0, ""
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    raise ConvertError(f"{source}: the Genotype(...) is not closed")


_CALLS = {"Genotype": Genotype, "StepGenotype": StepGenotype}


def _literal(node: ast.AST, source: str) -> Any:
    """Lists, tuples, strings, integers and the two namedtuple calls; nothing else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, source) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS:
        cls = _CALLS[node.func.id]
        args = [_literal(a, source) for a in node.args]
        kwargs = {k.arg: _literal(k.value, source) for k in node.keywords if k.arg}
        try:
            return cls(*args, **kwargs)
        except TypeError as exc:
            raise ConvertError(f"{source}: {node.func.id}(...): {exc}") from None
    where = f"line {getattr(node, 'lineno', '?')}"
    raise ConvertError(f"{source}: unexpected {type(node).__name__} at {where} of the Genotype")


class _GenotypeUnpickler(pickle.Unpickler):
    """Admits the official namedtuples (any module path) and nothing that could run code."""

    def find_class(self, module: str, name: str) -> Any:
        if name in _CALLS:
            return _CALLS[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_genotype_pickle(data: bytes, source: str = "<pickle>") -> Genotype:
    """The official `best_genotype.pkl` (a pickled Genotype)."""
    try:
        value = _GenotypeUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # any malformed pickle is the file's fault
        raise ConvertError(f"{source}: not a genotype pickle ({exc})") from None
    if not isinstance(value, tuple) or len(value) != 3:
        raise ConvertError(f"{source}: the pickle holds {type(value).__name__}, not a Genotype")
    edges, steps, concat = value
    return Genotype(edges, [StepGenotype(*s) for s in steps], concat)


# ------------------------------------------------------------------- genotype -> spec


def op_name(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise ConvertError(f"{where}: expected an op name, got {name!r}")
    known = {**{v.lower(): v for v in OLD_NAMES.values()}, **OLD_NAMES}
    if name.lower() not in known:
        names = ", ".join(OLD_NAMES.values())
        raise ConvertError(f"{where}: unknown op {name!r}; expected one of {names}")
    return known[name.lower()]


def _pairs(edges: Any, n: int, where: str) -> list[int]:
    """The state indices of `n` (op, state) edges; every op must be 'skip'."""
    if not isinstance(edges, list) or len(edges) != n:
        got = len(edges) if isinstance(edges, list) else type(edges).__name__
        raise ConvertError(f"{where}: expected {n} edges, got {got}")
    out = []
    for k, edge in enumerate(edges):
        if not (isinstance(edge, tuple) and len(edge) == 2 and isinstance(edge[1], int)):
            raise ConvertError(f"{where}[{k}]: expected ('skip', state), got {edge!r}")
        if edge[0] != "skip":
            raise ConvertError(f"{where}[{k}]: edge op {edge[0]!r}; a derived edge is 'skip'")
        out.append(edge[1])
    return out


def _last(indices: Any, first: int, count: int, what: str, where: str) -> int:
    """How many of the last states `indices` concatenates (they must be the last ones)."""
    if not isinstance(indices, list) or not indices:
        raise ConvertError(f"{where}: expected a list of {what}")
    n = len(indices)
    want = list(range(first + count - n, first + count))
    if indices != want:
        raise ConvertError(f"{where}: {indices} are not the last {what} {want}")
    return n


def genotype_to_spec(g: Genotype, space: BMNasSpec, source: str = "<genotype>") -> BMNasSpec:
    """A concrete spec: the space's settings with the genotype's pairs and steps."""
    taps, cells = space.tap_names, space.cells()
    if len(g.edges) != 2 * len(cells) or len(g.steps) != len(cells):
        raise ConvertError(
            f"{source}: {len(g.edges) // 2} cells with {len(g.steps)} step lists; the space "
            f"{space.source} has {len(cells)} cells"
        )
    states = taps + [c.name for c in cells]
    plans = []
    for i, (cell, step_g) in enumerate(zip(cells, g.steps, strict=True)):
        where = f"{source}: cell {i} ({cell.name})"
        a, b = _pairs(g.edges[2 * i : 2 * i + 2], 2, f"{where} edges")
        for idx in (a, b):
            if not 0 <= idx < len(taps) + i:
                raise ConvertError(
                    f"{where}: state {idx} is not before the cell (0..{len(taps) + i - 1}: "
                    f"{', '.join(states[: len(taps) + i])})"
                )
        steps = _steps(cell, step_g, where)
        plans.append(cell.model_copy(update={"inputs": (states[a], states[b]), "steps": steps}))
    m = _last(g.concat, len(taps), len(cells), "cell outputs", f"{source}: concat")
    if m != fused_features(space).cells:
        raise ConvertError(
            f"{source}: the head reads the last {m} cells; the space's model reads "
            f"{fused_features(space).cells} (model {{ concat }})"
        )
    return space.replace_cells(plans)


def _steps(cell: CellPlan, sg: Any, where: str) -> tuple[StepPlan, ...]:
    if not isinstance(sg, StepGenotype):
        raise ConvertError(f"{where}: expected StepGenotype(...), got {sg!r}")
    ns = len(cell.steps)
    if not isinstance(sg.inner_steps, list) or len(sg.inner_steps) != ns:
        raise ConvertError(f"{where}: {len(sg.inner_steps)} steps; the space's cell has {ns}")
    edges = _pairs(sg.inner_edges, 2 * ns, f"{where} inner_edges")
    nm = _last(sg.inner_concat, 2, ns, "steps", f"{where} inner_concat")
    if nm != cell.concat:
        raise ConvertError(f"{where}: concatenates {nm} steps; the space's cell {cell.concat}")
    out = []
    for k, plan in enumerate(cell.steps):
        names = inner_states(k)
        a, b = edges[2 * k], edges[2 * k + 1]
        if not (0 <= a < len(names) and 0 <= b < len(names)):
            raise ConvertError(f"{where} step {k}: reads a state that is not before it")
        op = op_name(sg.inner_steps[k], f"{where} step {k}")
        if op not in plan.ops:
            raise ConvertError(f"{where} step {k}: {op} is not among {', '.join(plan.ops)}")
        out.append(plan.model_copy(update={"ops": (op,), "inputs": (names[a], names[b])}))
    return tuple(out)


# ------------------------------------------------------------------- spec -> genotype


def spec_to_genotype(spec: BMNasSpec) -> Genotype:
    """The official genotype of a concrete BM-NAS spec."""
    if not spec.is_concrete:
        raise ConvertError(f"{spec.source} is a search space; convert a concrete spec")
    cells = spec.cells()
    states = spec.tap_names + [c.name for c in cells]
    edges, steps = [], []
    for cell in cells:
        assert cell.inputs is not None
        edges += [("skip", states.index(n)) for n in cell.inputs]
        inner, ops = [], []
        for st in cell.steps:
            assert st.inputs is not None
            names = inner_states(st.index)
            inner += [("skip", names.index(n)) for n in st.inputs]
            ops.append(st.ops[0])
        ns = len(cell.steps)
        steps.append(StepGenotype(inner, ops, list(range(2 + ns - cell.concat, 2 + ns))))
    n, m = len(spec.tap_names) + len(cells), fused_features(spec).cells
    return Genotype(edges, steps, list(range(n - m, n)))


def format_genotype(g: Genotype) -> str:
    """The repr the official code logs (namedtuple reprs of lists, tuples and strings)."""
    return repr(Genotype(list(g.edges), [StepGenotype(*s) for s in g.steps], list(g.concat)))


__all__: Sequence[str] = [
    "Genotype",
    "StepGenotype",
    "format_genotype",
    "genotype_to_spec",
    "read_genotype",
    "read_genotype_pickle",
    "spec_to_genotype",
]
