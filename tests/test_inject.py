"""inject: local package files become downloads, replace lock entries, and bring their depends."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel
from envpack.core.errors import EnvpackError
from envpack.core.models import Plan
from envpack.core.progress import SilentReporter
from envpack.packer.inject import inject, injected
from envpack.packer.lockfile import plan_lock


def _plan(project: Path) -> Plan:
    plan, _ = plan_lock(project / "pixi.lock", "default", "linux-64")
    return plan


def _package(channel: FixtureChannel, pattern: str) -> Path:
    (path,) = channel.root.glob(pattern)
    return path


def test_injected_takes_its_record_and_hashes_from_the_file(
    fixture_channel: FixtureChannel,
) -> None:
    for pattern in ("linux-64/libhello-*.tar.bz2", "linux-64/hello-c-*.conda"):
        path = _package(fixture_channel, pattern)
        download = injected(path)
        assert download.injected
        assert download.url == path.resolve().as_uri()
        assert download.artifact.filename == path.name
        assert download.artifact.subdir == "linux-64"
        assert download.artifact.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert download.artifact.size == path.stat().st_size
        assert path.name.startswith(f"{download.artifact.name}-{download.artifact.version}-")


def test_injected_refuses_what_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(EnvpackError, match=r"no such file$"):
        injected(tmp_path / "absent.conda")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(EnvpackError, match=r"expected a \.conda, \.tar\.bz2 or \.whl file"):
        injected(tmp_path / "notes.txt")
    (tmp_path / "fake-1.0-0.conda").write_bytes(b"not a zip")
    with pytest.raises(EnvpackError) as info:
        injected(tmp_path / "fake-1.0-0.conda")
    assert str(info.value).startswith(f"--inject {tmp_path / 'fake-1.0-0.conda'}: not a valid")
    assert "\n" not in str(info.value)


def test_inject_replaces_the_locks_entry_and_says_so(
    fixture_channel: FixtureChannel, fixture_project: Path
) -> None:
    plan = _plan(fixture_project)
    hello = injected(_package(fixture_channel, "linux-64/hello-c-*.conda"))
    warnings = io.StringIO()
    new = inject(plan, [hello], SilentReporter(warnings))
    assert len(new.downloads) == len(plan.downloads)
    assert hello in new.downloads
    assert [d.artifact.path for d in new.downloads] == sorted(
        d.artifact.path for d in new.downloads
    )
    (line,) = warnings.getvalue().splitlines()
    assert line.startswith("warning: --inject replaces hello-c 1.0.0 ")
    assert line.endswith(" from the lock")


def test_inject_refuses_unmet_dependencies(
    fixture_channel: FixtureChannel, fixture_project: Path
) -> None:
    plan = _plan(fixture_project)
    hello = injected(_package(fixture_channel, "linux-64/hello-c-*.conda"))
    without_lib = replace(
        plan, downloads=tuple(d for d in plan.downloads if d.artifact.name != "libhello")
    )
    with pytest.raises(EnvpackError) as info:
        inject(without_lib, [hello], SilentReporter())
    message = str(info.value)
    assert message.startswith("injected packages have unmet dependencies: hello-c needs 'libhello")
    assert message.endswith("(inject those too, or add them to the lock)")
    # Injecting the missing library too satisfies it.
    lib = injected(_package(fixture_channel, "linux-64/libhello-*.tar.bz2"))
    assert lib in inject(without_lib, [hello, lib], SilentReporter()).downloads
