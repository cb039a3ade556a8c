"""interrupt: real signals raise Interrupted, except inside uninterruptible() blocks."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from envpack.core.interrupt import Interrupted, on_signal, uninterruptible


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_signal_raises_interrupted_with_the_shell_exit_code(handlers: None) -> None:
    with pytest.raises(Interrupted) as info:
        os.kill(os.getpid(), signal.SIGTERM)
    assert info.value.exit_code == 128 + signal.SIGTERM
    # Not an Exception: `except Exception` cleanup code must not swallow it.
    assert not isinstance(info.value, Exception)


def test_a_signal_inside_a_block_waits_until_the_block_ends(handlers: None) -> None:
    steps: list[str] = []
    with pytest.raises(Interrupted) as info:
        with uninterruptible():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("after the second")
        steps.append("never")
    assert steps == ["after the signal", "after the second"]
    # The first signal is the one reported.
    assert info.value.exit_code == 128 + signal.SIGINT


def test_nested_blocks_hold_the_signal_until_the_outermost_ends(handlers: None) -> None:
    steps: list[str] = []
    with pytest.raises(Interrupted):
        with uninterruptible():
            with uninterruptible():
                os.kill(os.getpid(), signal.SIGTERM)
            steps.append("inner ended")
        steps.append("never")
    assert steps == ["inner ended"]


def test_a_block_without_a_signal_raises_nothing_and_later_signals_raise_again(
    handlers: None,
) -> None:
    with uninterruptible():
        pass
    with pytest.raises(Interrupted):
        os.kill(os.getpid(), signal.SIGINT)


def test_an_error_inside_a_block_still_ends_it(handlers: None) -> None:
    with pytest.raises(ValueError), uninterruptible():
        raise ValueError
    with pytest.raises(Interrupted):
        os.kill(os.getpid(), signal.SIGTERM)
