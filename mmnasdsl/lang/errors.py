"""The project's errors. Library code raises these; only `cli.py` prints them and exits 1.

`SpecError` carries every problem found in a spec, each located, so a user fixes them
all in one pass. `DataError` is for bad data files, `UsageError` for bad flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmnasdsl.lang.spec import NO_SPAN, Span


class MmnasError(Exception):
    """Base of every error a user can cause; the CLI prints it without a traceback."""

    def render(self) -> str:
        return f"error: {self}"


@dataclass(frozen=True)
class Diagnostic:
    """One located problem: `file:line:col: error: message`, the line, a caret, a hint."""

    message: str
    span: Span = NO_SPAN
    hint: str | None = None
    code: str = "error"

    def render(self, source: str, text: str | None) -> str:
        loc = f"{source}:{self.span.line}:{self.span.column}" if self.span.line else source
        lines = [f"{loc}: error: {self.message}"]
        if text is not None and self.span.line:
            src_lines = text.splitlines()
            if 0 < self.span.line <= len(src_lines):
                line = src_lines[self.span.line - 1]
                lines.append(f"    {line}")
                width = 1
                if self.span.end_line == self.span.line and self.span.end_column > self.span.column:
                    width = self.span.end_column - self.span.column
                lines.append("    " + " " * (self.span.column - 1) + "^" * width)
        if self.hint:
            lines.append(f"    = {self.hint}")
        return "\n".join(lines)


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

    def render(self) -> str:
        return "\n".join(d.render(self.source, self.text) for d in self.diagnostics)


class DataError(MmnasError):
    """A data file that is missing, malformed or inconsistent; the message names file and item."""


class UsageError(MmnasError):
    """A bad flag or combination of flags."""
