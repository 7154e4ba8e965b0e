"""Text -> Spec. Lark (LALR) parses the grammar of the spec's space kind
(`grammars/mmnas.lark` by default; `lang.kinds`); the kind's Transformer builds the AST.

Syntax errors become a `SpecError` with the location, the offending token and the
tokens the grammar expected there, named in words rather than as terminal names. Before
Lark runs, `lang.limits.prescan` refuses texts that are too large, too deeply nested or
hold too long a number, so neither the recursive transformer nor Python's int conversion
can fail on any input.
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from mmnasdsl.lang.errors import Diagnostic, SpecError
from mmnasdsl.lang.kinds import SpaceKind, declared_kind, get_kind, kind_names
from mmnasdsl.lang.limits import MAX_DIGITS, digits_error, prescan, span_at
from mmnasdsl.lang.registry import did_you_mean
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
    Span,
    Spec,
    StackDecl,
)

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"

# What a user should read instead of a terminal name in "expected ..." lists.
_TOKEN_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "RATIO": "a ratio like 4:1",
    "MULT": "a multiplier like 4x",
    "EQUAL": "'='",
    "LPAR": "'('",
    "RPAR": "')'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "VBAR": "'|'",
    "STAR": "'*'",
    "$END": "end of file",
}


@functools.cache
def _grammar(name: str) -> str:
    return (GRAMMARS / name).read_text(encoding="utf-8")


_comment_sink = threading.local()


def _collect_comment(tok: Token) -> Token:
    sink = getattr(_comment_sink, "tokens", None)
    if sink is not None:
        sink.append(tok)
    return tok


@functools.cache
def _parser(grammar: str = "mmnas.lark") -> Lark:
    """The LALR parser of a grammar file, built once. Comments are ignored by the grammar,
    but a lexer callback hands them to the running `parse` call (thread-local) for the
    formatter.

    The basic (not contextual) lexer makes a kind's keywords reserved in its specs, so a
    missing sequence (`encoder text =` then `decoder ...`) fails at `decoder`, not three
    tokens on.
    """
    return Lark(
        _grammar(grammar),
        import_paths=[str(GRAMMARS)],  # a kind's grammar imports values.lark
        parser="lalr",
        lexer="basic",
        propagate_positions=True,
        maybe_placeholders=False,
        lexer_callbacks={"COMMENT": _collect_comment},
    )


def _span(meta: Any) -> Span:
    if getattr(meta, "empty", True):
        return Span()
    return Span(
        line=meta.line, column=meta.column, end_line=meta.end_line, end_column=meta.end_column
    )


class _Located:
    """A value with the span of its text, until `option`/`kwarg`/`posarg` unwrap it."""

    __slots__ = ("span", "value")

    def __init__(self, value: Any, span: Span) -> None:
        self.value, self.span = value, span


def _unwrap(v: Any) -> tuple[Any, Span]:
    return (v.value, v.span) if isinstance(v, _Located) else (v, getattr(v, "span", Span()))


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def unescape(body: str) -> str:
    """The inverse of `format.quote`: `\\n`, `\\t`, `\\r` are control characters and
    `\\X` is X; everything else (any Unicode) is itself."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


class _TooLong(Exception):
    """An integer literal too long to convert; `parse` turns it into a located SpecError."""

    def __init__(self, message: str, span: Span) -> None:
        super().__init__(message)
        self.message, self.span = message, span


def _int(text: str, span: Span) -> int:
    """int(text), refusing literals beyond `limits.MAX_DIGITS` digits before Python's own
    limit (4300 digits) could raise."""
    why = digits_error(text)
    if why is not None:
        raise _TooLong(why, span)
    return int(text)


def _tok_span(tok: Token) -> Span:
    return Span(
        line=tok.line or 0,
        column=tok.column or 0,
        end_line=tok.end_line or 0,
        end_column=tok.end_column or 0,
    )


