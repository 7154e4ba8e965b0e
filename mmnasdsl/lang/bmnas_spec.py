"""The AST of BM-NAS spaces (`space bmnas`) and the spec class that reads it.

BM-NAS (Yin, Huang, Zhang, AAAI 2022) fuses the layers ("taps") of frozen unimodal
backbones. Its upper level picks, per fusion cell, which two states to fuse: a tap or an
earlier cell's output. Its lower level is each cell's inner DAG: `steps` inner steps, each
an op over two earlier inner states (x, y: the cell's pair; s1, s2, ...: earlier steps).

A spec says all of it in text:

    input a { a0 = tap(channels = 32, length = 4) ... }   a modality and its taps
    pool fusion = Sum | ScaleDotAttn | LinearGLU | ConcatFC
    cell c1 = fusion * 2                                   pair and steps searched
    cell c1(a2, b0) = LinearGLU(x, y) Sum(s1, x)           the same cell, all fixed

`model`, `pool`, `head`, `data`, `search` and `train` are the MMnas statement nodes
(`lang.spec`); what is new here is `TapsDecl`, `CellDecl` and the step items. `BMNasSpec`
is the `Spec` of this kind: its `cells()` expand the text into `CellPlan`s (the one cell
order of the project: supernet, α, history, render), and it answers `is_concrete`,
`search_space_size` and `replace_cells` (the searcher's write-back).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from mmnasdsl.lang.spec import (
    NO_SPAN,
    Arg,
    Choice,
    Ident,
    Node,
    Option,
    PoolDecl,
    Ref,
    SpaceDecl,
    Span,
    Spec,
    pool_members,
)

PAIR = ("x", "y")  # the names of a cell's two inputs inside it
MAX_STEPS = 64  # inner steps per cell; keeps `Sum * 100000` from expanding before it is reported


def step_state(k: int) -> str:
    """The name of inner step k (0-based) as an input of later steps: s1, s2, ..."""
    return f"s{k + 1}"


def inner_states(k: int) -> list[str]:
    """What inner step k (0-based) may read: x, y and the steps before it."""
    return [*PAIR, *(step_state(j) for j in range(k))]


# ------------------------------------------------------------------------------ nodes


class TapsDecl(Node):
    """`input MODALITY { NAME = tap(...) ... }`: one backbone and the layers it is tapped at."""

    name: str
    options: tuple[Option, ...] = ()


class OpCall(Node):
    """`OP(a, b)`: an inner step running op (or pool) OP on inner states a and b (a = x/query)."""

    kind: Literal["op_call"] = "op_call"
    name: str
    x: str
    y: str
    x_span: Span = Field(default=NO_SPAN, repr=False)
    y_span: Span = Field(default=NO_SPAN, repr=False)


class StepRepeat(Node):
    """`step * n`: the step n times (each a step of its own)."""

    kind: Literal["step_repeat"] = "step_repeat"
    step: Ref | Choice | OpCall
    count: int


StepItem = Union[Ref, Choice, OpCall, StepRepeat]  # noqa: UP007


class CellDecl(Node):
    """`cell NAME(a, b, concat = n) = steps`: a fusion cell. The positional names are its
    pair (taps or earlier cells; none: searched); `concat` its output's last steps."""

    name: str
    args: tuple[Arg, ...] = ()
    body: tuple[StepItem, ...]

    @property
    def pair(self) -> tuple[str, ...]:
        """The positional names (the checker wants none or two)."""
        return tuple(
            a.value.name for a in self.args if a.key is None and isinstance(a.value, Ident)
        )

    def option(self, key: str) -> Arg | None:
        return next((a for a in self.args if a.key == key), None)


# --------------------------------------------------------------------- expanded plans


class StepPlan(BaseModel):
    """One inner step after expansion: its candidate ops, its inputs (None: searched)."""

    model_config = ConfigDict(frozen=True)
    index: int
    ops: tuple[str, ...]
    inputs: tuple[str, str] | None = None
    span: Span = Field(default=NO_SPAN, repr=False)

    @property
    def name(self) -> str:
        return step_state(self.index)


class CellPlan(BaseModel):
    """One cell after expansion: its pair (None: searched), steps and concat count."""

    model_config = ConfigDict(frozen=True)
    name: str
    index: int
    inputs: tuple[str, str] | None
    steps: tuple[StepPlan, ...]
    concat: int
    span: Span = Field(default=NO_SPAN, repr=False)

    @property
    def concat_steps(self) -> list[int]:
        """The steps (0-based) the cell concatenates: its last `concat`."""
        n = len(self.steps)
        return list(range(n - self.concat, n))


