"""The `mmnasdsl` command line: a typer app whose commands live in `mmnasdsl.commands`.

Each area registers its commands from its own module (`commands/lang.py`, ...), so adding
a command touches one file. This module only assembles the app and turns the project's
errors into a message and exit code 1, never a traceback.
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP threads that spin while waiting made a W step 2.5x slower on
# a busy 2-core machine (bench/step.py); passive waiting costs nothing when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import importlib
import sys

import typer

from mmnasdsl.lang.errors import MmnasError

COMMAND_MODULES = ("lang", "info", "data", "run", "render")

app = typer.Typer(
    name="mmnasdsl",
    help="Declarative multimodal neural architecture search (MMnas).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"mmnasdsl.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mmnasdsl.commands.{name}":
                raise
            continue
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app; project errors print cleanly and exit 1."""
    try:
        app(args=argv, standalone_mode=True)
    except MmnasError as exc:
        typer.echo(exc.render(), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
