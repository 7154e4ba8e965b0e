"""Semantic checks of BM-NAS specs: taps, pools, cells and their steps, head, data, sections.

The MMnas `Checker` is the base: its machinery (every diagnostic at once, located, with a
did-you-mean and what was expected; options validated against their schemas) is the same,
and so are the checks of singletons and pools, which here run over the fusion ops
(`Catalog.fusion`). What is BM-NAS's own: taps are named uniquely across modalities, a
cell fuses two states computed before it (taps or earlier cells) or leaves its pair to the
search, and a step reads two distinct inner states computed before it.
"""

from __future__ import annotations

from collections.abc import Iterable

from mmnasdsl.lang.bmnas_settings import BMNasModel, CellOptions, TapSettings, XorData
from mmnasdsl.lang.bmnas_spec import (
    MAX_STEPS,
    BMNasSpec,
    CellDecl,
    OpCall,
    StepItem,
    StepRepeat,
    TapsDecl,
    count_steps,
    inner_states,
)
from mmnasdsl.lang.catalog import Catalog
from mmnasdsl.lang.check import (
    SECTIONS,
    Checker,
    _at,
    _count_span,
    _end_span,
    _find,
    _one_of,
    _show,
)
from mmnasdsl.lang.registry import did_you_mean
from mmnasdsl.lang.settings import DataSettings, options_dict
from mmnasdsl.lang.spec import Arg, Call, Choice, Ident, Ref, Repeat, SectionDecl, Span

DATA_SOURCES = {"xor": XorData, "h5": DataSettings}
TAPS_INPUT = "taps"  # what a head must read (`Task.requires`) to end a BM-NAS network