def _expand_steps(items: tuple[StepItem, ...], pools: dict[str, PoolDecl]) -> list[StepPlan]:
    out: list[StepPlan] = []
    memo: dict[str, tuple[str, ...]] = {}

    def add(item: Ref | Choice | OpCall) -> None:
        if isinstance(item, Choice):
            ops: list[str] = []
            for ref in item.options:
                ops += [o for o in pool_members(ref.name, pools, memo) if o not in ops]
            out.append(StepPlan(index=len(out), ops=tuple(ops), span=item.span))
        else:
            ops_t = pool_members(item.name, pools, memo)
            inputs = (item.x, item.y) if isinstance(item, OpCall) else None
            out.append(StepPlan(index=len(out), ops=ops_t, inputs=inputs, span=item.span))

    for item in items:
        if isinstance(item, StepRepeat):
            for _ in range(max(0, min(item.count, MAX_STEPS + 1))):
                add(item.step)
        else:
            add(item)
    return out


def count_steps(items: tuple[StepItem, ...]) -> int:
    """The number of steps a body expands to, without expanding it."""
    return sum(max(i.count, 0) if isinstance(i, StepRepeat) else 1 for i in items)


# ------------------------------------------------------------------ choice points

EDGE = ("none", "skip")  # the candidates of every edge, at both levels (notes §2.1)


@dataclass(frozen=True)
class ChoiceInfo:
    """One choice point of a BM-NAS space, in the one order the supernet's routes, α, the
    derivation and history.json share (`choice_points`).

    An *edge* says how much of predecessor `source` enters: candidates ("none", "skip");
    with `op_inputs = separate` each predecessor has two edges, one per op input (`slot`
    "x" or "y"). An *op* point chooses a step's fusion op. `step` is None for the edges of
    a cell's pair (the upper level), else the inner step.
    """

    cell: str
    step: int | None
    role: Literal["edge", "op"]
    candidates: tuple[str, ...]
    source: str | None = None
    slot: str | None = None

    @property
    def name(self) -> str:
        """`c1<-a2`, `c1.x<-a2` (separate), `c1.s2<-s1`, `c1.s2` (the op of step 2)."""
        where = self.cell if self.step is None else f"{self.cell}.{step_state(self.step)}"
        if self.role == "op":
            return where
        return f"{where}{'.' + self.slot if self.slot else ''}<-{self.source}"


def edge_points(cell: str, step: int | None, sources: list[str], separate: bool) -> list:
    slots: tuple[str | None, ...] = ("x", "y") if separate else (None,)
    return [
        ChoiceInfo(cell, step, "edge", EDGE, source=src, slot=slot)
        for slot in slots
        for src in sources
    ]


def choice_points(spec: BMNasSpec, separate: bool = False) -> list[ChoiceInfo]:
    """Every choice point of the space, cell by cell: the pair's edges (over the taps and
    the earlier cells, when the pair is searched), then per step its edges (over x, y and
    the earlier steps, when its inputs are searched) and its op (when it has several)."""
    out: list[ChoiceInfo] = []
    before = list(spec.tap_names)
    for cell in spec.cells():
        if cell.inputs is None:
            out += edge_points(cell.name, None, before, separate)
        for step in cell.steps:
            if step.inputs is None:
                out += edge_points(cell.name, step.index, inner_states(step.index), separate)
            if len(step.ops) > 1:
                out.append(ChoiceInfo(cell.name, step.index, "op", step.ops))
        before.append(cell.name)
    return out


# ------------------------------------------------------------------------ the spec


