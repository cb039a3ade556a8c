"""How library code talks to the user: a Reporter, never print()."""

from __future__ import annotations

import sys
import threading
from typing import Protocol, TextIO


class Bar(Protocol):
    def update(self, n: int) -> object: ...
    def close(self) -> object: ...


class Reporter(Protocol):
    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def debug(self, message: str) -> None: ...
    def bar(self, desc: str, total: int | None, unit: str = "B") -> Bar: ...


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class SilentReporter:
    """For tests and `-q`: warnings still reach stderr, everything else is dropped."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=self._stream or sys.stderr)

    def debug(self, message: str) -> None:
        pass

    def bar(self, desc: str, total: int | None, unit: str = "B") -> Bar:
        return _NullBar()


class TqdmReporter:
    """Messages on stderr; progress bars only when stderr is a terminal."""

    def __init__(
        self, *, verbose: bool = False, bars: bool | None = None, stream: TextIO | None = None
    ) -> None:
        self._stream = stream or sys.stderr
        self._verbose = verbose
        self._bars = self._stream.isatty() if bars is None else bars
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock:
            if self._bars:
                from tqdm import tqdm

                tqdm.write(text, file=self._stream)  # above any bar on screen
            else:
                print(text, file=self._stream)

    def info(self, message: str) -> None:
        self._write(message)

    def warn(self, message: str) -> None:
        self._write(f"warning: {message}")

    def debug(self, message: str) -> None:
        if self._verbose:
            self._write(f"debug: {message}")

    def bar(self, desc: str, total: int | None, unit: str = "B") -> Bar:
        if not self._bars:
            return _NullBar()
        # Imported here: tqdm pulls in ~40 modules (email, importlib.metadata, csv), a
        # measurable part of a tiny env's unpack, and a run without a terminal needs none.
        from tqdm import tqdm

        scale = unit == "B"
        return tqdm(
            desc=desc,
            total=total,
            unit=unit,
            unit_scale=scale,
            # 1000, not 1024: bars and messages both say MB and must mean the same.
            unit_divisor=1000,
            file=self._stream,
            leave=False,
            dynamic_ncols=True,
        )
