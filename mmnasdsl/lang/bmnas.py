"""The built-in space kind `bmnas` (BM-NAS, Yin, Huang, Zhang, AAAI 2022): fusion cells over
the taps of frozen backbones, each cell a pair of states and a DAG of inner steps.

The grammar is `grammars/bmnas.lark`, the AST `lang.bmnas_spec`, the checker
`lang.bmnas_check`; this module holds the transformer (parse tree -> statements) and
registers the kind.
"""

from __future__ import annotations

from typing import Any

from lark import v_args

from mmnasdsl.lang.bmnas_check import BMNasChecker
from mmnasdsl.lang.bmnas_spec import BMNasSpec, CellDecl, OpCall, StepRepeat, TapsDecl
from mmnasdsl.lang.kinds import SpaceKind, register_kind
from mmnasdsl.lang.parse import MMnasTransformer, _int, _span, _tok_span
from mmnasdsl.lang.spec import Arg, Choice, Ref


class _CellArgs(tuple):
    """The arguments of a cell header, told apart from its name and steps."""


@v_args(meta=True)
class BMNasTransformer(MMnasTransformer):
    """Lark tree -> the BM-NAS kind's statements. `model`, `pool`, `head`, `data` and the
    sections read as in MMnas specs (the inherited methods); the rest is below."""

    def taps(self, meta: Any, c: list[Any]) -> TapsDecl:
        return TapsDecl(name=str(c[0]), options=tuple(c[1:]), span=_span(meta))

    def cell_args(self, meta: Any, c: list[Any]) -> _CellArgs:
        return _CellArgs(a for a in c if isinstance(a, Arg))

    def cell(self, meta: Any, c: list[Any]) -> CellDecl:
        name, rest = c[0], list(c[1:])
        args = rest.pop(0) if rest and isinstance(rest[0], _CellArgs) else ()
        return CellDecl(name=str(name), args=tuple(args), body=tuple(rest), span=_span(meta))

    def step_ref(self, meta: Any, c: list[Any]) -> Ref:
        return Ref(name=str(c[0]), span=_span(meta))

    def step_choice(self, meta: Any, c: list[Any]) -> Choice:
        refs = tuple(Ref(name=str(t), span=_tok_span(t)) for t in c)
        return Choice(options=refs, span=_span(meta))

    def step_call(self, meta: Any, c: list[Any]) -> OpCall:
        name, x, y = c
        return OpCall(
            name=str(name),
            x=str(x),
            y=str(y),
            x_span=_tok_span(x),
            y_span=_tok_span(y),
            span=_span(meta),
        )

    def step_repeat(self, meta: Any, c: list[Any]) -> StepRepeat:
        step, count = c
        # through the front end's bound on digits, as every other integer
        return StepRepeat(step=step, count=_int(str(count), _tok_span(count)), span=_span(meta))


BMNAS = register_kind(
    SpaceKind(
        name="bmnas",
        grammar="bmnas.lark",
        transformer=BMNasTransformer,
        checker=BMNasChecker,
        doc="BM-NAS: fusion cells over backbone taps, each a pair and a DAG of fusion ops",
        spec_class=BMNasSpec,
    )
)
