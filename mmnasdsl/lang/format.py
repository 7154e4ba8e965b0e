"""Spec -> canonical `.mmnas` text, with the file's comments kept.

The promise is `parse(format_spec(s)) == s` and `format_spec(parse(format_spec(s))) ==
format_spec(s)` (idempotence); `tests/test_format.py` checks both on generated specs.

Layout: statements in source order, one per line; `model`/`search`/`train` sections with
one option per line, indented two spaces; a single blank line where the source had one or
more (or, for a spec built in code, between statements of different kinds).

Comments (parsed specs keep them in `Spec.comments`, with positions) are put back by line:
a comment on its own line goes before the statement (or section option) that follows it,
a comment after code stays at the end of that statement's (or option's) line, and
comments after the last statement close the file. A comment inside a multi-line
statement that is not a section (a long stack body split over lines) moves to just
before that statement. No comment is ever dropped.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from mmnasdsl.lang.bmnas_spec import CellDecl, OpCall, StepItem, StepRepeat, TapsDecl
from mmnasdsl.lang.spec import (
    Arg,
    Call,
    Choice,
    Comment,
    DataDecl,
    Group,
    HeadDecl,
    Ident,
    InputDecl,
    Item,
    ListValue,
    ModelDecl,
    Mult,
    Option,
    PoolDecl,
    Ratio,
    Ref,
    Repeat,
    SectionDecl,
    SpaceDecl,
    Spec,
    StackDecl,
    Value,
)

INDENT = "  "


# ------------------------------------------------------------------------------ values


def quote(text: str) -> str:
    """A string literal that the parser reads back as `text` (see `parse.unescape`)."""
    body = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
    )
    return f'"{body}"'


def _positional(x: float) -> str:
    """A float without exponent whose text reads back as the same float (for `4x`)."""
    if x.is_integer():
        return str(int(x))
    return format(Decimal(repr(x)), "f")


def format_value(value: Value) -> str:
    """One option value as spec text: ints as written, floats via repr, `4:1`, `4x`, ..."""
    if isinstance(value, bool):  # never produced by the parser; `true` is an Ident
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):  # `1e999` parses to inf
        return "1e999" if value > 0 else "-1e999"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Ident):
        return value.name
    if isinstance(value, Ratio):
        return f"{value.left}:{value.right}"
    if isinstance(value, Mult):
        return f"{_positional(value.factor)}x"
    if isinstance(value, ListValue):
        return "[" + ", ".join(format_value(v) for v in value.items) + "]"
    return format_call(value)


def format_arg(arg: Arg) -> str:
    value = format_value(arg.value)
    return value if arg.key is None else f"{arg.key} = {value}"


def format_call(call: Call) -> str:
    """`name(a = 1, flag)`, or a bare `name` when it was written without parentheses."""
    if not call.parens and not call.args:
        return call.name
    return f"{call.name}(" + ", ".join(format_arg(a) for a in call.args) + ")"


# --------------------------------------------------------------------------- sequences


def format_item(item: Item) -> str:
    """`SA`, `SA | FFN`, `SA * 3`, `(SA | FFN) * 2`, `(SA GA FFN) * 6`, `(SA FFN)`."""
    if isinstance(item, Ref):
        return item.name
    if isinstance(item, Choice):
        return " | ".join(r.name for r in item.options)
    if isinstance(item, Repeat):
        if len(item.body) == 1 and isinstance(item.body[0], Ref):
            return f"{item.body[0].name} * {item.count}"
        return f"({format_items(item.body)}) * {item.count}"
    assert isinstance(item, Group)
    return f"({format_items(item.body)})"


def format_items(items: tuple[Item, ...]) -> str:
    return " ".join(format_item(i) for i in items)


def format_step(step: StepItem) -> str:
    """A BM-NAS cell's step: `fusion`, `Sum | ConcatFC`, `LinearGLU(x, s1)`, `fusion * 2`."""
    if isinstance(step, StepRepeat):
        return f"{format_step(step.step)} * {step.count}"
    if isinstance(step, OpCall):
        return f"{step.name}({step.x}, {step.y})"
    return format_item(step)


