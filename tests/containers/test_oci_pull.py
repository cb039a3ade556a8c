"""The static envunpack pulls an env from a registry in a bare root: `envpack -o oci://` to a
real docker-registry on 127.0.0.1, then `envunpack oci://… -o /app` with the frozen build in
bookworm (sharing the host's network only to reach that registry), and the env's python runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.httpserver import serve_directory
from tests.clirun import run_cli
from tests.containers.conftest import TargetFactory
from tests.ocifixtures import plain_registry

pytestmark = pytest.mark.container

UNPACKER = Path(__file__).resolve().parents[2] / "dist" / "envunpack-x86_64-linux"


def test_frozen_envunpack_pulls_and_unpacks_in_a_bare_root(
    bare_target: TargetFactory, fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    if not UNPACKER.is_file():
        pytest.skip(f"{UNPACKER.name} is not built: run scripts/build-unpacker")
    with (
        plain_registry(tmp_path / "registry", auth=False) as registry,
        serve_directory(fixture_channel.root) as url,
    ):
        project = lock_for(fixture_channel.lock_v6, url, tmp_path / "project").parent
        ref = f"oci://{registry.host}/envs/fixture:1"
        pushed = run_cli("envpack", project, "-o", ref, "--insecure", "-q")
        assert pushed.returncode == 0, pushed.stderr.decode()
        script = f"""
/work/envunpack {ref} --insecure -o /app || exit $?
. /app/activate.sh && python -c 'import ssl, sqlite3; print("pulled env runs")'
"""
        result = bare_target("bookworm", "amd64").run(
            script, files={"/work/envunpack": UNPACKER}, network=True, timeout=900
        )
    assert result.exit_code == 0, result
    assert "pulled env runs" in result.stdout, result
