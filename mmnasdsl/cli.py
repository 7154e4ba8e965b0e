"""The `mmnasdsl` command line: a typer app whose commands live in `mmnasdsl.commands`.

Each area registers its commands from its own module (`commands/lang.py`, ...), so adding
a command touches one file. This module assembles the app and is the one guard at the
boundary: `main` turns every failure a user can cause into one located message and an
exit code, and keeps a traceback for true bugs only.

Exit codes (`EXIT_CODES`, also in `mmnasdsl --help` and the README):

    0    ok
    1    a bad spec, data file, flag or command line, or a run that failed on its input or
         its environment (a file it cannot write, no memory): `error: ...` naming the file,
         the item or the flag, and what to do
    70   an internal error, a bug in mmnasdsl: the traceback and a request to report it
         (70 is EX_SOFTWARE of sysexits.h)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP threads that spin while waiting made a W step 2.5x slower on
# a busy 2-core machine (bench/step.py); passive waiting costs nothing when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import importlib
import sys
import traceback
from typing import Any, NoReturn

import typer

from mmnasdsl.lang.errors import MmnasError

COMMAND_MODULES = ("lang", "info", "data", "run", "render")

# click's exceptions as typer raises them (recent typer vendors click as `typer._click`;
# older typer uses click itself), found through a class typer exports.
_CLICK = sys.modules[typer.BadParameter.__module__]
ClickException: type[Exception] = _CLICK.ClickException
NoArgsIsHelpError: Any = getattr(_CLICK, "NoArgsIsHelpError", ())  # click >= 8.2

EXIT_OK, EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 70, 130
EXIT_CODES = {
    EXIT_OK: "ok",
    EXIT_ERROR: "a bad spec, data file, flag or command line, or a run that failed on its "
    "input or environment (one message naming the file, item or flag)",
    EXIT_BUG: "an internal error (a bug): the traceback and a request to report it",
    EXIT_INTERRUPTED: "interrupted",
}

app = typer.Typer(
    name="mmnasdsl",
    help="Declarative multimodal neural architecture search (MMnas).\n\n"
    "Exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()) + ".",
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


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: run a command and exit with its code (see `EXIT_CODES`)."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """Run a command line; print any failure as one message (a bug with its traceback) and
    return the exit code."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="mmnasdsl")
    except MmnasError as exc:
        return _fail(exc.render())
    except NoArgsIsHelpError as exc:  # `mmnasdsl data`: the help (typer's rich help has
        if exc.format_message().strip():  # printed itself already; click's is the message)
            typer.echo(exc.format_message(), err=True)
        return EXIT_ERROR
    except ClickException as exc:
        return _fail(_click_message(exc))
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mmnasdsl fmt x | head`: the reader left; say nothing
        _silence_stdout()
        return EXIT_ERROR
    except Exception as exc:
        expected = expected_failure(exc)
        if expected is not None:
            return _fail(f"error: {expected}")
        return _bug(exc)
    if result == EXIT_INTERRUPTED:  # typer turns Ctrl-C into exit code 130 itself
        typer.echo("interrupted", err=True)
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    return EXIT_OK


def expected_failure(exc: BaseException) -> str | None:
    """The message for a failure of the input or the environment that reached the top
    without being turned into a `MmnasError` on its way, or None for a bug.

    - pydantic's ValidationError: settings built from values no flag or spec checked;
    - OSError: a file or folder that cannot be read or written (no such file, permission,
      a read-only or full disk), named with its path;
    - MemoryError, or torch's OutOfMemoryError (a device's memory): a network or batch
      too large for this machine.
    """
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        from mmnasdsl.lang.check import validation_message

        return f"invalid settings: {validation_message(exc)}"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"{where}{reason}"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "out of memory; try a smaller batch, model or data set"
    return None


def _click_message(exc: Any) -> str:
    """click's message in the house style, with where to read the command's help."""
    ctx: Any = getattr(exc, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    hint = f"\n    = see `{ctx.command_path} --help`" if ctx is not None else ""
    return f"error: {where}{exc.format_message()}{hint}"


def _fail(message: str) -> int:
    typer.echo(message, err=True)
    return EXIT_ERROR


def _bug(exc: BaseException) -> int:
    """A true bug: the traceback, and how to report it."""
    from mmnasdsl import __version__

    traceback.print_exception(exc)
    typer.echo(
        f"\nmmnasdsl {__version__}: internal error ({type(exc).__name__}): a bug in mmnasdsl, "
        "not in your input. Please report it to the maintainers with the command line, the "
        "traceback above and, if you can, the input files.",
        err=True,
    )
    return EXIT_BUG


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
