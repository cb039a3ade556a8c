"""The demo's steps in Python, so they reuse the fixture builder and the container harness."""

from __future__ import annotations

import argparse
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.fixtures.channel import FixtureChannel, build, lock_for  # noqa: E402
from devtools.httpserver import serve_directory  # noqa: E402
from tests.containers.harness import get_target  # noqa: E402

APP = """\
import sqlite3, ssl, sys
print(f"hello from python {sys.version.split()[0]} at {sys.prefix}")
print(f"ssl: {ssl.OPENSSL_VERSION}")
print(f"sqlite: {sqlite3.connect(':memory:').execute('select sqlite_version()').fetchone()[0]}")
"""


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(cmd: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", default="bookworm", help="Debian suite of the target")
    args = parser.parse_args()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    unpacker = ROOT / "dist" / f"envunpack-{platform.machine()}-linux"
    bin_dir = Path(sys.executable).parent

    channel = build()
    with tempfile.TemporaryDirectory(prefix="envpack-demo-") as tmp:
        return run_demo(Path(tmp), channel, unpacker, bin_dir, args.suite, arch)


def run_demo(
    work: Path, channel: FixtureChannel, unpacker: Path, bin_dir: Path, suite: str, arch: str
) -> int:
    with serve_directory(channel.root) as url:
        say(f"the example channel is served at {url}")
        project = lock_for(channel.lock_v6, url, work / "project").parent
        say("pack the example environment")
        cmd = [str(bin_dir / "envpack"), str(project), "-o", str(work / "env.tar")]
        show(["envpack", "example/", "-o", "env.tar"])
        started = time.monotonic()
        subprocess.run(cmd, check=True)
        print(f"(packed in {time.monotonic() - started:.1f}s)")

    (work / "app.py").write_text(APP)
    target = get_target(suite, arch)
    say(f"a bare Debian {suite}/{arch} with no python ({target.backend}); on it:")
    script = (
        "set -e; cd /work\n"
        "echo '$ ./envunpack env.tar -o /app'; ./envunpack env.tar -o /app\n"
        "echo '$ /app/env/bin/python app.py'; /app/env/bin/python app.py\n"
        "echo '$ . /app/activate.sh && hello-c && tabulate --help | head -1'\n"
        ". /app/activate.sh && hello-c && tabulate --help | head -1\n"
    )
    result = target.run(
        script,
        files={
            "/work/envunpack": unpacker,
            "/work/env.tar": work / "env.tar",
            "/work/app.py": work / "app.py",
        },
    )
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.exit_code != 0:
        print(f"demo failed in the container (exit {result.exit_code})", file=sys.stderr)
        return result.exit_code
    say("done: that is all a target needs — one static file and one archive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
