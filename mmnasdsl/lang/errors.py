"""The project's errors. Library code raises these; only `cli.py` prints them and exits 1.

`SpecError` carries every problem found in a spec, each located, so a user fixes them
all in one pass. `DataError` is for bad data files, `UsageError` for bad flags.

Rendering is linear in the source: the text is split into lines once per error, a long
line is shown as a window around the problem, and at most `MAX_SHOWN` diagnostics are
printed, followed by a count of the rest (a hostile spec can hold thousands of errors
on one 30 KB line; printing each with the whole line once cost minutes and gigabytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmnasdsl.lang.spec import NO_SPAN, Span

MAX_SHOWN = 20  # diagnostics printed per spec; the rest are counted
LINE_WIDTH = 100  # characters of a source line shown around a problem


class MmnasError(Exception):
    """Base of every error a user can cause; the CLI prints it without a traceback."""

    def render(self) -> str:
        return f"error: {self}"


def source_lines(text: str | None) -> list[str] | None:
    """The lines as the parser counts them: split on '\\n' only (`str.splitlines` also
    splits on form feeds and other separators Lark does not count as line breaks)."""
    return None if text is None else text.split("\n")


def _window(line: str, column: int, width: int) -> tuple[str, int, int]:
    """(shown text, caret column, caret width) for a 1-based `column` on `line`, cut to
    `LINE_WIDTH` characters around the caret with '…' where the line was cut."""
    if len(line) <= LINE_WIDTH:
        return line, column, max(1, min(width, len(line) - column + 2))
    start = max(0, min(column - 1 - LINE_WIDTH // 3, len(line) - LINE_WIDTH))
    shown = line[start : start + LINE_WIDTH]
    col = column - start
    width = max(1, min(width, LINE_WIDTH - col + 1))
    if start > 0:
        shown, col = "…" + shown, col + 1
    if start + LINE_WIDTH < len(line):
        shown += "…"
    return shown, col, width


@dataclass(frozen=True)
class Diagnostic:
    """One located problem: `file:line:col: error: message`, the line, a caret, a hint."""

    message: str
    span: Span = NO_SPAN
    hint: str | None = None
    code: str = "error"

    def render(self, source: str, text: str | None, lines: list[str] | None = None) -> str:
        """The diagnostic as text; pass `lines` (`source_lines(text)`) when rendering many
        diagnostics of one text, so it is split once."""
        loc = f"{source}:{self.span.line}:{self.span.column}" if self.span.line else source
        out = [f"{loc}: error: {self.message}"]
        lines = lines if lines is not None else source_lines(text)
        if lines is not None and self.span.line and 0 < self.span.line <= len(lines):
            width = 1
            if self.span.end_line == self.span.line and self.span.end_column > self.span.column:
                width = self.span.end_column - self.span.column
            shown, col, width = _window(lines[self.span.line - 1], max(self.span.column, 1), width)
            out.append(f"    {shown}")
            out.append("    " + " " * (col - 1) + "^" * width)
        if self.hint:
            out.append(f"    = {self.hint}")
        return "\n".join(out)


@dataclass
class SpecError(MmnasError):
    """Every error found in one spec, with the file name and text to show them against."""

    diagnostics: list[Diagnostic]
    source: str = "<string>"
    text: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def __str__(self) -> str:
        return self.render()

    def render(self, limit: int = MAX_SHOWN) -> str:
        """The first `limit` diagnostics, then how many more there are."""
        lines = source_lines(self.text)
        shown = [d.render(self.source, self.text, lines) for d in self.diagnostics[:limit]]
        rest = len(self.diagnostics) - limit
        if rest > 0:
            shown.append(f"{self.source}: ... and {rest} more error{'s' if rest > 1 else ''}")
        return "\n".join(shown)


class DataError(MmnasError):
    """A data file that is missing, malformed or inconsistent; the message names file and item."""


class UsageError(MmnasError):
    """A bad flag or combination of flags."""
