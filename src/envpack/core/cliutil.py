"""What both command lines share: turning every failure into one `error:` line and an exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Annotated, NoReturn

import click
import typer

from envpack.core.errors import EnvpackError
from envpack.core.interrupt import Interrupted, on_signal

EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def new_app() -> typer.Typer:
    """The settings both command lines share.

    Plain click help in both builds: the frozen one has no rich, and one look is better
    than two; it also wraps at any width without cutting option names.
    """
    return typer.Typer(
        # Completion comes from --completion SHELL (completion_option), which names the
        # shell instead of guessing it from the parent process.
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )


# The options both command lines have, spelled once.
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
QuietFlag = Annotated[bool, typer.Option("-q", "--quiet", help="Only errors and warnings.")]
VerboseFlag = Annotated[bool, typer.Option("-v", "--verbose", help="Say more.")]
InsecureFlag = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Talk plain HTTP to an oci:// registry (e.g. one on localhost). "
        "Credentials come from ~/.docker/config.json (and its credential helpers), "
        "$DOCKER_CONFIG or $REGISTRY_AUTH_FILE.",
    ),
]


def version_option(line: Callable[[], str]) -> typer.models.OptionInfo:
    """`--version`: print `line()` and exit, before anything else is parsed."""

    def show(value: bool) -> None:
        if value:
            typer.echo(line())
            raise typer.Exit()

    option: typer.models.OptionInfo = typer.Option(
        "--version", callback=show, is_eager=True, expose_value=False, help="Show the version."
    )
    return option


COMPLETION_SHELLS = ("bash", "zsh", "fish")


def completion_option(prog: str) -> typer.models.OptionInfo:
    """`--completion SHELL`: print the script that makes SHELL complete `prog`'s options."""

    def show(shell: str | None) -> None:
        if shell is None:
            return
        if shell not in COMPLETION_SHELLS:
            raise typer.BadParameter(f"choose one of {', '.join(COMPLETION_SHELLS)}")
        from typer._completion_shared import get_completion_script

        script = get_completion_script(
            prog_name=prog, complete_var=_complete_var(prog), shell=shell
        )
        typer.echo(script)
        raise typer.Exit()

    option: typer.models.OptionInfo = typer.Option(
        "--completion",
        metavar="SHELL",
        callback=show,
        is_eager=True,
        expose_value=False,
        help=f"Print the completion script for {', '.join(COMPLETION_SHELLS)} and exit, e.g. "
        f'eval "$({prog} --completion bash)".',
    )
    return option


def _pixi_pack_completion(args: list[str]) -> list[str]:
    """pixi-pack's `completion -s SHELL` (or `--shell SHELL`) is our `--completion SHELL`.

    Only as the whole command line: a lock or archive named `completion` is still one.
    """
    if len(args) == 3 and args[0] == "completion" and args[1] in ("-s", "--shell"):
        return ["--completion", args[2]]
    return args


def _complete_var(prog: str) -> str:
    return f"_{prog.upper()}_COMPLETE"


def run(
    app: typer.Typer, argv: Sequence[str] | None = None, *, prog: str, note: str | None = None
) -> int:
    """Run a typer app; domain errors become `error: …` and a non-zero code, never a traceback.

    `note` leads the help text (a self-extracting file says that its archive is built in).
    """
    if os.environ.get(_complete_var(prog)):
        # The shell asks for completions: answer in typer's protocol, as its scripts expect.
        from typer._completion_classes import completion_init

        completion_init()
    command = typer.main.get_command(app)
    if note:
        command.help = f"{note}\n\n{command.help or ''}"
    args = _pixi_pack_completion(list(sys.argv[1:] if argv is None else argv))
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
    except Interrupted as exc:
        return fail("interrupted", exc.exit_code)
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


def main(app: typer.Typer, *, prog: str, note: str | None = None) -> NoReturn:
    """A console script's whole life: signals raise Interrupted while the command runs."""
    for sig in _SIGNALS:
        signal.signal(sig, on_signal)
    code = run(app, prog=prog, note=note)
    # Only flushing and exiting remain. A late signal must neither raise outside run() nor
    # kill us with its default action, after which PyInstaller leaves its bundle in /tmp.
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    exit_now(code)


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
