"""The rattler.install baseline, in its own lean process: rattler and nothing of the bench."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import rattler


def lock_records(lock: Path) -> list[rattler.RepoDataRecord]:
    env = rattler.LockFile.from_path(lock).environment("default")
    assert env is not None
    platform_ = next(p for p in env.platforms() if p.name == str(rattler.Subdir.current()))
    return list(env.conda_repodata_records_for_platform(platform_) or [])


def rattler_install(lock: Path, channel: Path, prefix: Path, cache: Path, *, clean: bool) -> None:
    """The baseline: rattler.install of the lock's records from the local channel's files."""
    local = [
        rattler.RepoDataRecord(
            r, r.file_name, (channel / r.subdir / r.file_name).as_uri(), str(r.channel)
        )
        for r in lock_records(lock)
    ]
    asyncio.run(rattler.install(local, target_prefix=prefix, cache_dir=cache, show_progress=False))
    if clean:
        shutil.rmtree(cache)


def main(argv: Sequence[str]) -> int:
    """`_rattler-install LOCK CHANNEL PREFIX CACHE clean|keep`."""
    lock, channel, prefix, cache = map(Path, argv[:4])
    rattler_install(lock, channel, prefix, cache, clean=argv[4] == "clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