@v_args(meta=True)
class ValueTransformer(Transformer):
    """What every kind's grammar shares: the `space` statement, options, values and calls.
    A kind's transformer subclasses it with a method per statement rule."""

    def start(self, meta, stmts):
        return tuple(stmts)

    def space(self, meta, c):
        return SpaceDecl(name=str(c[0]), span=_span(meta))

    def option(self, meta, c):
        value, vspan = _unwrap(c[1])
        return Option(key=str(c[0]), value=value, value_span=vspan, span=_span(meta))

    def int_value(self, meta, c):
        return _Located(_int(str(c[0]), _tok_span(c[0])), _tok_span(c[0]))

    def float_value(self, meta, c):
        return _Located(float(c[0]), _tok_span(c[0]))

    def string_value(self, meta, c):
        return _Located(unescape(str(c[0])[1:-1]), _tok_span(c[0]))

    def ratio_value(self, meta, c):
        left, right = str(c[0]).split(":")
        span = _tok_span(c[0])
        return Ratio(left=_int(left, span), right=_int(right, span), span=_span(meta))

    def mult_value(self, meta, c):
        return Mult(factor=float(str(c[0])[:-1]), span=_span(meta))

    def ident_value(self, meta, c):
        return Ident(name=str(c[0]), span=_span(meta))

    def list_value(self, meta, c):
        return ListValue(items=tuple(_unwrap(v)[0] for v in c), span=_span(meta))

    def call(self, meta, c):
        return Call(name=str(c[0]), args=tuple(c[1:]), span=_span(meta))

    def bare_call(self, meta, c):
        return Call(name=str(c[0]), parens=False, span=_span(meta))

    def kwarg(self, meta, c):
        value, vspan = _unwrap(c[1])
        return Arg(key=str(c[0]), value=value, value_span=vspan, span=_span(meta))

    def posarg(self, meta, c):
        value, vspan = _unwrap(c[0])
        return Arg(value=value, value_span=vspan, span=vspan if vspan.line else _span(meta))


@v_args(meta=True)
class MMnasTransformer(ValueTransformer):
    """Lark tree -> the MMnas kind's statements, one method per grammar rule or alias."""

    def model(self, meta, c):
        return ModelDecl(name=str(c[0]), options=tuple(c[1:]), span=_span(meta))

    def input(self, meta, c):
        return InputDecl(name=str(c[0]), source=c[1], span=_span(meta))

    def pool(self, meta, c):
        members = tuple(Ref(name=str(t), span=_tok_span(t)) for t in c[1:])
        return PoolDecl(name=str(c[0]), members=members, span=_span(meta))

    def stack_kind(self, meta, c):
        return str(c[0])

    section_kind = stack_kind

    def stack_args(self, meta, c):
        return c[0]

    def stack(self, meta, c):
        kind, stream, rest = c[0], c[1], list(c[2:])
        guide = rest.pop(0) if rest and isinstance(rest[0], Token) else None
        return StackDecl(
            kind=kind,
            stream=str(stream),
            stream_span=_tok_span(stream),
            guide=str(guide) if guide else None,
            guide_span=_tok_span(guide) if guide else Span(),
            body=tuple(rest),
            span=_span(meta),
        )

    def head(self, meta, c):
        return HeadDecl(call=c[0], span=_span(meta))

    def data(self, meta, c):
        return DataDecl(call=c[0], span=_span(meta))

    def section(self, meta, c):
        return SectionDecl(kind=c[0], options=tuple(c[1:]), span=_span(meta))

    def ref(self, meta, c):
        return Ref(name=str(c[0]), span=_span(meta))

    def choice(self, meta, c):
        return Choice(
            options=tuple(Ref(name=str(t), span=_tok_span(t)) for t in c), span=_span(meta)
        )

    def group(self, meta, c):
        return Group(body=tuple(c), span=_span(meta))

    def repeat(self, meta, c):
        unit, count = c
        body = unit.body if isinstance(unit, Group) else (unit,)
        return Repeat(body=body, count=_int(str(count), _tok_span(count)), span=_span(meta))


