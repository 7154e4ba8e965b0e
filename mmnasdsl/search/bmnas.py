"""BM-NAS's search space and its derivation (Yin et al., AAAI 2022; notes §3, §5).

The choice points are the α rows of the official code, in `lang.bmnas_spec.choice_points`
order: per edge a row over ("none", "skip") (softmax per edge: the edges of one cell do not
compete), per searched step a row over its ops. `--searcher darts` trains them as the
official first-order DARTS does; what the weights stand for is this module's `derive`:

- **Pairs** (upper level, notes §5.1): cell by cell, among the states before it (the taps
  *and* the earlier cells: the official code trains the cell-to-cell rows but never reads
  them), the pair whose skip weights have the largest product, skipping a pair whose two
  states were both chosen by earlier cells (the union of their pairs, as the official
  "selected_nodes"). Ties: the first pair in state order. The lower state index is x.
- **Step inputs** (lower level, §5.2): the two predecessors of largest skip weight (ties:
  the first), written in state order (x, y, s1, ...). The official code writes them by
  weight, heavier first, but its supernet feeds each op the same sum twice, so the search
  says nothing about which is the op's first input (notes §4); state order says so.
- **Ops**: the most likely op of each step.

With `model { op_inputs = separate }` each op input has its own edges (slots x and y); a
pair is then ordered: the (x, y) of largest p_x(x)·p_y(y), x ≠ y, under the same exclusion.

An architecture (`Arch`) is one index per point: 1 ("skip") on the chosen edges, 0 on the
others, the op's index. `concrete` writes the spec of `derive(one-hot(arch))`, so any
architecture (a random searcher's too) becomes a valid concrete spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmnasdsl.lang.bmnas_settings import bmnas_model
from mmnasdsl.lang.bmnas_spec import (
    EDGE,
    PAIR,
    BMNasSpec,
    CellPlan,
    ChoiceInfo,
    StepPlan,
    choice_points,
    inner_states,
)
from mmnasdsl.lang.spec import Spec
from mmnasdsl.search.space import SPACES, Arch, ChoicePoint, SearchSpace, SpaceKindSearch

SKIP = EDGE.index("skip")
Key = tuple[str, int | None, str, str | None, str | None]  # cell, step, role, slot, source


@dataclass(frozen=True)
class BMNasSpace(SearchSpace):
    """A BM-NAS space: the choice points, and the structure the derivation reads."""

    infos: tuple[ChoiceInfo, ...] = ()
    cells: tuple[CellPlan, ...] = ()
    taps: tuple[str, ...] = ()
    separate: bool = False

    def key_index(self) -> dict[Key, int]:
        return {(p.cell, p.step, p.role, p.slot, p.source): i for i, p in enumerate(self.infos)}


def _best_pair(
    names: list[str],
    wx: dict[str, float],
    wy: dict[str, float],
    ordered: bool,
    excluded: set[str] | None = None,
) -> tuple[str, str]:
    """The pair of largest wx(a)·wy(b): unordered (a before b in `names`) or ordered (a ≠ b);
    a pair inside `excluded` is skipped unless every pair is. Ties: the first in order."""
    pairs = [
        (a, b)
        for i, a in enumerate(names)
        for j, b in enumerate(names)
        if (i != j if ordered else i < j)
    ]
    allowed = [p for p in pairs if not (excluded and set(p) <= excluded)] or pairs
    best = allowed[0]
    for a, b in allowed[1:]:
        if wx[a] * wy[b] > wx[best[0]] * wy[best[1]]:
            best = (a, b)
    return best


def _top_two(names: list[str], w: dict[str, float]) -> tuple[str, str]:
    """The two names of largest weight (ties: the first), written in `names` order."""
    ranked = sorted(range(len(names)), key=lambda i: (-w[names[i]], i))[:2]
    a, b = sorted(ranked)
    return names[a], names[b]


class Derivation:
    """BM-NAS's rules over one space and its per-point probabilities (module docstring)."""

    def __init__(self, space: BMNasSpace, probabilities: Sequence[Sequence[float]]) -> None:
        self.space, self.probs = space, probabilities
        self.index = space.key_index()
        self.arch: Arch = [0] * len(space.infos)

    def skip(self, cell: str, step: int | None, slot: str | None, names: list[str]) -> dict:
        return {
            n: float(self.probs[self.index[(cell, step, "edge", slot, n)]][SKIP]) for n in names
        }

    def choose(self, cell: str, step: int | None, names: list[str], excluded: set[str] | None):
        """The chosen (x, y) among `names`, marked in the architecture."""
        if self.space.separate:
            wx, wy = (self.skip(cell, step, slot, names) for slot in PAIR)
            pair = _best_pair(names, wx, wy, ordered=True, excluded=excluded)
            for slot, name in zip(PAIR, pair, strict=True):
                self.arch[self.index[(cell, step, "edge", slot, name)]] = SKIP
            return pair
        w = self.skip(cell, step, None, names)
        if step is None:
            pair = _best_pair(names, w, w, ordered=False, excluded=excluded)
        else:
            pair = _top_two(names, w)
        for name in pair:
            self.arch[self.index[(cell, step, "edge", None, name)]] = SKIP
        return pair

    def run(self) -> tuple[Arch, list[CellPlan]]:
        """The architecture and the concrete cells it stands for."""
        selected: set[str] = set()
        before = list(self.space.taps)
        plans = []
        for cell in self.space.cells:
            pair = cell.inputs or self.choose(cell.name, None, before, selected)
            selected |= set(pair)
            steps = [self.step(cell, st) for st in cell.steps]
            plans.append(cell.model_copy(update={"inputs": tuple(pair), "steps": tuple(steps)}))
            before.append(cell.name)
        return self.arch, plans

    def step(self, cell: CellPlan, st: StepPlan) -> StepPlan:
        inputs = st.inputs or self.choose(cell.name, st.index, inner_states(st.index), None)
        op = st.ops[0]
        key = (cell.name, st.index, "op", None, None)
        if key in self.index:
            row = self.probs[self.index[key]]
            k = max(range(len(row)), key=lambda i: row[i])
            self.arch[self.index[key]] = k
            op = st.ops[k]
        return st.model_copy(update={"inputs": tuple(inputs), "ops": (op,)})


