"""The entry of `scripts/bench`; the benchmarks live in devtools/bench, one module a section.

`_rattler-install` (the baseline, run as its own process) imports only its own module, so
that process starts without the fixture builders.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":
    if sys.argv[1:2] == ["_rattler-install"]:
        from devtools.bench import baseline

        code = baseline.main(sys.argv[2:])
        sys.stdout.flush()
        sys.stderr.flush()
        # No interpreter teardown: py-rattler's threads can abort it ("PyGILState_Release"),
        # turning a finished install into exit code 134 (envpack.core.cliutil.exit_now does so too).
        os._exit(code)
    from devtools.bench.cli import main

    sys.exit(main())
