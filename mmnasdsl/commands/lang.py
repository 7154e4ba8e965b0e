"""The language commands: `check`, `fmt`, `ops`, `convert`.

They read and write files (the edges of the pipeline); the work is done by `parse`,
`check`, `format_spec` and `convert`. Problems are raised as `MmnasError`s, which
`mmnasdsl.cli.main` prints without a traceback and turns into exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mmnasdsl.lang.errors import SpecError, UsageError
from mmnasdsl.lang.spec import Spec

SpecPaths = Annotated[
    list[Path], typer.Argument(help="spec files (.mmnas)", show_default=False, metavar="SPEC")
]


def size_formula(spec: Spec) -> str:
    """`2^12*4^18 = 281474976710656`: the product of the choice counts, exactly (by kind)."""
    return spec.size_formula()


def summary(path: Path, spec: Spec) -> str:
    """One line: what the spec holds (MMnas: blocks and searchable blocks; BM-NAS: cells,
    steps, taps and searched choices) and the search-space size."""
    return f"{path}: ok, {spec.outline()}, search space {spec.size_formula()}"


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
    """List the registered ops (MMnas blocks, then BM-NAS's fusion ops) and what each does."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mmnasdsl.ops import FUSION_OPS, OPS

    table = Table("op", "needs", "what it computes", box=None)
    for name in OPS.names():
        cls = OPS[name]
        needs = ", ".join(getattr(cls, "needs", ())) or "-"
        doc = (cls.__doc__ or "").strip().splitlines()
        table.add_row(name, needs, doc[0] if doc else "")
    Console(width=120).print(table)
    fusion = Table("fusion op (BM-NAS)", "what it computes from x, y", box=None)
    for name in FUSION_OPS.names():
        doc = (FUSION_OPS[name].__doc__ or "").strip().splitlines()
        fusion.add_row(name, escape(doc[0]) if doc else "")  # `cat[x, y]` is not markup
    Console(width=120).print(fusion)


def convert_cmd(
    source: Annotated[
        Path,
        typer.Argument(
            help="arch .json (MMnas reference), a BM-NAS Genotype (text, log or .pkl), or a "
            "concrete .mmnas"
        ),
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
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="convert this checkpoint for the concrete spec SOURCE instead: the "
            "reference's .pkl to an mmnasdsl checkpoint (for eval), or with --to reference "
            "an mmnasdsl .pt to the reference's layout",
        ),
    ] = None,
    to: Annotated[
        str,
        typer.Option("--to", help="with --weights: mmnasdsl (default) or reference"),
    ] = "mmnasdsl",
    rows: Annotated[
        Path | None,
        typer.Option(
            "--rows",
            help="with --weights: the reference's token_to_ix and ans_to_ix (JSON); puts its "
            "embedding and classifier rows in the order of the --data store's vocabulary",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="with --rows: the data folder (default: the spec's data)"),
    ] = None,
) -> None:
    """Convert between a concrete spec and the reference code's written architecture: MMnas's
    JSON (.json), or BM-NAS's Genotype (its repr in any text file or log, or its .pkl); or
    (with --weights) between the MMnas reference's checkpoints and mmnasdsl's."""
    if weights is not None:
        if space is not None or epoch is not None:
            raise UsageError("--space and --epoch are for architecture files, not --weights")
        _convert_weights(source, weights, output, to, rows, data)
        return
    if to != "mmnasdsl" or rows is not None or data is not None:
        raise UsageError("--to, --rows and --data are only for converting --weights")
    suffix = source.suffix.lower()
    if suffix == ".json":
        text = _json_to_spec_text(source, space, epoch)
    elif suffix != ".mmnas":
        text = _genotype_to_spec_text(source, space)
    else:
        if space is not None:
            raise UsageError("--space is only for converting an architecture into a spec")
        text = _spec_to_reference_text(source, epoch or 0)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


WEIGHT_TARGETS = ("mmnasdsl", "reference")


