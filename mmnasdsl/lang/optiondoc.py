"""The option reference of the language, generated from the settings and head schemas.

`docs/language.md` embeds `options_markdown()` between markers, and a test checks that it
is up to date, so the documentation lists exactly the options the checker accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mmnasdsl.lang.bmnas_settings import BMNasModel, CellOptions, TapSettings, XorData
from mmnasdsl.lang.catalog import Catalog
from mmnasdsl.lang.check import describe_type
from mmnasdsl.lang.settings import (
    DataSettings,
    ModelSettings,
    ObjectsInput,
    SearchSettings,
    TrainSettings,
    WordsInput,
)

_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):  # the embedding
        return f"{value.kind}({value.dim})"  # type: ignore[attr-defined]
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        two = describe_type(field.annotation).startswith("a ratio")
        return f"{value[0]}:{value[1]}" if two else "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _bounds(field: FieldInfo) -> str:
    """`>= 1, <= 100`; for a list, its items' range and its length: `each >= 1; at most 64`."""
    parts = [_limits(field.metadata)]
    args = get_args(field.annotation)
    if get_origin(field.annotation) is tuple and args and args[-1] is Ellipsis:
        item = get_args(args[0])[1:] if get_origin(args[0]) is Annotated else ()
        metadata = [m for a in item for m in getattr(a, "metadata", [a])]
        parts = [f"each {_limits(metadata)}" if _limits(metadata) else "", parts[0]]
    longest = next((m.max_length for m in field.metadata if hasattr(m, "max_length")), None)
    if longest is not None:
        parts.append(f"at most {longest} items")
    return "; ".join(p for p in parts if p)


def _limits(metadata: list[Any]) -> str:
    return ", ".join(
        f"{sym} {getattr(m, key)}"
        for m in metadata
        for key, sym in _BOUNDS
        if getattr(m, key, None) is not None
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def options_table(title: str, schema: type[BaseModel]) -> str:
    """One markdown table: option, type, default, range, meaning."""
    rows = [
        f"#### {title}",
        "",
        "| option | type | default | range | meaning |",
        "|---|---|---|---|---|",
    ]
    for key, field in schema.model_fields.items():
        if key in ("kind", "source"):
            continue
        cells = (
            f"`{key}`",
            describe_type(field.annotation),
            _default(field),
            _bounds(field),
            field.description or "",
        )
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def sections(catalog: Catalog) -> list[tuple[str, type[BaseModel]]]:
    """Every option schema of the language (heads: those of `catalog`), with its construct."""
    heads = catalog.heads
    out: list[tuple[str, type[BaseModel]]] = [
        ("`model NAME { ... }`", ModelSettings),
        ("`input NAME = words(...)`", WordsInput),
        ("`input NAME = objects(...)`", ObjectsInput),
    ]
    out += [(f"`head {name}(...)`", heads[name].Options) for name in sorted(heads)]
    out += [
        ("`data shapes(...)` and `data h5(...)`", DataSettings),
        ("`search { ... }`", SearchSettings),
        ("`train { ... }`", TrainSettings),
        ("BM-NAS: `model NAME { ... }`", BMNasModel),
        ("BM-NAS: `input NAME { TAP = tap(...) }`", TapSettings),
        ("BM-NAS: `cell NAME(a, b, ...)`", CellOptions),
        ("BM-NAS: `data xor(...)`", XorData),
    ]
    return out


def options_markdown(catalog: Catalog) -> str:
    """All option tables, in the order of the language reference."""
    return "\n".join(options_table(title, schema) for title, schema in sections(catalog))
