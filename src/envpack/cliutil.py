"""What both command lines share: turning every failure into one `error:` line and an exit code."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import click
import typer

from envpack.errors import EnvpackError

EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def new_app() -> typer.Typer:
    """The settings both command lines share: no completion, no rich tracebacks, -h."""
    return typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def run(app: typer.Typer, argv: Sequence[str] | None = None, *, prog: str) -> int:
    """Run a typer app; domain errors become `error: …` and a non-zero code, never a traceback."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name=prog, standalone_mode=False)
    except EnvpackError as exc:
        return fail(str(exc), exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        hint = f"run '{prog} --help' to see the options"
        return fail(f"{exc.format_message()} ({hint})", EXIT_USAGE)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if "-v" in args or "--verbose" in args:
            traceback.print_exc()
        return fail(
            f"internal error: {type(exc).__name__}: {exc} (rerun with -v for details and "
            "report it as a bug)",
            EXIT_INTERNAL,
        )
    return int(result or 0)


def exit_now(code: int) -> NoReturn:
    """Flush and leave without interpreter teardown.

    py-rattler's background threads can abort Python's finalisation ("PyGILState_Release:
    thread state must be current"), turning a finished run into exit code 134. Everything
    the run wrote is flushed or closed by now, so skipping teardown loses nothing.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def fail(message: str, code: int) -> int:
    # Exactly one line, whatever the message holds, so scripts can grep for it.
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code