def _expected_names(exc: UnexpectedInput) -> set[str]:
    return set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or set())


def _keyword(name: str, grammar: str) -> str | None:
    """The literal text of an anonymous keyword terminal (`MODEL` -> 'model'), else None."""
    for term in _parser(grammar).terminals:
        if term.name == name and term.pattern.type == "str":
            return str(term.pattern.value)
    return None


def _expected(exc: UnexpectedInput, grammar: str) -> str:
    words = set()
    for n in _expected_names(exc):
        kw = _keyword(n, grammar) if n not in _TOKEN_WORDS else None
        words.add(repr(kw) if kw else _TOKEN_WORDS.get(n, n))
    return ", ".join(sorted(words))


def _keyword_suggestion(exc: UnexpectedInput, word: str, grammar: str) -> str:
    """` (did you mean 'search'?)` when a misspelt keyword stands where keywords may."""
    names = _expected_names(exc)
    keywords = [k for k in (_keyword(n, grammar) for n in names) if k and k.isalpha()]
    return did_you_mean(word, keywords) if keywords else ""


def _syntax_error(exc: UnexpectedInput, source: str, text: str, grammar: str) -> SpecError:
    line, col = getattr(exc, "line", 0) or 0, getattr(exc, "column", 0) or 0
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "?"
        message = f"unexpected character {char!r}"
    elif isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        message = "unexpected end of file"
        lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
    else:
        tok = exc.token  # type: ignore[attr-defined]
        message = f"unexpected '{tok!s}'"
        if tok.type == "NAME":
            message += _keyword_suggestion(exc, str(tok), grammar)
    expected = _expected(exc, grammar)
    hint = f"expected {expected}" if expected else None
    width = 1
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        width = len(str(exc.token))
    span = Span(line=line, column=col, end_line=line, end_column=col + max(width, 1))
    return SpecError([Diagnostic(message, span, hint)], source=source, text=text)


def parse(text: str, source: str = "<string>") -> Spec:
    """Parse spec text into a Spec (syntax only; `check` does the semantics), with the
    grammar of the space kind it declares (`space NAME`; default `mmnas`).

    Raises:
        SpecError: for any syntax error, located, with the expected tokens, and for a
            text beyond the bounds of `lang.limits` (size, tokens, digits, nesting).
    """
    limit = prescan(text)
    if limit is not None:
        span = span_at(text, limit.pos, limit.width)
        raise SpecError([Diagnostic(limit.message, span, limit.hint)], source=source, text=text)
    kind = _kind(text, source)
    comments: list[Token] = []
    _comment_sink.tokens = comments
    try:
        tree = _parser(kind.grammar).parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, source, text, kind.grammar) from None
    finally:
        _comment_sink.tokens = None
    try:
        statements = kind.transformer().transform(tree)
    except VisitError as exc:
        if not isinstance(exc.orig_exc, _TooLong):
            raise
        hint = f"expected an integer of at most {MAX_DIGITS} digits"
        diag = Diagnostic(exc.orig_exc.message, exc.orig_exc.span, hint)
        raise SpecError([diag], source=source, text=text) from None
    kept = tuple(Comment(text=str(t).rstrip(), span=_tok_span(t)) for t in comments)
    return kind.spec_class(statements=statements, source=source, comments=kept)


def _kind(text: str, source: str) -> SpaceKind:
    """The kind the text declares; SpecError at its name when no such kind exists."""
    name, span = declared_kind(text)
    try:
        return get_kind(name)
    except KeyError as exc:
        message = f"unknown space kind '{name}'{did_you_mean(name, kind_names())}"
        hint = f"expected `space KIND` with KIND one of {', '.join(kind_names())}"
        raise SpecError([Diagnostic(message, span or Span(), hint)], source, text) from exc
