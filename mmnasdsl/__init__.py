"""mmnasdsl: declarative multimodal neural architecture search (Yu et al., MMnas, ACM MM 2020).

`load(path)` / `loads(text)` parse and check a `.mmnas` spec and return a `Spec`; any
problem raises `SpecError` carrying every error found.
"""

from __future__ import annotations

from pathlib import Path

from mmnasdsl.lang.errors import DataError, MmnasError, SpecError, UsageError
from mmnasdsl.lang.spec import Spec

__version__ = "0.1.0"
__all__ = ["DataError", "MmnasError", "Spec", "SpecError", "UsageError", "load", "loads"]


def loads(text: str, source: str = "<string>") -> Spec:
    """Parse and check spec text. Raises SpecError (all errors found) for any bad input."""
    from mmnasdsl.lang.check import check
    from mmnasdsl.lang.parse import parse

    spec = parse(text, source)
    check(spec, text)
    return spec


def load(path: str | Path) -> Spec:
    """Read, parse and check a `.mmnas` file. Raises SpecError, also for unreadable files."""
    from mmnasdsl.lang.errors import Diagnostic

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError([Diagnostic(f"cannot read spec: {reason}")], source=str(path)) from None
    return loads(text, str(path))
