"""cliutil: the exit-code contract, run in-process on small typer apps."""

from __future__ import annotations

import signal
from typing import Annotated

import pytest
import typer

from envpack.core.cliutil import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    completion_option,
    fail,
    new_app,
    run,
)
from envpack.core.errors import ArchiveError, UsageError
from envpack.core.interrupt import Interrupted


def _app(action: str = "ok") -> typer.Typer:
    app = new_app()

    @app.command()
    def main(
        name: Annotated[str, typer.Argument(help="a name")],
        verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
        completion: Annotated[str | None, completion_option("tool")] = None,
    ) -> None:
        """Say hello."""
        if action == "archive":
            raise ArchiveError(f"{name} is broken\nsecond line")
        if action == "usage":
            raise UsageError("bad option")
        if action == "bug":
            raise KeyError("surprise")
        if action == "sigterm":
            raise Interrupted(signal.SIGTERM)
        if action == "ctrl-c":
            raise KeyboardInterrupt
        if action == "pipe":
            raise BrokenPipeError
        typer.echo(f"hello {name}")

    return app


def _stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_success_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_app(), ["world"], prog="tool") == 0
    assert capsys.readouterr() == ("hello world\n", "")


@pytest.mark.parametrize(
    ("action", "code", "line"),
    [
        ("archive", 1, "error: x is broken second line"),
        ("usage", EXIT_USAGE, "error: bad option"),
        ("sigterm", 128 + signal.SIGTERM, "error: interrupted"),
    ],
)
def test_each_failure_is_one_error_line_and_its_code(
    capsys: pytest.CaptureFixture[str], action: str, code: int, line: str
) -> None:
    assert run(_app(action), ["x"], prog="tool") == code
    assert _stderr_lines(capsys) == [line]


def test_a_bug_is_one_line_without_traceback_unless_verbose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(_app("bug"), ["x"], prog="tool") == EXIT_INTERNAL
    lines = _stderr_lines(capsys)
    assert len(lines) == 1
    assert lines[0].startswith("error: internal error: KeyError: 'surprise'")
    assert "report it as a bug" in lines[0]
    assert run(_app("bug"), ["x", "-v"], prog="tool") == EXIT_INTERNAL
    assert "Traceback" in capsys.readouterr().err


def test_a_bare_keyboard_interrupt_is_typers_silent_130(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Why the CLIs raise Interrupted from their signal handler instead: typer swallows a
    # KeyboardInterrupt into a silent exit, with no `error:` line.
    assert run(_app("ctrl-c"), ["x"], prog="tool") == EXIT_INTERRUPTED
    assert capsys.readouterr().err == ""


def test_a_closed_pipe_exits_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_app("pipe"), ["x"], prog="tool") == 1
    assert capsys.readouterr().err == ""


def test_a_usage_mistake_points_at_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_app(), ["x", "--nope"], prog="tool") == EXIT_USAGE
    lines = _stderr_lines(capsys)
    assert len(lines) == 1
    assert lines[0].startswith("error: No such option")
    assert "--nope" in lines[0]
    assert lines[0].endswith("(run 'tool --help' to see the options)")


def test_no_arguments_prints_help_and_exits_with_usage_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = new_app()

    @app.command(no_args_is_help=True)
    def main(name: Annotated[str, typer.Argument()]) -> None:
        """Say hello."""

    assert run(app, [], prog="tool") == EXIT_USAGE
    assert "Say hello." in capsys.readouterr().err


def test_help_leads_with_the_note_and_takes_short_h(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_app(), ["-h"], prog="tool", note="The archive is built in.") == 0
    out = capsys.readouterr().out
    assert out.index("The archive is built in.") < out.index("Say hello.")
    assert "--completion SHELL" in out


@pytest.mark.parametrize("args", [["--completion", "bash"], ["completion", "-s", "bash"]])
def test_completion_script_for_a_named_shell(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert run(_app(), args, prog="tool") == 0
    out = capsys.readouterr().out
    assert "_TOOL_COMPLETE" in out
    assert "complete " in out


def test_completion_refuses_an_unknown_shell(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_app(), ["--completion", "tcsh"], prog="tool") == EXIT_USAGE
    lines = _stderr_lines(capsys)
    assert len(lines) == 1
    assert "choose one of bash, zsh, fish" in lines[0]


def test_an_argument_named_completion_is_still_an_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(_app(), ["completion"], prog="tool") == 0
    assert capsys.readouterr().out == "hello completion\n"


def test_fail_writes_exactly_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert fail("a\n  b\tc\n", 3) == 3
    assert capsys.readouterr().err == "error: a b c\n"