class BMNasChecker(Checker):
    """One pass over a BM-NAS spec; `run` returns the diagnostics by position."""

    spec: BMNasSpec

    def __init__(self, spec: BMNasSpec, catalog: Catalog) -> None:
        super().__init__(spec, catalog)
        self.ops = {name: () for name in catalog.fusion}  # pools and steps name fusion ops

    def run(self) -> list:
        for step in (
            self.check_singletons,
            self.check_required,
            self.check_model,
            self.check_taps,
            self.check_pools,
            self.check_cells,
            self.check_head,
            self.check_data,
            self.check_sections,
        ):
            step()
        return sorted(self.diags, key=lambda d: (d.span.line, d.span.column))

    # -- what every BM-NAS space needs -------------------------------------------------------

    def check_required(self) -> None:
        end = _end_span(self.spec)
        if not self.spec.taps_decls():
            self.error(
                "the spec declares no input",
                end,
                "expected `input NAME { TAP = tap(channels = C, length = n) }`",
            )
        elif len(self.spec.tap_names) < 2:
            self.error(
                "the spec declares one tap; a fusion cell fuses two",
                end,
                "expected at least two taps over the inputs",
            )
        if not self.spec.cell_decls():
            self.error("the spec declares no cell", end, "expected e.g. `cell c1 = fusion * 2`")
        if self.spec.head is None:
            heads = [n for n, h in self.heads.items() if TAPS_INPUT in getattr(h, "requires", ())]
            self.error(
                "the spec declares no head",
                end,
                f"expected `head TASK(...)` with TASK one of {_one_of(heads)}",
            )

    def check_model(self) -> None:
        decl = self.spec.model
        if decl is None or not self.validate(BMNasModel, decl.options, decl.span, "model option"):
            return
        opt = _find(decl.options, "concat")
        cells = len(self.spec.cell_decls())
        if opt is not None and cells and opt.value > cells:
            self.error(
                f"concat = {opt.value} but the spec has {cells} cell{'s' if cells != 1 else ''}",
                opt.value_span,
                f"expected the head to read at most the {cells} cells",
            )

    # -- inputs and their taps ----------------------------------------------------------------

    def check_taps(self) -> None:
        seen: dict[str, Span] = {}
        for decl in self.first_of_each(self.spec.of_type(TapsDecl), "input"):
            if not decl.options:
                self.error(
                    f"input '{decl.name}' declares no tap",
                    decl.span,
                    "expected `NAME = tap(channels = C, length = n)` inside the braces",
                )
            for opt in decl.options:
                if opt.key in seen:
                    self.error(
                        f"duplicate tap '{opt.key}' (the first is at {_at(seen[opt.key])})",
                        opt.span,
                        "expected every tap name once, over all inputs",
                    )
                    continue
                seen[opt.key] = opt.span
                self.check_tap(opt.key, opt.value, opt.value_span or opt.span)

    def check_tap(self, name: str, value: object, span: Span) -> None:
        if not isinstance(value, Call) or value.name != "tap":
            self.error(
                f"tap '{name}' should be tap(...), got {_show(value)}",
                span,
                "expected `tap(channels = C, length = n)` (a map: shape = [...]; a vector: "
                "no length)",
            )
            return
        self.validate(TapSettings, value.args, value.span, "tap option")

    # -- cells --------------------------------------------------------------------------------

    def check_cells(self) -> None:
        taps = set(self.spec.tap_names)
        before: list[str] = list(self.spec.tap_names)
        later = [c.name for c in self.spec.cell_decls()]
        for decl in self.first_of_each(self.spec.of_type(CellDecl), "cell"):
            if decl.name in taps:
                self.error(
                    f"cell '{decl.name}' has the name of a tap",
                    decl.span,
                    "expected cell names that are not tap names, e.g. 'c1'",
                )
            self.check_cell_args(decl, before, later)
            n_steps = self.check_steps(decl)
            self.check_cell_concat(decl, n_steps)
            before.append(decl.name)

    def check_cell_args(self, decl: CellDecl, before: list[str], cells: list[str]) -> None:
        """The pair (none, or two distinct states computed before the cell) and options."""
        names: list[Arg] = []
        for arg in decl.args:
            if arg.key is not None:
                continue
            if not isinstance(arg.value, Ident):
                self.error(
                    f"cell '{decl.name}' reads {_show(arg.value)}, which is not a state name",
                    arg.span,
                    "expected the names of two taps or earlier cells",
                )
                return
            names.append(arg)
        if len(names) not in (0, 2):
            self.error(
                f"cell '{decl.name}' names {len(names)} input{'s' if len(names) != 1 else ''}",
                decl.span,
                "expected two (its pair) or none (the search picks them)",
            )
        elif names:
            self.check_pair(decl, names, before, cells)
        kwargs = tuple(a for a in decl.args if a.key is not None)
        self.validate(CellOptions, kwargs, decl.span, "cell option")

    def check_pair(
        self, decl: CellDecl, names: list[Arg], before: list[str], cells: list[str]
    ) -> None:
        for arg in names:
            name = arg.value.name  # type: ignore[union-attr]
            if name in before:
                continue
            if name in cells:
                self.error(
                    f"cell '{decl.name}' reads '{name}', which is not computed before it",
                    arg.span,
                    f"expected a tap or a cell before '{decl.name}': {_one_of(before)}",
                )
            else:
                self.unknown("tap or cell", name, before, arg.span)
        a, b = (n.value.name for n in names)  # type: ignore[union-attr]
        if a == b:
            self.error(
                f"cell '{decl.name}' fuses '{a}' with itself",
                names[1].span,
                "expected two different states",
            )

    def check_cell_concat(self, decl: CellDecl, n_steps: int) -> None:
        arg = decl.option("concat")
        if arg is None or not isinstance(arg.value, int) or not 0 < n_steps < arg.value:
            return
        self.error(
            f"concat = {arg.value} but cell '{decl.name}' has {n_steps} "
            f"step{'s' if n_steps != 1 else ''}",
            arg.value_span or arg.span,
            f"expected at most {n_steps}",
        )

    # -- steps --------------------------------------------------------------------------------

    def check_steps(self, decl: CellDecl) -> int:
        """Names, inputs and counts of a cell's steps; returns how many steps it has."""
        n = count_steps(decl.body)
        if n > MAX_STEPS:
            self.error(
                f"cell '{decl.name}' has {n} steps",
                decl.span,
                f"expected at most {MAX_STEPS} steps per cell",
            )
            return 0
        index = 0
        for item in decl.body:
            self.check_step(decl, item, index)
            index += max(item.count, 0) if isinstance(item, StepRepeat) else 1
        if n == 0 and not any(isinstance(i, StepRepeat) and i.count < 1 for i in decl.body):
            self.error(f"cell '{decl.name}' has no steps", decl.span, "expected at least one step")
        return n

    def check_step(self, decl: CellDecl, item: StepItem, index: int) -> None:
        if isinstance(item, StepRepeat):
            if item.count < 1:
                self.error(
                    f"repeat count must be at least 1, got {item.count}",
                    _count_span(Repeat(body=(Ref(name="_"),), count=item.count, span=item.span)),
                    "expected `step * n` with n >= 1",
                )
            self.check_step(decl, item.step, index)
        elif isinstance(item, Choice):
            self.check_candidates(item.options, "this choice")
        elif isinstance(item, OpCall):
            self.check_ref(Ref(name=item.name, span=_name_span(item)))
            self.check_step_inputs(decl, item, index)
        else:
            self.check_ref(item)

    def check_step_inputs(self, decl: CellDecl, call: OpCall, index: int) -> None:
        """A step reads two distinct inner states computed before it (x, y, s1, ...)."""
        allowed = inner_states(index)
        for name, span in ((call.x, call.x_span), (call.y, call.y_span)):
            if name not in allowed:
                self.error(
                    f"step {index + 1} of cell '{decl.name}' cannot read '{name}'"
                    f"{did_you_mean(name, allowed)}",
                    span,
                    f"expected {_one_of(allowed)} (x, y: the cell's pair; s1, ...: earlier steps)",
                )
        if call.x == call.y:
            self.error(
                f"step {index + 1} of cell '{decl.name}' reads '{call.x}' twice",
                call.y_span,
                "expected two different inner states",
            )

    # -- head, data, sections -------------------------------------------------------------

    def check_head(self) -> None:
        decl = self.spec.head
        if decl is None:
            return
        call = decl.call
        head = self.heads.get(call.name)
        fused = [n for n, h in self.heads.items() if TAPS_INPUT in getattr(h, "requires", ())]
        if head is None:
            self.unknown("head", call.name, fused, call.span)
            return
        if TAPS_INPUT not in getattr(head, "requires", ()):
            self.error(
                f"head '{call.name}' reads MMnas streams, not BM-NAS cells",
                call.span,
                f"expected a head of fused features: {_one_of(fused)}",
            )
            return
        self.validate(head.Options, call.args, call.span, f"{call.name} head option")

    def check_data(self) -> None:
        decl = self.spec.data
        if decl is None:
            return
        call = decl.call
        schema = DATA_SOURCES.get(call.name)
        if schema is None:
            self.unknown("data source", call.name, DATA_SOURCES, call.span)
            return
        ok = self.validate(
            schema, call.args, call.span, f"{call.name} data option", {"source": call.name}
        )
        if ok and call.name == "xor":
            self.check_planted_pair(call)

    def check_planted_pair(self, call: Call) -> None:
        arg = next(a for a in call.args if a.key == "pair")
        pair = options_dict((arg,))["pair"]
        span = arg.value_span or arg.span
        for name in pair:
            if name not in self.spec.tap_names:
                self.unknown("tap", name, self.spec.tap_names, span)
        if pair[0] == pair[1]:
            self.error("the planted pair names one tap twice", span, "expected two taps")

    def check_sections(self) -> None:
        for sec in self.spec.of_type(SectionDecl):
            opt = _find(sec.options, "d_model")
            if sec.kind == "search" and opt is not None:
                self.error(
                    "BM-NAS spaces have no d_model",
                    opt.span,
                    "expected the width in `model { channels = C }`",
                )
                continue
            self.validate(SECTIONS[sec.kind], sec.options, sec.span, f"{sec.kind} option")


def _name_span(call: OpCall) -> Span:
    s = call.span
    if not s.line:
        return s
    return Span(line=s.line, column=s.column, end_line=s.line, end_column=s.column + len(call.name))


__all__: Iterable[str] = ["BMNasChecker"]