def format_cell(cell: CellDecl) -> str:
    """`cell c1 = fusion * 2`, `cell c1(a2, b0, concat = 1) = LinearGLU(x, y) Sum(s1, x)`."""
    args = f"({', '.join(format_arg(a) for a in cell.args)})" if cell.args else ""
    return f"cell {cell.name}{args} = " + " ".join(format_step(s) for s in cell.body)


# -------------------------------------------------------------------------- statements


def _stmt_head(stmt: Any) -> str:
    """The statement as one line (sections: their first line)."""
    if isinstance(stmt, SpaceDecl):
        return f"space {stmt.name}"
    if isinstance(stmt, ModelDecl):
        return f"model {stmt.name} {{"
    if isinstance(stmt, SectionDecl):
        return f"{stmt.kind} {{"
    if isinstance(stmt, TapsDecl):
        return f"input {stmt.name} {{"
    if isinstance(stmt, CellDecl):
        return format_cell(stmt)
    if isinstance(stmt, InputDecl):
        return f"input {stmt.name} = {format_call(stmt.source)}"
    if isinstance(stmt, PoolDecl):
        return f"pool {stmt.name} = " + " | ".join(r.name for r in stmt.members)
    if isinstance(stmt, StackDecl):
        guide = f"(guide = {stmt.guide})" if stmt.guide is not None else ""
        return f"{stmt.kind} {stmt.stream}{guide} = {format_items(stmt.body)}"
    if isinstance(stmt, HeadDecl):
        return f"head {format_call(stmt.call)}"
    assert isinstance(stmt, DataDecl)
    return f"data {format_call(stmt.call)}"


def format_option(opt: Option) -> str:
    return f"{opt.key} = {format_value(opt.value)}"


class _Comments:
    """The spec's comments by line, handed out as statements and options claim them.

    Linear in the number of comments: they are grouped by line once, and lines are handed
    out from a cursor (statements claim them in line order), so a spec of thousands of
    comments and statements formats in one pass.
    """

    def __init__(self, comments: tuple[Comment, ...]) -> None:
        self.by_line: dict[int, list[str]] = {}
        for c in sorted(comments, key=lambda c: (c.span.line, c.span.column)):
            self.by_line.setdefault(c.span.line, []).append(c.text)
        self.lines = sorted(self.by_line)
        self.cursor = 0  # lines before this index are handed out

    @property
    def first_pending(self) -> int:
        """The line of the first comment not yet handed out, or 0."""
        self._skip_taken()
        return self.lines[self.cursor] if self.cursor < len(self.lines) else 0

    def _skip_taken(self) -> None:
        while self.cursor < len(self.lines) and self.lines[self.cursor] not in self.by_line:
            self.cursor += 1

    def before(self, line: int) -> list[str]:
        """Comments that start before `line` (and are not yet placed)."""
        out: list[str] = []
        while self.cursor < len(self.lines) and self.lines[self.cursor] < line:
            out += self.by_line.pop(self.lines[self.cursor], [])
            self.cursor += 1
        return out

    def on(self, line: int) -> str:
        """The comment that ends `line`, as a trailing `  # ...`, or ''."""
        return "".join(f"  {text}" for text in self.by_line.pop(line, []))

    def rest(self) -> list[str]:
        out = self.before(max(self.lines, default=0) + 1)
        self.by_line.clear()
        return out


# Statements written as a `{ ... }` block of one option per line.
_BLOCKS = (ModelDecl, SectionDecl, TapsDecl)


def _section_lines(stmt: ModelDecl | SectionDecl | TapsDecl, comments: _Comments) -> list[str]:
    """`model m {` / one indented option per line / `}` with their comments (also a BM-NAS
    `input a {` of taps)."""
    options = stmt.options
    first_line = stmt.span.line
    if not options:
        return _empty_section_lines(stmt, comments)
    lines = [_stmt_head(stmt) + (comments.on(first_line) if _alone(stmt, options) else "")]
    last_on_line = {o.span.end_line: k for k, o in enumerate(options) if o.span.line}
    for k, opt in enumerate(options):
        if opt.span.line:
            lines += [INDENT + c for c in comments.before(opt.span.line)]
        owns = bool(opt.span.line) and last_on_line[opt.span.end_line] == k
        trailing = comments.on(opt.span.end_line) if owns else ""
        lines.append(INDENT + format_option(opt) + trailing)
    if stmt.span.line:
        lines += [INDENT + c for c in comments.before(stmt.span.end_line)]
    lines.append("}")
    return lines


