"""progress: what each Reporter writes, and where."""

from __future__ import annotations

import io

import pytest

from envpack.core.progress import Reporter, SilentReporter, TqdmReporter


def test_silent_reporter_keeps_only_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    reporter: Reporter = SilentReporter(stream)
    reporter.info("hello")
    reporter.debug("details")
    reporter.warn("careful")
    bar = reporter.bar("downloading", 100)
    bar.update(50)
    bar.close()
    assert stream.getvalue() == "warning: careful\n"
    assert capsys.readouterr() == ("", "")


def test_silent_reporter_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    SilentReporter().warn("careful")
    assert capsys.readouterr() == ("", "warning: careful\n")


def test_tqdm_reporter_messages_and_debug_only_when_verbose() -> None:
    quiet, loud = io.StringIO(), io.StringIO()
    for stream, verbose in ((quiet, False), (loud, True)):
        reporter = TqdmReporter(verbose=verbose, stream=stream)
        reporter.info("hello")
        reporter.warn("careful")
        reporter.debug("details")
    assert quiet.getvalue() == "hello\nwarning: careful\n"
    assert loud.getvalue() == "hello\nwarning: careful\ndebug: details\n"


def test_tqdm_reporter_draws_no_bar_off_a_terminal() -> None:
    stream = io.StringIO()  # not a tty: bars would be noise in logs
    bar = TqdmReporter(stream=stream).bar("downloading", 1000)
    bar.update(1000)
    bar.close()
    assert stream.getvalue() == ""


def test_tqdm_reporter_draws_bars_in_decimal_units_when_asked() -> None:
    stream = io.StringIO()
    bar = TqdmReporter(stream=stream, bars=True).bar("downloading", 3_000_000)
    bar.update(1_500_000)
    bar.close()
    drawn = stream.getvalue()
    assert "downloading" in drawn
    # 1000, not 1024: 3,000,000 bytes are 3.00M, as the messages count them.
    assert "3.00M" in drawn
