"""The language commands: `check`, `fmt`, `ops`, `convert`.

They read and write files (the edges of the pipeline); the work is done by `parse`,
`check`, `format_spec` and `convert`. Problems are raised as `MmnasError`s, which
`mmnasdsl.cli.main` prints without a traceback and turns into exit code 1.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from mmnasdsl.lang.errors import SpecError, UsageError
from mmnasdsl.lang.spec import Spec

SpecPaths = Annotated[
    list[Path], typer.Argument(help="spec files (.mmnas)", show_default=False, metavar="SPEC")
]


def size_formula(spec: Spec) -> str:
    """`2^12*4^18 = 281474976710656`: the product of the block choice counts, exactly."""
    counts = Counter(len(b.choices) for b in spec.blocks() if b.searchable)
    if not counts:
        return "1 (concrete)"
    factors = [f"{k}^{n}" if n > 1 else str(k) for k, n in sorted(counts.items())]
    size = spec.search_space_size()
    formula = "*".join(factors)
    return str(size) if formula == str(size) else f"{formula} = {size}"


def summary(path: Path, spec: Spec) -> str:
    """One line: blocks, searchable blocks and the search-space size."""
    blocks = spec.blocks()
    searchable = sum(b.searchable for b in blocks)
    return (
        f"{path}: ok, {len(blocks)} blocks ({searchable} searchable), "
        f"search space {size_formula(spec)}"
    )


def check_cmd(specs: SpecPaths) -> None:
    """Check specs: print one summary line per good spec, every error of the bad ones."""
    import mmnasdsl

    failed = 0
    for path in specs:
        try:
            spec = mmnasdsl.load(path)
        except SpecError as exc:
            typer.echo(exc.render(), err=True)
            failed += 1
            continue
        typer.echo(summary(path, spec))
    if failed:
        typer.echo(f"{failed} of {len(specs)} specs have errors", err=True)
        raise typer.Exit(1)


def fmt_cmd(
    specs: SpecPaths,
    write: Annotated[bool, typer.Option("--write", "-w", help="rewrite the files")] = False,
    check: Annotated[bool, typer.Option("--check", help="exit 1 if a file would change")] = False,
) -> None:
    """Print specs in canonical form (comments kept); `-w` rewrites, `--check` only tests."""
    from mmnasdsl import read_spec_text
    from mmnasdsl.lang.format import format_spec
    from mmnasdsl.lang.parse import parse

    if write and check:
        raise UsageError("--write and --check exclude each other")
    changed = 0
    for path in specs:
        text = read_spec_text(path)
        formatted = format_spec(parse(text, str(path)))
        if check or write:
            if formatted != text:
                changed += 1
                if write:
                    path.write_text(formatted, encoding="utf-8")
                typer.echo(f"{'reformatted' if write else 'would reformat'} {path}", err=True)
        else:
            typer.echo(formatted, nl=False)
    if check and changed:
        raise typer.Exit(1)


def ops_cmd() -> None:
    """List the registered ops, what each needs besides its stream, and what it computes."""
    from rich.console import Console
    from rich.table import Table

    from mmnasdsl.ops import OPS

    table = Table("op", "needs", "what it computes", box=None)
    for name in OPS.names():
        cls = OPS[name]
        needs = ", ".join(getattr(cls, "needs", ())) or "-"
        doc = (cls.__doc__ or "").strip().splitlines()
        table.add_row(name, needs, doc[0] if doc else "")
    Console(width=120).print(table)


def convert_cmd(
    source: Annotated[
        Path, typer.Argument(help="arch .json (reference format) or concrete .mmnas")
    ],
    space: Annotated[
        Path | None, typer.Option("--space", help="search-space spec giving the settings (json in)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="output file (default: stdout)")
    ] = None,
    epoch: Annotated[
        int | None,
        typer.Option("--epoch", min=0, help="epoch<N> to take or write (default: the last; 0)"),
    ] = None,
) -> None:
    """Convert between the reference's architecture JSON and a concrete spec."""
    if source.suffix.lower() == ".json":
        text = _json_to_spec_text(source, space, epoch)
    else:
        if space is not None:
            raise UsageError("--space is only for converting a .json architecture into a spec")
        text = _spec_to_json_text(source, epoch or 0)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


def _json_to_spec_text(source: Path, space: Path | None, epoch: int | None) -> str:
    import mmnasdsl
    from mmnasdsl.lang.convert import ConvertError, arch_to_spec, pick_epoch, read_arch_json
    from mmnasdsl.lang.format import format_spec

    if space is None:
        raise UsageError("converting a .json architecture needs --space SPEC for the settings")
    try:
        raw = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvertError(f"{source}: cannot read: {exc}") from None
    data = read_arch_json(raw, str(source))
    key, _ = pick_epoch(data, epoch, str(source))
    ops = list(mmnasdsl.catalog().ops)
    spec = arch_to_spec(data, mmnasdsl.load(space), ops, epoch, str(source))
    header = f"converted from {source.name} ({key}) with the settings of {space}"
    text = format_spec(spec, header=header)
    mmnasdsl.loads(text, f"<{source.name} as spec>")  # the result must be a valid spec
    return text


def _spec_to_json_text(source: Path, epoch: int) -> str:
    import mmnasdsl
    from mmnasdsl.lang.convert import spec_to_arch

    return json.dumps(spec_to_arch(mmnasdsl.load(source), epoch)) + "\n"


def register(app: typer.Typer) -> None:
    """Add the language commands to the `mmnasdsl` app."""
    app.command("check")(check_cmd)
    app.command("fmt")(fmt_cmd)
    app.command("ops")(ops_cmd)
    app.command("convert")(convert_cmd)
