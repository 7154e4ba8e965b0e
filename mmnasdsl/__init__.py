"""mmnasdsl: declarative multimodal neural architecture search (Yu et al., MMnas, ACM MM 2020).

`load(path)` / `loads(text)` parse and check a `.mmnas` spec against the registered ops
and heads (`catalog()`) and return a `Spec`; any problem raises `SpecError` carrying every
error found. None of this imports torch.
"""

from __future__ import annotations

from pathlib import Path

from mmnasdsl.lang.catalog import Catalog
from mmnasdsl.lang.errors import DataError, Diagnostic, MmnasError, SpecError, UsageError
from mmnasdsl.lang.spec import Spec

__version__ = "0.1.0"
__all__ = [
    "Catalog",
    "DataError",
    "MmnasError",
    "Spec",
    "SpecError",
    "UsageError",
    "catalog",
    "diagnostics",
    "load",
    "loads",
]


def catalog() -> Catalog:
    """The registered ops and heads (built-in and plug-ins): what a spec may name."""
    from mmnasdsl.heads import catalog as registered

    return registered()


def loads(text: str, source: str = "<string>") -> Spec:
    """Parse and check spec text. Raises SpecError (all errors found) for any bad input."""
    from mmnasdsl.lang.check import check
    from mmnasdsl.lang.parse import parse

    spec = parse(text, source)
    check(spec, catalog(), text)
    return spec


def load(path: str | Path) -> Spec:
    """Read, parse and check a `.mmnas` file. Raises SpecError, also for unreadable files."""
    return loads(read_spec_text(path), str(path))


def read_spec_text(path: str | Path) -> str:
    """A spec file's text; SpecError naming the file when it cannot be read or is larger
    than the front end reads (`lang.limits.MAX_SOURCE_CHARS`): at most that many bytes
    are read, so `/dev/zero` or a multi-gigabyte file is refused at once."""
    from mmnasdsl.lang.limits import MAX_SOURCE_CHARS

    try:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_SOURCE_CHARS + 1)
        if len(raw) > MAX_SOURCE_CHARS:
            message = f"cannot read spec: the file is larger than {MAX_SOURCE_CHARS:,} bytes"
            raise SpecError([Diagnostic(message)], source=str(path))
        # as text mode reads it: universal newlines
        return raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError([Diagnostic(f"cannot read spec: {reason}")], source=str(path)) from None


def diagnostics(spec: Spec) -> list[Diagnostic]:
    """Every problem of a parsed spec, by position; empty for a good spec."""
    from mmnasdsl.lang.check import diagnostics as found

    return found(spec, catalog())
