"""The picture commands: `render` (Figure-3 diagrams of specs) and `plot` (a search run).

`render` loads and checks each spec, builds its supernet graph (`mmnasdsl.compile.graph`) and
draws them side by side (`mmnasdsl.render.diagram`); `--theta RUNDIR` shades each candidate by
the probability the search in RUNDIR gave it. `plot` draws RUNDIR/history.json
(`mmnasdsl.render.plot`). Problems raise `MmnasError`s, which `cli.main` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mmnasdsl.lang.errors import UsageError

Output = Annotated[
    Path,
    typer.Option(
        "--output", "-o", help="output file; the suffix picks the format", show_default=False
    ),
]


def _spec_paths(
    specs: list[Path], history: dict[str, Any] | None, rundir: Path | None
) -> list[Path]:
    """The specs to draw: as given, or the searched spec named in RUNDIR/history.json."""
    if specs:
        return specs
    if history is None or rundir is None:
        raise UsageError("render needs at least one spec (or --theta RUNDIR of a search)")
    path = Path(str(history.get("spec", "")))
    if not path.is_file():
        raise UsageError(
            f"{rundir}/history.json names the spec '{path}', which does not exist "
            "here; pass the spec: render SPEC --theta RUNDIR -o FILE"
        )
    return [path]


def render_cmd(
    output: Output,
    specs: Annotated[
        list[Path] | None,
        typer.Argument(help="spec files (.mmnas), drawn left to right", show_default=False),
    ] = None,
    theta: Annotated[
        Path | None,
        typer.Option("--theta", help="a search run directory: shade each candidate by its last θ"),
    ] = None,
) -> None:
    """Draw specs as MMnas Figure 3 (.svg, .png, .pdf, or .dot without Graphviz installed)."""
    import mmnasdsl
    from mmnasdsl.compile.graph import build_graph
    from mmnasdsl.render.diagram import DRAWERS, output_format, render, write
    from mmnasdsl.render.plot import history_path, read_history

    output_format(output)
    history = read_history(theta) if theta is not None else None
    paths = _spec_paths(list(specs or []), history, theta)
    graphs = [build_graph(mmnasdsl.load(path)) for path in paths]
    thetas = None
    if history is not None and theta is not None:
        source = str(history_path(theta))
        thetas = [DRAWERS.get(g.spec.kind).theta_for(g, history, source) for g in graphs]
    out = write(render(graphs, thetas), output)
    typer.echo(f"wrote {out} ({len(graphs)} spec{'s' if len(graphs) != 1 else ''})")


def plot_cmd(
    rundir: Annotated[
        Path, typer.Argument(help="a search run directory (holds history.json)", show_default=False)
    ],
    output: Output,
) -> None:
    """Plot a search: θ per block over the epochs (a heatmap per stack) and its curves."""
    from mmnasdsl.render.plot import plot_run

    out = plot_run(rundir, output)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)
    app.command("plot")(plot_cmd)
