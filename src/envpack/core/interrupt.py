"""Ctrl-C and SIGTERM as one exception, and steps that a signal must not cut in half.

The CLIs install `on_signal` for SIGINT and SIGTERM. A signal raises `Interrupted` in the
main thread, so every `finally` that removes partial work runs, except inside
`uninterruptible()`: there it is held and raised when the block ends. Swapping an env into
place (two renames) and removing a staging dir are such blocks: cut between the renames,
a --force run would delete the old env with the staging dir and leave none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(BaseException):
    """Not KeyboardInterrupt: typer turns that into a silent exit 130, and SIGTERM deserves
    the same cleanup and the same `error: interrupted` line."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_code = 128 + signum


_held: list[int] | None = None


def on_signal(signum: int, frame: FrameType | None) -> None:
    if _held is not None:
        _held.append(signum)
        return
    raise Interrupted(signum)


@contextmanager
def uninterruptible() -> Iterator[None]:
    global _held
    outer = _held
    _held = [] if outer is None else outer
    try:
        yield
    finally:
        held, _held = _held, outer
    if outer is None and held:
        raise Interrupted(held[0])
