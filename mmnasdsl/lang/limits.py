"""Bounds on what the spec front end reads: source size, tokens, digits and nesting.

Every spec, however hostile, must be accepted or refused in bounded time and memory with
a located error, never a Python exception. Four things are unbounded without a check:
Python converts at most 4300 digits to an int (lark would raise a VisitError), the
parse-tree transformer and the checker's walks recurse once per nesting level (a
RecursionError at about 490 parentheses), and Lark's LALR parser costs tens of
microseconds per token. `prescan` bounds size, tokens and nesting on the raw text before
Lark sees it, in one pass that stops at the first violation; `parse` checks the digits of
each integer before converting it (`check_digits`). Floats need no bound: `float()` reads
any length in linear time, and the option schemas refuse infinities.

The bounds are far beyond any real spec: the paper's largest has about 150 tokens,
two levels of nesting and four-digit numbers; the largest network the checker admits
(two stacks of 4096 blocks, as the searcher writes it) has about 10,000 tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmnasdsl.lang.spec import Span

MAX_SOURCE_CHARS = 1 << 20  # 1 MiB: a spec file larger than this is refused unread
MAX_TOKENS = 20_000  # names, numbers, symbols, strings and comments
MAX_DIGITS = 18  # digits of an integer literal (every integer fits in 64 bits)
MAX_DEPTH = 64  # nesting of ( and [ (groups, calls, lists)

# A coarse tokenizer that agrees with the grammar on what is a string and a comment (so
# brackets inside them do not count); names and numbers are split as Lark splits them.
_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<comment>\#[^\n]*)
    | (?P<word>[A-Za-z0-9_.:+\-]+)
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
_OPEN, _CLOSE = frozenset("(["), frozenset(")]")


@dataclass(frozen=True)
class LimitError:
    """Which bound a text exceeds, where (character offset, width), and the advice."""

    message: str
    pos: int
    width: int
    hint: str


def prescan(text: str) -> LimitError | None:
    """The first bound `text` exceeds, or None; stops after `MAX_TOKENS + 1` tokens, so
    it costs at most that many regex matches whatever the text's size."""
    if len(text) > MAX_SOURCE_CHARS:
        return LimitError(
            f"the spec has {len(text):,} characters, more than {MAX_SOURCE_CHARS:,}",
            0,
            1,
            "expected a spec of at most 1 MiB; use pools and `( ... ) * n` for long stacks",
        )
    depth = 0
    for count, m in enumerate(_TOKEN.finditer(text), 1):
        if count > MAX_TOKENS:
            return LimitError(
                f"the spec has more than {MAX_TOKENS:,} tokens",
                m.start(),
                len(m.group()),
                "expected a shorter spec; use pools and `( ... ) * n` for long stacks",
            )
        kind, token = m.lastgroup, m.group()
        if kind == "other" and token in _OPEN:
            depth += 1
            if depth > MAX_DEPTH:
                return LimitError(
                    f"nesting deeper than {MAX_DEPTH} levels of '(' and '['",
                    m.start(),
                    1,
                    f"expected at most {MAX_DEPTH} nested groups, calls or lists",
                )
        elif kind == "other" and token in _CLOSE:
            depth = max(0, depth - 1)
    return None


def span_at(text: str, pos: int, width: int) -> Span:
    """The 1-based line/column span of `width` characters at offset `pos` (lines split on
    '\\n', as Lark counts them)."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return Span(line=line, column=column, end_line=line, end_column=column + max(width, 1))


def digits_error(digits: str) -> str | None:
    """Why an integer literal may not be converted (too many digits), or None."""
    n = len(digits.lstrip("-"))
    if n > MAX_DIGITS:
        return f"integer with {n:,} digits; at most {MAX_DIGITS} are read"
    return None