def _empty_section_lines(
    stmt: ModelDecl | SectionDecl | TapsDecl, comments: _Comments
) -> list[str]:
    """`search {}`, or the braces on their own lines when comments sit inside them."""
    if not stmt.span.line:
        return [_stmt_head(stmt) + "}"]
    first = comments.on(stmt.span.line) if stmt.span.end_line > stmt.span.line else ""
    inner = comments.before(stmt.span.end_line)
    if not inner:
        return [_stmt_head(stmt) + "}" + first]
    return [_stmt_head(stmt) + first, *[INDENT + c for c in inner], "}"]


def _alone(stmt: Any, options: tuple[Option, ...]) -> bool:
    """True when no option shares the statement's first line (its comment is the header's)."""
    return bool(stmt.span.line) and all(o.span.line != stmt.span.line for o in options)


def _statement_lines(stmt: Any, comments: _Comments, owns_line_end: bool) -> list[str]:
    """The statement's lines; `owns_line_end` when no other statement follows on its last
    line, so a comment ending that line is this statement's."""
    if isinstance(stmt, _BLOCKS):
        lines = _section_lines(stmt, comments)
    elif not stmt.span.line:
        return [_stmt_head(stmt)]
    else:
        inner = comments.before(stmt.span.end_line)  # comments inside a multi-line statement
        lines = [*inner, _stmt_head(stmt)]
    if owns_line_end and stmt.span.line:
        lines[-1] += comments.on(stmt.span.end_line)
    return lines


def _blank_between(prev: Any, stmt: Any, comment_lines: set[int]) -> bool:
    """A blank line between two statements: where the source had one, else at a kind change."""
    if prev.span.line and stmt.span.line:
        gap = range(prev.span.end_line + 1, stmt.span.line)
        return any(line not in comment_lines for line in gap)
    return type(prev) is not type(stmt)


def format_spec(spec: Spec, header: str | None = None) -> str:
    """Canonical text of a spec, ending in one newline.

    Args:
        spec: a parsed or built spec (comments kept when it has them).
        header: optional text put first as `# ` comment lines (e.g. "searched by ...").
    """
    comments = _Comments(spec.comments)
    comment_lines = {c.span.line for c in spec.comments}
    out: list[str] = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    stmts = spec.statements
    for i, stmt in enumerate(stmts):
        nxt = stmts[i + 1] if i + 1 < len(stmts) else None
        prev = stmts[i - 1] if i else None
        out += _spacing(spec, comment_lines, prev, stmt, comments, bool(out))
        owns = nxt is None or not nxt.span.line or nxt.span.line != stmt.span.end_line
        out += _statement_lines(stmt, comments, owns)
    out += _closing_comments(stmts[-1] if stmts else None, comments, bool(out))
    return "\n".join(out) + "\n" if out else ""


def _spacing(
    spec: Spec,
    comment_lines: set[int],
    prev: Any,
    stmt: Any,
    comments: _Comments,
    started: bool,
) -> list[str]:
    """Blank lines and leading comments that go before `stmt`."""
    leading = comments.before(stmt.span.line) if stmt.span.line else []
    out: list[str] = []
    if (prev is not None and _blank_between(prev, stmt, comment_lines)) or (
        prev is None and started  # a blank line after the `header` argument
    ):
        out.append("")
    out += leading
    if prev is None and leading and _blank_after_comments(leading, spec, stmt):
        out.append("")
    return out


def _closing_comments(last: Any, comments: _Comments, started: bool) -> list[str]:
    """Comments after the last statement, after a blank line if the source had one."""
    first = comments.first_pending
    rest = comments.rest()
    if not rest:
        return []
    end = last.span.end_line if last is not None else 0
    blank = started and (not end or first > end + 1)
    return ["", *rest] if blank else rest


def _blank_after_comments(leading: list[str], spec: Spec, stmt: Any) -> bool:
    """Keep the blank line between a file's header comment block and its first statement."""
    comment_lines = {c.span.line for c in spec.comments}
    last = max((c.span.line for c in spec.comments if c.span.line < stmt.span.line), default=0)
    return any(line not in comment_lines for line in range(last + 1, stmt.span.line))