class BMNasSpec(Spec):
    """A parsed `space bmnas` file (see the module docstring)."""

    # -- lookups (first match; the checker reports duplicates) -------------------------

    def taps_decls(self) -> list[TapsDecl]:
        return list(self.of_type(TapsDecl))

    def tap_decls(self) -> dict[str, tuple[str, Option]]:
        """Tap name -> (its modality, its option), in state order; the first of duplicates."""
        out: dict[str, tuple[str, Option]] = {}
        for decl in self.taps_decls():
            for opt in decl.options:
                out.setdefault(opt.key, (decl.name, opt))
        return out

    @property
    def tap_names(self) -> list[str]:
        return list(self.tap_decls())

    @property
    def modalities(self) -> dict[str, list[str]]:
        """Modality -> its tap names, in source order."""
        out: dict[str, list[str]] = {}
        for name, (modality, _) in self.tap_decls().items():
            out.setdefault(modality, []).append(name)
        return out

    def cell_decls(self) -> list[CellDecl]:
        return list(self.of_type(CellDecl))

    # -- expansion -----------------------------------------------------------------------

    def cells(self) -> list[CellPlan]:
        """Every cell, in order, steps expanded (pools -> ops); the one cell order."""
        out = []
        for i, decl in enumerate(self.cell_decls()):
            steps = _expand_steps(decl.body, self.pools)
            pair = decl.pair
            concat = decl.option("concat")
            n = int(concat.value) if concat is not None and isinstance(concat.value, int) else 0
            out.append(
                CellPlan(
                    name=decl.name,
                    index=i,
                    inputs=(pair[0], pair[1]) if len(pair) == 2 else None,
                    steps=tuple(steps),
                    concat=min(n, len(steps)) if n >= 1 else len(steps),
                    span=decl.span,
                )
            )
        return out

    def live_taps(self) -> list[str]:
        """The taps the network reads: all of them while some cell's pair is searched (each
        is a candidate), else those the cells fuse. A derived network builds no adapter for
        the others (as the official found networks)."""
        cells = self.cells()
        if any(c.inputs is None for c in cells):
            return self.tap_names
        used = {name for c in cells for name in c.inputs or ()}
        return [t for t in self.tap_names if t in used]

    def states(self) -> list[str]:
        """The upper level's states in order: the taps, then the cells' outputs."""
        return self.tap_names + [c.name for c in self.cell_decls()]

    def blocks(self, stack: Any = None) -> list[Any]:
        """A BM-NAS space has cells, not MMnas blocks."""
        return []

    # -- sizes -------------------------------------------------------------------------------

    def choice_counts(self) -> list[int]:
        """The number of options of every searched choice, cell by cell: the pair
        (unordered, among the taps and earlier cells: the lower state index is x), then per
        step its inputs (ordered pairs of earlier inner states) and its op."""
        n_taps = len(self.tap_names)
        counts = []
        for cell in self.cells():
            if cell.inputs is None:
                counts.append(math.comb(n_taps + cell.index, 2))
            for step in cell.steps:
                if step.inputs is None:
                    counts.append((2 + step.index) * (1 + step.index))
                counts.append(len(step.ops))
        return [c for c in counts if c != 1]

    def search_space_size(self) -> int:
        return math.prod(self.choice_counts())

    @property
    def is_concrete(self) -> bool:
        """Every cell's pair fixed and every step one op on fixed inputs."""
        return all(
            c.inputs is not None and all(s.inputs is not None and len(s.ops) == 1 for s in c.steps)
            for c in self.cells()
        )

    def size_formula(self) -> str:
        """`2^2*4^4*6^2*28*36 = 37158912`: the product of the choice counts, exactly."""
        counts = Counter(self.choice_counts())
        if not counts:
            return "1 (concrete)"
        factors = [f"{k}^{n}" if n > 1 else str(k) for k, n in sorted(counts.items())]
        size, formula = self.search_space_size(), "*".join(factors)
        return str(size) if formula == str(size) else f"{formula} = {size}"

    def outline(self) -> str:
        """`2 cells of 2 steps over 8 taps (6 searched choices)`, for `check`."""
        cells = self.cells()
        steps = sorted({len(c.steps) for c in cells})
        per = "/".join(map(str, steps))
        return (
            f"{len(cells)} cell{'s' if len(cells) != 1 else ''} of {per} "
            f"step{'s' if steps != [1] else ''} over {len(self.tap_names)} taps "
            f"({len(self.choice_counts())} searched choices)"
        )

    # -- the searcher's write-back ---------------------------------------------------------

    def replace_cells(self, cells: list[CellPlan]) -> BMNasSpec:
        """A copy whose cells have these pairs and steps (each step one op on fixed inputs):
        the searcher's output. Options other than the pair (concat) are kept; the file's
        header comments describe the space, so (as `Spec.replace_stacks`) they are left out.
        """
        by_name = {c.name: c for c in cells}
        stmts = []
        for s in self.statements:
            if isinstance(s, CellDecl) and s.name in by_name:
                s = fixed_cell(s, by_name[s.name])
            stmts.append(s)
        body = (s for s in self.statements if not isinstance(s, SpaceDecl))
        lines = [s.span.line for s in body if s.span.line]
        first = min(lines, default=0)  # (the comments under `space bmnas` are its header too)
        comments = tuple(c for c in self.comments if c.span.line >= first)
        return self.model_copy(update={"statements": tuple(stmts), "comments": comments})


def fixed_cell(decl: CellDecl, plan: CellPlan) -> CellDecl:
    """`decl` with the pair and steps of a concrete plan (its other options kept)."""
    assert plan.inputs is not None
    pair = tuple(Arg(value=Ident(name=n)) for n in plan.inputs)
    options = tuple(a for a in decl.args if a.key is not None)
    body = []
    for step in plan.steps:
        assert step.inputs is not None and len(step.ops) == 1
        body.append(OpCall(name=step.ops[0], x=step.inputs[0], y=step.inputs[1]))
    return decl.model_copy(update={"args": pair + options, "body": fold_steps(body)})


def fold_steps(steps: list[OpCall]) -> tuple[StepItem, ...]:
    """Runs of the same step as `step * n` (a concrete cell written compactly)."""
    out: list[StepItem] = []
    i = 0
    while i < len(steps):
        n = 1
        while i + n < len(steps) and steps[i + n] == steps[i]:
            n += 1
        out.append(steps[i] if n == 1 else StepRepeat(step=steps[i], count=n))
        i += n
    return tuple(out)


for _cls in (StepRepeat, CellDecl):
    _cls.model_rebuild()