def one_hot(space: SearchSpace, arch: Sequence[int]) -> list[list[float]]:
    return [
        [1.0 if k == int(i) else 0.0 for k in range(n)]
        for n, i in zip(space.sizes, arch, strict=True)
    ]


class BMNasSearch(SpaceKindSearch):
    """The search side of `space bmnas` (module docstring)."""

    def space(self, spec: Spec) -> BMNasSpace:
        assert isinstance(spec, BMNasSpec)
        separate = bmnas_model(spec).op_inputs == "separate"
        infos = tuple(choice_points(spec, separate))
        return BMNasSpace(
            kind="bmnas",
            points=tuple(ChoicePoint(p.name, p.candidates) for p in infos),
            infos=infos,
            cells=tuple(spec.cells()),
            taps=tuple(spec.tap_names),
            separate=separate,
        )

    def derive(self, space: SearchSpace, probabilities: Sequence[Sequence[float]]) -> Arch:
        assert isinstance(space, BMNasSpace)
        return Derivation(space, probabilities).run()[0]

    def plans(self, space: SearchSpace, arch: Sequence[int]) -> list[CellPlan]:
        """The concrete cells an architecture stands for (its derivation)."""
        assert isinstance(space, BMNasSpace)
        return Derivation(space, one_hot(space, arch)).run()[1]

    def describe(self, spec: Spec, space: SearchSpace, arch: Sequence[int]) -> dict[str, Any]:
        """{"cells": [{"name", "inputs": [a, b], "steps": [{"op", "inputs"}], "concat"}]}."""
        return {"cells": [describe_cell(c) for c in self.plans(space, arch)]}

    def brief(self, described: Any) -> str:
        """`c1(a2, b0): LinearGLU(x, y) Sum(s1, x) | c2(...): ...`."""
        return " | ".join(
            f"{c['name']}({', '.join(c['inputs'])}): "
            + " ".join(f"{s['op']}({', '.join(s['inputs'])})" for s in c["steps"])
            for c in described["cells"]
        )

    def points_record(self, spec: Spec, space: SearchSpace) -> list[dict[str, Any]]:
        """One entry per point: its cell (`stack`), place in the cell, name and candidates."""
        assert isinstance(space, BMNasSpace)
        out, count = [], {}
        for p in space.infos:
            k = count[p.cell] = count.get(p.cell, -1) + 1
            out.append({"stack": p.cell, "index": k, "name": p.name, "choices": list(p.candidates)})
        return out

    def concrete(self, spec: Spec, space: SearchSpace, arch: Sequence[int]) -> Spec:
        assert isinstance(spec, BMNasSpec)
        return spec.replace_cells(self.plans(space, arch))


def describe_cell(plan: CellPlan) -> dict[str, Any]:
    assert plan.inputs is not None
    return {
        "name": plan.name,
        "inputs": list(plan.inputs),
        "steps": [{"op": s.ops[0], "inputs": list(s.inputs or ())} for s in plan.steps],
        "concat": plan.concat,
    }


SPACES.register("bmnas")(BMNasSearch())