def _rows(spec: Spec, rows: Path | None, data: str | None) -> Any:
    """The reference's lists and the train store's vocabulary and answers, or None."""
    if rows is None:
        if data is not None:
            raise UsageError("--data goes with --rows (the lists to reorder the rows by)")
        return None
    from mmnasdsl.commands.run import data_for
    from mmnasdsl.data import open_split
    from mmnasdsl.train.distributed import Dist
    from mmnasdsl.train.weights import read_rows

    train = open_split(data_for(spec, data, Dist()), "train", spec)
    return read_rows(rows, train.vocab, list(getattr(train, "answers", [])))


def _convert_weights(
    spec_path: Path,
    weights: Path,
    output: Path | None,
    to: str,
    rows: Path | None = None,
    data: str | None = None,
) -> None:
    """`convert --weights`: read, convert, write; notes on conventions that change what the
    moved weights compute, and on tokens and answers without a row."""
    import mmnasdsl
    from mmnasdsl.compile.reference import convention_notes
    from mmnasdsl.train import runs
    from mmnasdsl.train import weights as w

    if to not in WEIGHT_TARGETS:
        raise UsageError(f"--to {to}: expected one of {', '.join(WEIGHT_TARGETS)}")
    if output is None:
        raise UsageError("convert --weights writes a checkpoint: give -o OUT")
    if not weights.is_file():
        raise UsageError(f"{weights}: no such checkpoint")
    if (rows is not None or data is not None) and to != "mmnasdsl":
        raise UsageError("--rows and --data are for converting the reference's checkpoints")
    spec = mmnasdsl.load(spec_path)
    if to == "mmnasdsl":
        ckpt = w.import_reference(spec, weights, _rows(spec, rows, data))
    else:
        ckpt = w.export_reference(spec, weights)
    runs.save_checkpoint(output, ckpt)
    for note in convention_notes(spec):
        typer.echo(f"note: {spec_path}: {note}; the weights compute another function", err=True)
    for note in ckpt.get("notes", []):
        typer.echo(f"note: {note}", err=True)
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


def _spec_to_reference_text(source: Path, epoch: int) -> str:
    """MMnas: the reference's JSON; BM-NAS: the official Genotype repr."""
    import mmnasdsl
    from mmnasdsl.lang.convert import spec_to_arch
    from mmnasdsl.lang.genotype import format_genotype, spec_to_genotype

    spec = mmnasdsl.load(source)
    if spec.kind == "bmnas":
        return format_genotype(spec_to_genotype(spec)) + "\n"  # type: ignore[arg-type]
    return json.dumps(spec_to_arch(spec, epoch)) + "\n"


def _genotype_to_spec_text(source: Path, space: Path | None) -> str:
    """A BM-NAS Genotype (text or .pkl) as a concrete spec with the settings of `space`."""
    import mmnasdsl
    from mmnasdsl.lang.convert import ConvertError
    from mmnasdsl.lang.format import format_spec
    from mmnasdsl.lang.genotype import genotype_to_spec, read_genotype, read_genotype_pickle

    if space is None:
        raise UsageError("converting a Genotype needs --space SPEC (a BM-NAS space)")
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ConvertError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if source.suffix.lower() == ".pkl":
        genotype = read_genotype_pickle(raw, str(source))
    else:
        genotype = read_genotype(raw.decode("utf-8", errors="replace"), str(source))
    spec = mmnasdsl.load(space)
    if spec.kind != "bmnas":
        raise UsageError(f"--space {space}: a Genotype needs a BM-NAS space (`space bmnas`)")
    concrete = genotype_to_spec(genotype, spec, str(source))  # type: ignore[arg-type]
    text = format_spec(
        concrete, header=f"converted from {source.name} with the settings of {space}"
    )
    mmnasdsl.loads(text, f"<{source.name} as spec>")  # the result must be a valid spec
    return text


def register(app: typer.Typer) -> None:
    """Add the language commands to the `mmnasdsl` app."""
    app.command("check")(check_cmd)
    app.command("fmt")(fmt_cmd)
    app.command("ops")(ops_cmd)
    app.command("convert")(convert_cmd)
